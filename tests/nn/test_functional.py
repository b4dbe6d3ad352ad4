"""``mg.nn.functional`` against ``torch.nn.functional`` (values and gradients, float32 and
float64) and against float64 finite differences (``mg.gradcheck``). Losses live in
test_losses.py."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import microgradnn as mg
import microgradnn.nn.functional as F

TOL = {np.float64: dict(rtol=1e-6, atol=1e-6), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]


def rand(shape, seed=0, scale=1.0, away_from_zero=0.0):
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    if away_from_zero:
        x = np.where(np.abs(x) < away_from_zero, np.sign(x + 1e-12) * 2 * away_from_zero, x)
    return x


def both(fn_mg, fn_torch, *arrays, dtype=np.float64, seed=0, **kwargs):
    """Call both libraries on copies of ``arrays`` (float ones require grad); compare outputs and grads."""
    m_in, t_in = [], []
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(dtype)
            m_in.append(mg.tensor(a, requires_grad=True))
            t_in.append(torch.tensor(a, requires_grad=True))
        else:
            m_in.append(mg.tensor(a))
            t_in.append(torch.tensor(a))
    mo, to = fn_mg(*m_in, **kwargs), fn_torch(*t_in, **kwargs)
    tol = TOL[dtype]
    assert mo.shape == tuple(to.shape), (mo.shape, tuple(to.shape))
    np.testing.assert_allclose(mo.detach().numpy(), to.detach().numpy(), **tol)
    if not to.requires_grad:
        return mo
    g = np.random.default_rng(seed + 99).standard_normal(tuple(to.shape)).astype(dtype)
    (to * torch.tensor(g)).sum().backward()
    (mo * mg.tensor(g)).sum().backward()
    for i, (m, t) in enumerate(zip(m_in, t_in)):
        if t.requires_grad:
            np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), **tol, err_msg=f"grad of input {i}")
    return mo


# ============================================================================ signatures


@pytest.mark.parametrize("name", ["embedding", "dropout", "relu", "leaky_relu", "elu", "silu", "hardtanh", "softmax",
                                  "log_softmax", "layer_norm", "rms_norm", "pad", "normalize"])  # (torch's builtins have none)
def test_signature_matches_torch(name):
    """Same parameter names, order and defaults as torch.nn.functional (PyTorch's private ones aside)."""
    ours = inspect.signature(getattr(F, name)).parameters
    theirs = {k: v for k, v in inspect.signature(getattr(TF, name)).parameters.items() if not k.startswith("_")}
    assert list(ours) == list(theirs)
    for key, p in theirs.items():
        assert ours[key].default == p.default, key


# ============================================================================ activations

ACTIVATIONS = {
    "relu": (lambda x: F.relu(x), lambda x: TF.relu(x)),
    "tanh": (lambda x: F.tanh(x), lambda x: torch.tanh(x)),
    "sigmoid": (lambda x: F.sigmoid(x), lambda x: torch.sigmoid(x)),
    "gelu": (lambda x: F.gelu(x), lambda x: TF.gelu(x)),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "leaky_relu": (lambda x: F.leaky_relu(x), lambda x: TF.leaky_relu(x)),
    "leaky_relu_0.3": (lambda x: F.leaky_relu(x, 0.3), lambda x: TF.leaky_relu(x, 0.3)),
    "elu": (lambda x: F.elu(x, alpha=1.5), lambda x: TF.elu(x, alpha=1.5)),
    "silu": (lambda x: F.silu(x), lambda x: TF.silu(x)),
    "softplus": (lambda x: F.softplus(x), lambda x: TF.softplus(x)),
    "softplus_beta_threshold": (lambda x: F.softplus(x, beta=3.0, threshold=4.0),
                                lambda x: TF.softplus(x, beta=3.0, threshold=4.0)),
    "logsigmoid": (lambda x: F.logsigmoid(x), lambda x: TF.logsigmoid(x)),
    "hardtanh": (lambda x: F.hardtanh(x, -0.7, 1.2), lambda x: TF.hardtanh(x, -0.7, 1.2)),
    "softmax_0": (lambda x: F.softmax(x, 0), lambda x: TF.softmax(x, 0)),
    "softmax_-1": (lambda x: F.softmax(x, dim=-1), lambda x: TF.softmax(x, dim=-1)),
    "log_softmax_1": (lambda x: F.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_torch(name, dtype):
    fm, ft = ACTIVATIONS[name]
    x = rand((4, 3, 5), scale=3.0, away_from_zero=0.05)
    x.flat[:3] = [40.0, -40.0, 0.5]  # large magnitudes: no overflow, no nan
    x = np.where(np.abs(np.abs(x) - 0.7) < 0.05, 0.5, x)  # away from hardtanh's kinks
    x = np.where(np.abs(np.abs(x) - 1.2) < 0.05, 0.5, x)
    both(fm, ft, x, dtype=dtype)


def test_leaky_relu_gradient_at_zero_is_the_slope_like_torch():
    x = mg.tensor([0.0, 1.0, -1.0], requires_grad=True)
    F.leaky_relu(x, 0.2).sum().backward()
    t = torch.tensor([0.0, 1.0, -1.0], requires_grad=True)
    TF.leaky_relu(t, 0.2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy())


def test_softmax_dtype_argument():
    x = mg.tensor(rand((2, 3)).astype(np.float32))
    assert F.softmax(x, 1, dtype=mg.float64).dtype == np.float64
    assert F.log_softmax(x, 1, dtype=mg.float64).dtype == np.float64


@pytest.mark.parametrize("name", ["softplus", "logsigmoid", "elu", "silu", "leaky_relu", "hardtanh"])
def test_composite_activations_gradcheck(name):
    x = mg.tensor(rand((3, 4), seed=3, scale=2.0, away_from_zero=0.1), dtype=mg.float64, requires_grad=True)
    fn = ACTIVATIONS[name][0]
    assert mg.gradcheck(fn, x)


# ============================================================================ linear, embedding, dropout


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_linear_matches_torch(dtype):
    both(F.linear, TF.linear, rand((2, 3, 4)), rand((5, 4), 1), rand((5,), 2), dtype=dtype)
    both(F.linear, TF.linear, rand((3, 4)), rand((5, 4), 1), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("padding_idx", [None, 0, -2])
def test_embedding_matches_torch(dtype, padding_idx):
    idx = np.array([[0, 3, 3, 1], [4, 0, 2, 3]])
    both(lambda i, w: F.embedding(i, w, padding_idx=padding_idx),
         lambda i, w: TF.embedding(i, w, padding_idx=padding_idx), idx, rand((5, 6)), dtype=dtype)


def test_embedding_scalar_and_3d_indices():
    w = rand((5, 2))
    for idx in (np.array(3), np.random.default_rng(0).integers(0, 5, (2, 3, 4))):
        both(F.embedding, TF.embedding, idx, w)


def test_dropout_functional():
    mg.manual_seed(0)
    x = mg.tensor(np.random.default_rng(1).uniform(1, 2, (100, 100)))
    assert F.dropout(x, 0.5, training=False) is x
    y = F.dropout(x, 0.25)
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.015
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / 0.75, rtol=1e-6)
    mg.manual_seed(0)
    np.testing.assert_array_equal(F.dropout(x, 0.25).numpy(), y.numpy())  # seeded
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, -0.1)


# ============================================================================ normalisation


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("affine", ["none", "weight", "both"])
def test_layer_norm_matches_torch(dtype, affine):
    x = rand((3, 4, 5), scale=2.0) + 0.5
    w, b = rand((4, 5), 1), rand((4, 5), 2)
    if affine == "none":
        both(lambda x: F.layer_norm(x, (4, 5)), lambda x: TF.layer_norm(x, (4, 5)), x, dtype=dtype)
    elif affine == "weight":
        both(lambda x, w: F.layer_norm(x, [4, 5], w, eps=1e-3), lambda x, w: TF.layer_norm(x, [4, 5], w, eps=1e-3),
             x, w, dtype=dtype)
    else:
        both(lambda x, w, b: F.layer_norm(x, (5,), w[0], b[0]), lambda x, w, b: TF.layer_norm(x, (5,), w[0], b[0]),
             x, w, b, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("p, dim", [(2.0, 1), (1.0, -1), (3.0, 0), (float("inf"), 2)])
def test_normalize_matches_torch(dtype, p, dim):
    x = rand((3, 4, 5), seed=7, scale=2.0)
    x[1, :, :] = 0.0  # whole slices of zeros: the norm is clamped to eps and the gradient stays finite
    both(lambda x: F.normalize(x, p, dim), lambda x: TF.normalize(x, p, dim), x, dtype=dtype)
    both(lambda x: F.normalize(x, p=p, dim=dim, eps=0.5), lambda x: TF.normalize(x, p=p, dim=dim, eps=0.5), x,
         dtype=dtype)


def test_normalize_out_as_torch():
    x = rand((3, 4), seed=8)
    out = mg.zeros(3, 4, dtype=mg.float64)
    assert F.normalize(mg.tensor(x), out=out) is out
    np.testing.assert_allclose(out.numpy(), TF.normalize(torch.tensor(x)).numpy(), rtol=1e-12)
    for lib, fn, zeros in ((mg, F.normalize, mg.zeros), (torch, TF.normalize, torch.zeros)):
        with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
            fn(lib.tensor(x, requires_grad=True), out=zeros(3, 4, dtype=lib.float64))


def test_layer_norm_gradcheck():
    x = mg.tensor(rand((2, 5), seed=4), dtype=mg.float64, requires_grad=True)
    w = mg.tensor(rand((5,), seed=5), dtype=mg.float64, requires_grad=True)
    b = mg.tensor(rand((5,), seed=6), dtype=mg.float64, requires_grad=True)
    assert mg.gradcheck(lambda x, w, b: F.layer_norm(x, (5,), w, b), x, w, b)
    assert mg.gradcheck(lambda x, w: F.rms_norm(x, [5], w, eps=1e-5), x, w)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rms_norm_matches_torch(dtype):
    both(lambda x, w: F.rms_norm(x, [6], w), lambda x, w: TF.rms_norm(x, [6], w), rand((2, 3, 6)), rand((6,), 1),
         dtype=dtype)
    both(lambda x: F.rms_norm(x, (3, 6), eps=0.1), lambda x: TF.rms_norm(x, (3, 6), eps=0.1), rand((2, 3, 6)),
         dtype=dtype)


# ============================================================================ one_hot, pad


def test_one_hot_matches_torch():
    idx = np.array([[0, 3], [2, 1]])
    for n in (-1, 6):
        out = F.one_hot(mg.tensor(idx), n)
        expected = TF.one_hot(torch.tensor(idx), n)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out.numpy(), expected.numpy())
    with pytest.raises(RuntimeError, match="class values must be in 0..2"):
        F.one_hot(mg.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(mg.tensor([0.0, 1.0]))


PADS = [
    ("constant", (1, 2), None),
    ("constant", (0, 0, 2, 1), 0.5),
    ("constant", (-1, 2, 1, -1), None),  # negative amounts crop
    ("reflect", (2, 1), None),
    ("reflect", (1, 2, 2, 0), None),
    ("replicate", (3, 1), None),
    ("replicate", (1, 0, 0, 2), None),
    ("circular", (2, 3), None),
    ("circular", (1, 1, 2, 0), None),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mode,amounts,value", PADS)
def test_pad_matches_torch(mode, amounts, value, dtype):
    # torch pads 1 dim of a 3-D input or 2 of a 4-D one in the non-constant modes; we pad any
    x = rand((2, 3, 4, 5) if len(amounts) == 4 or mode == "constant" else (3, 4, 5))
    kwargs = dict(mode=mode) if value is None else dict(mode=mode, value=value)
    both(lambda x: F.pad(x, amounts, **kwargs), lambda x: TF.pad(x, amounts, **kwargs), x, dtype=dtype)


def test_pad_gradcheck_and_errors():
    x = mg.tensor(rand((3, 4), seed=7), dtype=mg.float64, requires_grad=True)
    for mode in ("constant", "reflect", "replicate", "circular"):
        assert mg.gradcheck(lambda x: F.pad(x, (2, 1, 1, 1), mode=mode), x)
    with pytest.raises(ValueError, match="mode='wrap' is not allowed"):
        F.pad(x, (1, 1), mode="wrap")
    with pytest.raises(ValueError, match="even number"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="reflect padding of 4 must be smaller"):
        F.pad(x, (4, 0), mode="reflect")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shapes, dim", [(((4, 5), (4, 5)), 1), (((3, 4, 5), (1, 4, 5)), -1), (((6,), (6,)), 0),
                                         (((2, 3), (2, 3)), 0)])
def test_cosine_similarity_matches_torch(dtype, shapes, dim):
    a, b = rand(shapes[0], seed=9), rand(shapes[1], seed=10)
    a.reshape(-1)[: shapes[0][-1]] = 0.0  # a zero vector: its norm is clamped to eps outside the graph, as torch's
    both(lambda a, b: F.cosine_similarity(a, b, dim), lambda a, b: TF.cosine_similarity(a, b, dim), a, b, dtype=dtype)
    both(lambda a, b: F.cosine_similarity(a, b, dim=dim, eps=0.3), lambda a, b: TF.cosine_similarity(a, b, dim=dim, eps=0.3),
         a, b, dtype=dtype)


def test_cosine_similarity_of_integers_raises_as_torch():
    for lib, fn in ((mg, F.cosine_similarity), (torch, TF.cosine_similarity)):
        with pytest.raises(RuntimeError, match="expected common dtype to be floating point, yet common dtype is Long"):
            fn(lib.tensor([[1, 2]]), lib.tensor([[2, 4]]))
