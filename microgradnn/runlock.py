"""One writer per run folder: an OS lock held for the life of the writing process.

``mgnn train``, ``mgnn resume`` and anything else that writes a run folder first takes
:func:`lock_run_dir`. The lock is ``fcntl.flock`` on ``<run>/.lock``: the kernel holds it
for the open file, so it lasts exactly as long as the process (or until
:meth:`RunLock.release`) and goes away on *any* death — ``kill -9`` included; there is no
stale lock file to clean up by hand. A second writer does not wait: it gets
:class:`RunLockedError`, one line naming the folder and the pid that holds it. Readers
(``eval``, ``generate``) never take the lock, so they never block.

A fresh run folder's name is claimed with ``mkdir``, which fails when the name exists, so
two runs started at once with the same ``output.name`` get two folders
(:func:`claim_fresh_dir`), never one folder between them.

Whoever takes the lock is the folder's one writer, so it also removes the temporary files
that an earlier writer's interrupted atomic writes left behind.

Where ``fcntl`` does not exist (Windows), ``msvcrt.locking`` on the same file plays its
role.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .fileio import remove_stale_temporaries

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError", "lock_run_dir", "claim_fresh_dir", "holder_pid",
           "is_being_written", "locked_error"]

LOCK_FILE = ".lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class RunLockedError(RuntimeError):
    """Another process is writing this run folder (the message names it and its pid)."""


# The locks this process holds, by folder: flock locks belong to an open file, so opening
# the lock file a second time in the same process would find it "locked by someone else".
# Taking a held lock again just counts one more holder.
_HELD: dict[str, "RunLock"] = {}
_HELD_GUARD = threading.Lock()


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def holder_pid(run_dir: str | os.PathLike) -> int | None:
    """The pid written in ``run_dir``'s lock file by its last holder (None if none/unreadable).
    Whether that process still holds the lock is what :func:`lock_run_dir` finds out."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text(encoding="ascii", errors="replace").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def is_being_written(run_dir: str | os.PathLike) -> bool:
    """Whether some process (this one included) holds ``run_dir``'s writer lock right now.

    A reader's probe, never a wait: it lets ``run.json``'s "running" be told apart from a
    run whose process died (kill -9, a power cut) before it could write its final status."""
    key = _key(Path(run_dir))
    with _HELD_GUARD:
        if key in _HELD and _HELD[key].held:
            return True
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # no lock file: nobody ever took the lock
    try:
        if fcntl is None:  # pragma: no cover - Windows: can't probe without writing
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)  # (drops the shared probe lock, if taken)


def locked_error(run_dir: str | os.PathLike) -> RunLockedError:
    """The one-line refusal for a second writer: the folder, and who holds it."""
    path = Path(run_dir)
    pid = holder_pid(path)
    who = f"process {pid}" if pid is not None else "another process"
    return RunLockedError(f"{path} is being written by {who} (it holds {path / LOCK_FILE}); wait for it to finish "
                          "or stop it — only one train/resume may write a run folder at a time")


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:  # pragma: no cover - Windows reports a held lock as EACCES
        if fcntl is None:
            return False
        raise exc


class RunLock:
    """A held run-folder lock; :meth:`release` (or the end of the process) lets it go.
    Usable as a context manager."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self._fd: int | None = fd
        self._count = 1
        self.removed_temporaries: list[Path] = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let one holder go; the lock itself goes with the last one."""
        with _HELD_GUARD:
            if self._fd is None:
                return
            self._count -= 1
            if self._count > 0:
                return
            _HELD.pop(_key(self.run_dir), None)
            fd, self._fd = self._fd, None
        os.close(fd)  # closing the file releases the flock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_dir(run_dir: str | os.PathLike) -> RunLock:
    """Take ``run_dir``'s writer lock now or raise :class:`RunLockedError` (never waits).

    The folder must exist. Taking a lock this process already holds returns the same lock
    (release it as many times as it was taken). On success, temporary files left by an
    interrupted earlier writer are removed from the folder and its ``checkpoints/``."""
    path = Path(run_dir)
    key = _key(path)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held.held:
            held._count += 1
            return held
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            if not _try_lock(fd):
                raise locked_error(path)
            # who holds it, for the message above; the lock itself is the kernel's
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        lock = RunLock(path, fd)
        _HELD[key] = lock
    for folder in (path, path / "checkpoints"):
        lock.removed_temporaries += remove_stale_temporaries(folder)
    return lock


def _is_unused(path: Path) -> bool:
    return all(entry.name == LOCK_FILE for entry in os.scandir(path))


def claim_fresh_dir(base: str | os.PathLike) -> tuple[Path, RunLock]:
    """A new run folder named ``base``, else ``base-2``, ``base-3``, ...; created, locked,
    and returned with its lock.

    ``mkdir`` is the claim: of two processes asking for one name at once, one creates it and
    the other moves on to the next name. An existing *empty* folder (made by hand, or left
    by a run killed before it wrote anything) counts as free; it is claimed by locking it and
    finding it still empty under the lock."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        n += 1
        try:
            candidate.mkdir()
        except FileExistsError:
            if not candidate.is_dir():
                continue
            try:
                if not _is_unused(candidate):
                    continue
                lock = lock_run_dir(candidate)
            except (RunLockedError, OSError):
                continue
            if _is_unused(candidate) and lock._count == 1:
                return candidate, lock
            lock.release()
            continue
        try:
            return candidate, lock_run_dir(candidate)
        except RunLockedError:
            # someone found our new, still empty folder first and claimed it as "empty":
            # it is theirs now
            continue
