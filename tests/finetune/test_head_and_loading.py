"""A new classification head on a pretrained LM, and loading a base from a run folder or a
microgradnn checkpoint (PyTorch state_dicts: test_from_torch.py)."""

from __future__ import annotations

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import finetune as ft
from microgradnn.models import SequenceModel

from ._util import batch, make_lm, outputs, snapshot, train


def test_replace_head_moves_an_lm_to_classification_and_any_strategy_trains_it(tmp_path):
    model = make_lm()
    pretrained = snapshot(model)
    ft.replace_head(model, 3)
    assert model.task == "classification" and model.output_size == 3 and model.head.weight.shape == (3, 8)
    strategy = ft.BitFit()  # biases only... plus the new head, whole
    strategy.apply(model)
    assert model.head.weight.requires_grad and not model.rnn.weight_ih_l0.requires_grad
    x, _ = batch(2)
    assert outputs(model, x).shape == (3, 3)
    head_before = model.head.weight.array.copy()
    train(model, strategy)
    assert not np.array_equal(model.head.weight.array, head_before)
    assert np.array_equal(model.rnn.weight_ih_l0.array, pretrained["rnn.weight_ih_l0"])
    delta = strategy.delta_state_dict(model)
    assert {"head.weight", "head.bias"} <= set(delta) and "rnn.weight_ih_l0" not in delta
    mg.save(delta, tmp_path / "d.safetensors")
    expected = outputs(model, x)

    fresh = make_lm()
    with pytest.raises(ft.FinetuneError, match="replace_head"):
        ft.BitFit().load_delta(fresh, mg.load(tmp_path / "d.safetensors"))
    fresh = make_lm()
    ft.replace_head(fresh, 3)
    ft.BitFit().load_delta(fresh, mg.load(tmp_path / "d.safetensors"))
    np.testing.assert_array_equal(outputs(fresh, x), expected)


def test_replace_head_validation():
    with pytest.raises(ft.FinetuneError, match="num_classes"):
        ft.replace_head(make_lm(), 0)
    with pytest.raises(ft.FinetuneError, match="task"):
        ft.replace_head(make_lm(), 2, task="sentiment")
    model = make_lm()
    ft.LoRA().apply(model)
    with pytest.raises(ft.FinetuneError, match="before applying"):
        ft.replace_head(model, 2)


def test_load_base_from_checkpoint_file_and_run_folder(tmp_path):
    model = make_lm()
    sd = model.state_dict()
    mg.save(sd, tmp_path / "weights.safetensors")
    loaded = ft.load_base(tmp_path / "weights.safetensors")
    assert list(loaded) == list(sd) and all(np.array_equal(loaded[k], sd[k]) for k in sd)

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    mg.save({"model": sd, "optimizer": {"state": {}}, "step": 7}, run / "checkpoints" / "last.safetensors")
    loaded = ft.load_base(run)
    assert all(np.array_equal(loaded[k], sd[k]) for k in sd)
    fresh = make_lm(seed=5)
    fresh.load_state_dict(loaded)
    x, _ = batch(2)
    np.testing.assert_array_equal(outputs(fresh, x), outputs(model, x))


def test_load_base_errors(tmp_path):
    with pytest.raises(ft.FinetuneError, match="does not exist"):
        ft.load_base(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "spec.yaml").write_text("a: 1\n")
    with pytest.raises(ft.FinetuneError, match="no checkpoint.*spec.yaml"):
        ft.load_base(tmp_path / "empty")
    mg.save({"step": 3, "note": "no weights"}, tmp_path / "x.safetensors")
    with pytest.raises(ft.FinetuneError, match="no model state dict.*note"):
        ft.load_base(tmp_path / "x.safetensors")


def test_infer_model_options_other_cells():
    for cell, n in (("gru", 3), ("rnn", 1)):
        mg.manual_seed(0)
        m = SequenceModel(4, input_size=3, hidden_size=5, num_layers=3, cell=cell, bidirectional=True,
                          task="classification", init_state="learned")
        options = ft.infer_model_options(m.state_dict())
        assert options == {"output_size": 4, "cell": cell, "hidden_size": 5, "num_layers": 3,
                           "bidirectional": True, "input_size": 3, "init_state": "learned"}
    with pytest.raises(ft.FinetuneError, match="lacks head.weight"):
        ft.infer_model_options({"rnn.weight_ih_l0": np.zeros((4, 3)), "rnn.weight_hh_l0": np.zeros((4, 4))})
