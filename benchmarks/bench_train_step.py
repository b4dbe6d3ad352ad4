"""One recurrent training step (forward + backward + Adam), microgradnn against PyTorch CPU.

    python benchmarks/bench_train_step.py                  # everything (about 2 minutes)
    python benchmarks/bench_train_step.py --quick          # fewer repeats
    python benchmarks/bench_train_step.py --only lstm gru  # a subset: lstm gru rnn charlm memory

Workloads (float32, both frameworks get the same weights and the same batch, and the
script checks that their first losses agree before timing anything):

* ``lstm`` / ``gru`` / ``rnn``: a one-layer LSTM, GRU or tanh RNN, input 128, hidden 256,
  T 64, B 32 (time-major), a Linear 256 -> 64 on every step's output and cross-entropy
  over all T*B = 2048 positions, then ``loss.backward()`` and one ``Adam`` step;
* ``charlm``: a character language model, Embedding 65x64 -> 2-layer LSTM hidden 512 ->
  Linear 65, T 128, B 64 (batch-first token ids, as a data loader yields them),
  cross-entropy at every position, Adam;
* ``memory``: the peak memory of the char-LM step, each framework in its own fresh
  process (see :func:`memory_child` for the method).

Timing: torch runs with ``torch.set_num_threads(2)``; numpy's OpenBLAS uses both cores
too. Each side runs in blocks of repeats and the blocks of the two sides alternate (see
:func:`blocks`); figures are medians and the ratio is microgradnn / torch. The machines
are shared and noisy: compare ratios from one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = {"lstm": 1.3, "gru": 1.3, "memory": 1.5}  # the targets (ratio mg / torch)

# --------------------------------------------------------------------------- workloads


def build_sequence_step(cell: str, T: int = 64, B: int = 32, I: int = 128, H: int = 256, C: int = 64,
                        frameworks: tuple = ("mg", "torch")) -> dict:
    """Both frameworks' step functions for the one-layer ``cell`` + Linear + CE workload."""
    import microgradnn as mg
    import torch

    mg.backend.tune_allocator()  # what `mgnn` does: keep freed memory for reuse (see README)
    torch.manual_seed(0)
    t_rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](I, H)
    t_head = torch.nn.Linear(H, C)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = rng.integers(0, C, (T, B)).astype(np.int64)
    steps = {}

    if "torch" in frameworks:
        t_params = list(t_rnn.parameters()) + list(t_head.parameters())
        t_opt = torch.optim.Adam(t_params, lr=1e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y.reshape(-1))

        def torch_step() -> float:
            t_opt.zero_grad(set_to_none=True)
            out = t_rnn(tx)[0]
            loss = torch.nn.functional.cross_entropy(t_head(out).reshape(T * B, C), ty)
            loss.backward()
            t_opt.step()
            return loss

        steps["torch"] = torch_step

    if "mg" in frameworks:
        m_rnn = {"lstm": mg.nn.LSTM, "gru": mg.nn.GRU, "rnn": mg.nn.RNN}[cell](I, H)
        m_head = mg.nn.Linear(H, C)
        m_rnn.load_state_dict(t_rnn.state_dict())
        m_head.load_state_dict(t_head.state_dict())
        m_opt = mg.optim.Adam(list(m_rnn.parameters()) + list(m_head.parameters()), lr=1e-3)
        mx, my = mg.tensor(x), mg.tensor(y.reshape(-1))
        ce = mg.nn.functional.cross_entropy

        def mg_step():
            m_opt.zero_grad()
            out = m_rnn(mx)[0]
            loss = ce(m_head(out).reshape(T * B, C), my)
            loss.backward()
            m_opt.step()
            return loss

        steps["mg"] = mg_step
    return steps


class _CharLM:
    """Embedding -> LSTM stack -> Linear, built the same way in either framework."""

    def __init__(self, nn, vocab: int, embed: int, hidden: int, layers: int, proj_size: int = 0):
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, proj_size=proj_size)
        self.head = nn.Linear(proj_size or hidden, vocab)

    def modules(self) -> list:
        return [self.embedding, self.rnn, self.head]

    def parameters(self) -> list:
        return [p for m in self.modules() for p in m.parameters()]

    def __call__(self, tokens):
        return self.head(self.rnn(self.embedding(tokens))[0])


