"""Layers against PyTorch: same weights in (via ``load_state_dict(torch_module.state_dict())``,
which also checks parameter names and shapes), same random input, then outputs, the input's
gradient and every parameter's gradient must agree. Plus initialisation, containers,
reprs and the error messages a user sees."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

import microgradnn as mg
from microgradnn import nn
from microgradnn.backend import reference
from microgradnn.backend import kernels_cpu
from microgradnn.ops import linalg

TOL = {np.float64: dict(rtol=1e-6, atol=1e-6), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]


def torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def compare(tmod, mmod, x, dtype=np.float64, seed=0, grad_input=True):
    """Copy tmod's weights into mmod, run both on x, compare outputs and all gradients."""
    tmod = tmod.to(torch_dtype(dtype))
    mmod.to(dtype=dtype)
    assert list(mmod.state_dict()) == list(tmod.state_dict())
    mmod.load_state_dict(tmod.state_dict())
    floating = np.asarray(x).dtype.kind == "f"
    tx = torch.tensor(np.asarray(x, dtype=dtype) if floating else x, requires_grad=floating and grad_input)
    mx = mg.tensor(np.asarray(x, dtype=dtype) if floating else x, requires_grad=floating and grad_input)
    tout, mout = tmod(tx), mmod(mx)
    tol = TOL[dtype]
    assert mout.shape == tuple(tout.shape)
    assert mout.dtype == dtype
    np.testing.assert_allclose(mout.detach().numpy(), tout.detach().numpy(), **tol)
    g = np.random.default_rng(seed).standard_normal(tuple(tout.shape)).astype(dtype)
    (tout * torch.tensor(g)).sum().backward()
    (mout * mg.tensor(g)).sum().backward()
    if floating and grad_input:
        np.testing.assert_allclose(mx.grad.detach().numpy(), tx.grad.detach().numpy(), **tol, err_msg="input grad")
    tparams = dict(tmod.named_parameters())
    for name, p in mmod.named_parameters():
        tg = tparams[name].grad
        if tg is None:
            assert p.grad is None or not p.grad.detach().numpy().any(), name
            continue
        np.testing.assert_allclose(p.grad.detach().numpy(), tg.detach().numpy(), **tol, err_msg=f"grad of {name}")
    return mout, tout


def rand(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


# ============================================================================ Linear


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_linear_matches_torch(dtype, bias, lead):
    torch.manual_seed(0)
    compare(torch.nn.Linear(4, 3, bias=bias), nn.Linear(4, 3, bias=bias), rand(lead + (4,)), dtype)


VIEWS = {"(T, B) as (B, T)": ((6, 5, 4), lambda a: a.permute(1, 0, 2)),
         "4-D, axes permuted": ((3, 6, 2, 4), lambda a: a.permute(2, 0, 1, 3)),
         "last axis moved": ((4, 6, 5), lambda a: a.permute(1, 2, 0)),
         "last axis strided": ((6, 5, 8), lambda a: a[..., ::2])}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("view", list(VIEWS))
def test_linear_on_a_permuted_input_matches_torch(dtype, bias, view):
    # a batch-first RNN's output is its (T, B, H) buffer seen as (B, T, H): Linear reads it in
    # that storage order (no copy of the input) and hands back a contiguous output in x's
    # order, with every gradient torch's; a strided last axis (the last two) takes the copy
    shape, look = VIEWS[view]
    base = rand(shape).astype(dtype)
    torch.manual_seed(0)
    tl = torch.nn.Linear(4, 3, bias=bias).to(torch_dtype(dtype))
    ml = nn.Linear(4, 3, bias=bias).to(dtype=dtype)
    ml.load_state_dict(tl.state_dict())
    tx, mx = torch.tensor(base, requires_grad=True), mg.tensor(base, requires_grad=True)
    tout, mout = tl(look(tx)), ml(look(mx))
    assert mout.shape == tuple(tout.shape) and mout.detach().numpy().flags.c_contiguous
    read_in_place = linalg._storage_order(look(mx).detach().numpy()) is not None
    assert read_in_place == (view in ("(T, B) as (B, T)", "4-D, axes permuted"))
    tol = TOL[dtype]
    np.testing.assert_allclose(mout.detach().numpy(), tout.detach().numpy(), **tol)
    g = rand(tuple(tout.shape), seed=1).astype(dtype)
    (tout * torch.tensor(g)).sum().backward()
    (mout * mg.tensor(g)).sum().backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(ml.weight.grad.numpy(), tl.weight.grad.numpy(), **tol)
    if bias:
        np.testing.assert_allclose(ml.bias.grad.numpy(), tl.bias.grad.numpy(), **tol)


def test_linear_init_is_pytorch_uniform():
    mg.manual_seed(0)
    layer = nn.Linear(50, 400)
    bound = 1 / np.sqrt(50)
    w = layer.weight.detach().numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.95 * bound  # fills the interval ...
    assert abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound  # ... uniformly
    assert np.abs(layer.bias.detach().numpy()).max() <= bound
    mg.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(50, 400).weight.detach().numpy(), w)  # the seed decides


