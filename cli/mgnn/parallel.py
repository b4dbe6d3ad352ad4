"""``mgnn train --nproc N`` and ``mpiexec -n N mgnn train``: the command's side of MPI.

* ``--nproc N`` (N > 1) starts ``mpiexec -n N python -m mgnn ...`` itself, with the same
  arguments, each rank under a supervisor that is its parent, and watches it: when a rank
  dies (an exception, ``kill -9``) MPI's launcher stops the others and this parent says in
  one line which rank died and how.
* Under ``mpiexec`` (the launcher's environment says so) each rank joins the process
  group; rank 0 alone shows the display and writes the run folder. A rank that fails says
  so in one line naming itself, then aborts the MPI job, so no rank waits for ever.
"""

from __future__ import annotations

import json
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


_PEER_GRACE_S = 10.0  # how long a rank that lost a peer leaves MPI's launcher to say how it ended


def before_report(exc: BaseException, user_error: bool) -> None:
    """A bad spec fails every rank alike: rank 0 speaks for all (the others wait, and are
    stopped by its abort); an error of this rank alone is reported by this rank.

    A collective that failed because another rank ended (``kill -9``, a crash) is the
    other rank's story, and only MPI's launcher knows how it ended (the signal): this rank
    waits for the launcher to stop the job and report it, and speaks only if it is still
    alive after :data:`_PEER_GRACE_S`."""
    import microgradnn.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() < 2 or _on_every_rank(exc):
        return
    if isinstance(exc, dist.DistBackendError):
        time.sleep(_PEER_GRACE_S)
    elif user_error and dist.get_rank() != 0:
        time.sleep(3.0)


def _on_every_rank(exc: BaseException) -> bool:
    """A refusal every rank raised alike (``train.data_parallel.RefusedOnEveryRank``)."""
    return bool(getattr(exc, "every_rank", False))


def speaks(exc: BaseException) -> bool:
    """Whether this rank prints its error: all but rank 0 keep quiet about a refusal every
    rank raised alike (one line, not N)."""
    import microgradnn.distributed as dist

    if not _on_every_rank(exc) or not dist.is_initialized():
        return True
    return dist.get_rank() == 0


def after_report(code: int, line: str = "", exc: BaseException | None = None) -> None:
    """End the whole MPI job once this rank has said why it fails. The line also goes to
    ``mgnn --nproc``'s folder: MPI's launcher may tear down before it forwards the last output.

    A refusal every rank raised alike needs no abort: each rank ends by itself with the same
    status, which is then mpiexec's too (an abort's teardown may exit with a signal's number)."""
    import microgradnn.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        folder = os.environ.get(_PIDS_ENV)
        if folder:
            try:
                if line:
                    Path(folder, f"{dist.get_rank()}.error").write_text(line)
                Path(folder, f"{dist.get_rank()}.exit").write_text(str(code or 1))
            except OSError:
                pass
        if exc is not None and _on_every_rank(exc):
            return
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


_AFTERMATH = "MPI stopped the other ranks; the run folder keeps its last good checkpoint (mgnn resume RUN_DIR)"
_BANNER = re.compile(r"^(=+|=\s.*|YOUR APPLICATION TERMINATED.*|This typically refers.*|Please see the FAQ.*)$")
_MPI_ABORT = re.compile(r"^Abort\(\d+\) on node \d+ .*MPI_Abort")  # MPICH's echo of a rank's own abort
# MPICH's report of an error it treats as fatal: a first line, then one line per frame of its stack.
_MPI_FATAL = re.compile(r"^Abort\(\d+\) on node \d+ \(rank (\d+) in comm \d+\): (Fatal error in .*?)(?:, error stack:)?$")
_MPI_FRAME = re.compile(r"^\w+\(\d+\)\.*:\s*(.*)$")


