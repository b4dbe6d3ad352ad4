"""Component contracts: one Protocol per kind (microgradnn.contracts), verified by the
registry when an entry loads, and by `mgnn plugins check NAME` for every kind (issue 10)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import microgradnn as mg
from microgradnn import contracts, registry
from microgradnn.finetune import Strategy
from microgradnn.registry import RegistryError


class OnlyApply:
    """A fine-tuning 'strategy' with apply() only: the Trainer would crash mid-run."""

    def apply(self, model):
        pass


def test_a_strategy_with_apply_only_is_refused_at_once():
    """Finding: a fine-tuning plugin was checked for apply only; on_step, delta_state_dict
    and load_delta were called unchecked mid-run."""
    with pytest.raises(RegistryError, match="lacks on_step, penalty, delta_state_dict, load_delta"):
        registry.register("finetune", "only_apply", OnlyApply)


def test_a_strategy_subclassing_strategy_keeps_the_contract():
    class Mine(Strategy):
        name = "mine"

        def _apply(self, model):
            self._freeze_all(model)
            model.head.requires_grad_(True)

    registry.register("finetune", "mine_ok", Mine, replace=True)
    try:
        assert isinstance(Mine(), contracts.StrategyLike)
    finally:
        registry.unregister("finetune", "mine_ok")


def test_every_kind_has_one_contract_and_the_layers_group_is_gone():
    """Finding: the microgradnn.layers group registered 23 names no spec key could use."""
    assert set(registry.KINDS) == set(contracts.CONTRACTS)
    assert "layers" not in registry.KINDS
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    groups = {g.removeprefix("microgradnn.") for g in project["entry-points"]}
    assert groups == set(registry.KINDS)


def check_all(kind: str) -> list[tuple[str, int, str]]:
    from mgnn.plugin_checks import check_plugin

    out = []
    for name in registry.names(kind):
        buf = io.StringIO()
        code = check_plugin(name, kind, Console(file=buf, width=200, no_color=True))
        out.append((name, code, buf.getvalue()))
    return out


@pytest.mark.parametrize("kind", [k for k in registry.KINDS if k != "cells"])
def test_plugins_check_works_for_every_kind(kind):
    """Finding: `mgnn plugins check` existed for cells only."""
    results = check_all(kind)
    assert results
    for name, code, text in results:
        assert code == 0, (name, text)
        assert "FAIL" not in text and f"keeps the {registry.singular(kind)} contract" in text
        if kind == "datasets" and name in ("adding", "copy", "parity"):  # these build without files
            assert "skip" not in text, text


def test_plugins_check_of_a_dataset_and_a_cell():
    from mgnn.plugin_checks import check_plugin

    for name, kind in (("adding", "datasets"), ("gru", "cells")):
        buf = io.StringIO()
        assert check_plugin(name, None, Console(file=buf, width=200, no_color=True)) == 0, buf.getvalue()


def test_init_state_device_none_means_the_default_device():
    """Finding: the tutorial's init_state(batch, device, dtype) got device=None from
    `mgnn plugins check`, and mg.zeros(..., device=None) raised (PyTorch takes None)."""
    z = mg.zeros(2, 3, device=None, dtype=None)
    assert z.device == "cpu" and tuple(z.shape) == (2, 3)
    assert mg.randn(2, device=None).device == "cpu"
    assert mg.tensor([1.0], device=None).device == "cpu"
