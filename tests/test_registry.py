"""The plugin registry: entry-point discovery, laziness, broken plugins, clashes.

Nothing is pip-installed here: a "distribution" is a ``<name>-<version>.dist-info``
folder (METADATA + entry_points.txt, exactly what an install writes) in a temporary
directory put on ``sys.path``, which ``importlib.metadata`` finds like any other."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import microgradnn as mg
from microgradnn import registry
from microgradnn.registry import PluginWarning, RegistryError


@pytest.fixture(autouse=True)
def _fresh_registry():
    registry.cache_clear()
    yield
    registry.cache_clear()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Make fake installed distributions: ``site(dist, version, {group: {name: value}},
    {module_name: source})``. Their modules are forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made_modules: list[str] = []

    def make(dist: str, version: str, groups: dict, modules: dict | None = None) -> Path:
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = []
        for group, items in groups.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {value}" for name, value in items.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in (modules or {}).items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            made_modules.append(module)
        registry.cache_clear()
        return info

    yield make
    for module in made_modules:
        sys.modules.pop(module, None)


CELL_SOURCE = """
    import microgradnn as mg

    class TinyCell(mg.nn.Module):
        def __init__(self, input_size, hidden_size, bias=True):
            super().__init__()
            self.hidden_size = hidden_size
            self.lin = mg.nn.Linear(input_size + hidden_size, hidden_size, bias=bias)

        def forward(self, x, h):
            h = self.lin(mg.cat([x, h], dim=1)).tanh()
            return h, h
