"""The scalar engine against micrograd 0.1.0: forward + backward of an MLP, side by side.

    python benchmarks/bench_scalar.py            # 5 repeats each
    python benchmarks/bench_scalar.py --repeat 9

Workload: micrograd's MLP(2, [16, 16, 1]) (relu hidden layers, linear output) over 100
samples, loss = sum of squared errors, then ``loss.backward()``. Both engines get the
same weights (copied from a micrograd model) and the same inputs, and the script asserts
that losses and weight gradients agree before timing, so the comparison is honest.

micrograd is timed as a user meets it, with the garbage collector on; a third figure,
micrograd with ``gc.disable()``, shows how much of its time is the collector. Figures are
medians; compare the ratio, not absolute times across machines.

Importing this module runs nothing; ``main()`` returns a dict of results.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from microgradnn.scalar import Value  # noqa: E402

N_SAMPLES = 100
SIZES = (2, [16, 16, 1])


# ------------------------------------------------------ the same MLP as micrograd's nn.py
class Neuron:
    def __init__(self, nin: int, nonlin: bool = True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0.0)
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Any]) -> Value:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        return self.w + [self.b]


class Layer:
    def __init__(self, nin: int, nout: int, **kwargs: Any):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Any]) -> Any:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    def __init__(self, nin: int, nouts: list[int]):
        sz = [nin] + nouts
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))]

    def __call__(self, x: Sequence[Any]) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]


# ------------------------------------------------------------------------------ workload
def make_data(seed: int = 0) -> tuple[list[list[float]], list[float]]:
    rng = random.Random(seed)
    xs = [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(N_SAMPLES)]
    ys = [1.0 if x0 * x1 > 0 else -1.0 for x0, x1 in xs]
    return xs, ys


def step(model: Any, xs: list[list[float]], ys: list[float]) -> Any:
    """Zero the grads, forward all samples, sum of squared errors, backward."""
    for p in model.parameters():
        p.grad = 0.0
    loss = sum((model(x) - y) ** 2 for x, y in zip(xs, ys))
    loss.backward()
    return loss


def median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        gc.collect()  # start each repeat with no garbage left over from the previous one
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(repeat: int = 5, verbose: bool = True) -> dict:
    from micrograd import nn as mg_nn

    random.seed(1337)
    ref = mg_nn.MLP(*SIZES)
    ours = MLP(*SIZES)
    for p_ours, p_ref in zip(ours.parameters(), ref.parameters(), strict=True):
        p_ours.data = p_ref.data
    xs, ys = make_data()

    loss_ours, loss_ref = step(ours, xs, ys), step(ref, xs, ys)
    assert abs(loss_ours.data - loss_ref.data) <= 1e-9 * max(1.0, abs(loss_ref.data)), (loss_ours, loss_ref)
    for p_ours, p_ref in zip(ours.parameters(), ref.parameters()):
        assert abs(p_ours.grad - p_ref.grad) <= 1e-9 * max(1.0, abs(p_ref.grad)), (p_ours, p_ref)
    del loss_ours, loss_ref

    t_ours = median_seconds(lambda: step(ours, xs, ys), repeat)
    t_ref = median_seconds(lambda: step(ref, xs, ys), repeat)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t_ref_nogc = median_seconds(lambda: step(ref, xs, ys), repeat)
    finally:
        if gc_was_enabled:
            gc.enable()

    results = {
        "workload": f"MLP{SIZES} over {N_SAMPLES} samples, squared error, forward + backward",
        "repeat": repeat,
        "microgradnn_s": t_ours,
        "micrograd_s": t_ref,
        "micrograd_gc_off_s": t_ref_nogc,
        "speedup": t_ref / t_ours,
        "speedup_vs_gc_off": t_ref_nogc / t_ours,
    }
    if verbose:
        print(f"scalar {results['workload']}, median of {repeat}")
        print(f"  microgradnn.Value          {t_ours * 1e3:9.1f} ms")
        print(f"  micrograd 0.1.0            {t_ref * 1e3:9.1f} ms   ({results['speedup']:.1f}x slower)")
        print(f"  micrograd, gc disabled     {t_ref_nogc * 1e3:9.1f} ms   ({results['speedup_vs_gc_off']:.1f}x slower)")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    main(repeat=parser.parse_args().repeat)