def build_charlm_step(T: int = 128, B: int = 64, vocab: int = 65, embed: int = 64, hidden: int = 512,
                      layers: int = 2, frameworks: tuple = ("mg", "torch"), proj_size: int = 0,
                      fused: bool = True) -> dict:
    """Both frameworks' char-LM step functions (same initial weights, same batch).

    ``proj_size``: the LSTM's projection (both sides); ``fused=False``: microgradnn's
    generic (unrolled autograd) path instead of the fused whole-sequence op."""
    steps = {}
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, vocab, (B, T + 1)).astype(np.int64)
    x, y = tokens[:, :-1].copy(), tokens[:, 1:].reshape(-1).copy()
    import torch

    torch.manual_seed(0)
    t_model = _CharLM(torch.nn, vocab, embed, hidden, layers, proj_size)
    if "torch" in frameworks:
        t_opt = torch.optim.Adam(t_model.parameters(), lr=2e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step():
            t_opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(t_model(tx).reshape(B * T, vocab), ty)
            loss.backward()
            t_opt.step()
            return loss

        steps["torch"] = torch_step
    if "mg" in frameworks:
        import microgradnn as mg

        mg.backend.tune_allocator()
        m_model = _CharLM(mg.nn, vocab, embed, hidden, layers, proj_size)
        m_model.rnn.fused = fused
        for m_mod, t_mod in zip(m_model.modules(), t_model.modules()):
            m_mod.load_state_dict(t_mod.state_dict())
        m_opt = mg.optim.Adam(m_model.parameters(), lr=2e-3)
        mx, my = mg.tensor(x), mg.tensor(y)
        ce = mg.nn.functional.cross_entropy

        def mg_step():
            m_opt.zero_grad()
            loss = ce(m_model(mx).reshape(B * T, vocab), my)
            loss.backward()
            m_opt.step()
            return loss

        steps["mg"] = mg_step
    return steps


# --------------------------------------------------------------------------- timing


def blocks(fns: dict, repeat: int, rounds: int = 4) -> dict:
    """Median (and best) seconds per call of each function over ``rounds`` blocks of ``repeat``.

    Each side runs in its own block, never call by call in alternation: numpy's OpenBLAS
    and torch's OpenMP threads both busy-wait for a while after a parallel region, and on
    2 cores a spinning pool of one library slows the other down. A short pause before each
    block lets the other library's threads go to sleep; the blocks of the two sides
    alternate so both see the same machine load over time."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(0.3)
            fn()  # warm-up: numba cache load, allocator, thread pools
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return {name: {"median": statistics.median(s), "best": min(s)} for name, s in samples.items()}


def check_losses(steps: dict, label: str) -> None:
    """Run one step on each side; the losses must agree (same weights, same batch)."""
    lm, lt = float(steps["mg"]().item()), float(steps["torch"]().item())
    if abs(lm - lt) > 1e-4 * max(1.0, abs(lt)):
        raise SystemExit(f"{label}: microgradnn's first loss {lm} differs from torch's {lt}")
    # a second step after Adam's first update: still the same trajectory
    lm, lt = float(steps["mg"]().item()), float(steps["torch"]().item())
    if abs(lm - lt) > 1e-3 * max(1.0, abs(lt)):
        raise SystemExit(f"{label}: after one Adam step microgradnn's loss {lm} differs from torch's {lt}")


# --------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets the peak-RSS counter VmHWM."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    """Hand the heap's free pages back to the kernel (glibc), so the baseline holds no
    freed-but-cached memory that the measured steps could reuse without it showing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_child(framework: str, steps: int = 3) -> dict:
    """Peak memory of the char-LM step in this (fresh) process, for one framework.

    Method: build the model, run two full steps (numba compile or cache load, torch's
    lazy initialisation, Adam's state), drop every cache the framework keeps for reuse
    (microgradnn's recurrent workspace) and ``malloc_trim`` the heap, then take the
    resident set size as the baseline: the process with its model, optimizer state and
    batch resident. Reset the kernel's peak-RSS counter, run ``steps`` more steps and
    report ``peak RSS - baseline``: the extra memory the step needs (activations kept
    for backward, gradients, temporaries, and any cache the framework refills). RSS sees
    every allocator alike (numpy's, torch's, OpenBLAS's and oneDNN's buffers), so one
    method serves both frameworks."""
    build = build_charlm_step(frameworks=(framework,))
    step = build[framework]
    for _ in range(2):
        step()
    if framework == "mg":
        from microgradnn.ops import recurrent

        recurrent._WORKSPACE.clear()
    import gc

    gc.collect()
    _malloc_trim()
    baseline = _rss_bytes()
    if not _reset_peak_rss():
        return {"error": "cannot reset the peak-RSS counter (/proc/self/clear_refs)"}
    for _ in range(steps):
        step()
    peak = _peak_rss_bytes()
    return {"framework": framework, "baseline_mb": baseline / 2**20, "peak_mb": peak / 2**20,
            "step_mb": (peak - baseline) / 2**20}


def memory(repeat: int) -> dict:
    """Run :func:`memory_child` in fresh processes, alternating frameworks; medians."""
    results: dict = {"mg": [], "torch": []}
    for _ in range(repeat):
        for fw in ("mg", "torch"):
            out = subprocess.run([sys.executable, __file__, "--memory-child", fw], capture_output=True, text=True,
                                 cwd=ROOT)
            if out.returncode:
                raise SystemExit(f"the {fw} memory run failed:\n{out.stderr[-3000:]}")
            record = json.loads(out.stdout.strip().splitlines()[-1])
            if "error" in record:
                raise SystemExit(record["error"])
            results[fw].append(record)
    summary = {}
    for fw, records in results.items():
        summary[fw] = {key: statistics.median(r[key] for r in records) for key in ("baseline_mb", "peak_mb", "step_mb")}
    return summary


# --------------------------------------------------------------------------- main


def _line(label: str, t: dict, target: float | None) -> dict:
    m, tt = t["mg"], t["torch"]
    ratio = m["median"] / tt["median"]
    verdict = "" if target is None else (f"target <= {target}x: " + ("met" if ratio <= target else "MISSED"))
    print(f"{label:40} {m['median'] * 1e3:9.1f} ms {tt['median'] * 1e3:9.1f} ms {ratio:6.2f}x   "
          f"(best {m['best'] * 1e3:.1f} / {tt['best'] * 1e3:.1f} ms)  {verdict}", flush=True)
    return {"microgradnn_ms": m["median"] * 1e3, "torch_ms": tt["median"] * 1e3, "ratio": ratio,
            "best_ratio": m["best"] / tt["best"], "target": target}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per block (default 9; 3 with --quick)")
    parser.add_argument("--only", nargs="+", default=["lstm", "gru", "rnn", "charlm", "memory"],
                        choices=["lstm", "gru", "rnn", "charlm", "memory"])
    parser.add_argument("--memory-child", choices=["mg", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        import torch

        torch.set_num_threads(2)
        print(json.dumps(memory_child(args.memory_child)))
        return {}

    import microgradnn as mg
    import torch

    torch.set_num_threads(2)
    repeat = args.repeat or (3 if args.quick else 9)
    print(f"microgradnn {mg.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}; medians over 4 alternating blocks of {repeat} steps per side")
    print(f"{'training step (fwd + bwd + Adam)':40} {'microgradnn':>12} {'torch':>12} {'ratio':>7}")
    results = {}
    for cell in ("lstm", "gru", "rnn"):
        if cell not in args.only:
            continue
        steps = build_sequence_step(cell)
        check_losses(steps, cell)
        label = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN(tanh)"}[cell] + " 128>256 T64 B32 Lin64 CE"
        results[cell] = _line(label, blocks(steps, repeat), TARGETS.get(cell))
    if "charlm" in args.only:
        steps = build_charlm_step()
        check_losses(steps, "charlm")
        r = _line("char-LM Emb64 LSTM512x2 Lin65 T128 B64", blocks(steps, max(3, repeat // 3)), None)
        r["tokens_per_s"] = {"microgradnn": 128 * 64 / (r["microgradnn_ms"] / 1e3),
                             "torch": 128 * 64 / (r["torch_ms"] / 1e3)}
        print(f"{'':40} tokens/s: microgradnn {r['tokens_per_s']['microgradnn']:.0f}, "
              f"torch {r['tokens_per_s']['torch']:.0f}")
        results["charlm"] = r
    if "memory" in args.only:
        mem = memory(3 if args.quick else 5)
        ratio = mem["mg"]["step_mb"] / mem["torch"]["step_mb"]
        target = TARGETS["memory"]
        print(f"{'char-LM step, peak memory over base':40} {mem['mg']['step_mb']:9.1f} MB {mem['torch']['step_mb']:9.1f} MB "
              f"{ratio:6.2f}x   target <= {target}x: {'met' if ratio <= target else 'MISSED'}")
        print(f"{'':40} (baseline RSS: microgradnn {mem['mg']['baseline_mb']:.0f} MB, torch "
              f"{mem['torch']['baseline_mb']:.0f} MB; each in its own process)")
        results["memory"] = dict(mem, ratio=ratio, target=target)
    return results


if __name__ == "__main__":
    main()
