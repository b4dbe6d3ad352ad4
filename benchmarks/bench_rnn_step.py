"""One recurrent training step (forward + backward, no optimizer): the fused sequence
primitives of ``microgradnn.ops.recurrent`` against torch.nn.LSTM / GRU / RNN on the CPU
(``torch.set_num_threads(2)``), in one process.

    python benchmarks/bench_rnn_step.py              # LSTM, GRU, RNN(tanh), 9 repeats
    python benchmarks/bench_rnn_step.py --repeat 15 --cells lstm gru
    python benchmarks/bench_rnn_step.py --dtype float64
    python benchmarks/bench_rnn_step.py --profile    # forward / backward split as well

Workload: input 128, hidden 256, T 64, B 32, float32; the step is ``out, h_n = layer(x)``
then backward of ``<out, G>`` for a fixed random G (the same upstream gradient on both
sides). Each side runs in blocks of repeats (see :func:`blocks`), the blocks of the two
sides alternating; figures are medians and the ratio is microgradnn / torch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import microgradnn as mg  # noqa: E402

mg.backend.tune_allocator()  # what `mgnn` does: keep freed memory for reuse (see README)
from microgradnn.ops.recurrent import gru_sequence, lstm_sequence, rnn_sequence  # noqa: E402

torch.set_num_threads(2)

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def make(cell: str, T: int, B: int, I: int, H: int, dtype: str, input_grad: bool = True):
    """Build the torch layer and the microgradnn tensors with the same weights."""
    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](I, H).to(tdtype)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((T, B, I)).astype(dtype)
    g_np = rng.standard_normal((T, B, H)).astype(dtype)
    tx = torch.from_numpy(x_np.copy()).requires_grad_(input_grad)
    tg = torch.from_numpy(g_np.copy())

    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    weights = [mg.tensor(getattr(layer, n).detach().numpy().copy(), requires_grad=True) for n in names]
    x = mg.tensor(x_np, requires_grad=input_grad)
    h0 = mg.zeros(B, H, dtype=getattr(mg, dtype))
    c0 = mg.zeros(B, H, dtype=getattr(mg, dtype))
    g = mg.tensor(g_np)

    def torch_forward():
        return layer(tx)[0]

    def torch_step():
        layer.zero_grad(set_to_none=True)
        tx.grad = None
        torch_forward().backward(tg)

    def mg_forward():
        if cell == "lstm":
            return lstm_sequence(x, h0, c0, *weights)[0]
        if cell == "gru":
            return gru_sequence(x, h0, *weights)[0]
        return rnn_sequence(x, h0, *weights, nonlinearity="tanh")[0]

    def mg_step():
        for w in weights:
            w.grad = None
        x.grad = None
        mg_forward().backward(g)

    def torch_fwd_only():
        with torch.no_grad():
            torch_forward()

    def mg_fwd_only():
        with mg.no_grad():
            mg_forward()

    return {"torch": torch_step, "mg": mg_step, "torch_fwd": torch_fwd_only, "mg_fwd": mg_fwd_only,
            "torch_forward": torch_forward, "mg_forward": mg_forward, "g": g, "tg": tg}


def blocks(fns: dict, repeat: int, rounds: int = 2) -> dict:
    """Median seconds per call of each function over ``rounds`` blocks of ``repeat`` calls.

    Each side runs in its own block, never call by call in alternation: numpy's OpenBLAS
    and torch's OpenMP threads both busy-wait for a while after a parallel region, and on
    2 cores a spinning pool of one library halves the speed of the other. A short pause
    before every block lets the other library's threads go to sleep; the blocks of the two
    sides alternate so both see the same machine load over time."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(0.3)
            fn()  # warm-up: numba compile or cache load, allocator, thread pools
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return {name: (statistics.median(s), min(s)) for name, s in samples.items()}


def backward_only(make_out, grad, repeat: int, rounds: int = 2) -> float:
    samples = []
    for _ in range(rounds):
        time.sleep(0.3)
        make_out().backward(grad)
        for _ in range(repeat):
            out = make_out()
            start = time.perf_counter()
            out.backward(grad)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"], choices=sorted(GATES))
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--T", type=int, default=64)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--profile", action="store_true", help="also time forward (no grad) and backward alone")
    parser.add_argument("--no-input-grad", action="store_true",
                        help="the input does not require grad (a first layer fed with data): dx is skipped "
                             "(torch computes it anyway)")
    args = parser.parse_args(argv)
    repeat = max(args.repeat, 7)

    print(f"one training step (forward + backward), input {args.input}, hidden {args.hidden}, "
          f"T {args.T}, B {args.B}, {args.dtype}, input requires grad: {not args.no_input_grad}; torch {torch.__version__} with 2 threads; "
          f"median of 2 blocks of {repeat} repeats per side")
    print(f"{'':18} {'microgradnn':>11} {'torch':>9} {'ratio':>6}   (best of all repeats: mg, torch, ratio)")

    def line(label, mg_t, torch_t):
        (m_med, m_min), (t_med, t_min) = mg_t, torch_t
        print(f"{label:18} {m_med * 1e3:8.2f} ms {t_med * 1e3:6.2f} ms {m_med / t_med:5.2f}x   "
              f"({m_min * 1e3:.2f} ms, {t_min * 1e3:.2f} ms, {m_min / t_min:.2f}x)", flush=True)

    for cell in args.cells:
        f = make(cell, args.T, args.B, args.input, args.hidden, args.dtype, not args.no_input_grad)
        t = blocks({"mg": f["mg"], "torch": f["torch"]}, repeat)
        line(f"{cell} train step", t["mg"], t["torch"])
        if args.profile:
            t = blocks({"mg": f["mg_fwd"], "torch": f["torch_fwd"]}, repeat)
            line("  forward, no grad", t["mg"], t["torch"])
            line("  backward alone", backward_only(f["mg_forward"], f["g"], repeat),
                 backward_only(f["torch_forward"], f["tg"], repeat))


if __name__ == "__main__":
    main()
