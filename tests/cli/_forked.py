"""Run ``mgnn`` commands in forked children of the test process, and kill them with SIGKILL.

A fresh ``python -m mgnn`` pays seconds of imports (numba, numpy) per command; a child
forked from the test process, which has imported everything already, starts in
milliseconds, so a crash test can afford many kills. The child runs the very CLI entry
point (``mgnn.app.main``) with its output sent to files, then ``os._exit``s with its exit
status, as the console script would.

Kills land at chosen points: after a delay, or from inside the child at the k-th atomic
rename (``os.replace``: every checkpoint, index.json and run.json write ends with one) or
half-way through the k-th checkpoint's bytes (``microgradnn.checkpoint._write_all``).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Outcome:
    code: int | None        # exit status; None when killed by SIGKILL
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.code is None


def _arm_kill(at_replace: int | None, in_write: int | None) -> None:
    """In the child: SIGKILL ourselves at the at_replace-th os.replace, or half-way through
    the in_write-th checkpoint's bytes."""
    if at_replace is not None:
        real_replace = os.replace
        count = {"n": 0}

        def replace(src, dst, *a, **k):
            count["n"] += 1
            if count["n"] == at_replace:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, *a, **k)

        os.replace = replace
    if in_write is not None:
        from microgradnn import checkpoint

        real_write = checkpoint._write_all
        writes = {"n": 0}

        def write_all(f, data):
            writes["n"] += 1
            if writes["n"] == in_write:
                f.write(bytes(data[: len(data) // 2]))
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_write(f, data)

        checkpoint._write_all = write_all


def run(argv: list[str], cwd: Path, kill_after: float | None = None, at_replace: int | None = None,
        in_write: int | None = None, timeout: float = 120.0) -> Outcome:
    out_path, err_path = cwd / f".out.{time.monotonic_ns()}", cwd / f".err.{time.monotonic_ns()}"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.chdir(cwd)
            out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(err, 2)
            import sys

            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.environ.update(NO_COLOR="1", COLUMNS="200", TERM="dumb")
            os.environ.pop("MGNN_DEBUG", None)
            _arm_kill(at_replace, in_write)
            from mgnn.app import main

            code = main(list(argv))
            sys.stdout.flush()
            sys.stderr.flush()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - report and leave the child
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    killed_at = None if kill_after is None else time.monotonic() + kill_after
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.monotonic()
        if killed_at is not None and now >= killed_at:
            os.kill(pid, signal.SIGKILL)
            killed_at = None
        if now > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"mgnn {' '.join(argv)} ran past {timeout} s")
        time.sleep(0.005)
    stdout, stderr = out_path.read_text(), err_path.read_text()
    out_path.unlink()
    err_path.unlink()
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL, status
        return Outcome(None, stdout, stderr)
    return Outcome(os.WEXITSTATUS(status), stdout, stderr)
