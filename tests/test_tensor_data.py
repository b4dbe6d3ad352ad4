"""``Tensor.data`` is PyTorch's: a Tensor sharing storage, outside the graph."""

import numpy as np
import pytest

import microgradnn as mg


def test_data_is_a_tensor_sharing_storage_with_no_history():
    p = mg.randn(3, requires_grad=True)
    d = p.data
    assert isinstance(d, mg.Tensor) and not d.requires_grad and d.grad_fn is None
    d[0] = 7.0  # a write through .data changes the parameter
    assert p.array[0] == 7.0


def test_data_assignment_takes_a_tensor_and_refuses_anything_else():
    p = mg.nn.Parameter(mg.randn(3))
    new = mg.randn(2)
    p.data = new
    assert p.shape == (2,) and isinstance(p.array, np.ndarray)
    np.testing.assert_array_equal(p.array, new.array)
    with pytest.raises(TypeError, match="has to be a tensor"):
        p.data = np.zeros(2)


def test_grad_data_shares_the_gradient_buffer():
    w = mg.randn(4, requires_grad=True)
    (w * 2).sum().backward()
    g = w.grad.data
    g[1] = 0.0
    assert w.grad.array[1] == 0.0
