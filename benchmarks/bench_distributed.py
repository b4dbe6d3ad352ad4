"""Data-parallel training over MPI (issue 14): throughput, all-reduce cost, cluster arithmetic.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_distributed.py          # ~4 min
    ... bench_distributed.py --quick                           # fewer steps and rounds
    ... bench_distributed.py --only throughput allreduce cluster

* ``throughput``: char-LM training tokens/s (Embedding 65x64 -> 2-layer LSTM H -> Linear 65,
  T 64, global batch 32, Adam) as 1 process x 2 threads, 1 process x 1 thread and 2 processes
  x 1 thread (``mpiexec -n 2``, DistributedDataParallel, each rank 16 rows), microgradnn and
  PyTorch (torch DDP over gloo for 2 processes), each configuration in fresh processes, the
  frameworks' runs alternating, medians of the rounds.
* ``allreduce``: the time of one all-reduce against the size of the gradient buffer, 2 ranks:
  microgradnn (MPI_Allreduce through mpi4py, MPICH) and torch.distributed (gloo).
* ``cluster``: bytes all-reduced per step for the shipped example specs and the char-LM at
  H 512, the time a ring all-reduce adds at 10 and 100 Gb/s on 8 and 64 nodes, and the
  measured single-process compute time per step of each (what the README tabulates).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
T, B, VOCAB, EMBED, LAYERS = 64, 32, 65, 64, 2


# --------------------------------------------------------------------------- workers (child processes)


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("PMI_RANK", "0")), int(os.environ.get("PMI_SIZE", "1"))


def worker_throughput(framework: str, hidden: int, steps: int, out: str, port: int) -> None:
    """Train ``steps`` char-LM steps on this rank's rows of each global batch; rank 0 writes
    the median step time."""
    rank, world = _rank_world()
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, VOCAB, (steps + 2, B, T + 1)).astype(np.int64)
    lo, hi = (B * rank) // world, (B * (rank + 1)) // world
    times = []
    if framework == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        torch.manual_seed(0)

        class TorchCharLM(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(VOCAB, EMBED)
                self.rnn = torch.nn.LSTM(EMBED, hidden, LAYERS, batch_first=True)
                self.head = torch.nn.Linear(hidden, VOCAB)

            def forward(self, x):
                return self.head(self.rnn(self.emb(x))[0])

        net = TorchCharLM()
        if world > 1:
            import torch.distributed as tdist

            tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
            net = torch.nn.parallel.DistributedDataParallel(net)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for s in range(steps + 2):
            x = torch.from_numpy(tokens[s, lo:hi, :-1].copy())
            y = torch.from_numpy(tokens[s, lo:hi, 1:].reshape(-1).copy())
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, VOCAB), y)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    else:
        from threadpoolctl import threadpool_limits

        import microgradnn as mg
        import microgradnn.distributed as dist
        from microgradnn.nn.parallel import DistributedDataParallel

        threadpool_limits(int(os.environ.get("BENCH_THREADS", "1")))
        mg.manual_seed(0)

        class CharLM(mg.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = mg.nn.Embedding(VOCAB, EMBED)
                self.rnn = mg.nn.LSTM(EMBED, hidden, LAYERS, batch_first=True)
                self.head = mg.nn.Linear(hidden, VOCAB)

            def forward(self, x):
                return self.head(self.rnn(self.emb(x))[0])

        model = CharLM()
        if world > 1:
            dist.init_process_group()
            model = DistributedDataParallel(model)
        opt = mg.optim.Adam(model.parameters(), lr=2e-3)
        ce = mg.nn.functional.cross_entropy
        for s in range(steps + 2):
            x = mg.tensor(tokens[s, lo:hi, :-1].copy())
            y = mg.tensor(tokens[s, lo:hi, 1:].reshape(-1).copy())
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = ce(model(x).reshape(-1, VOCAB), y)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps({"step": statistics.median(times[2:])}))


def worker_allreduce(framework: str, sizes: list[int], repeat: int, out: str, port: int) -> None:
    rank, world = _rank_world()
    result = {}
    if framework == "torch":
        import torch
        import torch.distributed as tdist

        torch.set_num_threads(1)
        tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        for n in sizes:
            buf = torch.ones(n)
            samples = []
            for _ in range(repeat):
                tdist.barrier()
                t0 = time.perf_counter()
                tdist.all_reduce(buf)
                samples.append(time.perf_counter() - t0)
            result[n] = statistics.median(samples)
    else:
        import microgradnn.distributed as dist

        dist.init_process_group()
        for n in sizes:
            buf = np.ones(n, dtype=np.float32)
            samples = []
            for _ in range(repeat):
                dist.barrier()
                t0 = time.perf_counter()
                dist.all_reduce_array(buf)
                samples.append(time.perf_counter() - t0)
            result[n] = statistics.median(samples)
    if rank == 0:
        Path(out).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(args: list[str], nproc: int, threads: int) -> dict:
    import microgradnn.distributed as dist

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.json")
        env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
        cmd = [sys.executable, __file__, "--worker", *args, "--out", out, "--port", str(_free_port())]
        if nproc > 1:
            cmd = [dist.find_mpiexec(), "-n", str(nproc)] + cmd
        for attempt in (1, 2):  # gloo's TCP rendezvous now and then loses a race for the port: once more
            try:
                subprocess.run(cmd, check=True, env=env, timeout=900)
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
                cmd[cmd.index("--port") + 1] = str(_free_port())
        return json.loads(Path(out).read_text())


def throughput(hidden: int, steps: int, rounds: int) -> list[dict]:
    configs = [("1 process x 2 threads", 1, 2), ("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1)]
    samples = {(c, f): [] for c, _, _ in configs for f in ("mg", "torch")}
    for _ in range(rounds):
        for label, nproc, threads in configs:
            for framework in ("mg", "torch"):  # alternating, each in fresh processes
                r = _child(["throughput", framework, str(hidden), str(steps)], nproc, threads)
                samples[(label, framework)].append(r["step"])
    rows = []
    for label, _, _ in configs:
        mg_s, t_s = (statistics.median(samples[(label, f)]) for f in ("mg", "torch"))
        rows.append({"config": label, "mg_step_s": mg_s, "torch_step_s": t_s,
                     "mg_tokens_s": B * T / mg_s, "torch_tokens_s": B * T / t_s, "ratio": mg_s / t_s})
    return rows


def allreduce(repeat: int) -> list[dict]:
    sizes = [2**k for k in (10, 14, 17, 20, 22, 24)]
    mg_r = _child(["allreduce", "mg", ",".join(map(str, sizes)), str(repeat)], 2, 1)
    t_r = _child(["allreduce", "torch", ",".join(map(str, sizes)), str(repeat)], 2, 1)
    return [{"elements": n, "bytes": 4 * n, "mg_s": mg_r[str(n)], "torch_s": t_r[str(n)],
             "ratio": mg_r[str(n)] / t_r[str(n)]} for n in sizes]


class _StepTimes:
    """A Trainer callback keeping each step's own time (forward, backward, optimizer)."""

    def __init__(self, sink: list) -> None:
        self.sink = sink

    def on_step(self, trainer, info) -> None:
        if "seconds" in info:
            self.sink.append(info["seconds"])