# ============================================================================ Embedding


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_embedding_matches_torch(dtype, padding_idx, scale_grad_by_freq):
    torch.manual_seed(0)
    t = torch.nn.Embedding(7, 5, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
    m = nn.Embedding(7, 5, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
    idx = np.random.default_rng(0).integers(0, 7, (4, 9))
    idx[0, :3] = [2, 6, 2]  # the padding rows (2, and -1 = 6) are looked up, some twice
    compare(t, m, idx, dtype)
    if padding_idx is not None:
        assert not m.weight.grad.detach().numpy()[padding_idx].any()
        assert m.padding_idx == padding_idx % 7


def test_embedding_init_and_padding_row():
    mg.manual_seed(0)
    e = nn.Embedding(300, 40, padding_idx=0)
    w = e.weight.detach().numpy()
    assert not w[0].any(), "the padding row starts at zero"
    assert abs(w[1:].mean()) < 0.02 and abs(w[1:].std() - 1.0) < 0.02  # N(0, 1)
    assert repr(e) == repr(torch.nn.Embedding(300, 40, padding_idx=0))


def test_embedding_max_norm_renormalises_like_torch():
    torch.manual_seed(0)
    t = torch.nn.Embedding(6, 4, max_norm=1.0).double()
    m = nn.Embedding(6, 4, max_norm=1.0).double()
    m.load_state_dict(t.state_dict())
    idx = np.array([[0, 1, 1], [3, 0, 5]])
    tout, mout = t(torch.tensor(idx)), m(mg.tensor(idx))
    np.testing.assert_allclose(mout.detach().numpy(), tout.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m.weight.detach().numpy(), t.weight.detach().numpy(), rtol=1e-6, atol=1e-7)  # in place
    assert np.allclose(np.linalg.norm(m.weight.detach().numpy()[[0, 1, 3, 5]], axis=1) <= 1.0 + 1e-6, True)


def test_embedding_from_pretrained():
    table = rand((5, 3))
    e = nn.Embedding.from_pretrained(mg.tensor(table))
    assert not e.weight.requires_grad and e.weight.shape == (5, 3)
    np.testing.assert_array_equal(e(mg.tensor([4, 0])).detach().numpy(), table[[4, 0]])
    assert nn.Embedding.from_pretrained(mg.tensor(table), freeze=False).weight.requires_grad


def test_embedding_errors_are_clear():
    e = nn.Embedding(5, 2)
    with pytest.raises(IndexError, match=r"index 5 is out of range .* 5 rows \(allowed: 0..4\)"):
        e(mg.tensor([1, 5]))
    with pytest.raises(IndexError, match="index -1"):
        e(mg.tensor([-1, 2]))
    with pytest.raises(TypeError, match="integer"):
        e(mg.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx=5 must be within num_embeddings=5"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(NotImplementedError, match="sparse"):
        nn.Embedding(5, 2, sparse=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("padding_idx", [-1, 0, 3])
def test_embedding_backward_kernel_equals_reference(dtype, padding_idx):
    rng = np.random.default_rng(1)
    indices = rng.integers(0, 6, 200)
    grad = rng.standard_normal((200, 7)).astype(dtype)
    fused = kernels_cpu.embedding_backward(indices, grad, 6, padding_idx)
    ref = reference.embedding_backward(np, indices, grad, 6, padding_idx)
    assert fused.shape == (6, 7) and fused.dtype == dtype
    tol = 1e-2 if dtype == np.float16 else 1e-5
    np.testing.assert_allclose(fused.astype(np.float64), ref.astype(np.float64), rtol=tol, atol=tol)
    # and by definition: a sum over the positions that looked each row up
    expected = np.stack([grad[indices == r].astype(np.float64).sum(0) for r in range(6)])
    if padding_idx >= 0:
        expected[padding_idx] = 0
    np.testing.assert_allclose(fused.astype(np.float64), expected, rtol=tol, atol=tol)


def test_embedding_uses_the_fused_primitive():
    e = nn.Embedding(5, 2)
    out = e(mg.tensor([[1, 2]]))
    assert type(out.grad_fn).__name__ == "Embedding"


# ============================================================================ LayerNorm / RMSNorm


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "shape,normalized,kwargs",
    [
        ((3, 6), 6, {}),
        ((2, 3, 6), [6], {}),
        ((2, 3, 4), (3, 4), {}),
        ((4, 5), 5, {"elementwise_affine": False}),
        ((4, 5), 5, {"bias": False}),
        ((4, 5), 5, {"eps": 1e-2}),
    ],
)
def test_layer_norm_matches_torch(dtype, shape, normalized, kwargs):
    torch.manual_seed(0)
    t = torch.nn.LayerNorm(normalized, **kwargs)
    with torch.no_grad():  # move the affine parameters off their ones/zeros init
        for p in t.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    m = nn.LayerNorm(normalized, **kwargs)
    compare(t, m, rand(shape, scale=3.0) + 1.0, dtype)


def test_layer_norm_init_and_repr():
    m = nn.LayerNorm(4)
    np.testing.assert_array_equal(m.weight.detach().numpy(), np.ones(4, np.float32))
    np.testing.assert_array_equal(m.bias.detach().numpy(), np.zeros(4, np.float32))
    assert repr(m) == repr(torch.nn.LayerNorm(4))
    assert repr(nn.LayerNorm(4, elementwise_affine=False)) == repr(torch.nn.LayerNorm(4, elementwise_affine=False))
    assert repr(nn.RMSNorm(4)) == repr(torch.nn.RMSNorm(4))
    assert list(nn.LayerNorm(4, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm(4, elementwise_affine=False).state_dict()) == []
    with pytest.raises(RuntimeError, match=r"normalized_shape \[4\] must match .* got input shape \(2, 5\)"):
        m(mg.randn(2, 5))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm_matches_torch(dtype, eps):
    torch.manual_seed(0)
    t = torch.nn.RMSNorm([3, 4], eps=eps)
    with torch.no_grad():
        t.weight.add_(torch.randn_like(t.weight) * 0.5)
    compare(t, nn.RMSNorm([3, 4], eps=eps), rand((2, 3, 4)), dtype)


# ============================================================================ activations and reshaping

MODULES = {
    "Tanh": (lambda: torch.nn.Tanh(), lambda: nn.Tanh()),
    "Sigmoid": (lambda: torch.nn.Sigmoid(), lambda: nn.Sigmoid()),
    "ReLU": (lambda: torch.nn.ReLU(), lambda: nn.ReLU()),
    "GELU": (lambda: torch.nn.GELU(), lambda: nn.GELU()),
    "GELU_tanh": (lambda: torch.nn.GELU("tanh"), lambda: nn.GELU("tanh")),
    "LeakyReLU": (lambda: torch.nn.LeakyReLU(), lambda: nn.LeakyReLU()),
    "LeakyReLU_0.2": (lambda: torch.nn.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2)),
    "ELU": (lambda: torch.nn.ELU(alpha=0.7), lambda: nn.ELU(alpha=0.7)),
    "SiLU": (lambda: torch.nn.SiLU(), lambda: nn.SiLU()),
    "Softplus": (lambda: torch.nn.Softplus(), lambda: nn.Softplus()),
    "Softplus_beta": (lambda: torch.nn.Softplus(beta=2.0, threshold=3.0), lambda: nn.Softplus(beta=2.0, threshold=3.0)),
    "LogSigmoid": (lambda: torch.nn.LogSigmoid(), lambda: nn.LogSigmoid()),
    "Hardtanh": (lambda: torch.nn.Hardtanh(-0.5, 0.8), lambda: nn.Hardtanh(-0.5, 0.8)),
    "Softmax": (lambda: torch.nn.Softmax(dim=1), lambda: nn.Softmax(dim=1)),
    "Softmax_last": (lambda: torch.nn.Softmax(dim=-1), lambda: nn.Softmax(dim=-1)),
    "LogSoftmax": (lambda: torch.nn.LogSoftmax(dim=1), lambda: nn.LogSoftmax(dim=1)),
    "Flatten": (lambda: torch.nn.Flatten(), lambda: nn.Flatten()),
    "Flatten_0": (lambda: torch.nn.Flatten(0, 1), lambda: nn.Flatten(0, 1)),
    "Unflatten": (lambda: torch.nn.Unflatten(2, (2, 2)), lambda: nn.Unflatten(2, (2, 2))),
    "Identity": (lambda: torch.nn.Identity(), lambda: nn.Identity()),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_activation_and_shape_modules_match_torch(name, dtype):
    make_t, make_m = MODULES[name]
    t, m = make_t(), make_m()
    x = rand((3, 5, 4), seed=1, scale=2.5)
    x[np.abs(x) < 0.05] = 0.3  # away from the kinks at 0
    compare(t, m, x, dtype)
    assert repr(m) == repr(t)


def test_softmax_without_dim_warns_and_uses_the_legacy_rule():
    x = rand((2, 3))
    with pytest.warns(UserWarning, match="Implicit dimension"):
        out = nn.Softmax()(mg.tensor(x))
    with pytest.warns(UserWarning):
        expected = torch.nn.Softmax()(torch.tensor(x))
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-6)


# ============================================================================ Dropout


def test_dropout_training_and_eval():
    mg.manual_seed(0)
    d = nn.Dropout(0.3)
    x = mg.tensor(np.random.default_rng(0).uniform(1.0, 2.0, (200, 100)), requires_grad=True)
    y = d(x)
    kept = y.detach().numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.detach().numpy()[kept], x.detach().numpy()[kept] / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.detach().numpy(), kept / 0.7, rtol=1e-6)  # dropped elements get no gradient
    d.eval()
    assert d(x) is x
    assert repr(d) == repr(torch.nn.Dropout(0.3))
    d.train()
    assert not nn.Dropout(1.0)(x).detach().numpy().any()
    assert nn.Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# ============================================================================ containers


def test_sequential_matches_torch_and_supports_list_operations():
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2))
    compare(t, m, rand((5, 4)))
    assert isinstance(m[-1], nn.Linear) and len(m) == 4
    assert list(m[1:3].state_dict()) == list(t[1:3].state_dict()) == ["1.weight", "1.bias"]  # a slice keeps names
    del m[2]
    assert [type(x).__name__ for x in m] == ["Linear", "LayerNorm", "Linear"]
    assert list(m.state_dict())[-1] == "2.bias"
    m.insert(2, nn.ReLU())
    m.append(nn.Identity())
    assert [type(x).__name__ for x in m] == ["Linear", "LayerNorm", "ReLU", "Linear", "Identity"]
    with pytest.raises(IndexError, match="out of range"):
        m[7]
    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.ReLU()))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]


