"""LoRA and AdaLoRA: the effective weight is W + (alpha/r) B A (checked against a plain model
holding that weight), gradients through the fused recurrent kernels match finite
differences, dropout, every kind of target, and AdaLoRA's schedule and rank reallocation."""

from __future__ import annotations

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import finetune as ft
from microgradnn.models import SequenceModel
from microgradnn.nn import LSTMCell

from ._util import batch, make_lm, outputs, train


def _fn(model, weight_name):
    module_path, _, attr = weight_name.rpartition(".")
    return model.get_submodule(module_path).parametrizations._modules[attr][0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_effective_weight_is_w_plus_scaled_ba(cell):
    model = make_lm(cell=cell)
    plain = make_lm(cell=cell)
    strategy = ft.LoRA(targets=["rnn.weight_*", "head.weight"], r=3, alpha=6.0)
    strategy.apply(model)
    rng = np.random.default_rng(0)
    with mg.no_grad():
        for name, _, _ in strategy.adapted:
            fn = _fn(model, name)
            fn.lora_A.array[...] = rng.standard_normal(fn.lora_A.shape)
            fn.lora_B.array[...] = rng.standard_normal(fn.lora_B.shape) * 0.1
            w = plain.get_parameter(name)
            w.array[...] = w.array + (6.0 / 3) * fn.lora_B.array @ fn.lora_A.array
    x, _ = batch(4)
    np.testing.assert_allclose(outputs(model, x), outputs(plain, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell_options,targets,r,seed", [
    ({}, ["rnn.weight_hh_l0", "rnn.weight_ih_l1", "head.weight"], 2, 1),
    # an LSTM with proj_size runs fused too; the op reads weight_hr through its parametrization
    ({"proj_size": 2}, ["rnn.weight_hr_l0", "rnn.weight_hh_l1"], 1, 2),
], ids=["plain", "projected"])
def test_lora_gradients_through_the_fused_kernel_match_finite_differences(cell_options, targets, r, seed):
    mg.manual_seed(0)
    hidden = 4 if cell_options else 3
    model = SequenceModel(5, vocab_size=5, embedding_dim=3, hidden_size=hidden, num_layers=2,
                          cell_options=cell_options).double()
    assert model.rnn.uses_fused_path() and model.rnn.proj_size == cell_options.get("proj_size", 0)
    strategy = ft.LoRA(targets=targets, r=r)
    strategy.apply(model)
    rng = np.random.default_rng(seed)
    params = []
    with mg.no_grad():
        for name, _, _ in strategy.adapted:
            fn = _fn(model, name)
            fn.lora_B.array[...] = rng.standard_normal(fn.lora_B.shape) * 0.3  # away from B = 0
            params += [fn.lora_A, fn.lora_B]
    x = mg.tensor(rng.integers(0, 5, (2, 4)))
    assert mg.gradcheck(lambda *_: model(x)[0], *params)


def test_dropout_only_in_training_and_merge_uses_none():
    model = make_lm()
    strategy = ft.LoRA(r=2, dropout=0.5)
    strategy.apply(model)
    x, _ = batch(2)
    base = outputs(model, x)
    model.train()
    with mg.no_grad():
        np.testing.assert_array_equal(model(x)[0].array, base)  # B = 0: dropout can't show yet
    train(model, strategy, steps=2)
    model.train()
    with mg.no_grad():
        a, b = model(x)[0].array, model(x)[0].array
    assert not np.array_equal(a, b)  # a fresh feature mask per forward
    evaluated = outputs(model, x)
    np.testing.assert_array_equal(outputs(model, x), evaluated)  # eval: deterministic
    model.train()
    strategy.merge(model)
    np.testing.assert_allclose(outputs(model, x), evaluated, rtol=1e-6, atol=1e-7)


def test_generic_recurrent_cells_embedding_and_head_targets():
    mg.manual_seed(0)
    model = SequenceModel(13, vocab_size=13, embedding_dim=6, hidden_size=8, num_layers=2, cell=LSTMCell)
    x, _ = batch(2)
    base = outputs(model, x)
    strategy = ft.LoRA(targets=["rnn.*weight_*", "embedding.weight", "head.weight"], r=2)
    strategy.apply(model)
    assert [n for n, _, _ in strategy.adapted] == [
        "embedding.weight", "rnn.cell_l0.weight_ih", "rnn.cell_l0.weight_hh",
        "rnn.cell_l1.weight_ih", "rnn.cell_l1.weight_hh", "head.weight"]
    np.testing.assert_array_equal(outputs(model, x), base)
    train(model, strategy, steps=2)
    expected = outputs(model, x)
    assert not np.array_equal(expected, base)
    strategy.merge(model)
    np.testing.assert_allclose(outputs(model, x), expected, rtol=1e-6, atol=1e-7)


def test_trainable_count_is_r_times_in_plus_out():
    model = make_lm()  # 2-layer LSTM, embedding 6, hidden 8: weights (32, 6) (32, 8) (32, 8) (32, 8)
    strategy = ft.LoRA(r=2)
    strategy.apply(model)
    expected = 2 * ((32 + 6) + (32 + 8) * 3)
    assert strategy.trainable_summary(model)["trainable"] == expected


# ----------------------------------------------------------------------------- AdaLoRA


def test_adalora_budget_schedule_is_cubic_from_init_to_target():
    s = ft.AdaLoRA(init_r=6, target_r=2, total_steps=100, tinit=10, tfinal=20, delta_t=5)
    s.adapted = [None] * 3  # three adapted weights: budget 18 -> 6
    assert s.budget(0) == (18, False) and s.budget(10) == (18, False)
    assert s.budget(45)[0] == int(6 + 12 * (1 - 35 / 70) ** 3)
    assert s.budget(45)[1] and not s.budget(46)[1]  # prune every delta_t steps
    assert s.budget(81) == (6, True) and s.budget(100) == (6, True)
    budgets = [s.budget(t)[0] for t in range(101)]
    assert all(a >= b for a, b in zip(budgets, budgets[1:]))


def test_adalora_sensitivity_is_weight_times_gradient():
    model = make_lm()
    strategy = ft.AdaLoRA(init_r=3, target_r=1, total_steps=10)
    strategy.apply(model)
    with mg.no_grad():
        for fn in strategy._fns():
            fn.lora_E.array[...] = 0.5  # so that every factor gets a gradient
    from ._util import loss_of

    x, y = batch(2)
    loss_of(model, x, y).backward()
    for fn in strategy._fns():
        for p in (fn.lora_A, fn.lora_E, fn.lora_B):
            np.testing.assert_allclose(strategy._sens[id(p)], np.abs(p.array * p.grad.array))


def test_adalora_reallocates_rank_to_the_most_important_weight():
    model = make_lm()
    strategy = ft.AdaLoRA(init_r=4, target_r=2, total_steps=10)
    strategy.apply(model)
    fns = strategy._fns()
    names = [n for n, _, _ in strategy.adapted]
    # weight 0 is very important, weight 3 a little, the others not at all
    for w, fn in enumerate(fns):
        level = {0: 10.0, 3: 1.0}.get(w, 0.01)
        for p in (fn.lora_A, fn.lora_E, fn.lora_B):
            strategy._ema_ipt[id(p)] = np.full(p.shape, level)
            strategy._ema_unc[id(p)] = np.full(p.shape, 1.0)
    strategy._prune_to(8)  # from 16 triplets to 8
    ranks = strategy.ranks()
    assert ranks == {names[0]: 4, names[1]: 0, names[2]: 0, names[3]: 4}
    for fn in fns:  # pruned triplets are off: lambda zeroed, mask zero
        off = fn.rank_mask.array == 0
        assert np.all(fn.lora_E.array[off] == 0)


def test_adalora_training_ends_at_the_target_budget_and_reports_ranks():
    model = make_lm()
    strategy = ft.AdaLoRA(init_r=4, target_r=2, total_steps=8, tinit=1, tfinal=2, delta_t=2)
    strategy.apply(model)
    train(model, strategy, steps=8)
    ranks = strategy.ranks()
    assert set(ranks) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1"}
    assert sum(ranks.values()) == 2 * 4
    report = strategy.report()
    assert report["ranks"] == ranks and report["budget"] == 8
    x, _ = batch(3)
    expected = outputs(model, x)
    strategy.merge(model)
    assert strategy.final_ranks == ranks and strategy.ranks() == ranks
    np.testing.assert_allclose(outputs(model, x), expected, rtol=1e-6, atol=1e-7)


def test_adalora_penalty_is_the_orthogonality_residual_and_training_reduces_it():
    model = make_lm()
    strategy = ft.AdaLoRA(init_r=3, target_r=1, orth_reg_weight=1.0)
    strategy.apply(model)
    fns = strategy._fns()
    manual = np.mean([np.sum((f.lora_A.array @ f.lora_A.array.T - np.eye(3)) ** 2)
                      + np.sum((f.lora_B.array.T @ f.lora_B.array - np.eye(3)) ** 2) for f in fns])
    first = strategy.penalty()
    np.testing.assert_allclose(first.item(), manual, rtol=1e-5)
    params = [p for f in fns for p in (f.lora_A, f.lora_B)]
    opt = mg.optim.SGD(params, lr=0.5)
    for _ in range(40):
        opt.zero_grad()
        strategy.penalty().backward()
        opt.step()
    assert strategy.penalty().item() < 0.1 * first.item()
    off = ft.AdaLoRA(orth_reg_weight=0.0)
    off.apply(make_lm())
    assert off.penalty() is None


def test_adalora_state_dict_resumes_the_importance_scores(tmp_path):
    model = make_lm()
    strategy = ft.AdaLoRA(init_r=4, target_r=2, total_steps=20, delta_t=100)  # no pruning yet
    strategy.apply(model)
    train(model, strategy, steps=3)
    mg.save({"model": model.state_dict(), "strategy": strategy.state_dict()}, tmp_path / "ckpt.safetensors")
    ckpt = mg.load(tmp_path / "ckpt.safetensors")

    resumed_model = make_lm(seed=9)
    resumed = ft.AdaLoRA(init_r=4, target_r=2, total_steps=20, delta_t=100)
    resumed.apply(resumed_model)
    resumed_model.load_state_dict(ckpt["model"])
    resumed.load_state_dict(ckpt["strategy"])
    for a, b in zip(strategy.triplet_scores(), resumed.triplet_scores()):
        np.testing.assert_array_equal(a, b)
    assert any(s.any() for s in resumed.triplet_scores())
    with pytest.raises(ft.FinetuneError, match="unknown factors"):
        resumed.load_state_dict({"ema_ipt": {"rnn.nope.lora_A": np.zeros(1)}})