"""


# ----------------------------------------------------------------------------- built-ins


def test_builtins_are_registered_through_entry_points():
    assert {"lstm", "gru", "rnn", "rnn_relu"} <= set(registry.names("cells"))
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad"} <= set(registry.names("optimizers"))
    assert {"step", "cosine", "warmup", "plateau"} <= set(registry.names("schedulers"))
    assert {"cross_entropy", "nll", "mse", "l1", "bce_with_logits"} <= set(registry.names("losses"))
    assert "layers" not in registry.KINDS  # issue 10: no spec key could use the group; it is gone
    assert registry.get("cells", "lstm") is mg.nn.LSTMCell
    assert registry.get("optimizers", "adam") is mg.optim.Adam
    assert registry.get("schedulers", "cosine") is mg.optim.lr_scheduler.CosineAnnealingLR
    entry = registry.get_entry("cells", "gru")
    assert (entry.dist, entry.value) == ("microgradnn", "microgradnn.nn.rnn:GRUCell")


def test_rnn_relu_factory_builds_a_relu_rnn_cell():
    cell = registry.get("cells", "rnn_relu")(3, 5)
    assert isinstance(cell, mg.nn.RNNCell) and cell.nonlinearity == "relu"
    assert cell.weight_ih.shape == (5, 3)


def test_source_checkout_without_install_still_finds_builtins(monkeypatch):
    # No installed distributions at all: the built-ins come from the checkout's pyproject.
    monkeypatch.setattr(registry.metadata, "distributions", lambda: iter(()))
    registry.cache_clear()
    assert {"lstm", "gru", "rnn", "rnn_relu"} <= set(registry.names("cells"))
    assert registry.get("optimizers", "sgd") is mg.optim.SGD


# ----------------------------------------------------------------------------- lookups


def test_unknown_name_suggests_the_close_one():
    with pytest.raises(RegistryError, match=r"unknown cell 'lstn'.*did you mean 'lstm'"):
        registry.get("cells", "lstn")
    with pytest.raises(RegistryError, match=r"did you mean 'adam'"):
        registry.get("optimizers", "Adam")


def test_unknown_kind_is_an_error():
    with pytest.raises(RegistryError, match=r"unknown component kind 'cell'.*did you mean 'cells'"):
        registry.names("cell")


def test_names_is_lazy_and_get_imports_only_that_plugin(site):
    site("lazy-plugin", "0.3", {"microgradnn.cells": {"tinycell": "lazy_cell_mod:TinyCell"},
                                "microgradnn.metrics": {"slowmetric": "lazy_metric_mod:Slow"}},
         {"lazy_cell_mod": CELL_SOURCE,
          "lazy_metric_mod": "raise RuntimeError('this module must never be imported')\n"})
    assert "tinycell" in registry.names("cells")
    assert "slowmetric" in registry.names("metrics")
    assert "lazy_cell_mod" not in sys.modules  # listing read metadata only
    cell = registry.get("cells", "tinycell")
    assert "lazy_cell_mod" in sys.modules and "lazy_metric_mod" not in sys.modules
    entry = registry.get_entry("cells", "tinycell")
    assert (entry.dist, entry.version, entry.status) == ("lazy-plugin", "0.3", "ok")
    # and the plugin cell works through the generic runner, 2 layers, bidirectional
    rnn = mg.nn.Recurrent(cell, 4, 6, num_layers=2, bidirectional=True, batch_first=True)
    out, _ = rnn(mg.randn(2, 5, 4))
    assert out.shape == (2, 5, 12)


def test_broken_plugin_is_reported_once_and_the_rest_keeps_working(site):
    site("broken-plugin", "1.2.3", {"microgradnn.cells": {"brokencell": "broken_mod_xyz:Cell"}},
         {"broken_mod_xyz": "raise ImportError('boom: missing dependency')\n"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert registry.get("cells", "lstm") is mg.nn.LSTMCell  # unaffected
        for _ in range(2):
            with pytest.raises(RegistryError, match=r"broken-plugin.*boom: missing dependency"):
                registry.get("cells", "brokencell")
        registry.entries("cells", load=True)
    ours = [w for w in caught if issubclass(w.category, PluginWarning) and "broken-plugin" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert "1.2.3" in str(ours[0].message) and "brokencell" in str(ours[0].message)
    mine = [f for f in registry.failures() if f.dist == "broken-plugin"]
    assert len(mine) == 1 and "ImportError" in mine[0].error
    status = {e.name: e.status for e in registry.entries("cells")}
    assert status["brokencell"] == "failed" and status["lstm"] == "ok"


@pytest.mark.parametrize("kind,source,why", [
    ("optimizers", "class NotAnOptimizer:\n    pass\n", "not a microgradnn.optim.Optimizer subclass"),
    ("cells", "class NotAModule:\n    def __init__(self, input_size, hidden_size): pass\n",
     "not a microgradnn.nn.Module subclass"),
    ("metrics", "class NoCompute:\n    def update(self, *a): pass\n", "lacks compute, reset"),
    ("schedulers", "VALUE = 3\n", "is not callable"),
])
def test_wrong_kind_is_reported_with_the_distribution(site, kind, source, why):
    attr = {"optimizers": "NotAnOptimizer", "cells": "NotAModule", "metrics": "NoCompute", "schedulers": "VALUE"}[kind]
    module = f"wrongkind_{kind}_mod"
    site("wrong-kind", "0.1", {f"microgradnn.{kind}": {"thing": f"{module}:{attr}"}}, {module: source})
    with pytest.warns(PluginWarning, match="wrong-kind"):
        with pytest.raises(RegistryError, match=why):
            registry.get(kind, "thing")
    assert [f.kind for f in registry.failures() if f.dist == "wrong-kind"] == [kind]


def test_a_cell_that_cannot_take_the_sizes_is_the_wrong_kind():
    def no_sizes():
        return None

    with pytest.raises(RegistryError, match=r"cell\(input_size, hidden_size"):
        registry.register("cells", "nosizes", no_sizes)


def test_misspelt_group_is_reported(site):
    site("typo-plugin", "0.1", {"microgradnn.cell": {"x": "typo_mod:X"}})
    with pytest.warns(PluginWarning, match=r"unknown entry-point group 'microgradnn.cell'.*did you mean 'cells'"):
        registry.names("cells")
    assert any(f.dist == "typo-plugin" for f in registry.failures())


def test_two_distributions_claiming_one_name(site):
    cell_a = CELL_SOURCE.replace("TinyCell", "CellA")
    cell_b = CELL_SOURCE.replace("TinyCell", "CellB")
    site("plugin-a", "1.0", {"microgradnn.cells": {"dupcell": "clash_a_mod:CellA"}}, {"clash_a_mod": cell_a})
    site("plugin-b", "2.0", {"microgradnn.cells": {"dupcell": "clash_b_mod:CellB"}}, {"clash_b_mod": cell_b})
    with pytest.raises(RegistryError) as info:
        registry.get("cells", "dupcell")
    message = str(info.value)
    assert "'plugin-a'" in message and "'plugin-b'" in message
    assert "plugin-a:dupcell" in message and "plugin-b:dupcell" in message
    assert registry.get("cells", "plugin-a:dupcell").__name__ == "CellA"
    assert registry.get("cells", "Plugin_B:dupcell").__name__ == "CellB"  # PEP 503 normalised
    with pytest.raises(RegistryError, match=r"no distribution 'plugin-c' provides 'dupcell'"):
        registry.get("cells", "plugin-c:dupcell")
    clash = {e.dist: e.clash for e in registry.entries("cells") if e.name == "dupcell"}
    assert clash == {"plugin-a": ("plugin-b",), "plugin-b": ("plugin-a",)}
    assert registry.names("cells").count("dupcell") == 1


def test_cache_clear_sees_a_newly_installed_plugin(tmp_path, monkeypatch, site):
    assert "latecell" not in registry.names("cells")
    monkeypatch.syspath_prepend(str(tmp_path))
    info = tmp_path / "late_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[microgradnn.cells]\nlatecell = late_mod:Cell\n")
    assert "latecell" not in registry.names("cells")  # cached
    registry.cache_clear()
    assert "latecell" in registry.names("cells")


# ----------------------------------------------------------------------------- in-process


def test_register_in_process_and_as_decorator():
    try:
        @registry.register("cells", "decorated_cell")
        class DecoratedCell(mg.nn.Module):
            def __init__(self, input_size: int, hidden_size: int, alpha: float = 0.5):
                super().__init__()

        assert registry.get("cells", "decorated_cell") is DecoratedCell
        entry = registry.get_entry("cells", "decorated_cell")
        assert entry.dist == registry.IN_PROCESS and entry.status == "ok"
        with pytest.raises(RegistryError, match="already registered"):
            registry.register("cells", "decorated_cell", DecoratedCell)
        registry.register("cells", "decorated_cell", DecoratedCell, replace=True)
        registry.cache_clear()  # in-process registrations survive a rescan
        assert "decorated_cell" in registry.names("cells")
    finally:
        registry.unregister("cells", "decorated_cell")
    assert "decorated_cell" not in registry.names("cells")


def test_register_checks_the_kind_at_once():
    with pytest.raises(RegistryError, match="not a microgradnn.optim.Optimizer subclass"):
        registry.register("optimizers", "fake_opt", dict)
    with pytest.raises(RegistryError, match="instance"):
        registry.register("losses", "an_instance", mg.nn.MSELoss())
    with pytest.raises(RegistryError, match="without ':'"):
        registry.register("losses", "a:b", mg.nn.Identity)
    assert "fake_opt" not in registry.names("optimizers")


def test_a_plugin_never_shadows_a_built_in_name():
    """Issue 11: a plugin claiming "sgd" once disabled the built-in for every spec; now the
    built-in wins and the plugin's stays reachable by its distribution's name."""
    registry.register("optimizers", "sgd", mg.optim.Adam, dist="my-experiments")
    try:
        assert registry.get("optimizers", "sgd") is mg.optim.SGD
        assert registry.get("optimizers", "microgradnn:sgd") is mg.optim.SGD
        assert registry.get("optimizers", "my-experiments:sgd") is mg.optim.Adam
        entry = next(e for e in registry.entries("optimizers") if e.name == "sgd" and e.dist == "my-experiments")
        assert "microgradnn" in entry.clash  # `mgnn plugins` shows it
    finally:
        registry.unregister("optimizers", "sgd")


def test_entries_list_name_dist_version_status():
    rows = registry.entries("optimizers", load=True)
    adam = next(e for e in rows if e.name == "adam")
    assert (adam.kind, adam.dist, adam.status, adam.error) == ("optimizers", "microgradnn", "ok", None)
    assert adam.version and adam.qualified_name == "microgradnn:adam"
    assert [e.name for e in rows] == sorted(e.name for e in rows)
