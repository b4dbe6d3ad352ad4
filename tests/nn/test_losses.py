"""Every loss and every option against PyTorch: the loss value and the gradient of the input
(float64 within 1e-6, float32 within 1e-4 relative), through both the Module
(``nn.CrossEntropyLoss(...)``) and the function (``F.cross_entropy``); plus gradchecks of
the composite losses and the errors a user sees."""

from __future__ import annotations

import inspect
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import microgradnn as mg
import microgradnn.nn.functional as F
from microgradnn import nn

TOL = {np.float64: dict(rtol=1e-6, atol=1e-6), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]


def compare_loss(m_loss, t_loss, x, target, dtype, seed=0, target_grad=False):
    """Evaluate both criteria on (x, target); compare value and d(loss . g)/dx (and /dtarget)."""
    x = np.asarray(x, dtype=dtype)
    mx, tx = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    target = np.asarray(target)
    if target.dtype.kind == "f":
        target = target.astype(dtype)
    mt = mg.tensor(target, requires_grad=target_grad)
    tt = torch.tensor(target, requires_grad=target_grad)
    mo, to = m_loss(mx, mt), t_loss(tx, tt)
    tol = TOL[dtype]
    assert mo.shape == tuple(to.shape)
    assert mo.dtype == dtype
    np.testing.assert_allclose(mo.detach().numpy(), to.detach().numpy(), **tol)
    g = np.random.default_rng(seed).uniform(0.5, 1.5, tuple(to.shape)).astype(dtype)
    (to * torch.tensor(g)).sum().backward()
    (mo * mg.tensor(g)).sum().backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), **tol, err_msg="input grad")
    if target_grad:
        np.testing.assert_allclose(mt.grad.numpy(), tt.grad.numpy(), **tol, err_msg="target grad")


