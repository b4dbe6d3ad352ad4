"""``register_parametrization`` / ``remove_parametrizations`` (microgradnn.nn.module), the
mechanism LoRA and IA3 stand on, checked against torch.nn.utils.parametrize where the
behaviour is PyTorch's; and ``register_forward_pre_hook``."""

from __future__ import annotations

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import nn
from microgradnn.nn.parametrize import (  # issue 10: moved out of nn/module.py (an import cycle)
    ParametrizationList, is_parametrized, register_parametrization, remove_parametrizations,
)


class Shift(nn.Module):
    """W -> W + delta (a trainable additive change), with a right inverse."""

    def __init__(self, shape, value=0.0):
        super().__init__()
        self.delta = nn.Parameter(mg.full(shape, value, dtype=mg.float64))

    def forward(self, w):
        return w + self.delta

    def right_inverse(self, w):
        return w - self.delta


class Double(nn.Module):
    def forward(self, w):
        return w * 2.0


def test_keys_access_and_chaining_like_torch():
    torch = pytest.importorskip("torch", reason="compares state_dict keys with torch.nn.utils.parametrize")
    lin = nn.Linear(3, 2).double()
    w = lin.weight.array.copy()
    register_parametrization(lin, "weight", Shift((2, 3), 0.5))
    register_parametrization(lin, "weight", Double())
    assert is_parametrized(lin) and is_parametrized(lin, "weight") and not is_parametrized(lin, "bias")
    assert isinstance(lin.parametrizations.weight, ParametrizationList) and len(lin.parametrizations.weight) == 2
    np.testing.assert_array_equal(lin.weight.array, (w + 0.5) * 2)
    np.testing.assert_array_equal(lin.parametrizations.weight.original.array, w)

    class TShift(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.delta = torch.nn.Parameter(torch.zeros(2, 3))

        def forward(self, w):
            return w + self.delta

    class TDouble(torch.nn.Module):
        def forward(self, w):
            return w * 2

    tlin = torch.nn.Linear(3, 2)
    torch.nn.utils.parametrize.register_parametrization(tlin, "weight", TShift())
    torch.nn.utils.parametrize.register_parametrization(tlin, "weight", TDouble())
    assert sorted(lin.state_dict()) == sorted(tlin.state_dict())


def test_gradients_reach_the_parametrization_and_the_original():
    mg.manual_seed(0)
    lstm = nn.LSTM(2, 3, batch_first=True).double()
    shift = Shift((12, 3), 0.1)
    register_parametrization(lstm, "weight_hh_l0", shift)
    original = lstm.parametrizations.weight_hh_l0.original
    x = mg.randn(2, 4, 2, dtype=mg.float64)
    assert mg.gradcheck(lambda *_: lstm(x)[0], shift.delta, original)


def test_remove_keeps_the_value_or_the_original_and_the_order():
    mg.manual_seed(0)
    rnn = nn.GRU(2, 3, num_layers=2).double()
    keys = list(rnn.state_dict())
    x = mg.randn(4, 2, 2, dtype=mg.float64)
    first, second = Shift((9, 3), 0.0), Shift((9, 3), 0.0)
    register_parametrization(rnn, "weight_hh_l0", first)
    register_parametrization(rnn, "weight_ih_l1", second)
    with mg.no_grad():
        first.delta.array[...] = 0.25
        second.delta.array[...] = -0.5
        expected = rnn(x)[0].array.copy()
    original = rnn.parametrizations.weight_ih_l1.original
    remove_parametrizations(rnn, "weight_ih_l1", leave_parametrized=True)
    assert rnn.weight_ih_l1 is original  # the same Parameter object, holding the effective value
    remove_parametrizations(rnn, "weight_hh_l0", leave_parametrized=True)
    assert list(rnn.state_dict()) == keys and not is_parametrized(rnn)
    with mg.no_grad():
        np.testing.assert_array_equal(rnn(x)[0].array, expected)

    lin = nn.Linear(2, 2).double()
    w = lin.weight.array.copy()
    register_parametrization(lin, "weight", Shift((2, 2), 1.0))
    remove_parametrizations(lin, "weight", leave_parametrized=False)
    np.testing.assert_array_equal(lin.weight.array, w)
    with pytest.raises(ValueError, match="not parametrized"):
        remove_parametrizations(lin, "weight")


def test_assigning_a_parametrized_tensor_sets_the_original_through_right_inverse():
    lin = nn.Linear(2, 2).double()
    register_parametrization(lin, "weight", Shift((2, 2), 1.0))
    target = np.arange(4.0).reshape(2, 2)
    lin.weight = mg.tensor(target)
    np.testing.assert_array_equal(lin.weight.array, target)
    np.testing.assert_array_equal(lin.parametrizations.weight.original.array, target - 1.0)
    assert "weight" not in lin.__dict__  # not shadowed by a plain attribute


def test_a_parametrization_that_changes_the_shape_is_refused_unless_unsafe():
    class Transpose(nn.Module):
        def forward(self, w):
            return w.T

    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"changes 'weight' from shape \(2, 3\) float32 to \(3, 2\)"):
        register_parametrization(lin, "weight", Transpose())
    assert not is_parametrized(lin) and lin.weight.shape == (2, 3)  # left as it was
    register_parametrization(lin, "weight", Transpose(), unsafe=True)
    assert lin.weight.shape == (3, 2)
    with pytest.raises(AttributeError, match="has no parameter or buffer 'weights'"):
        register_parametrization(nn.Linear(2, 2), "weights", Double())


def test_buffers_and_to_dtype():
    m = nn.Module()
    m.register_buffer("table", mg.ones(3))
    register_parametrization(m, "table", Double())
    assert list(m.state_dict()) == ["parametrizations.table.original"]
    np.testing.assert_array_equal(m.table.array, 2.0)
    lin = nn.Linear(2, 2)
    register_parametrization(lin, "weight", Double())
    lin.double()
    assert lin.weight.dtype == np.float64


def test_forward_pre_hook_replaces_arguments():
    lin = nn.Linear(2, 2)
    x = mg.randn(1, 2)
    expected = lin(x * 3.0).array
    remove = lin.register_forward_pre_hook(lambda mod, args: (args[0] * 3.0,))
    np.testing.assert_array_equal(lin(x).array, expected)
    remove()
    np.testing.assert_array_equal(lin(x).array, lin.forward(x).array)
    lin.register_forward_pre_hook(lambda mod, args: None)  # None keeps the args
    np.testing.assert_array_equal(lin(x).array, lin.forward(x).array)
