"""Recurrent training steps on the GPU: microgradnn's CuPy backend against PyTorch CUDA.

    python benchmarks/bench_gpu.py          # needs an NVIDIA GPU, CuPy (the cuda extra) and torch with CUDA

The workloads of ``bench_train_step.py`` (LSTM / GRU / RNN: input 128, hidden 256, T 64,
B 32, Linear -> 64 + cross-entropy at every step, Adam; the char-LM: Embedding 65x64 ->
2-layer LSTM 512 -> Linear 65, T 128, B 64), both frameworks on the same GPU with the
same weights and batch. Each timed step ends with a device synchronisation; figures are
medians of ``--repeat`` steps after warm-up, the ratio is microgradnn / torch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _models(kind: str):
    import torch

    import microgradnn as mg

    torch.manual_seed(0)
    if kind == "charlm":
        t_parts = [torch.nn.Embedding(65, 64), torch.nn.LSTM(64, 512, 2, batch_first=True), torch.nn.Linear(512, 65)]
        m_parts = [mg.nn.Embedding(65, 64), mg.nn.LSTM(64, 512, 2, batch_first=True), mg.nn.Linear(512, 65)]
        rng = np.random.default_rng(0)
        x = rng.integers(0, 65, (64, 128))
        y = rng.integers(0, 65, (64, 128))
        classes = 65
    else:
        cls = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind]
        t_parts = [getattr(torch.nn, cls)(128, 256), torch.nn.Linear(256, 64)]
        m_parts = [getattr(mg.nn, cls)(128, 256), mg.nn.Linear(256, 64)]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 32, 128)).astype(np.float32)
        y = rng.integers(0, 64, (64, 32))
        classes = 64
    for t_part, m_part in zip(t_parts, m_parts):
        m_part.load_state_dict({k: v.detach().numpy() for k, v in t_part.state_dict().items()})
    return t_parts, m_parts, x, y, classes


def _torch_step(parts, x, y, classes):
    import torch

    parts = [p.cuda() for p in parts]
    params = [q for p in parts for q in p.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    xt = torch.tensor(x).cuda()
    yt = torch.tensor(y).cuda().reshape(-1)

    def step():
        h = parts[0](xt) if len(parts) == 3 else xt
        out, _ = parts[-2](h)
        loss = torch.nn.functional.cross_entropy(parts[-1](out).reshape(-1, classes), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        return float(loss.detach())

    return step


def _mg_step(parts, x, y, classes):
    import cupy

    import microgradnn as mg

    parts = [p.to("cuda") for p in parts]
    params = [q for p in parts for q in p.parameters()]
    opt = mg.optim.Adam(params, lr=1e-3)
    xm = mg.tensor(x, device="cuda")
    ym = mg.tensor(y, device="cuda").reshape(-1)

    def step():
        h = parts[0](xm) if len(parts) == 3 else xm
        out, _ = parts[-2](h)
        loss = mg.cross_entropy(parts[-1](out).reshape(-1, classes), ym)
        opt.zero_grad()
        loss.backward()
        opt.step()
        cupy.cuda.Device().synchronize()
        return float(loss.item())

    return step


def _median_ms(step, repeat: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--only", nargs="*", default=["lstm", "gru", "rnn", "charlm"])
    args = parser.parse_args(argv)
    import cupy
    import torch

    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, cupy {cupy.__version__}")
    print(f"{'workload':8s} {'microgradnn':>12s} {'torch':>10s} {'ratio':>7s}  first losses")
    for kind in args.only:
        t_parts, m_parts, x, y, classes = _models(kind)
        t_step, m_step = _torch_step(t_parts, x, y, classes), _mg_step(m_parts, x, y, classes)
        first = (m_step(), t_step())
        mg_ms, torch_ms = _median_ms(m_step, args.repeat), _median_ms(t_step, args.repeat)
        print(f"{kind:8s} {mg_ms:10.2f}ms {torch_ms:8.2f}ms {mg_ms / torch_ms:6.2f}x  {first[0]:.5f} / {first[1]:.5f}")


if __name__ == "__main__":
    main()
