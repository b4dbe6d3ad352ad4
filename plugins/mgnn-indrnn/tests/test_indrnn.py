"""Tests of the IndRNN cell plugin: gradients (float64 finite differences), the recurrence
against a plain numpy loop, and the runner contract (multi-layer, bidirectional, lengths,
a SequenceModel in a spec) and entry-point discovery."""

from __future__ import annotations

import importlib.metadata as metadata

import numpy as np
import pytest

import microgradnn as mg
from microgradnn.models import SequenceModel
from mgnn_indrnn import IndRNNCell


def _rand(rng: np.random.Generator, *shape: int, requires_grad: bool = False) -> mg.Tensor:
    return mg.tensor(rng.standard_normal(shape), dtype=mg.float64, requires_grad=requires_grad)


def _cell64(input_size: int, hidden_size: int, **kw) -> IndRNNCell:
    cell = IndRNNCell(input_size, hidden_size, dtype=mg.float64, **kw)
    assert cell.weight_ih.dtype == np.float64
    return cell


def test_step_gradcheck_float64() -> None:
    rng = np.random.default_rng(0)
    cell = _cell64(3, 4, nonlinearity="tanh")  # tanh: smooth everywhere
    x, h = _rand(rng, 2, 3, requires_grad=True), _rand(rng, 2, 4, requires_grad=True)
    params = [cell.weight_ih, cell.weight_hh, cell.bias_ih]
    assert mg.gradcheck(lambda *a: cell.step(x, h)[0], x, h, *params)


def test_relu_step_gradcheck_float64() -> None:
    rng = np.random.default_rng(1)
    cell = _cell64(3, 5)
    x, h = _rand(rng, 4, 3, requires_grad=True), _rand(rng, 4, 5, requires_grad=True)
    # Random inputs sit far (>> eps) from relu's kink at 0 with probability ~1.
    assert mg.gradcheck(lambda *a: cell(x, h)[0], x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih)


def test_matches_numpy_recurrence() -> None:
    rng = np.random.default_rng(2)
    cell = _cell64(3, 4)
    layer = mg.nn.Recurrent(lambda i, h, **kw: cell, 3, 4)  # run exactly this cell
    xs = rng.standard_normal((6, 2, 3))
    out, h_n = layer(mg.tensor(xs, dtype=mg.float64))
    W, u, b = cell.weight_ih.detach().numpy(), cell.weight_hh.detach().numpy(), cell.bias_ih.detach().numpy()
    h = np.zeros((2, 4))
    expected = []
    for t in range(6):
        h = np.maximum(xs[t] @ W.T + b + u * h, 0.0)
        expected.append(h)
    np.testing.assert_allclose(out.detach().numpy(), np.stack(expected), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n.detach().numpy()[0], expected[-1], rtol=1e-12, atol=1e-12)


def test_multilayer_bidirectional_lengths_gradcheck() -> None:
    rng = np.random.default_rng(3)
    mg.manual_seed(0)
    layer = mg.nn.Recurrent(IndRNNCell, 2, 3, num_layers=2, bidirectional=True, batch_first=True,
                            nonlinearity="tanh").double()
    x = _rand(rng, 3, 5, 2, requires_grad=True)
    lengths = [5, 3, 1]
    out, h_n = layer(x, lengths=lengths)
    assert out.shape == (3, 5, 6) and h_n.shape == (4, 3, 3)
    assert np.all(out.detach().numpy()[1, 3:] == 0) and np.all(out.detach().numpy()[2, 1:] == 0)  # padded steps output 0
    params = [p for _, p in layer.named_parameters()]
    assert mg.gradcheck(lambda *a: layer(x, lengths=lengths)[0], x, *params)


def test_bidirectional_reverse_reads_backwards() -> None:
    """The reverse direction's output at t = 0 has read the whole sequence: changing the
    last step changes it, while the forward direction's output at t = 0 does not move."""
    rng = np.random.default_rng(4)
    mg.manual_seed(1)
    layer = mg.nn.Recurrent(IndRNNCell, 2, 4, bidirectional=True, nonlinearity="tanh").double()
    xs = rng.standard_normal((5, 1, 2))
    a = layer(mg.tensor(xs, dtype=mg.float64))[0].detach().numpy()
    xs[-1] += 1.0
    b = layer(mg.tensor(xs, dtype=mg.float64))[0].detach().numpy()
    np.testing.assert_allclose(a[0, :, :4], b[0, :, :4])
    assert not np.allclose(a[0, :, 4:], b[0, :, 4:])


def test_recurrent_max_abs_clips_u() -> None:
    rng = np.random.default_rng(5)
    cell = _cell64(2, 3, recurrent_max_abs=0.5)
    with mg.no_grad():
        cell.weight_hh.copy_(mg.tensor([2.0, -3.0, 0.25], dtype=mg.float64))
    x, h = _rand(rng, 1, 2), mg.tensor(np.abs(rng.standard_normal((1, 3))) + 1.0, dtype=mg.float64)
    cell.step(x, h)[0].sum().backward()
    pre = x.detach().numpy() @ cell.weight_ih.detach().numpy().T + cell.bias_ih.detach().numpy() + np.array([0.5, -0.5, 0.25]) * h.detach().numpy()
    np.testing.assert_allclose(cell.step(x, h)[0].detach().numpy(), np.maximum(pre, 0))
    grad = cell.weight_hh.grad.detach().numpy()
    assert grad[0] == 0 and grad[1] == 0  # clipped weights get no gradient


def test_sequence_model_trains() -> None:
    """A 2-layer bidirectional IndRNN classifier fits a small fixed batch (loss falls)."""
    mg.manual_seed(0)
    rng = np.random.default_rng(6)
    model = SequenceModel(2, input_size=1, cell=IndRNNCell, hidden_size=16, num_layers=2, bidirectional=True,
                          task="classification", cell_options={"recurrent_max_abs": 1.0})
    opt = mg.optim.Adam(model.parameters(), lr=1e-2)
    x = rng.integers(0, 2, (32, 6, 1)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 3).astype(np.int64)  # "more than half ones"
    losses = []
    for _ in range(40):
        out, _ = model(mg.tensor(x))
        loss = mg.cross_entropy(out, mg.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses[::8]


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        IndRNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="recurrent_max_abs"):
        IndRNNCell(2, 3, recurrent_max_abs=0)
    with pytest.raises(ValueError, match="expected x_t"):
        IndRNNCell(2, 3)(mg.randn(4, 5))


def _entry_point(group: str, name: str):
    for ep in metadata.entry_points(group=group):
        if ep.name == name and ep.value.startswith("mgnn_indrnn"):
            return ep
    return None


def test_entry_point_discovery() -> None:
    ep = _entry_point("microgradnn.cells", "indrnn")
    if ep is None:
        pytest.skip("mgnn-indrnn is not installed (pip install -e plugins/mgnn-indrnn): no entry point to discover")
    assert ep.load() is IndRNNCell
    assert ep.dist is not None and ep.dist.metadata["Name"] == "mgnn-indrnn"
    try:
        from microgradnn import registry
    except ImportError:
        return
    assert registry.get("cells", "indrnn") is IndRNNCell