def launch(nproc: int, argv: list[str]) -> int:
    """Run this very command on ``nproc`` ranks under ``mpiexec``; return its exit status.

    Each rank runs under a small supervisor (:func:`supervise`), its parent, which alone
    can read how it ended: a rank killed by a signal is named with that signal even when
    another rank's MPI library aborts the job before MPI's launcher says anything."""
    import microgradnn.distributed as dist

    launcher = dist.find_mpiexec()
    if not dist.is_available() or launcher is None:
        raise UsageError(f"mgnn: --nproc {nproc}: {dist.INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="mgnn-ranks-") as own:
        pids = os.environ.get(_PIDS_ENV) or own  # a caller (a test) may choose the folder
        env = dict(os.environ, **{_PIDS_ENV: pids})
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env.setdefault(var, "1")  # N ranks share the cores: one thread each unless told
        rank_cmd = [sys.executable, "-m", "mgnn", *_without_nproc(argv)]
        cmd = [launcher, "-n", str(nproc), sys.executable, "-m", "mgnn.parallel", *rank_cmd]
        # Under mpiexec every rank's output is a pipe to MPI's launcher anyway; reading both
        # streams here lets MPI's multi-line reports (its "BAD TERMINATION" banner, a fatal
        # error's stack) become one line.
        # MPI's launcher ends with this process, however it ends (kill -9 included): the
        # ranks (each dying with its supervisor) never train on for no one.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                preexec_fn=lambda: _die_with_parent(signal.SIGTERM))
        banner: list[str] = []
        fatal: list[tuple[str, str]] = []  # (rank, "Fatal error in ...: why") from MPICH's stacks
        said: set[str] = set()

        def forward(stream: Any, sink: Any) -> None:
            in_stack = False
            for line in stream:
                text = line.rstrip("\n")
                stack = _MPI_FATAL.match(text)
                if stack:
                    fatal.append((stack.group(1), stack.group(2)))
                    in_stack = True
                elif in_stack and ((frame := _MPI_FRAME.match(text)) or not text.strip()):
                    if frame and frame.group(1).strip():
                        fatal[-1] = (fatal[-1][0], f"{fatal[-1][1].split(' (')[0]} ({frame.group(1).strip()})")
                elif _BANNER.match(text):
                    in_stack = False
                    banner.append(line)
                elif not _MPI_ABORT.match(text):  # MPICH's own echo of an abort: the rank said why
                    in_stack = False
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
        code = _reported_code(Path(pids)) or code
        for error in sorted(Path(pids).glob("*.error")):  # lines the launcher did not forward
            text = error.read_text().strip()
            if text and text not in said:
                sys.stderr.write(text + "\n")
                said.add(text)
        if not any(t.startswith("mgnn: rank ") for t in said):
            why = _first_ended(Path(pids), nproc) or (_explain(banner, Path(pids), nproc) if banner else None)
            if why is None and fatal:
                rank, what = fatal[0]
                why = f"mgnn: rank {rank} of {nproc}: MPI stopped the job: {what}"
            if why:
                sys.stderr.write(why + "\n")
    return code


def _reported_code(pids: Path) -> int | None:
    """The exit status the first rank that failed chose (2 for a bad spec, ...): MPI's
    launcher returns whatever its teardown ended with, a signal's number as often as not."""
    codes = []
    for f in pids.glob("*.exit"):
        try:
            codes.append((f.stat().st_mtime_ns, int(f.read_text())))
        except (OSError, ValueError):
            continue
    return min(codes)[1] if codes else None


# ----------------------------------------------------------------------------- supervisor

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def supervise(cmd: list[str]) -> int:
    """``python -m mgnn.parallel CMD...``: run CMD (one rank) as this process's child and
    end as it ended. A rank killed by a signal is written down (``<pid>.ended`` in the
    ranks' folder) before this process dies of the same signal, so ``--nproc`` can name
    the signal whatever order MPI tears the job down in.

    The rank inherits everything (MPI's launcher talks to it through an inherited socket)
    but runs in a process group of its own; it receives, once, the signals this process or
    its group is sent, and dies with it (``PR_SET_PDEATHSIG``) should MPI's launcher kill
    this process first."""
    child: list[int] = []
    held: list[int] = []  # signals that came before the rank existed

    def relay(number: int, _frame: Any) -> None:
        if child:
            _send(child[0], number)
        else:
            held.append(number)

    for sig in _FORWARDED:
        signal.signal(sig, relay)
    pid = os.fork()
    if pid == 0:  # the rank: nothing but exec here (this process is single-threaded)
        try:
            # Its own process group: MPI's launcher signals our group (Ctrl-C), and the
            # rank must get each signal once, from us, not twice.
            os.setpgid(0, 0)
            _die_with_parent()
            os.execvp(cmd[0], cmd)  # exec resets our handlers to the defaults
        finally:
            os._exit(127)
    child.append(pid)
    for number in held:
        _send(pid, number)
    _, status = os.waitpid(pid, 0)
    if not os.WIFSIGNALED(status):
        return os.waitstatus_to_exitcode(status)
    number = os.WTERMSIG(status)
    folder = os.environ.get(_PIDS_ENV)
    if folder:
        note = {"pid": pid, "rank": os.environ.get("PMI_RANK"), "signal": number, "time": time.time()}
        try:
            Path(folder, f"{pid}.ended").write_text(json.dumps(note))
        except OSError:
            pass
    if number in _FORWARDED:
        signal.signal(number, signal.SIG_DFL)  # ours forwarded it; SIGKILL has no handler to reset
    os.kill(os.getpid(), number)  # end as the rank ended: MPI's launcher sees the same signal
    return 128 + number


def _send(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _die_with_parent(number: int = signal.SIGKILL) -> None:
    """Linux: the kernel sends this process ``number`` when its parent dies (MPI's
    launcher gets SIGTERM, which it passes on to the ranks; a rank gets SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, number, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _first_ended(pids: Path, nproc: int) -> str | None:
    """The line for the first rank its supervisor saw killed by a signal, if any."""
    notes = []
    for f in pids.glob("*.ended"):
        try:
            notes.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    if not notes:
        return None
    first = min(notes, key=lambda n: n.get("time", 0.0))
    rank = next((f.stem for f in pids.glob("*.pid") if f.read_text().strip() == str(first["pid"])), first.get("rank"))
    number = int(first["signal"])
    try:
        name = f" ({signal.Signals(number).name})"
    except ValueError:
        name = ""
    return (f"mgnn: {'rank ' + str(rank) if rank is not None else 'a rank'} of {nproc} (pid {first['pid']}) ended: "
            f"killed by signal {number}{name}; {_AFTERMATH}")


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
    return f"mgnn: {rank} of {nproc} ({'pid ' + pid.group(1) if pid else 'unknown pid'}) ended: {why}; {_AFTERMATH}"


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


__all__ = ["under_mpi", "process_group", "before_report", "speaks", "after_report", "launch", "supervise",
           "check_nproc", "nproc_option"]


if __name__ == "__main__":  # each rank of ``--nproc``: python -m mgnn.parallel CMD...
    sys.exit(supervise(sys.argv[1:]))
