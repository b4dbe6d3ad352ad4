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


def _arm_kill(at_replace: int | None, in_write: int | None, pause_at_replace: tuple[int, float] | None) -> None:
    """In the child: SIGKILL ourselves at the at_replace-th os.replace, or half-way through
    the in_write-th checkpoint's bytes; or sleep at the k-th os.replace (so that a second
    process surely runs while this one is writing)."""
    if at_replace is not None or pause_at_replace is not None:
        real_replace = os.replace
        count = {"n": 0}

        def replace(src, dst, *a, **k):
            count["n"] += 1
            if count["n"] == at_replace:
                os.kill(os.getpid(), signal.SIGKILL)
            if pause_at_replace is not None and count["n"] == pause_at_replace[0]:
                time.sleep(pause_at_replace[1])
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
        in_write: int | None = None, pause_at_replace: tuple[int, float] | None = None,
        timeout: float = 120.0) -> Outcome:
    """Run ``mgnn argv`` in a forked child and wait for it (see the module docstring)."""
    return wait(start(argv, cwd, at_replace, in_write, pause_at_replace), kill_after, timeout)


@dataclass
class Child:
    pid: int
    argv: list[str]
    out_path: Path
    err_path: Path


def start(argv: list[str], cwd: Path, at_replace: int | None = None, in_write: int | None = None,
          pause_at_replace: tuple[int, float] | None = None) -> Child:
    """Fork a child running ``mgnn argv``; :func:`wait` collects it."""
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
            _arm_kill(at_replace, in_write, pause_at_replace)
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
    return Child(pid, list(argv), out_path, err_path)


def wait(child: Child, kill_after: float | None = None, timeout: float = 120.0) -> Outcome:
    pid, argv = child.pid, child.argv
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
    stdout, stderr = child.out_path.read_text(), child.err_path.read_text()
    child.out_path.unlink()
    child.err_path.unlink()
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL, status
        return Outcome(None, stdout, stderr)
    return Outcome(os.WEXITSTATUS(status), stdout, stderr)


# ----------------------------------------------------------------------------- a tiny run

SPEC = """\
model: {{embedding_dim: 8, hidden_size: 12}}
data: {{name: charlm, paths: {corpus}, seq_len: 12, val_fraction: 0.2}}
optimizer: {{name: adam, lr: 0.01}}
train: {{steps: 24, batch_size: 4, eval_every: 6, log_every: 2, checkpoint_every: 3, keep_best: 2, tbptt: true}}
output: {{dir: {runs}}}
"""

#: fields of a metrics record that measure time, not the run
CLOCK = {"elapsed", "throughput"}


def make_work(folder: Path) -> Path:
    """A work folder with a corpus and ``tiny.yaml`` (24 steps, checkpoints every 3)."""
    source = Path(__file__).resolve().parents[2] / "microgradnn" / "nn" / "rnn.py"
    corpus = folder / "corpus.txt"
    corpus.write_text(source.read_text(encoding="utf-8")[:2000], encoding="utf-8")
    (folder / "tiny.yaml").write_text(SPEC.format(corpus=corpus, runs=folder / "runs"))
    return folder


def records(run: Path) -> list[dict]:
    """metrics.jsonl's records without their clock fields."""
    import json

    return [{k: v for k, v in json.loads(line).items() if k not in CLOCK}
            for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def weights(run: Path) -> dict:
    import numpy as np

    import microgradnn as mg

    state = mg.load(run / "checkpoints" / "last.safetensors")
    return {k: np.asarray(v) for k, v in state["model"].items()}


def same_weights(a: dict, b: dict) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
