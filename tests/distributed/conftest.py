"""Run a script under ``mpiexec -n N`` from a test, with a timeout.

The tests that need MPI skip, with the reason, only where the ``mpi`` extra is absent
(no mpi4py, no ``mpiexec``, or an MPI library mpi4py cannot load)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import microgradnn.distributed as dist

ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def mpi_missing() -> str | None:
    """Why MPI cannot run here, or None when it can (probed once: 2 ranks, one Allreduce)."""
    if not dist.is_available():
        return 'mpi4py is not installed (pip install -e ".[mpi]")'
    launcher = dist.find_mpiexec()
    if launcher is None:
        return 'no mpiexec found (pip install -e ".[mpi]" brings MPICH\'s)'
    probe = "from mpi4py import MPI; import numpy as np; a = np.ones(1); MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, a); assert a[0] == 2"
    try:
        done = subprocess.run([launcher, "-n", "2", sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=60, env=mpi_env())
    except subprocess.TimeoutExpired:
        return "mpiexec -n 2 did not finish a one-Allreduce probe within 60 s"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return f"mpiexec -n 2 cannot run an Allreduce here: {tail[0]}"
    return None


def mpi_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def run_mpi(script: str, tmp_path: Path, n: int = 2, timeout: float = 180, args: list | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Write ``script`` to a file and run it on ``n`` ranks; fail the test on a timeout or
    (with ``check``) a non-zero exit, showing both ranks' output."""
    reason = mpi_missing()
    if reason:
        pytest.skip(reason)
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    cmd = [dist.find_mpiexec(), "-n", str(n), sys.executable, str(path), *(args or [])]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=mpi_env(), cwd=tmp_path)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n {n} ran past {timeout} s (a hang?)\n{exc.stdout}\n{exc.stderr}")
    if check and done.returncode != 0:
        pytest.fail(f"mpiexec -n {n} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done
