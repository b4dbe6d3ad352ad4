"""``metrics.jsonl``, kept truthful across crashes, resumes, full disks and edits.

The file is an append-only log, one JSON record per line. What makes it trustworthy:

* **Each checkpoint remembers the log as it was**: how many records it held and a SHA-256
  of their bytes (`MetricsFile.state`). On resume, `MetricsFile.restore` keeps
  exactly those records — the ones written after the checkpoint will be written again —
  and refuses, naming the file, a log that was cut short or changed since: a resumed run's
  log then equals an uninterrupted run's, record for record.
* ``end`` records written after the checkpoint (a Ctrl-C stop, a finished run) are history,
  not work to redo: they are kept.
* **An append is all or nothing**: when the disk is full half-way through a line, the
  partial line is cut off again and :class:`RunFileError` says so; the log stays a list of
  whole records and the run stays resumable from its last checkpoint.
* Non-finite numbers (a NaN loss) are written as ``null`` with the field named in
  ``"nonfinite"``, so every line is valid JSON for any reader.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from ..fileio import atomic_write
from ..runfolder import RunFolderError

__all__ = ["MetricsFile", "RunFileError", "json_safe", "read_records"]


class RunFileError(RunFolderError):
    """A run-folder file that is malformed, or could not be written (the message names it)."""


def json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with non-finite floats as None, and their keys listed under "nonfinite"
    (plain JSON has no NaN or Infinity: ``json.loads`` elsewhere would reject the line)."""
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad:
        return dict(record)
    out = {k: (None if k in bad else v) for k, v in record.items()}
    out["nonfinite"] = {k: repr(record[k]) for k in bad}
    return out


def _parse(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):
        raise RunFileError(f"{path} line {number} is not a JSON record (the file is damaged; "
                           "fix or remove that line)") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("event"), str):
        raise RunFileError(f"{path} line {number} is not a metrics record (expected an object with an \"event\")")
    step = rec.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int):
        raise RunFileError(f"{path} line {number}: \"step\" must be an integer, got {step!r}")
    return rec


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a metrics file; a line that is not one is an error naming it, except
    a last line cut off mid-write (no newline at its end), which is left out."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # a partial last line: an append that never finished
    return [_parse(path, i, line) for i, line in enumerate(lines, 1) if line.strip()]


class MetricsFile:
    """The writer of one run's ``metrics.jsonl`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._count = 0
        self._sha = hashlib.sha256()

    # -- writing ----------------------------------------------------------------------

    def start(self) -> None:
        """A new run: an empty log (a previous attempt that died before its first
        checkpoint leaves records nothing will continue)."""
        atomic_write(self.path, b"")
        self._count, self._sha = 0, hashlib.sha256()

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(json_safe(record), allow_nan=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.fstat(fd).st_size
            view = memoryview(data)
            try:
                while view:  # os.write may write part of it (a full disk): go on until done or refused
                    view = view[os.write(fd, view):]
            except OSError as exc:
                try:  # no partial line left behind
                    os.ftruncate(fd, start)
                except OSError:
                    pass
                raise RunFileError(f"can't append to {self.path}: {exc.strerror or exc}; the log ends at its last "
                                   "whole record and the run can be resumed from its last checkpoint "
                                   "(if it wrote one)") from None
        finally:
            os.close(fd)
        self._count += 1
        self._sha.update(data)

    def state(self) -> dict[str, Any]:
        """What a checkpoint records about the log: its length and a digest of its bytes."""
        return {"records": self._count, "sha256": self._sha.hexdigest()}

    # -- resuming ---------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None, step: int) -> None:
        """Cut the log back to what it was when the checkpoint at ``step`` was written.

        ``state``: the checkpoint's :meth:`state`; None for checkpoints written before it
        existed (then records after ``step`` are dropped, by their step numbers)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        lines = data.split(b"\n")
        tail_partial = lines.pop() if lines else b""  # b"" when the file ends with a newline
        whole = [line + b"\n" for line in lines]
        if state is None:
            keep = []
            for i, line in enumerate(whole, 1):
                rec = _parse(self.path, i, line)
                if rec["event"] != "end" and rec.get("step", 0) <= step:
                    keep.append(line)
        else:
            n, digest = _state_fields(state, self.path)
            if len(whole) < n:
                raise RunFileError(f"{self.path} holds {len(whole)} whole records but the checkpoint at step {step} "
                                   f"was written after {n}: the file was cut short or edited")
            if hashlib.sha256(b"".join(whole[:n])).hexdigest() != digest:
                raise RunFileError(f"{self.path}: its first {n} records differ from what the run wrote before its "
                                   f"checkpoint at step {step} (the file was damaged or edited)")
            keep = whole[:n]
            for i, line in enumerate(whole[n:], n + 1):  # after the checkpoint: only end records stay
                try:
                    rec = json.loads(line)
                except (ValueError, RecursionError):
                    continue  # a damaged record that will be written again
                if isinstance(rec, dict) and rec.get("event") == "end":
                    keep.append(line)
        if keep != whole or tail_partial:
            atomic_write(self.path, b"".join(keep))
        self._count = len(keep)
        self._sha = hashlib.sha256(b"".join(keep))


def _state_fields(state: Any, path: Path) -> tuple[int, str]:
    try:
        n, digest = state["records"], state["sha256"]
    except (KeyError, TypeError):
        raise RunFileError(f"the checkpoint's record of {path} is malformed") from None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or not isinstance(digest, str):
        raise RunFileError(f"the checkpoint's record of {path} is malformed")
    return n, digest
