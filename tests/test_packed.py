"""The packed, batch-split time loops of the LSTM, GRU and RNN (backend/packed.py) on OpenBLAS's
own kernels and threads.

* it is on with numpy's wheel, and really runs for the batches it claims (a spy counts calls);
* its outputs and gradients match finite differences (float64) and the per-step Python loop
  (tests/test_sequence_drivers.py compares it at B 9, 32, 33, 128, 129 too);
* the split over threads changes no bit in float32 on Haswell's and Skylake-X's kernels: one
  thread and two give identical arrays, for odd batches, variable lengths, both directions
  (in float64, and on Nehalem's kernels, the edge panels are summed in an order that depends
  on the number of rows, so there the last bit may move);
* every OpenBLAS core this CPU can run gives torch's numbers, each in its own process;
* two Python threads running LSTMs at once get what each gets alone (each its own buffers);
* weights are packed every call: an in-place update and a raw write through ``.numpy()`` are
  both seen by the next forward;
* with ``MICROGRADNN_PACKED=0`` (or a BLAS without the parts) the layer runs as before;
* the weight gradients over all rows (``packed.weight_grads``: the gradient packed once for
  every product and the column sums) match float64 products, for any split over threads, and
  decline what they cannot take.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import microgradnn as mg
from microgradnn.backend import cblas, packed
from microgradnn.gradcheck import gradcheck
from microgradnn.ops.recurrent import lstm_sequence

from test_recurrent_ops import KINDS, as_tensors, random_problem, run
from test_sequence_drivers import _run_projected

#: Where one thread and two give the same float32 bits (measured): the cores CI and the
#: benchmarks run. Elsewhere (Nehalem's kernels) the split moves the last bit.
EXACT_SPLIT_CORES = ("haswell", "skylakex")


def _cell_run(kind, B, dtype=np.float64, lengths=None, reverse=False, seed=0, T=6, I=5, H=7, need_h0=True,
              norms=None):
    """Outputs and every gradient of one layer of ``kind`` (test_recurrent_ops.KINDS)."""
    x, h0, c0, w = random_problem(kind, T, B, I, H, dtype, seed)
    x, h0, c0, w = as_tensors(x, h0, c0 if kind == "lstm" else None, w)
    h0.requires_grad = need_h0
    outs = run(kind, x, h0, c0, w, lengths=lengths, reverse=reverse, grad_norms=norms)
    rng = np.random.default_rng(seed + 1)
    loss = sum((o * mg.tensor(rng.standard_normal(o.shape).astype(dtype))).sum() for o in outs)
    loss.backward()
    grads = [t.grad.array.copy() for t in [x, h0, c0] + w if t is not None and t.grad is not None]
    return [o.array.copy() for o in outs] + grads


def _lstm_run(B, dtype=np.float64, **options):
    return _cell_run("lstm", B, dtype, **options)


def _count_packed_calls(monkeypatch, cell: str) -> dict:
    """Spy on packed.<cell>_forward / _backward: the counts of their calls, updated as they run."""
    calls = {"forward": 0, "backward": 0}
    for half in calls:
        real = getattr(packed, f"{cell}_{half}")

        def spy(*args, _real=real, _half=half, **options):
            calls[_half] += 1
            return _real(*args, **options)

        monkeypatch.setattr(packed, f"{cell}_{half}", spy)
    return calls


def test_packed_parts_found_and_self_tested():
    # numpy's wheel ships a DYNAMIC_ARCH OpenBLAS that exports its kernels under the core's
    # name; if this fails the LSTM silently runs its slower per-step driver
    assert cblas.PACKED, f"OpenBLAS's packed GEMM parts were not found or failed the self-test (core {cblas.CORE!r})"
    assert packed.AVAILABLE and cblas.blas_threads() >= 1
    assert packed.threads_for(packed.MIN_BATCH - 1) == 0 and packed.threads_for(packed.MIN_BATCH) >= 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B, expected", [(packed.MIN_BATCH - 1, 0), (packed.MIN_BATCH, 1), (33, 1)])
def test_packed_loop_runs_where_claimed(monkeypatch, kind, B, expected):
    calls = _count_packed_calls(monkeypatch, kind.split("_")[0])  # rnn_tanh, rnn_relu: rnn_forward/backward
    _cell_run(kind, B, np.float32)
    assert calls == {"forward": expected, "backward": expected}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_packed_loop_gradcheck(kind, reverse):
    # an independent reference: central differences, float64, B 8 (the packed loop's
    # smallest batch), ragged lengths
    x, h0, c0, w = random_problem(kind, 4, 8, 3, 5, np.float64, seed=7)
    x, h0, c0, w = as_tensors(x, h0, c0, w)
    lengths = [4, 1, 3, 4, 2, 4, 3, 1]
    if kind == "lstm":
        assert gradcheck(lambda *a: lstm_sequence(*a, lengths=lengths, reverse=reverse), x, h0, c0, *w)
    else:
        assert gradcheck(lambda x, h0, *w: run(kind, x, h0, None, w, lengths=lengths, reverse=reverse), x, h0, *w)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [8, 13, 40])
@pytest.mark.parametrize("lengths, reverse", [(None, False), ("ragged", True)])
def test_thread_split_changes_no_bit_in_float32(kind, dtype, B, lengths, reverse):
    if cblas.blas_threads() < 2:
        pytest.skip(f"OpenBLAS runs {cblas.blas_threads()} thread here: no split to compare")
    if lengths == "ragged":
        lengths = [1 + (5 * b) % 6 for b in range(B)]
    norms_one, norms_two = [], []
    with threadpool_limits(1, user_api="blas"):
        one = _cell_run(kind, B, dtype, lengths, reverse, norms=norms_one)
    two = _cell_run(kind, B, dtype, lengths, reverse, norms=norms_two)
    assert len(one) == len(two) == (10 if kind == "lstm" else 8)
    exact = dtype == np.float32 and cblas.CORE in EXACT_SPLIT_CORES
    for a, b in zip(one + norms_one, two + norms_two):
        if exact:
            np.testing.assert_array_equal(a, b)
        elif dtype == np.float32:
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def _cores_here() -> list:
    """The OpenBLAS cores this CPU can run (OPENBLAS_CORETYPE values)."""
    cores = ["Haswell", "SandyBridge", "Nehalem"]
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            flags = info.read()
        cores = [c for c in cores if c != "Haswell" or " avx2 " in flags]
        cores = [c for c in cores if c != "SandyBridge" or " avx " in flags]
        if " avx512f " in flags:
            cores.append("SkylakeX")
    return cores


@pytest.mark.parametrize("core", _cores_here())
def test_every_core_here_runs_the_packed_loop_right(core):
    # Finding: Sandy Bridge's kernel crashed on a sum of 640 or more in one call (the
    # backward's K is 4H), and on a block that was not page-aligned; each core
    # OpenBLAS can pick on this CPU, in its own process, against torch, every cell: H 300
    # (K up to 1200, two M blocks with an edge panel), B 12 (a split of 6 + 6 rows), T 30 (the
    # weight gradients sum 360 rows: a block of packed.GRAD_K_BLOCK and a ragged one)
    probe = """if True:
        import numpy as np, torch, microgradnn as mg
        from microgradnn.backend import cblas, packed
        for cell in ("LSTM", "GRU", "RNN", "LSTM-proj"):
            torch.manual_seed(0)
            kind, options = cell.split("-")[0], dict(proj_size=70) if cell.endswith("proj") else {}
            ref, ours = getattr(torch.nn, kind)(5, 300, **options), getattr(mg.nn, kind)(5, 300, **options)
            ours.load_state_dict(ref.state_dict())
            x = np.random.default_rng(0).standard_normal((30, 12, 5)).astype(np.float32)
            tx, mx = torch.from_numpy(x).requires_grad_(), mg.tensor(x, requires_grad=True)
            ref(tx)[0].pow(2).sum().backward()
            out = ours(mx)[0]
            (out * out).sum().backward()
            print(cell, cblas.CORE, cblas.PACKED, packed.threads_for(12) > 0,
                  float(np.abs(out.array - ref(tx)[0].detach().numpy()).max()),
                  float(np.abs(mx.grad.array - tx.grad.numpy()).max()),
                  float(np.abs(ours.weight_hh_l0.grad.array - ref.weight_hh_l0.grad.numpy()).max()))
    """
    env = dict(os.environ, OPENBLAS_CORETYPE=core)
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[0] for line in lines] == ["LSTM", "GRU", "RNN", "LSTM-proj"]
    for cell, name, on, used, *errors in lines:
        assert (name, on, used) == (core.lower(), "True", "True"), cell
        assert all(float(e) < 1e-4 for e in errors), (cell, errors)


# --------------------------------------------------------------------------- the LSTM with a projection


def _ragged(B):
    return [1 + (5 * b) % 7 for b in range(B)]


@pytest.mark.parametrize("B, expected", [(packed.MIN_BATCH - 1, 0), (packed.MIN_BATCH, 1), (33, 1)])
def test_projected_packed_loop_runs_where_claimed(monkeypatch, B, expected):
    calls = _count_packed_calls(monkeypatch, "lstmp")
    _run_projected(monkeypatch, True, np.float32, None, False, True, True, seed=3, B=B)
    assert calls == {"forward": expected, "backward": expected}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [8, 13, 40])
@pytest.mark.parametrize("lengths, reverse", [(None, False), ("ragged", True), ("ragged", False)])
def test_projected_packed_loop_matches_the_python_loop(monkeypatch, dtype, B, lengths, reverse):
    # the per-step Python loop of ops/recurrent.py (no compiled driver at all) is the reference;
    # H 6 and P 3 make W_hr^T and W_hh^T edge panels of every core
    lengths = _ragged(B) if lengths else None
    fast = _run_projected(monkeypatch, True, dtype, lengths, reverse, True, True, seed=B, B=B)
    slow = _run_projected(monkeypatch, False, dtype, lengths, reverse, True, True, seed=B, B=B)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    for a, b in zip(fast[0] + fast[1] + fast[2], slow[0] + slow[1] + slow[2]):
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("reverse", [False, True])
def test_projected_packed_loop_gradcheck(reverse):
    rng = np.random.default_rng(5)
    T, B, I, H, P = 4, 8, 3, 5, 2
    shapes = [(T, B, I), (B, P), (B, H), (4 * H, I), (4 * H, P), (4 * H,), (4 * H,), (P, H)]
    tensors = [mg.tensor(rng.uniform(0.2, 0.9, s) * rng.choice([-1, 1], s), requires_grad=True) for s in shapes]
    lengths = [4, 1, 3, 4, 2, 4, 3, 1]

    def layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        return lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse, w_hr=w_hr)

    assert gradcheck(layer, *tensors)


@pytest.mark.parametrize("B", [8, 40])
def test_projected_thread_split_changes_no_bit_in_float32(monkeypatch, B):
    if cblas.blas_threads() < 2:
        pytest.skip(f"OpenBLAS runs {cblas.blas_threads()} thread here: no split to compare")
    if cblas.CORE not in EXACT_SPLIT_CORES:
        pytest.skip(f"on {cblas.CORE}'s kernels the split may move the last bit (see the module docstring)")
    with threadpool_limits(1, user_api="blas"):
        one = _run_projected(monkeypatch, True, np.float32, _ragged(B), True, True, True, seed=2, B=B)
    two = _run_projected(monkeypatch, True, np.float32, _ragged(B), True, True, True, seed=2, B=B)
    for a, b in zip(one[0] + one[1] + one[2], two[0] + two[1] + two[2]):
        np.testing.assert_array_equal(a, b)


def test_two_python_threads_at_once():
    # each Python thread packs into buffers of its own: running together changes nothing
    alone = [_lstm_run(12, np.float32, seed=s, H=33) for s in (1, 2)]
    together = [None, None]

    def work(k):
        for _ in range(5):
            together[k] = _lstm_run(12, np.float32, seed=k + 1, H=33)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mine, ref in zip(together, alone):
        for a, b in zip(mine, ref):
            np.testing.assert_array_equal(a, b)


def test_every_write_to_the_weights_is_seen():
    # nothing packed is kept between calls: an optimizer step and a raw numpy write (which
    # no version counter sees) both change the next output, as torch's do
    torch.manual_seed(0)
    ref = torch.nn.LSTM(6, 10)
    ours = mg.nn.LSTM(6, 10)
    ours.load_state_dict(ref.state_dict())
    x = np.random.default_rng(3).standard_normal((5, 16, 6)).astype(np.float32)

    def agree():
        out = ours(mg.tensor(x))[0]
        np.testing.assert_allclose(out.array, ref(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-5, atol=1e-6)
        return out

    out = agree()
    opt, topt = mg.optim.SGD(ours.parameters(), lr=0.5), torch.optim.SGD(ref.parameters(), lr=0.5)
    out.sum().backward()
    ref(torch.from_numpy(x))[0].sum().backward()
    opt.step()
    topt.step()
    agree()
    ours.weight_hh_l0.detach().numpy()[:] *= -1.5
    with torch.no_grad():
        ref.weight_hh_l0.mul_(-1.5)
    agree()


def test_run_on_blas_threads_refuses_what_it_cannot_run():
    for bad in (np.zeros((1, 4), np.int32), np.zeros(4, np.int64), np.zeros((0, 4), np.int64),
                np.zeros((4, 2), np.int64).T, np.zeros((cblas._most_threads + 1, 4), np.int64)):
        with pytest.raises(ValueError, match="run_on_blas_threads"):
            cblas.run_on_blas_threads(0, bad)


def test_more_rows_than_threads_still_run(monkeypatch):
    # a thread count lowered (threadpoolctl in another thread) between the split and the
    # call: OpenBLAS runs the extra rows one after another, with the same numbers
    expected = _lstm_run(24, np.float32, seed=5)
    split = packed.threads_for(24)
    monkeypatch.setattr(packed, "threads_for", lambda batch: split)
    with threadpool_limits(1, user_api="blas"):
        for a, b in zip(_lstm_run(24, np.float32, seed=5), expected):
            np.testing.assert_array_equal(a, b)


def test_switched_off_the_layer_runs_as_before():
    probe = ("import numpy as np, microgradnn as mg; from microgradnn.backend import cblas, packed; "
             "x = mg.tensor(np.random.default_rng(0).standard_normal((4, 16, 3)).astype(np.float32)); "
             "out = mg.nn.LSTM(3, 5)(x)[0]; print(cblas.PACKED, packed.threads_for(16), out.shape)")
    env = dict(os.environ, MICROGRADNN_PACKED="0")
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "0", "(4,", "16,", "5)"]


# --------------------------------------------------------------------------- weight gradients over all rows


def _weight_grads_problem(rows, cols, widths, dtype, seed=0):
    rng = np.random.default_rng(seed)
    grad = rng.standard_normal((rows, cols)).astype(dtype)
    return grad, [rng.standard_normal((rows, w)).astype(dtype) for w in widths]


# rows: under one block, one block, blocks and a ragged end; widths: 1, an edge panel, past
# packed.M_BLOCK; cols: under and over the columns a thread takes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, cols, widths", [(7, 13, (3, 5)), (256, 40, (1,)), (601, 1024, (64, 256)),
                                                (300, 65, (300, 17, 2))])
@pytest.mark.parametrize("sums", [True, False])
def test_weight_grads_match_float64_products(dtype, rows, cols, widths, sums):
    grad, inputs = _weight_grads_problem(rows, cols, widths, dtype)
    g64 = grad.astype(np.float64)
    results = {}
    for threads in (1, 2):
        for w in widths + (1,):  # freed NaN blocks of the outputs' sizes: the outputs are not zeroed
            del_me = np.full(cols * w, np.nan, dtype)  # when allocated, each thread zeroes its part
            del del_me
        with threadpool_limits(threads, user_api="blas"):
            outs, totals = packed.weight_grads(grad, [None] + inputs, sums)
        assert outs[0] is None and len(outs) == len(inputs) + 1 and (totals is not None) == sums
        tol = 2e-5 * np.sqrt(rows) if dtype == np.float32 else 1e-12
        for out, x in zip(outs[1:], inputs):
            assert out.dtype == dtype and out.shape == (cols, x.shape[1]) and out.flags.c_contiguous
            np.testing.assert_allclose(out, g64.T @ x.astype(np.float64), rtol=tol, atol=tol)
        if sums:
            assert totals.dtype == dtype and totals.shape == (cols,)
            np.testing.assert_allclose(totals, g64.sum(0), rtol=tol, atol=tol)
        results[threads] = outs[1:] + ([totals] if sums else [])
    if dtype == np.float32 and cblas.CORE in EXACT_SPLIT_CORES and cblas.blas_threads() > 1:
        for a, b in zip(results[1], results[2]):  # every element is one thread's, in one order
            np.testing.assert_array_equal(a, b)


def test_weight_grads_declines_what_it_cannot_take():
    grad, (x,) = _weight_grads_problem(20, 12, (5,), np.float32)
    assert packed.weight_grads(grad, [None, None], False) == ([None, None], None)  # nothing asked
    declined = [(grad.astype(np.float16), [x.astype(np.float16)]), (grad, [x.astype(np.float64)]),
                (grad[:, ::2], [x]), (grad, [x[::2]]), (grad, [np.asfortranarray(x)]), (grad[:0], [x[:0]]),
                (grad, [x[:, :0]]), (grad.astype(np.int64), [x.astype(np.int64)]), (grad, [x, x, x, x])]
    for g, inputs in declined:
        assert packed.weight_grads(g, inputs, True) is None
    # and the layers' gradients fall back to matmul there, with the same values: a Linear on a
    # non-contiguous gradient (a transposed output) against torch
    torch.manual_seed(0)
    ref, ours = torch.nn.Linear(5, 12), mg.nn.Linear(5, 12)
    ours.load_state_dict(ref.state_dict())
    tx, mx = torch.from_numpy(x).requires_grad_(), mg.tensor(x, requires_grad=True)
    ref(tx).T.pow(2).sum().backward()
    out = ours(mx).T
    (out * out).sum().backward()
    for mine, theirs in ((ours.weight, ref.weight), (ours.bias, ref.bias), (mx, tx)):
        np.testing.assert_allclose(mine.grad.array, theirs.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, calls", [("lstm", 1), ("gru", 2), ("rnn_tanh", 1), ("rnn_relu", 1)])
def test_layers_take_the_weight_gradient_route(monkeypatch, kind, calls):
    # LSTM and RNN: one call for dW_ih, dW_hh and the biases (one array of gate gradients);
    # the GRU: two, W_hh's gate gradients differ from W_ih's (r scales the n slice)
    seen = []
    real = packed.weight_grads

    def spy(grad, inputs, sums):
        result = real(grad, inputs, sums)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(packed, "weight_grads", spy)
    _cell_run(kind, 9, np.float32)
    assert seen == [True] * calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1200, 300), (300, 1200), (520, 77)])
@pytest.mark.parametrize("transposed", [False, True])
def test_packing_on_threads_writes_what_one_thread_writes(dtype, shape, transposed):
    # a big weight is packed by OpenBLAS's threads, each a range of A's rows from a panel edge:
    # the packed block must be the one a single pass writes, byte for byte, edges included
    w = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    M = shape[1] if transposed else shape[0]
    packed._pack("weights", w, transposed).fill(np.nan)  # the reused block: nothing left from before
    with threadpool_limits(1, user_api="blas"):
        one = packed._pack("weights", w, transposed).copy()
    packed._pack("weights", w, transposed).fill(np.nan)
    if cblas.blas_threads() > 1 and M >= 2 * packed.MIN_PACK_ROWS:
        assert min(cblas.blas_threads(), M // packed.MIN_PACK_ROWS) > 1  # really split
    two = packed._pack("weights", w, transposed)
    assert np.isfinite(one).sum() >= w.size  # every weight written
    np.testing.assert_array_equal(one, two)  # and the same bytes, the untouched padding too (NaN)


@pytest.mark.parametrize("kind", ["lstm", "rnn_tanh", "rnn_relu"])
def test_backward_loop_makes_the_input_gradient(monkeypatch, kind):
    # the packed backward loop makes dx = dgates W_ih step by step (W_ih packed as the recurrent
    # weight is) where the packed W_ih is small enough to share L2 with W_hh's, else the op's
    # GEMM after the loop does: both give the same dx, and the loop says which ran
    said = []
    cell = "lstm" if kind == "lstm" else "rnn"
    real = getattr(packed, f"{cell}_backward")

    def spy(*args, **options):
        said.append(real(*args, **options))
        return said[-1]

    monkeypatch.setattr(packed, f"{cell}_backward", spy)
    in_loop = _cell_run(kind, 12, np.float64, lengths=[1 + b % 6 for b in range(12)], reverse=True)
    monkeypatch.setattr(packed, "INPUT_GRAD_BYTES", 0)
    after = _cell_run(kind, 12, np.float64, lengths=[1 + b % 6 for b in range(12)], reverse=True)
    assert said == [True, False]
    for a, b in zip(in_loop, after):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_projected_backward_loop_makes_the_input_gradient(monkeypatch):
    said = []
    real = packed.lstmp_backward

    def spy(*args, **options):
        said.append(real(*args, **options))
        return said[-1]

    monkeypatch.setattr(packed, "lstmp_backward", spy)
    in_loop = _run_projected(monkeypatch, True, np.float64, _ragged(9), True, True, True, seed=3, B=9)
    monkeypatch.setattr(packed, "INPUT_GRAD_BYTES", 0)
    after = _run_projected(monkeypatch, True, np.float64, _ragged(9), True, True, True, seed=3, B=9)
    assert said == [True, False]
    for a, b in zip(in_loop[0] + in_loop[1], after[0] + after[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
