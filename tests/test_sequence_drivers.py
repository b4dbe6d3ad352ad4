"""The compiled whole-sequence drivers (backend/kernels_cpu.py ``SEQUENCE_DRIVERS``) against
the per-step loop of ops/recurrent.py, which runs the same cell kernels from Python.

* forward outputs, final states, every gradient and the per-step gradient norms agree,
  for every cell, both directions, variable lengths, with and without biases, float32 and
  float64, with dL/dh0 asked for or not;
* the drivers really run (numpy's wheel has the BLAS they call) and the CPU backend hands
  them out only under their own names, not as kernels (the kernel-table parity stays as it is);
* weights are read where they are, every call: after an in-place optimizer update the
  next forward sees the new weights (nothing prepared once goes stale).

torch stays the oracle for both paths in tests/test_recurrent_ops.py and tests/nn/test_rnn.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import microgradnn as mg
from microgradnn.backend import cblas, get_backend, kernels_cpu

from test_recurrent_ops import KINDS, as_tensors, random_problem, run


def test_drivers_are_available_with_numpy_wheel_blas():
    # numpy from PyPI bundles OpenBLAS with the scipy_cblas_*64_ symbols the drivers call;
    # if this fails the project silently runs its slower per-step loop.
    assert cblas.AVAILABLE, "numpy's bundled OpenBLAS was not found: the whole-sequence drivers are off"
    cpu = get_backend("cpu")
    for name in ("lstm", "gru", "rnn"):
        for half in ("forward", "backward"):
            assert cpu.sequence_driver(f"{name}_sequence_{half}") is not None
    assert cpu.sequence_driver("lstm_cell_forward") is None


def _run_both(monkeypatch, kind, dtype, lengths, reverse, bias, need_h0, seed, T=7, B=4, I=5, H=6):
    x_np, h0_np, c0_np, w_np = random_problem(kind, T, B, I, H, dtype, seed, bias=bias)
    results = []
    for drivers in (True, False):
        if not drivers:
            monkeypatch.setattr(kernels_cpu, "SEQUENCE_DRIVERS", {})
        x, h0, c0, weights = as_tensors(x_np, h0_np, c0_np, w_np)
        h0.requires_grad = need_h0
        norms: list = []
        outs = run(kind, x, h0, c0 if kind == "lstm" else None, weights, lengths=lengths, reverse=reverse,
                   grad_norms=norms)
        g_rng = np.random.default_rng(seed + 2)
        loss = sum((o * mg.tensor(g_rng.standard_normal(o.shape).astype(dtype))).sum() for o in outs)
        loss.backward()
        grads = [t.grad.array.copy() for t in [x, h0, c0] + weights
                 if t is not None and t.requires_grad and t.grad is not None]
        results.append(([o.array.copy() for o in outs], grads, norms))
    return results


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lengths,reverse,bias,need_h0", [
    (None, False, True, True),
    (None, True, True, False),
    ([7, 3, 5, 1], False, False, True),
    ([2, 7, 1, 6], True, True, True),
])
def test_driver_matches_per_step_loop(monkeypatch, kind, dtype, lengths, reverse, bias, need_h0):
    (outs_a, grads_a, norms_a), (outs_b, grads_b, norms_b) = _run_both(
        monkeypatch, kind, dtype, lengths, reverse, bias, need_h0, seed=len(kind) * 7 + int(reverse))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    assert len(outs_a) == len(outs_b) and len(grads_a) == len(grads_b) > 3
    for a, b in zip(outs_a + grads_a, outs_b + grads_b):
        np.testing.assert_allclose(a, b, **tol)
    assert len(norms_a) == len(norms_b) == 1 and norms_a[0].shape == (7,)
    np.testing.assert_allclose(norms_a[0], norms_b[0], rtol=1e-5)
    assert np.all(norms_a[0] > 0)


def _assert_same_within_rounding(a, b, dtype):
    # the routes sum in different orders and 7 steps of a recurrence amplify the rounding, so
    # each array is held to a fraction of its own scale (a relu RNN's gradients reach ~10
    # here): 1e-3 in float32, 1e-9 in float64 (H 255, 32 rows: 5e-11 of the scale was seen on
    # an EPYC with OpenBLAS's Haswell kernels). A wrong operand, stride or route is off by the
    # scale itself.
    scale = max(1.0, float(np.abs(b).max()))
    bound = (1e-9 if dtype == np.float64 else 1e-3) * scale
    assert np.abs(a - b).max() <= bound, (np.abs(a - b).max(), scale)


@pytest.mark.parametrize("small_gemm", [False, True])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B, H", [(1, 9), (2, 9), (kernels_cpu._GEMV_ROWS, 9), (kernels_cpu._GEMV_ROWS + 1, 9), (9, 9),
                                  (kernels_cpu._TRANSPOSED_ROWS, 9), (kernels_cpu._TRANSPOSED_ROWS + 1, 9),
                                  (kernels_cpu._BACKWARD_TRANSPOSED_ROWS, kernels_cpu._BACKWARD_TRANSPOSED_WIDTH),
                                  (kernels_cpu._BACKWARD_TRANSPOSED_ROWS + 1, kernels_cpu._BACKWARD_TRANSPOSED_WIDTH),
                                  (kernels_cpu._BACKWARD_TRANSPOSED_ROWS, kernels_cpu._BACKWARD_TRANSPOSED_WIDTH - 1)])
def test_driver_matches_per_step_loop_for_few_and_many_rows(monkeypatch, small_gemm, kind, dtype, B, H):
    # the forward product takes one of four routes by batch size and the BLAS's kernels (one
    # GEMV per row, the transposed GEMM into a scratch block with or without h.T copied out
    # first, the plain GEMM), the backward one of two by batch size and width (transposed or
    # plain): each side of each threshold, with both route flags whatever this machine's is
    monkeypatch.setattr(kernels_cpu, "SEQUENCE_DRIVERS", kernels_cpu._sequence_drivers(small_gemm))
    lengths = [1 + (3 * b) % 7 for b in range(B)]
    lengths[0] = 7
    (outs_a, grads_a, _), (outs_b, grads_b, _) = _run_both(
        monkeypatch, kind, dtype, lengths, False, True, True, seed=B, B=B, H=H)
    for a, b in zip(outs_a + grads_a, outs_b + grads_b):
        _assert_same_within_rounding(a, b, dtype)


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 2, kernels_cpu._GEMV_ROWS, kernels_cpu._GEMV_ROWS + 1, 8,
                               kernels_cpu._TRANSPOSED_ROWS, kernels_cpu._TRANSPOSED_ROWS + 1])
@pytest.mark.parametrize("rows, width", [(36, 9), (1040, 260)])
def test_forward_product_routes(small, dtype, B, rows, width):
    # _times_transposed alone against numpy, on every route: (1040, 260) float64 is 2.1 MB,
    # above _SMALL_GEMM_BYTES, so up to _GEMV_ROWS rows it stays on GEMVs even with ``small``;
    # the output is a strided view (as GRU's hh[t] is) and h a view of a bigger buffer
    rng = np.random.default_rng(B + rows)
    w = rng.standard_normal((rows, width)).astype(dtype)
    h = rng.standard_normal((B + 3, width)).astype(dtype)[1 : B + 1]
    out = np.full((2, B, rows), np.nan, dtype)[1]
    kernels_cpu._times_transposed(h, w, out, small)
    expected = h.astype(np.float64) @ w.astype(np.float64).T
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.abs(out - expected).max() <= tol * np.abs(expected).max()


def test_small_gemm_follows_openblas_core():
    # cblas.SMALL_GEMM is what OpenBLAS says it picked, and OPENBLAS_CORETYPE (which overrides
    # that choice) moves it: the route is chosen per run, never frozen into numba's cache
    assert cblas.CORE and cblas.SMALL_GEMM == (cblas.CORE in cblas.SMALL_GEMM_CORES)
    probe = "from microgradnn.backend import cblas; print(cblas.CORE, cblas.SMALL_GEMM)"
    cores = ["Haswell"]
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            if " avx512f " in info.read():  # OpenBLAS can run Skylake-X's kernels here
                cores.append("SkylakeX")
    for core in cores:
        env = dict(os.environ, OPENBLAS_CORETYPE=core)
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.split() == [core.lower(), str(core == "SkylakeX")]


def test_single_step_sequence(monkeypatch):
    # T = 1: the recorded-norms buffer and the scratch step have the same shape
    (outs_a, grads_a, norms_a), (outs_b, grads_b, norms_b) = _run_both(
        monkeypatch, "lstm", np.float64, None, False, True, True, seed=3, T=1)
    for a, b in zip(outs_a + grads_a, outs_b + grads_b):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norms_a[0], norms_b[0], rtol=1e-12)


@pytest.mark.parametrize("cls", [mg.nn.LSTM, mg.nn.GRU, mg.nn.RNN])
def test_forward_sees_weights_updated_in_place(cls):
    # an optimizer step writes into the parameter arrays; the next forward must use them.
    # (lr 0.1 on sum(out) moves the outputs by 0.8-1.8 in three steps, far past the
    # tolerance; the earlier lr 0.5 on sum(out**2) saturated the RNN so that float32
    # rounding grew to 1e-4 by the third step, and failed in CI at 1.02e-4.)
    torch.manual_seed(0)
    ref = getattr(torch.nn, cls.__name__)(5, 8, num_layers=2)
    ours = cls(5, 8, num_layers=2)
    ours.load_state_dict({k: v.detach().numpy().copy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    opt = mg.optim.SGD(ours.parameters(), lr=0.1)
    topt = torch.optim.SGD(ref.parameters(), lr=0.1)
    first = None
    for _ in range(3):
        out, _ = ours(mg.tensor(x))
        tout, _ = ref(torch.tensor(x))
        np.testing.assert_allclose(out.array, tout.detach().numpy(), rtol=1e-4, atol=1e-5)
        first = out.array.copy() if first is None else first
        opt.zero_grad()
        topt.zero_grad()
        out.sum().backward()
        tout.sum().backward()
        opt.step()
        topt.step()
    assert np.abs(out.array - first).max() > 0.1  # the steps did change what the layer computes


# ----------------------------------------------------------------- LSTM with a projection


def _run_projected(monkeypatch, drivers, dtype, lengths, reverse, bias, need_h0, seed, T=7, B=4, I=5, H=6, P=3):
    """lstm_sequence with w_hr (P, H): outputs, every gradient and the grad norms."""
    rng = np.random.default_rng(seed)

    def arr(*shape, scale=1.0):
        return (rng.uniform(0.2, 1.0, shape) * rng.choice([-1, 1], shape) * scale).astype(dtype)

    arrays = [arr(T, B, I), arr(B, P, scale=0.5), arr(B, H, scale=0.5), arr(4 * H, I, scale=0.6),
              arr(4 * H, P, scale=0.6)]
    arrays += [arr(4 * H, scale=0.5), arr(4 * H, scale=0.5)] if bias else [None, None]
    arrays.append(arr(P, H, scale=0.6))
    g_out = [arr(T, B, P), arr(B, P), arr(B, H)]
    with monkeypatch.context() as patch:
        if not drivers:
            patch.setattr(kernels_cpu, "SEQUENCE_DRIVERS", {})
        tensors = [None if a is None else mg.tensor(a.copy(), requires_grad=True) for a in arrays]
        tensors[1].requires_grad = need_h0
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = tensors
        norms: list = []
        outs = mg.ops.recurrent.lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse,
                                              grad_norms=norms, w_hr=w_hr)
        sum((o * mg.tensor(g)).sum() for o, g in zip(outs, g_out)).backward()
    grads = [t.grad.array.copy() for t in tensors if t is not None and t.requires_grad]
    return [o.array.copy() for o in outs], grads, norms


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lengths,reverse,bias,need_h0", [
    (None, False, True, True),
    (None, True, False, False),
    ([7, 3, 5, 1], False, True, True),
    ([2, 7, 1, 6], True, True, True),
])
def test_projected_driver_matches_per_step_loop(monkeypatch, dtype, lengths, reverse, bias, need_h0):
    assert get_backend("cpu").sequence_driver("lstmp_sequence_backward") is not None
    seed = 11 + 2 * int(reverse) + int(lengths is not None)
    outs_a, grads_a, norms_a = _run_projected(monkeypatch, True, dtype, lengths, reverse, bias, need_h0, seed)
    outs_b, grads_b, norms_b = _run_projected(monkeypatch, False, dtype, lengths, reverse, bias, need_h0, seed)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    assert [o.shape for o in outs_a] == [(7, 4, 3), (4, 3), (4, 6)]
    assert len(grads_a) == len(grads_b) == 4 + 2 * bias + need_h0 + 1  # x, [h0], c0, w_ih, w_hh, [b's], w_hr
    for a, b in zip(outs_a + grads_a, outs_b + grads_b):
        np.testing.assert_allclose(a, b, **tol)
    assert len(norms_a) == len(norms_b) == 1 and norms_a[0].shape == (7,)
    np.testing.assert_allclose(norms_a[0], norms_b[0], rtol=1e-5)
    assert np.all(norms_a[0] > 0)
    if lengths is not None:  # padded steps output 0, real ones do not
        padded = np.arange(7)[:, None] >= np.array(lengths)[None, :]
        assert np.all(outs_a[0][padded] == 0) and np.all(outs_a[0][~padded] != 0)


@pytest.mark.parametrize("small_gemm", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_projected_driver_on_the_transposed_routes(monkeypatch, small_gemm, dtype):
    # 16 rows and P = 256: the forward product W_hh @ r.T takes its scratch-block route
    # (both ways) with the projection's wide recurrent input
    monkeypatch.setattr(kernels_cpu, "SEQUENCE_DRIVERS", kernels_cpu._sequence_drivers(small_gemm))
    args = (dtype, [7, 3, 5, 1] * 4, False, True, True, 21)
    outs_a, grads_a, _ = _run_projected(monkeypatch, True, *args, B=16, H=260, P=256)
    outs_b, grads_b, _ = _run_projected(monkeypatch, False, *args, B=16, H=260, P=256)
    for a, b in zip(outs_a + grads_a, outs_b + grads_b):
        # this problem's gradients reach 1e4 (H 260, weights ~0.4): rounding grows with them
        # (float64: 1.6e-11 where they are 1e4, on an EPYC with OpenBLAS's Haswell kernels); a
        # wrong operand or stride would be off by the scale itself, not by 1e-2 of it
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() <= (1e-9 if dtype == np.float64 else 1e-2) * scale


def test_projected_float16_runs_the_loop_and_agrees_with_float64(monkeypatch):
    # float16 has no driver (nor a numba kernel): the per-step loop with the reference kernels
    outs64, grads64, _ = _run_projected(monkeypatch, True, np.float64, [7, 3, 5, 1], True, True, True, seed=5)
    outs16, grads16, _ = _run_projected(monkeypatch, True, np.float16, [7, 3, 5, 1], True, True, True, seed=5)
    assert outs16[0].dtype == np.float16 and len(grads16) == len(grads64) == 8
    for a, b in zip(outs16 + grads16, outs64 + grads64):
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=2e-2, atol=2e-2)
