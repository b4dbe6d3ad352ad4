"""Core-engine benchmarks: microgradnn against PyTorch CPU (2 threads) in one process.

    python benchmarks/bench_core.py            # everything
    python benchmarks/bench_core.py --quick    # fewer repeats

(a) an MLP 784-256-256-10 training step, batch 128, SGD;
(b) per-op dispatch overhead: a chain of 100 tiny ops (x = x*b + b, 50 times), forward + backward;
(c) the scalar engine against micrograd 0.1.0 (see bench_scalar.py);
(d) cold start, each in a fresh process: ``import microgradnn``; ``import numba`` (deferred
    to the first fused op); the first fused ops with an empty numba cache (NUMBA_CACHE_DIR
    pointing at a new temporary folder: numba compiles) against a warm one (the same folder
    in a second process: numba loads the machine code from disk).

Figures are medians: these machines are shared and noisy, so compare ratios taken in the
same run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import microgradnn as mg  # noqa: E402

mg.backend.tune_allocator()  # what `mgnn` does: keep freed memory for reuse (see README)
import torch  # noqa: E402

torch.set_num_threads(2)


def median_time(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def paired_times(mg_fn: Callable[[], object], torch_fn: Callable[[], object], number: int, repeat: int,
                 rounds: int = 2) -> tuple[float, float]:
    """Median seconds per call of each side, over ``rounds`` alternating blocks.

    numpy's OpenBLAS and torch's OpenMP threads busy-wait for a while after parallel work;
    on 2 cores one library's spinning pool slows the other. A short pause before each
    block lets them go to sleep, and alternating blocks gives both sides the same share
    of whatever else the (shared) machine is doing."""
    samples: dict[str, list[float]] = {"mg": [], "torch": []}
    for _ in range(rounds):
        for name, fn in (("mg", mg_fn), ("torch", torch_fn)):
            time.sleep(0.3)
            fn()  # warm-up
            for _ in range(max(1, repeat // rounds + 1)):
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                samples[name].append((time.perf_counter() - start) / number)
    return statistics.median(samples["mg"]), statistics.median(samples["torch"])


# ----------------------------------------------------------------------------- (a) MLP


def mlp_step(repeat: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    y = rng.integers(0, 10, 128)

    mg_model = mg.nn.Sequential(
        mg.nn.Linear(784, 256), mg.nn.ReLU(), mg.nn.Linear(256, 256), mg.nn.ReLU(), mg.nn.Linear(256, 10)
    )
    torch_model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    mg_model.load_state_dict(torch_model.state_dict())  # same weights, so the losses must agree
    mg_opt = mg.optim.SGD(mg_model.parameters(), lr=0.01)
    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=0.01)
    mx, my = mg.tensor(x), mg.tensor(y)
    tx, ty = torch.tensor(x), torch.tensor(y)

    def step_mg():
        mg_opt.zero_grad()
        loss = mg.cross_entropy(mg_model(mx), my)
        loss.backward()
        mg_opt.step()
        return loss

    def step_torch():
        torch_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch_model(tx), ty)
        loss.backward()
        torch_opt.step()
        return loss

    first_mg, first_torch = step_mg().item(), step_torch().item()
    assert abs(first_mg - first_torch) < 1e-4, (first_mg, first_torch)
    t_mg, t_torch = paired_times(step_mg, step_torch, 20, repeat)
    return {"name": "(a) MLP 784-256-256-10 step, batch 128, SGD", "microgradnn_ms": t_mg * 1e3, "torch_ms": t_torch * 1e3}


# ----------------------------------------------------------------------------- (b) dispatch


def op_chain(repeat: int) -> dict:
    rng = np.random.default_rng(1)
    x0, b0 = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    mx, mb = mg.tensor(x0, requires_grad=True), mg.tensor(b0, requires_grad=True)
    tx, tb = torch.tensor(x0, requires_grad=True), torch.tensor(b0, requires_grad=True)

    def chain(x, b):
        for _ in range(50):
            x = x * b + b
        return x.sum()

    def run_mg():
        mx.grad = mb.grad = None
        chain(mx, mb).backward()

    def run_torch():
        tx.grad = tb.grad = None
        chain(tx, tb).backward()

    t_mg, t_torch = paired_times(run_mg, run_torch, 100, repeat)
    return {
        "name": "(b) chain of 100 tiny ops, fwd+bwd",
        "microgradnn_ms": t_mg * 1e3,
        "torch_ms": t_torch * 1e3,
        "per_op_us": {"microgradnn": t_mg / 100 * 1e6, "torch": t_torch / 100 * 1e6},
    }


# ----------------------------------------------------------------------------- (d) cold start

# The first fused op of a process imports numba (lazily: ``import microgradnn`` does not)
# and then compiles its kernels, or loads them from numba's on-disk cache. The child
# prints both parts: numba's import, then the first fused forward + backward.
_FIRST_KERNEL_CALL = """
import time, numpy as np
import microgradnn as mg
logits = mg.tensor(np.random.default_rng(0).standard_normal((8, 5)), requires_grad=True)
t = time.perf_counter()
import numba
t_numba = time.perf_counter() - t
t = time.perf_counter()
loss = mg.cross_entropy(logits.sigmoid().tanh().relu() * 1.0, mg.tensor([0, 1, 2, 3, 4, 0, 1, 2]))
loss.backward()
print(t_numba, time.perf_counter() - t)
"""


def _python(code: str, env: dict) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    return [float(v) for v in out.stdout.strip().splitlines()[-1].split()]


def cold_start(repeat: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    imports = [_python("import time; t = time.perf_counter(); import microgradnn; print(time.perf_counter() - t)", env)[0]
               for _ in range(repeat)]
    numba_imports, compile_times, cached_times = [], [], []
    for _ in range(max(2, repeat // 2)):
        with tempfile.TemporaryDirectory() as cache:
            env_cache = dict(env, NUMBA_CACHE_DIR=cache)
            t_numba, t_compile = _python(_FIRST_KERNEL_CALL, env_cache)  # empty cache: numba compiles
            numba_imports.append(t_numba)
            compile_times.append(t_compile)
            t_numba, t_cached = _python(_FIRST_KERNEL_CALL, env_cache)  # second process: loads from disk
            numba_imports.append(t_numba)
            cached_times.append(t_cached)
    return {
        "import_s": statistics.median(imports),
        "numba_import_s": statistics.median(numba_imports),
        "first_fused_call_compile_s": statistics.median(compile_times),
        "first_fused_call_cached_s": statistics.median(cached_times),
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 9
    results = {}
    print(f"microgradnn {mg.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}")
    targets = {"mlp_step": 1.5, "op_chain": 3.0}  # the targets: at most this times torch's time
    for fn in (mlp_step, op_chain):
        r = fn(repeat)
        ratio = r["microgradnn_ms"] / r["torch_ms"]
        r["ratio"], r["target"] = ratio, targets[fn.__name__]
        results[fn.__name__] = r
        verdict = "met" if ratio <= r["target"] else "MISSED"
        print(f"{r['name']:<48} microgradnn {r['microgradnn_ms']:8.3f} ms   torch {r['torch_ms']:8.3f} ms   "
              f"ratio {ratio:5.2f}x  (target <= {r['target']}x: {verdict})")
        if "per_op_us" in r:
            print(f"{'':<48} per op: microgradnn {r['per_op_us']['microgradnn']:.2f} us, torch {r['per_op_us']['torch']:.2f} us")
    import bench_scalar

    scalar = bench_scalar.main()
    results["scalar"] = scalar
    cs = cold_start(max(3, repeat // 2))
    results["cold_start"] = cs
    print(f"{'(c) scalar engine vs micrograd 0.1.0':<48} {scalar['speedup']:.1f}x faster  "
          f"(target >= 10x: {'met' if scalar['speedup'] >= 10 else 'MISSED'})")
    print(f"{'(d) import microgradnn':<48} {cs['import_s'] * 1e3:8.1f} ms  "
          f"(target < 1 s: {'met' if cs['import_s'] < 1 else 'MISSED'})")
    print(f"{'(d) import numba (on the first fused op)':<48} {cs['numba_import_s'] * 1e3:8.1f} ms")
    print(f"{'(d) first fused ops, empty numba cache':<48} {cs['first_fused_call_compile_s'] * 1e3:8.1f} ms (compiles)")
    print(f"{'(d) first fused ops, warm numba cache':<48} {cs['first_fused_call_cached_s'] * 1e3:8.1f} ms (loaded from disk)")
    return results


if __name__ == "__main__":
    main()
