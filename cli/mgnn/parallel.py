"""``mgnn train --nproc N`` and ``mpiexec -n N mgnn train``: the command's side of MPI.

* ``--nproc N`` (N > 1) starts ``mpiexec -n N python -m mgnn ...`` itself, with the same
  arguments, and watches it: when a rank dies (an exception, ``kill -9``) MPI's launcher
  stops the others and this parent says in one line which rank died and how.
* Under ``mpiexec`` (the launcher's environment says so) each rank joins the process
  group; rank 0 alone shows the display and writes the run folder. A rank that fails says
  so in one line naming itself, then aborts the MPI job, so no rank waits for ever.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .errors import UsageError

_PIDS_ENV = "MGNN_RANK_PIDS"  # a folder where each rank leaves <rank>.pid for the parent


def under_mpi() -> bool:
    from microgradnn.train.data_parallel import launched_by_mpi

    return launched_by_mpi()


def process_group() -> Any:
    """The Trainer's process seam for this rank (joins the MPI group), or None alone."""
    if not under_mpi():
        return None
    import microgradnn.distributed as dist
    from microgradnn.train.data_parallel import MPIDataParallel

    try:
        parallel = MPIDataParallel()
    except dist.DistributedError as exc:
        raise UsageError(f"mgnn: {exc}") from None
    folder = os.environ.get(_PIDS_ENV)
    if folder:
        Path(folder, f"{parallel.rank}.pid").write_text(str(os.getpid()))
    return parallel


def before_report(user_error: bool) -> None:
    """A bad spec fails every rank alike: rank 0 speaks for all (the others wait, and are
    stopped by its abort); an error of this rank alone is reported by this rank."""
    import microgradnn.distributed as dist

    if user_error and dist.is_initialized() and dist.get_rank() != 0:
        time.sleep(3.0)


def after_report(code: int, line: str = "") -> None:
    """End the whole MPI job once this rank has said why it fails. The line also goes to
    ``mgnn --nproc``'s folder: MPI's launcher may tear down before it forwards the last output."""
    import microgradnn.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        folder = os.environ.get(_PIDS_ENV)
        if folder and line:
            try:
                Path(folder, f"{dist.get_rank()}.error").write_text(line)
            except OSError:
                pass
        time.sleep(0.5)  # let the launcher forward the line before the abort tears it down
        dist.abort(code or 1)


# ----------------------------------------------------------------------------- --nproc


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


_BANNER = re.compile(r"^(=+|=\s.*|YOUR APPLICATION TERMINATED.*|This typically refers.*|Please see the FAQ.*)$")


_MPI_ABORT = re.compile(r"^Abort\(\d+\) on node \d+ .*MPI_Abort")


def launch(nproc: int, argv: list[str]) -> int:
    """Run this very command on ``nproc`` ranks under ``mpiexec``; return its exit status."""
    import microgradnn.distributed as dist

    launcher = dist.find_mpiexec()
    if not dist.is_available() or launcher is None:
        raise UsageError(f"mgnn: --nproc {nproc}: {dist.INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="mgnn-ranks-") as own:
        pids = os.environ.get(_PIDS_ENV) or own  # a caller (a test) may choose the folder
        env = dict(os.environ, **{_PIDS_ENV: pids})
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env.setdefault(var, "1")  # N ranks share the cores: one thread each unless told
        cmd = [launcher, "-n", str(nproc), sys.executable, "-m", "mgnn", *_without_nproc(argv)]
        # Under mpiexec every rank's output is a pipe to MPI's launcher anyway; reading both
        # streams here lets MPI's multi-line "BAD TERMINATION" banner become one line.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        banner: list[str] = []
        said: set[str] = set()

        def forward(stream: Any, sink: Any) -> None:
            for line in stream:
                text = line.rstrip("\n")
                if _BANNER.match(text):
                    banner.append(line)
                elif not _MPI_ABORT.match(text):  # MPICH's own echo of an abort: the rank said why
                    said.add(text)
                    sink.write(line)
                    sink.flush()

        pumps = [threading.Thread(target=forward, args=(proc.stdout, sys.stdout), daemon=True),
                 threading.Thread(target=forward, args=(proc.stderr, sys.stderr), daemon=True)]
        previous = signal.signal(signal.SIGINT, lambda *a: proc.send_signal(signal.SIGINT))
        try:
            for pump in pumps:
                pump.start()
            code = proc.wait()
            for pump in pumps:
                pump.join()
        finally:
            signal.signal(signal.SIGINT, previous)
        for error in sorted(Path(pids).glob("*.error")):  # lines the launcher did not forward
            text = error.read_text().strip()
            if text and text not in said:
                sys.stderr.write(text + "\n")
                said.add(text)
        if banner and not any(t.startswith("mgnn: rank ") for t in said):
            sys.stderr.write(_explain(banner, Path(pids), nproc) + "\n")
    return code


def _explain(banner: list[str], pids: Path, nproc: int) -> str:
    """One line from MPI's "BAD TERMINATION" banner: which rank, how it ended."""
    text = "".join(banner)
    pid = re.search(r"PID\s+(\d+)", text)
    how = re.search(r"EXIT STRING:\s*(.+)", text) or re.search(r"EXIT CODE:\s*(\d+)", text)
    rank = "a rank"
    if pid:
        for f in pids.glob("*.pid"):
            if f.read_text().strip() == pid.group(1):
                rank = f"rank {f.stem}"
    why = how.group(1).strip() if how else "ended abnormally"
    return (f"mgnn: {rank} of {nproc} ({'pid ' + pid.group(1) if pid else 'unknown pid'}) ended: {why}; "
            "MPI stopped the other ranks; the run folder keeps its last good checkpoint (mgnn resume RUN_DIR)")


def nproc_option(p: Any) -> None:
    from .commands.base import positive_int

    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="data-parallel over N processes (starts mpiexec -n N; needs the mpi extra)")


def check_nproc(value: Any) -> int:
    if value is None:
        return 1
    if value < 1:
        raise UsageError(f"mgnn: --nproc must be a positive number of processes, got {value}")
    return int(value)


__all__ = ["under_mpi", "process_group", "before_report", "after_report", "launch", "check_nproc",
           "nproc_option"]
