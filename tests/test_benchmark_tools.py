"""The benchmarks' helpers that can outlive a run (benchmarks/ is not a package: read, not imported)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_recurrence.py"


def _constant(path: Path, name: str) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not in {path}")


def test_the_busy_competitor_stops_when_its_benchmark_is_gone():
    # Finding: the contention section's `while True: pass` process spun on, orphaned, after the
    # benchmark was killed mid-run, and slowed every later measurement on the machine
    code = _constant(BENCH, "COMPETITOR")
    parent = ("import os, subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
              f"{code!r}, str(os.getpid())], stdout=subprocess.DEVNULL); print(p.pid, flush=True)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=30, check=True)
    pid = int(out.stdout.split()[0])  # the parent has exited: the competitor is an orphan now
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    raise AssertionError("the competitor outlived its benchmark")
