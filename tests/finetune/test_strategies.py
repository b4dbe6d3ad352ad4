"""Every strategy on the same small 2-layer LSTM language model: exactly the intended
parameters train (their values change; everything else stays bit-identical), the
strategies that claim to start as the pretrained model do, the mergeable ones merge to
the same outputs, and the delta (adapter-only) file round-trips onto a fresh base."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import finetune as ft

from ._util import batch, changed, make_lm, outputs, snapshot, train

# name -> (factory, globs that MUST change, globs that MAY change, starts as the base)
P = "rnn.parametrizations."
CASES = {
    "full": (lambda: ft.Full(), ["*"], [], True),
    "freeze": (lambda: ft.Freeze(), ["rnn.*_l1", "rnn.bias_*_l0", "head.*"], [], True),
    "bitfit": (lambda: ft.BitFit(), ["rnn.bias_*", "head.bias"], [], True),
    "lora": (lambda: ft.LoRA(r=2, alpha=4.0), [P + "weight_*.0.lora_*"], [], True),
    "adalora": (lambda: ft.AdaLoRA(init_r=4, target_r=2, total_steps=6, delta_t=1),
                [P + "weight_*.0.lora_*"], [P + "*.rank_mask"], True),
    "ia3": (lambda: ft.IA3(), [P + "weight_ih_l*.0.scale"], [], True),
    "adapter": (lambda: ft.Adapter(after=["rnn", "embedding"], bottleneck=3), ["adapters.*"], [], True),
    "prefix": (lambda: ft.Prefix(), ["rnn.h0", "rnn.c0"], [], True),
    "prompt": (lambda: ft.Prompt(n_tokens=3), ["prompt"], [], False),
}
NAMES = list(CASES)


def _matches(name: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _base_view(model) -> dict:
    """The model's state dict with parametrized tensors under their plain names (their
    stored originals), so the base weights can be compared with the pretrained ones."""
    out = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if "parametrizations" in parts and parts[-1] == "original":
            i = parts.index("parametrizations")
            key = ".".join(parts[:i] + [parts[i + 1]])
        out[key] = value
    return out


def test_registry_names_are_the_exported_classes():
    assert set(ft.STRATEGIES) == {"full", "freeze", "bitfit", "lora", "adalora", "ia3", "adapter", "prefix", "prompt"}
    for cls in ft.STRATEGIES.values():
        assert issubclass(cls, ft.Strategy)


@pytest.mark.parametrize("name", NAMES)
def test_exactly_the_intended_parameters_train(name):
    factory, must, may, identity = CASES[name]
    model = make_lm()
    pretrained = snapshot(model)
    x, _ = batch(2)
    base_out = outputs(model, x)
    strategy = factory()
    strategy.apply(model)

    # applying changes no pretrained weight
    view = _base_view(model)
    for key, value in pretrained.items():
        assert np.array_equal(view[key], value), key
    if identity:  # the fine-tune starts as the pretrained model, bit for bit
        assert np.array_equal(outputs(model, x), base_out)
    else:
        assert outputs(model, x).shape == base_out.shape

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(_matches(n, must) for n in trainable), sorted(trainable)
    summary = strategy.trainable_summary(model)
    assert summary["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary["total"] == sum(p.numel() for p in model.parameters())
    assert summary["share"] == pytest.approx(summary["trainable"] / summary["total"])
    if name != "full":
        assert summary["share"] < 1

    before = snapshot(model)
    train(model, strategy)
    moved = changed(before, model)
    # what changed is what may train; every trainable parameter did change
    assert all(_matches(k, must + may) for k in moved), moved
    assert trainable <= set(moved), sorted(trainable - set(moved))
    # everything else is bit-identical, the pretrained weights included
    for key, value in before.items():
        if key not in moved:
            assert np.array_equal(model.state_dict()[key], value), key
    view = _base_view(model)
    for key, value in pretrained.items():
        if not _matches(key, must):
            assert np.array_equal(view[key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_delta_round_trips_onto_a_fresh_base(name, tmp_path):
    factory, must, may, _ = CASES[name]
    model = make_lm()
    strategy = factory()
    strategy.apply(model)
    train(model, strategy)
    x, _ = batch(5)
    expected = outputs(model, x)

    delta = strategy.delta_state_dict(model)
    assert delta and all(_matches(k, must + may) for k in delta), list(delta)
    full = model.state_dict()
    if name != "full":
        assert sum(v.size for v in delta.values()) < sum(v.size for v in full.values())
    path = tmp_path / "adapter.safetensors"
    mg.save(delta, path)

    fresh = make_lm(seed=0)  # the same pretrained base, a new object
    mg.manual_seed(123)  # whatever the new strategy draws at init must not matter
    again = factory()
    again.load_delta(fresh, mg.load(path))
    np.testing.assert_array_equal(outputs(fresh, x), expected)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "adapter"])
def test_merge_gives_the_same_outputs_and_plain_weights(name):
    factory = CASES[name][0]
    model = make_lm()
    base_keys = list(model.state_dict())
    strategy = factory()
    strategy.apply(model)
    train(model, strategy)
    x, _ = batch(6)
    expected = outputs(model, x)
    merged = strategy.merge(model)
    assert merged is model
    np.testing.assert_allclose(outputs(model, x), expected, rtol=1e-6, atol=1e-7)
    extra = {"prefix": ["rnn.h0", "rnn.c0"], "prompt": ["prompt"]}.get(name, [])
    assert sorted(model.state_dict()) == sorted(base_keys + extra)
    if not extra:
        assert list(model.state_dict()) == base_keys  # same keys, same order: a plain checkpoint
    assert all(p.requires_grad for p in model.parameters())
    assert not any("parametrizations" in n for n, _ in model.named_modules())
    # a merged model can be fine-tuned again
    ft.LoRA(r=1).apply(model)


def test_adapter_refuses_to_merge():
    model = make_lm()
    strategy = ft.Adapter()
    strategy.apply(model)
    with pytest.raises(ft.FinetuneError, match="can't be merged"):
        strategy.merge(model)
    strategy.remove(model)  # detaching gives the base model back
    assert "adapters" not in dict(model.named_children())


def test_freeze_unfreeze_schedule():
    model = make_lm()
    strategy = ft.Freeze(targets=["embedding.*", "rnn.weight_*_l0"], unfreeze={"2": ["embedding.*"]})
    strategy.apply(model)
    emb = model.embedding.weight
    assert not emb.requires_grad
    start = emb.array.copy()
    x, y = batch(3)
    opt = mg.optim.Adam(list(model.parameters()), lr=0.05)
    from ._util import loss_of

    for step in range(1, 5):
        if step <= 2:  # still frozen during steps 1 and 2
            assert np.array_equal(emb.array, start)
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()
        strategy.on_step(step)
        assert emb.requires_grad == (step >= 2)
    assert not np.array_equal(emb.array, start)  # trained in steps 3 and 4
    assert not model.rnn.weight_ih_l0.requires_grad


def test_freeze_schedule_catches_up_on_resume():
    model = make_lm()
    strategy = ft.Freeze(unfreeze={5: ["embedding.*"], 50: ["rnn.weight_*_l0"]})
    strategy.apply(model)
    strategy.on_step(7)  # a resumed run's first step: step 5's group is due, step 50's not
    assert model.embedding.weight.requires_grad and not model.rnn.weight_ih_l0.requires_grad


def test_freeze_default_targets_skip_what_the_model_lacks():
    mg.manual_seed(0)
    from microgradnn.models import SequenceModel

    model = SequenceModel(2, input_size=3, hidden_size=4, task="classification")  # no embedding
    strategy = ft.Freeze()
    strategy.apply(model)
    assert strategy.frozen == ["rnn.weight_ih_l0", "rnn.weight_hh_l0"]


def test_bitfit_train_head():
    model = make_lm()
    ft.BitFit(train_head=True).apply(model)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["head.bias", "head.weight", "rnn.bias_hh_l0", "rnn.bias_hh_l1", "rnn.bias_ih_l0", "rnn.bias_ih_l1"]


@pytest.mark.parametrize("cell", ["gru", "rnn"])
@pytest.mark.parametrize("name", ["lora", "ia3", "prefix", "adapter"])
def test_other_cells_start_as_the_base_and_merge(cell, name):
    factory = CASES[name][0]
    model = make_lm(cell=cell)
    x, _ = batch(2)
    base_out = outputs(model, x)
    strategy = factory()
    strategy.apply(model)
    np.testing.assert_array_equal(outputs(model, x), base_out)
    train(model, strategy, steps=2)
    assert not np.array_equal(outputs(model, x), base_out)
    if strategy.mergeable:
        expected = outputs(model, x)
        strategy.merge(model)
        np.testing.assert_allclose(outputs(model, x), expected, rtol=1e-6, atol=1e-7)


def test_report_and_repr():
    strategy = ft.LoRA(r=2)
    model = make_lm()
    strategy.apply(model)
    report = strategy.report()
    assert report["strategy"] == "lora" and report["options"]["r"] == 2 and 0 < report["share"] < 1
    assert "r=2" in repr(strategy)
