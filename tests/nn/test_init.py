"""``mg.nn.init``: the bounds and standard deviations PyTorch's formulas give, sampled on
large tensors (so the empirical statistics are tight), the gains and fans PyTorch computes,
orthogonality, seeding, and in-place use on Parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import microgradnn as mg
from microgradnn import nn
from microgradnn.nn import init

SHAPES = [(300, 200), (64, 16, 5)]  # a matrix and a (out, in, kernel) tensor with a receptive field


def param(*shape):
    return nn.Parameter(mg.empty(*shape))


def values(t):
    return t.detach().numpy().astype(np.float64)


def assert_std(x, expected, rel=0.03):
    assert abs(x.std() - expected) < rel * expected, (x.std(), expected)
    assert abs(x.mean()) < 4 * expected / math.sqrt(x.size) + 1e-12, x.mean()


# ============================================================================ gains and fans


@pytest.mark.parametrize("name", list(init.NONLINEARITIES))
def test_calculate_gain_matches_torch(name):
    assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))


@pytest.mark.parametrize("slope", [0.0, 0.2, 1, math.sqrt(5)])
def test_leaky_relu_gain_with_slope(slope):
    assert init.calculate_gain("leaky_relu", slope) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", slope))


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'.*tanh"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", "0.1")


@pytest.mark.parametrize("shape", [(3, 4), (5, 2, 3), (4, 3, 2, 2)])
def test_fans_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(mg.empty(*shape)) == torch.nn.init._calculate_fan_in_and_fan_out(
        torch.empty(*shape))


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(param(5))
    with pytest.raises(ValueError, match="'fan_avg' is not supported"):
        init.kaiming_uniform_(param(3, 3), mode="fan_avg")


# ============================================================================ distributions


def test_uniform_and_normal():
    mg.manual_seed(0)
    x = values(init.uniform_(param(400, 300), -0.5, 1.5))
    assert x.min() >= -0.5 and x.max() < 1.5 and x.min() < -0.49 and x.max() > 1.49
    assert abs(x.mean() - 0.5) < 0.01 and abs(x.std() - 2 / math.sqrt(12)) < 0.01
    y = values(init.normal_(param(400, 300), 2.0, 0.5))
    assert abs(y.mean() - 2.0) < 0.005 and abs(y.std() - 0.5) < 0.005


def test_trunc_normal_bounds_and_moments():
    mg.manual_seed(0)
    mean, std, a, b = 0.5, 1.0, -1.0, 1.5
    x = values(init.trunc_normal_(param(500, 400), mean, std, a, b))
    assert x.min() >= a and x.max() <= b
    # moments of the truncated normal, from its density
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2  # noqa: E731
    Z = cdf(beta) - cdf(alpha)
    expected_mean = mean + std * (pdf(alpha) - pdf(beta)) / Z
    expected_var = std**2 * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / Z - ((pdf(alpha) - pdf(beta)) / Z) ** 2)
    assert abs(x.mean() - expected_mean) < 0.01
    assert abs(x.var() - expected_var) < 0.01


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier_uniform_and_normal(shape, gain):
    mg.manual_seed(0)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(mg.empty(*shape))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    x = values(init.xavier_uniform_(param(*shape), gain=gain))
    assert np.abs(x).max() <= bound * (1 + 1e-6) and np.abs(x).max() > 0.99 * bound
    assert_std(x, std)
    assert_std(values(init.xavier_normal_(param(*shape), gain=gain)), std)
    # and torch's own samples have the same spread
    t = torch.nn.init.xavier_uniform_(torch.empty(*shape), gain=gain).numpy()
    assert abs(t.std() - x.std()) < 0.03 * std


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("a,mode,nonlinearity", [
    (0, "fan_in", "leaky_relu"),
    (math.sqrt(5), "fan_in", "leaky_relu"),  # nn.Linear's default: bound 1/sqrt(fan_in)
    (0, "fan_out", "relu"),
    (0.1, "fan_out", "leaky_relu"),
    (0, "fan_in", "tanh"),
])
def test_kaiming_uniform_and_normal(shape, a, mode, nonlinearity):
    mg.manual_seed(0)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(mg.empty(*shape))
    fan = fan_in if mode == "fan_in" else fan_out
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    x = values(init.kaiming_uniform_(param(*shape), a=a, mode=mode, nonlinearity=nonlinearity))
    assert np.abs(x).max() <= bound * (1 + 1e-6) and np.abs(x).max() > 0.99 * bound
    assert_std(x, std)
    assert_std(values(init.kaiming_normal_(param(*shape), a=a, mode=mode, nonlinearity=nonlinearity)), std)
    t = torch.nn.init.kaiming_normal_(torch.empty(*shape), a=a, mode=mode, nonlinearity=nonlinearity).numpy()
    assert abs(t.std() - std) < 0.03 * std


def test_linear_default_init_equals_kaiming_uniform_sqrt5():
    w = values(nn.Linear(40, 500).weight)
    bound = 1 / math.sqrt(40)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound


@pytest.mark.parametrize("shape", [(6, 6), (4, 10), (10, 4), (5, 2, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal(shape, gain):
    mg.manual_seed(0)
    w = values(init.orthogonal_(param(*shape), gain=gain)).reshape(shape[0], -1)
    rows, cols = w.shape
    product = w @ w.T if rows <= cols else w.T @ w
    np.testing.assert_allclose(product, gain**2 * np.eye(min(rows, cols)), atol=1e-5)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(param(4))


def test_orthogonal_singular_values_keep_a_recurrent_signal():
    mg.manual_seed(0)
    w = values(init.orthogonal_(param(32, 32)))
    h = np.random.default_rng(0).standard_normal(32)
    norm = np.linalg.norm(h)
    for _ in range(100):
        h = w @ h
    assert abs(np.linalg.norm(h) / norm - 1.0) < 1e-4  # 100 steps: neither exploded nor vanished


def test_constant_ones_zeros_eye():
    p = param(3, 4)
    np.testing.assert_array_equal(values(init.constant_(p, 0.25)), np.full((3, 4), 0.25))
    np.testing.assert_array_equal(values(init.ones_(p)), np.ones((3, 4)))
    np.testing.assert_array_equal(values(init.zeros_(p)), np.zeros((3, 4)))
    np.testing.assert_array_equal(values(init.eye_(p)), np.eye(3, 4))
    with pytest.raises(ValueError, match="2-D"):
        init.eye_(param(2, 2, 2))


# ============================================================================ in place, seeded, no graph


def test_in_place_on_parameters_without_a_graph_and_dtype_kept():
    layer = nn.Linear(5, 7).double()
    w = layer.weight
    out = init.xavier_uniform_(w)
    assert out is w and w.requires_grad and w.is_leaf and w.grad_fn is None
    assert w.dtype == np.float64
    assert mg.is_grad_enabled()  # no_grad was restored
    f32 = param(4, 4)
    init.orthogonal_(f32)
    assert f32.dtype == np.float32


def test_seeded_by_manual_seed_and_generator_argument():
    draws = []
    for _ in range(2):
        mg.manual_seed(123)
        draws.append(values(init.kaiming_normal_(param(8, 9))))
    np.testing.assert_array_equal(draws[0], draws[1])
    mg.manual_seed(124)
    assert not np.array_equal(values(init.kaiming_normal_(param(8, 9))), draws[0])
    a = values(init.uniform_(param(5, 5), generator=np.random.default_rng(7)))
    b = values(init.uniform_(param(5, 5), generator=np.random.default_rng(7)))
    np.testing.assert_array_equal(a, b)


def test_reinitialising_a_model():
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))

    def reinit(m):
        if isinstance(m, nn.Linear):
            init.xavier_uniform_(m.weight, gain=init.calculate_gain("tanh"))
            init.zeros_(m.bias)

    model.apply(reinit)
    assert not values(model[0].bias).any() and values(model[2].weight).any()


@pytest.mark.skipif(not mg.cuda_is_available(), reason="no CUDA device (CuPy and a GPU are needed)")
def test_init_on_cuda_tensors():
    mg.manual_seed(0)
    p = nn.Parameter(mg.empty(200, 100, device="cuda"))
    bound = math.sqrt(6 / 300)
    init.xavier_uniform_(p)
    x = p.detach().cpu().numpy()
    assert p.device == "cuda" and np.abs(x).max() <= bound and np.abs(x).max() > 0.99 * bound
    init.orthogonal_(p)
    w = p.detach().cpu().numpy()
    np.testing.assert_allclose(w.T @ w, np.eye(100), atol=1e-4)
    init.trunc_normal_(p, std=0.5, a=-0.4, b=0.4)
    t = p.detach().cpu().numpy()
    assert t.min() >= -0.4 and t.max() <= 0.4 and t.std() > 0.1
    init.kaiming_normal_(p, nonlinearity="relu")
    assert abs(p.detach().cpu().numpy().std() - math.sqrt(2 / 100)) < 0.03 * math.sqrt(2 / 100)
