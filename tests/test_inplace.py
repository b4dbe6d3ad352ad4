"""In-place operators follow PyTorch: in place outside the graph, an error on a leaf that
requires grad while grad is enabled."""

import numpy as np
import pytest
import torch

import microgradnn as mg


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/="])
def test_inplace_under_no_grad_updates_the_same_tensor(op):
    rng = np.random.default_rng(0)
    start, other = rng.standard_normal(5) + 3, rng.standard_normal(5) + 3
    p = mg.tensor(start.copy(), requires_grad=True)
    t = torch.tensor(start.copy(), requires_grad=True)
    alias, torch_alias = p, t
    with mg.no_grad():
        exec(f"p {op} mg.tensor(other)")
    with torch.no_grad():
        exec(f"t {op} torch.tensor(other)")
    assert p is alias and t is torch_alias
    np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-12)
    assert p.requires_grad


def test_inplace_on_leaf_requiring_grad_is_an_error_like_torch():
    p = mg.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        p += 1
    with pytest.raises(RuntimeError):
        t = torch.randn(3, requires_grad=True)
        t += 1


def test_inplace_on_non_leaf_keeps_gradients_right():
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal(4)
    x = mg.tensor(x0, requires_grad=True)
    y = x * 2
    y += x  # y = 3x
    y *= x  # y = 3x^2
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x0)


def test_inplace_on_plain_tensor_with_grad_enabled():
    a = mg.tensor([1.0, 2.0])
    alias = a
    a += 1
    assert a is alias and a.tolist() == [2.0, 3.0]
