"""Issue 12: recurrence at native speed. microgradnn against PyTorch CPU, same process.

    python benchmarks/bench_recurrence.py                       # everything (~10 min on 2 idle cores)
    python benchmarks/bench_recurrence.py --only sweep sampling # a subset
    python benchmarks/bench_recurrence.py --quick               # fewer repeats

Workloads (float32; both frameworks start from the same weights and batch, and the first
two losses are checked to agree before anything is timed):

* ``sweep``: Embedding 65x64 -> LSTM (H, layers) -> Linear 65, cross-entropy at every
  position, Adam: H 64 (1 layer) / 128 / 256 / 512 (2 layers), B 4 / 32 / 64, T 64-256.
  Target: ratio <= 1.0 at every point;
* ``issue3``: the issue-3 steps, one LSTM / GRU / tanh-RNN layer 128 -> 256, T 64, B 32,
  Linear -> 64 + cross-entropy, Adam (benchmarks/bench_train_step.py). Targets: LSTM
  <= 1.0, GRU and RNN <= 0.7;
* ``sampling``: generating one token at a time, batch 1, Embedding -> 2-layer LSTM H ->
  Linear 65, greedy (argmax) so the figure is the model's: microgradnn's
  ``nn.sampling.RecurrentSampler.step`` against torch's layer called per token under
  ``torch.no_grad()`` with the state carried. Target: tokens/s >= torch's at H 128 and 512;
* ``drivers`` (not in the default set): the compiled time loop against the per-step
  Python loop it replaced, both microgradnn, in the same blocks as torch;
* ``routes`` (not in the default set): the forward per-step product with and without
  OpenBLAS's small-matrix route (``kernels_cpu._sequence_drivers(small_gemm=...)``; the
  route only helps where OpenBLAS runs Skylake-X's kernels), both microgradnn, with torch
  in the same blocks, at the sweep's small batches and its B 32 points;
* ``packed`` (not in the default set): the packed, batch-split time loop
  (backend/packed.py) against the compiled per-step driver the same batch runs without
  it, both microgradnn, with torch in the same blocks: the char-LM LSTM steps and the
  issue-3 GRU and RNN steps;
* ``proj`` (not in the default set): the LSTM with a projection, Embedding 65x64 -> LSTM
  (64 -> 256, proj_size 128, 2 layers) -> Linear 65, T 64, B 32, CE, Adam: the fused
  whole-sequence op against microgradnn's generic (unrolled autograd) path, with torch in
  the same blocks (torch has no oneDNN kernel for projections and runs its default one);
* ``contention``: the char-LM example's step (examples/char_lstm_stdlib.yaml: Embedding
  64 -> LSTM 256 -> Linear, B 32, T 64, Adam) for N steps, on the machine as it is and
  with one competing CPU-bound process (a Python busy loop), microgradnn under the
  thread policy's default (backend/threads.py) and with 2 BLAS threads, torch with 2
  and 1 threads. Target: with the competitor, >= 0.5x of the machine-as-it-is tokens/s.

microgradnn's BLAS threads are set with ``backend.threads.apply_threads`` (2 for the
``sweep``/``issue3``/``sampling`` comparisons, as torch's ``set_num_threads(2)``; ``--threads 1``
puts both sides on one). Run
with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``: on the project's machines those
select older OpenBLAS kernels.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_train_step import blocks, build_charlm_step, build_sequence_step, check_losses  # noqa: E402

SWEEP = [  # (H, layers, T, B)
    (64, 1, 64, 32),
    (128, 2, 64, 32),
    (256, 2, 64, 32),
    (512, 2, 128, 64),
    (128, 2, 64, 4),
    (128, 2, 256, 8),
    (256, 2, 128, 64),
]
ISSUE3_TARGETS = {"lstm": 1.0, "gru": 0.7, "rnn": 0.7}


def _ratio_line(label: str, t: dict, target: float | None) -> float:
    m, tt = t["mg"], t["torch"]
    ratio = m["median"] / tt["median"]
    verdict = "" if target is None else ("met" if ratio <= target else "MISSED") + f" (<= {target}x)"
    print(f"{label:34} {m['median'] * 1e3:9.2f} ms {tt['median'] * 1e3:9.2f} ms {ratio:6.2f}x "
          f"(best {m['best'] / tt['best']:.2f}x)  {verdict}", flush=True)
    return ratio


def sweep(repeat: int) -> None:
    print("\nLSTM char-LM training step (Emb 65x64 -> LSTM -> Lin 65, CE, Adam)   microgradnn  torch  ratio")
    for H, L, T, B in SWEEP:
        steps = build_charlm_step(T=T, B=B, vocab=65, embed=64, hidden=H, layers=L)
        check_losses(steps, f"H{H}")
        n = max(2, repeat // 3) if H * T * B >= 512 * 128 * 64 // 2 else repeat
        _ratio_line(f"H {H} x{L}, T {T}, B {B}", blocks(steps, n), 1.0)


def drivers(repeat: int) -> None:
    """The compiled time loop against the per-step Python loop it replaced (same process,
    same kernels; the per-step loop is what runs when ``SEQUENCE_DRIVERS`` is empty)."""
    from microgradnn.backend import kernels_cpu

    table = dict(kernels_cpu.SEQUENCE_DRIVERS)
    print("\ncompiled time loop vs per-step Python loop (char-LM step)   drivers  per-step  torch   ratios")
    for H, L, T, B in [(64, 1, 64, 32), (128, 2, 64, 32), (128, 2, 64, 4), (256, 2, 64, 32)]:
        steps = build_charlm_step(T=T, B=B, vocab=65, embed=64, hidden=H, layers=L)
        check_losses(steps, f"H{H}")

        def per_step(step=steps["mg"]):
            kernels_cpu.SEQUENCE_DRIVERS.clear()
            try:
                return step()
            finally:
                kernels_cpu.SEQUENCE_DRIVERS.update(table)

        t = blocks({"mg": steps["mg"], "loop": per_step, "torch": steps["torch"]}, repeat)
        d, lp, tt = (t[k]["median"] * 1e3 for k in ("mg", "loop", "torch"))
        print(f"H {H} x{L}, T {T}, B {B:<17} {d:9.2f} {lp:9.2f} {tt:9.2f} ms   drivers/torch {d / tt:.2f}x, "
              f"per-step/torch {lp / tt:.2f}x, drivers/per-step {d / lp:.2f}x", flush=True)


def routes(repeat: int) -> None:
    """The forward product's small-matrix route on and off (same process, same kernels
    otherwise), at the points it changes most."""
    from microgradnn.backend import kernels_cpu

    table = dict(kernels_cpu.SEQUENCE_DRIVERS)
    print("\nforward product route (char-LM step)         small-matrix   other    torch   ratios")
    for H, L, T, B in [(128, 2, 64, 4), (128, 2, 256, 8), (64, 1, 64, 32), (128, 2, 64, 32), (256, 2, 64, 32)]:
        steps = build_charlm_step(T=T, B=B, vocab=65, embed=64, hidden=H, layers=L)
        check_losses(steps, f"H{H}")

        def with_route(small, step=steps["mg"]):
            kernels_cpu.SEQUENCE_DRIVERS.update(kernels_cpu._sequence_drivers(small_gemm=small))
            try:
                return step()
            finally:
                kernels_cpu.SEQUENCE_DRIVERS.update(table)

        t = blocks({"small": lambda: with_route(True), "other": lambda: with_route(False), "torch": steps["torch"]},
                   repeat)
        a, b, tt = (t[k]["median"] * 1e3 for k in ("small", "other", "torch"))
        print(f"H {H} x{L}, T {T}, B {B:<17} {a:9.2f} {b:9.2f} {tt:9.2f} ms   small/torch {a / tt:.2f}x, "
              f"other/torch {b / tt:.2f}x, small/other {a / b:.2f}x", flush=True)


def packed_loop(repeat: int) -> None:
    """The packed, batch-split loop (backend/packed.py) on and off: off, the same batch runs
    the compiled per-step driver (same process, same kernels otherwise)."""
    from microgradnn.backend import packed

    print("\npacked loop (char-LM LSTM / issue-3 step)    packed  per-step    torch   ratios")
    cases = [(f"H {H} x{L}, T {T}, B {B}", dict(T=T, B=B, hidden=H, layers=L))
             for H, L, T, B in [(64, 1, 64, 32), (128, 2, 64, 32), (256, 2, 64, 32), (128, 2, 256, 8), (256, 2, 128, 64)]]
    cases += [(f"issue-3 {cell.upper()}", cell) for cell in ("gru", "rnn")]
    for label, case in cases:
        if isinstance(case, str):
            steps = build_sequence_step(case)
        else:
            steps = build_charlm_step(vocab=65, embed=64, **case)
        check_losses(steps, label)

        def per_step(step=steps["mg"]):
            packed.AVAILABLE = False
            try:
                return step()
            finally:
                packed.AVAILABLE = True

        t = blocks({"packed": steps["mg"], "per-step": per_step, "torch": steps["torch"]}, repeat)
        a, b, tt = (t[k]["median"] * 1e3 for k in ("packed", "per-step", "torch"))
        print(f"{label:<28} {a:9.2f} {b:9.2f} {tt:9.2f} ms   packed/torch {a / tt:.2f}x, "
              f"per-step/torch {b / tt:.2f}x, packed/per-step {a / b:.2f}x", flush=True)


def proj(repeat: int) -> None:
    import warnings

    with warnings.catch_warnings():  # torch's note that oneDNN has no projected LSTM
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        _proj(repeat)


def _proj(repeat: int) -> None:
    print("\nprojected LSTM step (Emb 65x64 -> LSTM 64->256 proj 128 x2 -> Lin 65, T 64, B 32, CE, Adam)")
    print(f"{'':34} {'fused':>9} {'generic':>12} {'torch':>12}   ratios")
    shape = dict(T=64, B=32, vocab=65, embed=64, hidden=256, layers=2, proj_size=128)
    steps = build_charlm_step(**shape)
    check_losses(steps, "proj fused")
    generic = build_charlm_step(**shape, fused=False)
    check_losses(generic, "proj generic")
    t = blocks({"mg": steps["mg"], "generic": generic["mg"], "torch": steps["torch"]}, repeat)
    f, g, tt = (t[k]["median"] * 1e3 for k in ("mg", "generic", "torch"))
    print(f"{'H 256 proj 128 x2, T 64, B 32':34} {f:9.2f} ms {g:9.2f} ms {tt:9.2f} ms   fused/torch {f / tt:.2f}x, "
          f"generic/torch {g / tt:.2f}x, fused/generic {f / g:.2f}x", flush=True)


def issue3(repeat: int) -> None:
    print("\nissue-3 step (one layer 128 -> 256, T 64, B 32, Lin 64, CE, Adam)   microgradnn  torch  ratio")
    for cell in ("lstm", "gru", "rnn"):
        steps = build_sequence_step(cell)
        check_losses(steps, cell)
        _ratio_line({"lstm": "LSTM", "gru": "GRU", "rnn": "RNN(tanh)"}[cell], blocks(steps, repeat),
                    ISSUE3_TARGETS[cell])


def _sampling_pair(H: int, vocab: int = 65, embed: int = 64, layers: int = 2, tokens: int = 200) -> dict:
    import torch

    import microgradnn as mg
    from microgradnn.nn.sampling import RecurrentSampler

    torch.manual_seed(0)
    t_emb, t_rnn, t_head = torch.nn.Embedding(vocab, embed), torch.nn.LSTM(embed, H, layers), torch.nn.Linear(H, vocab)
    m_emb, m_rnn, m_head = mg.nn.Embedding(vocab, embed), mg.nn.LSTM(embed, H, layers), mg.nn.Linear(H, vocab)
    for m, t in ((m_emb, t_emb), (m_rnn, t_rnn), (m_head, t_head)):
        m.load_state_dict(t.state_dict())
    sampler = RecurrentSampler(m_rnn, m_emb, m_head)

    def torch_run():
        token, state, out = 1, None, []
        with torch.no_grad():
            for _ in range(tokens):
                y, state = t_rnn(t_emb(torch.tensor([[token]])), state)
                token = int(t_head(y[0, 0]).argmax())
                out.append(token)
        return out

    def mg_run():
        sampler.reset()
        token, out = 1, []
        for _ in range(tokens):
            token = int(np.argmax(sampler.step(token)))
            out.append(token)
        return out

    a, b = mg_run(), torch_run()
    if a != b:  # same weights, greedy: the same text (float32 rounding could split a near tie)
        agree = sum(x == y for x, y in zip(a, b))
        print(f"  note: H {H}: greedy continuations agree on {agree}/{tokens} tokens", flush=True)
    return {"mg": mg_run, "torch": torch_run}


def sampling(repeat: int, tokens: int = 200) -> None:
    print(f"\nsampling, batch 1, {tokens} tokens per run, 2-layer LSTM + head, greedy   microgradnn  torch (tokens/s)")
    for H in (128, 512):
        t = blocks(_sampling_pair(H, tokens=tokens), max(2, repeat // 2))
        m, tt = tokens / t["mg"]["median"], tokens / t["torch"]["median"]
        verdict = "met" if m >= tt else "MISSED"
        print(f"H {H:<31} {m:9.0f}    {tt:9.0f}    {m / tt:5.2f}x of torch's rate  {verdict} (>= 1x)", flush=True)


#: The busy process: one core's worth of work that stops by itself once this benchmark is gone
#: (killed between the start and the ``kill`` below, it used to spin on, orphaned).
#: The parent's pid comes as an argument: read with getppid() at the child's start, it would
#: already be 1 where the parent died first.
COMPETITOR = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent:\n    pass\n"


def _competitor() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", COMPETITOR, str(os.getpid())])


def contention(steps: int) -> None:
    import torch

    from microgradnn.backend import threads

    vocab, T, B = 100, 64, 32
    run = build_charlm_step(T=T, B=B, vocab=vocab, embed=64, hidden=256, layers=1)
    check_losses(run, "char-LM example")
    default = threads.default_threads()
    configs = [(f"microgradnn, policy default ({default})", "mg", default), ("microgradnn, 2 BLAS threads", "mg", 2),
               ("torch, 2 threads", "torch", 2), ("torch, 1 thread", "torch", 1)]
    print(f"\nchar-LM example step (LSTM 256, B {B}, T {T}), {steps} steps per figure: tokens/s")
    print(f"{'':34} {'machine as is':>14} {'+1 busy process':>16}  ratio")
    for label, side, n in configs:
        rates = []
        for busy in (False, True):
            proc = _competitor() if busy else None
            try:
                time.sleep(0.5)
                policy = threads.apply_threads(n) if side == "mg" else None
                torch.set_num_threads(n)
                try:
                    run[side]()
                    start = time.perf_counter()
                    for _ in range(steps):
                        run[side]()
                    rates.append(steps * T * B / (time.perf_counter() - start))
                finally:
                    if policy is not None:
                        policy.restore()
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
        verdict = ("met" if rates[1] >= 0.5 * rates[0] else "MISSED") + " (>= 0.5x)"
        print(f"{label:34} {rates[0]:14.0f} {rates[1]:16.0f}  {rates[1] / rates[0]:.2f}x  {verdict}", flush=True)
    torch.set_num_threads(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", nargs="+", default=["issue3", "sweep", "sampling", "contention"],
                        choices=["issue3", "sweep", "sampling", "contention", "drivers", "routes", "proj", "packed"])
    parser.add_argument("--steps", type=int, default=200, help="steps per contention figure (default 200)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of both sides for the comparisons (default 2; 1 shows the single-core gap)")
    args = parser.parse_args(argv)
    import torch

    import microgradnn as mg
    from microgradnn.backend import cblas, threads

    torch.set_num_threads(args.threads)
    policy = threads.apply_threads(args.threads)  # the comparisons: both sides on the same threads
    repeat = 3 if args.quick else 6
    try:
        load = " ".join(f"{x:.1f}" for x in __import__("os").getloadavg())
    except OSError:
        load = "?"
    print(f"microgradnn {mg.__version__}, torch {torch.__version__}, numpy {np.__version__}, {args.threads} thread(s); "
          f"whole-sequence drivers: {'on' if cblas.AVAILABLE else 'OFF'}; OpenBLAS kernels: {cblas.CORE or '?'}"
          f"{' (small-matrix route)' if cblas.SMALL_GEMM else ''}; packed loop (LSTM/GRU/RNN, B >= 8): "
          f"{'on' if cblas.PACKED else 'OFF'}; load average at start: {load}")
    print("medians over 4 alternating blocks per side; ratio = microgradnn / torch (time)")
    try:
        for name in args.only:
            if name == "contention":
                policy.restore()
                contention(args.steps)
                torch.set_num_threads(args.threads)
                policy = threads.apply_threads(args.threads)
            else:
                {"issue3": issue3, "sweep": sweep, "sampling": sampling, "drivers": drivers, "routes": routes,
                 "proj": proj, "packed": packed_loop}[name](repeat)
    finally:
        policy.restore()


if __name__ == "__main__":
    main()