def _ring_seconds(nbytes: int, nodes: int, gbit: float, latency: float = 5e-6) -> float:
    """A ring all-reduce: each node sends and receives 2 (N-1)/N of the buffer, in 2 (N-1) hops."""
    return 2 * (nodes - 1) / nodes * nbytes / (gbit * 1e9 / 8) + 2 * (nodes - 1) * latency


def cluster(steps: int) -> list[dict]:
    """Trainable parameters of each shipped example (as ``mgnn train`` builds it) and the
    char-LM at H 512, and the measured single-process step time of each."""
    from threadpoolctl import threadpool_limits

    import microgradnn as mg
    from microgradnn.spec import load_spec
    from microgradnn.train import Trainer

    rows = []
    os.chdir(ROOT)
    for spec_file in sorted((ROOT / "examples").glob("*.yaml")):
        try:
            spec = load_spec(str(spec_file), [])
            seconds: list[float] = []
            trainer = Trainer(spec, dry_run=steps + 1, callbacks=[_StepTimes(seconds)])
        except Exception as exc:  # an example needing a plugin or a base run not present here
            print(f"  skipping {spec_file.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
            continue
        n = sum(p.array.size for p in trainer.trainable_parameters())
        with threadpool_limits(1):
            trainer.fit()
        per_step = statistics.median(seconds[1:])  # the first step compiles / warms up
        rows.append({"workload": f"examples/{spec_file.name} (batch {trainer.batch_size})", "params": n,
                     "step_s": per_step})
    threads = 1
    r = _child(["throughput", "mg", "512", str(max(3, steps // 2))], 1, threads)
    n512 = VOCAB * EMBED + sum(4 * 512 * (i + 512) + 8 * 512 for i in (EMBED, 512)) + 512 * VOCAB + VOCAB
    rows.append({"workload": f"char-LM H 512 (T {T}, batch {B})", "params": n512, "step_s": r["step"]})
    for row in rows:
        row["bytes"] = 4 * row["params"]
        for nodes in (8, 64):
            for gbit in (10, 100):
                row[f"ring_{nodes}_{gbit}"] = _ring_seconds(row["bytes"], nodes, gbit)
    return rows


def _ms(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", nargs="+")
    p.add_argument("--out")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--only", nargs="+", default=["throughput", "allreduce", "cluster"],
                   choices=["throughput", "allreduce", "cluster"])
    a = p.parse_args(argv)
    if a.worker:
        kind, framework, *rest = a.worker
        if kind == "throughput":
            worker_throughput(framework, int(rest[0]), int(rest[1]), a.out, a.port)
        else:
            worker_allreduce(framework, [int(n) for n in rest[0].split(",")], int(rest[1]), a.out, a.port)
        return
    steps, rounds = (6, 1) if a.quick else (16, 3)
    if "throughput" in a.only:
        print(f"char-LM training, Embedding {VOCAB}x{EMBED} -> {LAYERS}-layer LSTM {a.hidden} -> Linear, "
              f"T {T}, global batch {B}, Adam; median step of {steps}, median of {rounds} rounds")
        print(f"{'configuration':26} {'microgradnn':>22} {'PyTorch':>22} {'ratio':>7}")
        for r in throughput(a.hidden, steps, rounds):
            print(f"{r['config']:26} {_ms(r['mg_step_s']):>9} {r['mg_tokens_s']:>7.0f} tok/s "
                  f"{_ms(r['torch_step_s']):>9} {r['torch_tokens_s']:>7.0f} tok/s {r['ratio']:>6.2f}x")
    if "allreduce" in a.only:
        print("\none all-reduce of a float32 buffer, 2 ranks on this machine (median)")
        print(f"{'elements':>10} {'bytes':>10} {'microgradnn (MPI)':>18} {'torch (gloo)':>14} {'ratio':>7}")
        for r in allreduce(20 if a.quick else 50):
            print(f"{r['elements']:>10} {r['bytes']:>10} {_ms(r['mg_s']):>18} {_ms(r['torch_s']):>14} "
                  f"{r['ratio']:>6.2f}x")
    if "cluster" in a.only:
        print("\nbytes all-reduced per step (float32 gradients of the trainable parameters) and the time a ring "
              "all-reduce adds (5 µs per hop), vs the measured 1-process x 1-thread step")
        print(f"{'workload':48} {'params':>9} {'bytes':>9} {'step':>9} "
              f"{'8@10G':>9} {'8@100G':>9} {'64@10G':>9} {'64@100G':>9}")
        for r in cluster(4 if a.quick else 8):
            print(f"{r['workload']:48} {r['params']:>9} {r['bytes']:>9} {_ms(r['step_s']):>9} "
                  + " ".join(f"{_ms(r[f'ring_{n}_{g}']):>9}" for n in (8, 64) for g in (10, 100)))


if __name__ == "__main__":
    main()