def test_module_list_dict_and_parameter_containers_keys_match_torch():
    torch.manual_seed(0)

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.Linear(3, 3)])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1), "b": torch.nn.Linear(3, 2)})
            self.scales = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.zeros(2))])
            self.extra = torch.nn.ParameterDict({"gamma": torch.nn.Parameter(torch.ones(3))})

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 3)])
            self.heads = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 2)})
            self.scales = nn.ParameterList([mg.ones(3), mg.zeros(2)])
            self.extra = nn.ParameterDict({"gamma": mg.ones(3)})

    t, m = T(), M()
    assert list(m.state_dict()) == list(t.state_dict())
    m.load_state_dict(t.state_dict())
    assert len(list(m.parameters())) == len(list(t.parameters()))
    m.layers.append(nn.Linear(3, 3))
    m.layers.insert(0, nn.Identity())
    del m.layers[1]
    assert [type(x).__name__ for x in m.layers] == ["Identity", "Linear", "Linear"]
    assert "a" in m.heads and len(m.heads) == 2 and list(m.heads) == ["a", "b"]
    with pytest.raises(KeyError, match="keys: \\['a', 'b'\\]"):
        m.heads["c"]
    assert m.scales[1].shape == (2,) and m.extra["gamma"].requires_grad


def test_layers_exported_from_mg_nn():
    for name in ["Linear", "Embedding", "Dropout", "LayerNorm", "RMSNorm", "Sequential", "ModuleList", "ModuleDict",
                 "ParameterList", "ParameterDict", "Identity", "Flatten", "Unflatten", "Tanh", "Sigmoid", "ReLU",
                 "GELU", "LeakyReLU", "ELU", "SiLU", "Softplus", "LogSigmoid", "Hardtanh", "Softmax", "LogSoftmax",
                 "MSELoss", "L1Loss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss"]:
        assert hasattr(mg.nn, name), name
    import microgradnn.nn.functional as F
    import microgradnn.nn.init as init

    assert mg.nn.functional is F and mg.nn.init is init