def rand(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def both_ways(name, kwargs_m, kwargs_t, module_kwargs=None):
    """(module criterion, functional criterion) for microgradnn, and torch's criterion."""
    module_cls = getattr(nn, name)
    torch_cls = getattr(torch.nn, name)
    fn = {"MSELoss": F.mse_loss, "L1Loss": F.l1_loss, "SmoothL1Loss": F.smooth_l1_loss, "HuberLoss": F.huber_loss,
          "BCELoss": F.binary_cross_entropy, "BCEWithLogitsLoss": F.binary_cross_entropy_with_logits,
          "CrossEntropyLoss": F.cross_entropy, "NLLLoss": F.nll_loss}[name]
    m_module = module_cls(**kwargs_m)
    m_fn = lambda x, t: fn(x, t, **kwargs_m)  # noqa: E731
    return m_module, m_fn, torch_cls(**kwargs_t)


def _to_torch_kwargs(kwargs, dtype):
    out = dict(kwargs)
    for key in ("weight", "pos_weight"):
        if out.get(key) is not None:
            out[key] = torch.tensor(np.asarray(out[key], dtype=dtype))
    return out


def _to_mg_kwargs(kwargs, dtype, as_list=False):
    out = dict(kwargs)
    for key in ("weight", "pos_weight"):
        if out.get(key) is not None:
            out[key] = list(map(float, out[key])) if as_list else mg.tensor(np.asarray(out[key], dtype=dtype))
    return out


def run_all(name, kwargs, x, target, dtype, target_grad=False):
    """The module (weights as tensors), the module (weights as lists) and the function, each vs torch."""
    tk = _to_torch_kwargs(kwargs, dtype)
    for as_list in (False, True):
        mk = _to_mg_kwargs(kwargs, dtype, as_list)
        m_module, m_fn, t_module = both_ways(name, mk, tk)
        m_module.to(dtype=dtype)
        compare_loss(m_module, t_module, x, target, dtype, target_grad=target_grad)
        if not as_list:
            compare_loss(m_fn, t_module, x, target, dtype, target_grad=target_grad)


# ============================================================================ regression losses

REGRESSION = [
    ("MSELoss", {}),
    ("L1Loss", {}),
    ("SmoothL1Loss", {}),
    ("SmoothL1Loss", {"beta": 0.5}),
    ("SmoothL1Loss", {"beta": 0.0}),
    ("HuberLoss", {}),
    ("HuberLoss", {"delta": 0.3}),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,options", REGRESSION, ids=[f"{n}{o}" for n, o in REGRESSION])
@pytest.mark.parametrize("shape", [(6,), (4, 3)])
def test_regression_losses_match_torch(name, options, reduction, dtype, shape):
    x, y = rand(shape, 0, 1.5), rand(shape, 1, 1.5)
    run_all(name, dict(options, reduction=reduction), x, y, dtype, target_grad=True)


@pytest.mark.parametrize("fn,tfn", [(F.mse_loss, TF.mse_loss), (F.l1_loss, TF.l1_loss), (F.huber_loss, TF.huber_loss)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_elementwise_weight_matches_torch(fn, tfn, reduction):
    w = np.random.default_rng(5).uniform(0.5, 2.0, (4, 3))
    compare_loss(lambda x, t: fn(x, t, reduction=reduction, weight=mg.tensor(w)),
                 lambda x, t: tfn(x, t, reduction=reduction, weight=torch.tensor(w)), rand((4, 3)), rand((4, 3), 1),
                 np.float64)


def test_target_size_mismatch_warns_like_torch():
    with pytest.warns(UserWarning, match=r"target size \(4,\) that is different to the input size \(4, 1\)"):
        F.mse_loss(mg.randn(4, 1), mg.randn(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.MSELoss()(mg.randn(4, 1), mg.randn(4, 1))


# ============================================================================ binary classification


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_bce_with_logits_matches_torch(reduction, weighted, pos_weighted, dtype):
    rng = np.random.default_rng(3)
    x = rand((5, 3), 0, 3.0)
    x[0] = [60.0, -60.0, 0.5]  # huge logits: the stable form neither overflows nor loses the loss
    y = rng.uniform(0, 1, (5, 3))
    y[1] = [0.0, 1.0, 1.0]
    kwargs = dict(reduction=reduction)
    if weighted:
        kwargs["weight"] = rng.uniform(0.5, 2.0, 3)  # broadcast over the batch
    if pos_weighted:
        kwargs["pos_weight"] = rng.uniform(0.5, 3.0, 3)
    run_all("BCEWithLogitsLoss", kwargs, x, y, dtype, target_grad=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_on_probabilities_matches_torch(reduction, weighted, dtype):
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.95, (4, 3))
    y = rng.uniform(0, 1, (4, 3))
    kwargs = dict(reduction=reduction)
    if weighted:
        kwargs["weight"] = rng.uniform(0.5, 2.0, 3)
    run_all("BCELoss", kwargs, p, y, dtype)


def test_bce_errors():
    with pytest.raises(ValueError, match=r"target size \(3,\) must equal input size \(3, 1\)"):
        F.binary_cross_entropy_with_logits(mg.randn(3, 1), mg.rand(3))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(mg.tensor([0.5, 1.5]), mg.tensor([0.0, 1.0]))


# ============================================================================ cross-entropy

LAYOUTS = {"C": (5,), "NC": (6, 5), "NCd": (3, 5, 4), "NCdd": (2, 5, 3, 2)}


def class_targets(layout, seed, ignore_index=None):
    shape = LAYOUTS[layout]
    tshape = () if layout == "C" else (shape[0],) + shape[2:]
    rng = np.random.default_rng(seed)
    t = rng.integers(0, shape[0 if layout == "C" else 1], tshape)
    if ignore_index is not None and t.ndim:
        t.flat[1] = ignore_index  # at least one ignored, at least one counted
        t.flat[0] = 2
    return t


CE_CASES = list(itertools.product(LAYOUTS, REDUCTIONS, [False, True], [None, -100, 3], [0.0, 0.2]))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout,reduction,weighted,ignore_index,label_smoothing", CE_CASES)
def test_cross_entropy_class_indices_match_torch(layout, reduction, weighted, ignore_index, label_smoothing, dtype):
    x = rand(LAYOUTS[layout], 0, 2.0)
    target = class_targets(layout, 1, ignore_index)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    if weighted:
        kwargs["weight"] = np.random.default_rng(2).uniform(0.5, 2.0, 5)
    run_all("CrossEntropyLoss", kwargs, x, target, dtype)


PROB_CASES = list(itertools.product(LAYOUTS, REDUCTIONS, [False, True], [0.0, 0.3]))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout,reduction,weighted,label_smoothing", PROB_CASES)
def test_cross_entropy_class_probabilities_match_torch(layout, reduction, weighted, label_smoothing, dtype):
    shape = LAYOUTS[layout]
    x = rand(shape, 0, 2.0)
    class_dim = 0 if layout == "C" else 1
    p = np.random.default_rng(7).uniform(0.1, 1.0, shape)
    p = p / p.sum(axis=class_dim, keepdims=True)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    if weighted:
        kwargs["weight"] = np.random.default_rng(2).uniform(0.5, 2.0, 5)
    run_all("CrossEntropyLoss", kwargs, x, p, dtype, target_grad=True)


def test_cross_entropy_uses_the_fused_kernel_for_class_indices():
    out = F.cross_entropy(mg.randn(4, 3, requires_grad=True), mg.tensor([0, 2, 1, 1]))
    assert type(out.grad_fn).__name__ == "CrossEntropy"


def test_cross_entropy_all_targets_ignored_is_nan_like_torch():
    x, t = rand((3, 4)), np.full(3, -100)
    with np.errstate(invalid="ignore"):  # 0 / 0, deliberately
        ours = F.cross_entropy(mg.tensor(x), mg.tensor(t)).item()
    theirs = TF.cross_entropy(torch.tensor(x), torch.tensor(t)).item()
    assert np.isnan(ours) and np.isnan(theirs)


@pytest.mark.parametrize("classes", [1, 2, 3, 4, 5, 7, 8, 9, 65])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_row_maximum_every_width_and_nan_like_torch(classes, dtype):
    # the forward kernel takes each row's maximum over four interleaved running maxima: every
    # remainder of the width, the maximum in every position, and NaN where torch has it (a
    # NaN first in its row, and one further on)
    rng = np.random.default_rng(classes)
    x = (rng.standard_normal((2 * classes + 6, classes)) * 30).astype(dtype)
    for r in range(classes):
        x[r, r] = 500.0  # the maximum at column r: a large gap, so a wrong maximum overflows
    t = rng.integers(0, classes, x.shape[0])
    x[-1, 0] = np.nan
    x[-2, classes - 1] = np.nan
    with np.errstate(invalid="ignore"):
        ours = F.cross_entropy(mg.tensor(x), mg.tensor(t), reduction="none").numpy()
    theirs = TF.cross_entropy(torch.tensor(x), torch.tensor(t), reduction="none").numpy()
    assert np.isnan(ours[-2:]).all() and np.isnan(theirs[-2:]).all()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours[:-2], theirs[:-2], rtol=tol, atol=tol)


def test_cross_entropy_language_model_layout():
    """(B, T, V) logits from a language model: transpose to (B, V, T), or flatten to (B*T, V)."""
    logits = rand((2, 7, 11))
    target = np.random.default_rng(0).integers(0, 11, (2, 7))
    target[1, 5:] = 0  # padding
    a = F.cross_entropy(mg.tensor(logits).transpose(1, 2), mg.tensor(target), ignore_index=0)
    b = F.cross_entropy(mg.tensor(logits).reshape(-1, 11), mg.tensor(target).reshape(-1), ignore_index=0)
    t = TF.cross_entropy(torch.tensor(logits).transpose(1, 2), torch.tensor(target), ignore_index=0)
    np.testing.assert_allclose([a.item(), b.item()], [t.item(), t.item()], rtol=1e-12)


# ============================================================================ NLL


NLL_CASES = list(itertools.product(LAYOUTS, REDUCTIONS, [False, True], [None, 3]))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout,reduction,weighted,ignore_index", NLL_CASES)
def test_nll_loss_matches_torch(layout, reduction, weighted, ignore_index, dtype):
    shape = LAYOUTS[layout]
    class_dim = 0 if layout == "C" else 1
    logits = rand(shape, 0, 2.0)
    logp = logits - np.log(np.exp(logits).sum(axis=class_dim, keepdims=True))
    target = class_targets(layout, 1, ignore_index)
    kwargs = dict(reduction=reduction)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    if weighted:
        kwargs["weight"] = np.random.default_rng(2).uniform(0.5, 2.0, 5)
    run_all("NLLLoss", kwargs, logp, target, dtype)


def test_log_softmax_then_nll_equals_cross_entropy():
    x = mg.tensor(rand((5, 4)), requires_grad=True)
    t = mg.tensor([0, 3, 1, 1, 2])
    a = nn.NLLLoss()(nn.LogSoftmax(dim=1)(x), t)
    b = nn.CrossEntropyLoss()(x, t)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-6)


# ============================================================================ gradchecks of the composite losses


@pytest.mark.parametrize("name", ["mse", "l1", "smooth_l1", "huber", "bce_logits", "bce", "ce_probs", "nll"])
def test_composite_losses_gradcheck(name):
    rng = np.random.default_rng(11)
    x = mg.tensor(rng.uniform(0.2, 0.8, (3, 4)) * rng.choice([-1, 1], (3, 4)), dtype=mg.float64, requires_grad=True)
    y = mg.tensor(rng.uniform(0.1, 0.9, (3, 4)), dtype=mg.float64, requires_grad=True)
    idx = mg.tensor([1, 3, 0])
    w = mg.tensor(rng.uniform(0.5, 2.0, 4), dtype=mg.float64)
    fns = {
        "mse": lambda x, y: F.mse_loss(x, y),
        "l1": lambda x, y: F.l1_loss(x, y, reduction="sum"),
        "smooth_l1": lambda x, y: F.smooth_l1_loss(x, y, beta=0.5, reduction="none"),
        "huber": lambda x, y: F.huber_loss(x, y, delta=0.4),
        "bce_logits": lambda x, y: F.binary_cross_entropy_with_logits(x, y, w, pos_weight=w * 2),
        "bce": lambda x, y: F.binary_cross_entropy(x.abs(), y, reduction="sum"),
        "ce_probs": lambda x, y: F.cross_entropy(x, y, w, label_smoothing=0.1),
        "nll": lambda x, y: F.nll_loss(x, idx, w) + (y * 0).sum(),
    }
    assert mg.gradcheck(fns[name], x, y)


# ============================================================================ API and errors

MODULES = ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
           "NLLLoss"]


@pytest.mark.parametrize("name", MODULES)
def test_constructor_options_match_torch(name):
    """Same option names and defaults as torch (minus the deprecated size_average/reduce)."""
    ours = inspect.signature(getattr(nn, name)).parameters
    theirs = {k: v for k, v in inspect.signature(getattr(torch.nn, name)).parameters.items()
              if k not in ("size_average", "reduce")}
    assert set(ours) == set(theirs)
    for key, p in theirs.items():
        assert ours[key].default == p.default, key


@pytest.mark.parametrize("name", MODULES)
def test_bad_reduction_is_a_clear_error(name):
    with pytest.raises(ValueError, match=rf"{name}: reduction='avg' is not allowed; use one of 'mean', 'sum', 'none'"):
        getattr(nn, name)(reduction="avg")
    with pytest.raises(ValueError, match="did you mean 'mean'"):
        getattr(nn, name)(reduction="meen")


def test_functional_bad_reduction_and_options():
    x, t = mg.randn(3, 4), mg.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="cross_entropy: reduction='avg'"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(IndexError, match=r"target 7 is out of bounds for 4 classes"):
        F.cross_entropy(x, mg.tensor([0, 7, 1]))
    with pytest.raises(IndexError, match=r"nll_loss: target 4 is out of bounds for 4 classes"):
        F.nll_loss(x, mg.tensor([0, 4, 1]))
    with pytest.raises(RuntimeError, match="class-probability targets must have the input's shape"):
        F.cross_entropy(x, mg.rand(3, 5))
    with pytest.raises(TypeError, match="list of numbers"):
        nn.CrossEntropyLoss(weight="heavy")
    with pytest.raises(ValueError, match="beta must be non-negative"):
        nn.SmoothL1Loss(beta=-1.0)
    with pytest.raises(ValueError, match="delta must be positive"):
        nn.HuberLoss(delta=0.0)
    with pytest.raises(TypeError):  # keyword-only: CrossEntropyLoss(w, -1) would mean size_average in torch
        nn.CrossEntropyLoss(None, -1)


def test_class_weights_are_buffers_like_torch():
    w = [1.0, 2.0, 0.5]
    for name in ("CrossEntropyLoss", "NLLLoss", "BCELoss"):
        ours = getattr(nn, name)(weight=w)
        theirs = getattr(torch.nn, name)(weight=torch.tensor(w))
        assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
        assert not list(ours.parameters())
    ours = nn.BCEWithLogitsLoss(pos_weight=w)
    theirs = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    loss = nn.CrossEntropyLoss(weight=w).double()
    assert loss.weight.dtype == np.float64
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"


# ============================================================================ CUDA (where a GPU is present)


@pytest.mark.skipif(not mg.cuda_is_available(), reason="no CUDA device (CuPy and a GPU are needed)")
@pytest.mark.parametrize("name", ["ce", "ce_3d_smooth_weight", "ce_probs", "nll", "bce_logits", "mse", "huber"])
def test_losses_on_cuda_equal_cpu(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 3))
    probs = rng.uniform(0.1, 1, (4, 5, 3))
    probs /= probs.sum(1, keepdims=True)
    idx = rng.integers(0, 5, (4, 3))
    idx[0, 0] = -100
    w = rng.uniform(0.5, 2.0, 5)
    y = rng.uniform(0, 1, (4, 5, 3))
    fns = {
        "ce": lambda x, d: F.cross_entropy(x[..., 0], mg.tensor(idx[:, 0], device=d)),
        "ce_3d_smooth_weight": lambda x, d: F.cross_entropy(x, mg.tensor(idx, device=d), mg.tensor(w, device=d),
                                                            label_smoothing=0.1),
        "ce_probs": lambda x, d: F.cross_entropy(x, mg.tensor(probs, device=d), reduction="sum"),
        "nll": lambda x, d: F.nll_loss(x.log_softmax(1), mg.tensor(idx, device=d), list(w)),
        "bce_logits": lambda x, d: F.binary_cross_entropy_with_logits(x, mg.tensor(y, device=d),
                                                                      pos_weight=mg.tensor(rng.uniform(1, 2, 3), device=d)),
        "mse": lambda x, d: F.mse_loss(x, mg.tensor(y, device=d), reduction="none"),
        "huber": lambda x, d: F.huber_loss(x, mg.tensor(y, device=d), delta=0.5),
    }
    results = []
    for device in ("cpu", "cuda"):
        rng = np.random.default_rng(1)  # same pos_weight draw on both devices
        t = mg.tensor(x, device=device, requires_grad=True)
        out = fns[name](t, device)
        assert out.device == device
        out.sum().backward()
        results.append((out.detach().cpu().numpy(), t.grad.cpu().numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-10, atol=1e-12)