def test_modules_move_dtype_and_summary():
    model = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Flatten(), nn.Linear(12, 3))
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    out = model(mg.tensor([[1, 2, 3]]))
    assert out.shape == (1, 3) and out.dtype == np.float64
    text = model.summary(mg.tensor([[1, 2, 3]]))
    assert "LayerNorm" in text and "Embedding" in text


# ============================================================================ CUDA (where a GPU is present)


@pytest.mark.skipif(not mg.cuda_is_available(), reason="no CUDA device (CuPy and a GPU are needed)")
def test_layers_on_cuda_equal_cpu():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Embedding(9, 4, padding_idx=1), nn.LayerNorm(4), nn.LeakyReLU(0.1), nn.Flatten(),
                          nn.Linear(12, 3), nn.LogSoftmax(dim=1)).double()
    gpu = nn.Sequential(nn.Embedding(9, 4, padding_idx=1), nn.LayerNorm(4), nn.LeakyReLU(0.1), nn.Flatten(),
                        nn.Linear(12, 3), nn.LogSoftmax(dim=1)).double()
    gpu.load_state_dict(model.state_dict())
    gpu.to("cuda")
    assert all(p.device == "cuda" for p in gpu.parameters())
    tokens = np.array([[1, 2, 2], [8, 1, 0]])
    g = rand((2, 3), seed=3)
    cpu_out = model(mg.tensor(tokens))
    gpu_out = gpu(mg.tensor(tokens, device="cuda"))
    assert gpu_out.device == "cuda"
    np.testing.assert_allclose(gpu_out.detach().cpu().numpy(), cpu_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    (cpu_out * mg.tensor(g)).sum().backward()
    (gpu_out * mg.tensor(g, device="cuda")).sum().backward()
    for (name, p), q in zip(model.named_parameters(), gpu.parameters()):
        np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    assert not gpu[0].weight.grad.cpu().numpy()[1].any()  # padding row, on the GPU kernel too
    # built on the device directly (the initialisers draw from the GPU generator)
    built = nn.Sequential(nn.Embedding(5, 3, padding_idx=0, device="cuda"), nn.LayerNorm(3, device="cuda"),
                          nn.Linear(3, 2, device="cuda"), nn.Dropout(0.5))
    out = built(mg.tensor([[0, 4]], device="cuda"))
    assert out.device == "cuda" and out.shape == (1, 2, 2)
