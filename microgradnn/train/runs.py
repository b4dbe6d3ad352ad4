"""The run folder: every file ``mgnn train`` writes goes through :class:`RunFolder`.

The layout and which checkpoint is "best", "last" or "the base of a fine-tune" are
declared once in :mod:`microgradnn.runfolder`; this module is the one *writer*. Keeping
every write here is what lets a run folder behave as a small database: one place to
lock it against a second writer, to verify what is written, and to make only one
process of a multi-process run write (``RunFolder(path, writer=False)`` writes nothing;
so does a dry run).

Checkpoints are ``mg.save`` files (safetensors, no pickle). Small JSON files are written
atomically (temporary file + rename), so a crash never leaves half a file behind.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from .. import runfolder
from ..checkpoint import save as mg_save
from ..fileio import atomic_write
from ..runfolder import (ADAPTER_FILE, CKPT_DIR, EXPORT_FILE, INDEX_FILE, LAST, METRICS_FILE, RUN_FILE, SPEC_FILE,
                         VOCAB_FILE, RunFolderError)
from ..spec import dump_spec
from .errors import TrainError

__all__ = [
    "SPEC_FILE", "RUN_FILE", "VOCAB_FILE", "METRICS_FILE", "CKPT_DIR", "INDEX_FILE", "LAST", "ADAPTER_FILE",
    "EXPORT_FILE", "RunFolder", "write_json", "read_json", "write_spec", "read_spec", "checkpoint_index",
    "find_checkpoint", "check_run_dir", "unique_run_dir", "save_file",
]


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(Path(path), json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True) + "\n")


def save_file(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``mg.save`` to ``path`` (atomic): a checkpoint, an adapter or an export."""
    mg_save(payload, path)
    return Path(path)


class RunFolder:
    """The writer of one run folder (see the module docstring).

    ``writer=False``: every write is skipped (a dry run; a process other than rank 0)."""

    def __init__(self, path: str | os.PathLike, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer

    @property
    def checkpoints(self) -> Path:
        return self.path / CKPT_DIR

    def has_run(self) -> bool:
        return (self.checkpoints / LAST).exists()

    # -- whole files -------------------------------------------------------------------

    def create(self, spec: Mapping[str, Any], vocab: Any) -> None:
        """A new run: the folder, ``spec.yaml`` and ``vocab.json``."""
        if not self.writer:
            return
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.write_spec(spec)
        if vocab is not None:
            if hasattr(vocab, "save"):
                vocab.save(self.path / VOCAB_FILE)
            else:
                write_json(self.path / VOCAB_FILE, {"kind": "char", "itos": list(vocab.itos)})

    def write_spec(self, spec: Mapping[str, Any]) -> None:
        if self.writer:
            dump_spec(spec, self.path / SPEC_FILE)

    def write_status(self, info: dict[str, Any]) -> None:
        """``run.json``: status, model facts, counts."""
        if self.writer:
            write_json(self.path / RUN_FILE, json.loads(json.dumps(info, default=str)))

    # -- metrics.jsonl -------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        with open(self.path / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """On resume: drop records written after the checkpoint at ``step`` (they will be
        written again) and the old end record."""
        path = self.path / METRICS_FILE
        if not self.writer or not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "end":
                continue
            if int(rec.get("step", 0)) <= step:
                keep.append(line)
        atomic_write(path, "".join(k + "\n" for k in keep))

    # -- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        path = self.checkpoints / name
        if self.writer:
            save_file(state, path)
        return path

    def remove_checkpoint(self, name: str) -> None:
        if self.writer:
            try:
                (self.checkpoints / name).unlink()
            except FileNotFoundError:
                pass

    def write_index(self, index: dict[str, Any]) -> None:
        if self.writer:
            write_json(self.checkpoints / INDEX_FILE, index)

    def write_adapter(self, payload: dict[str, Any]) -> None:
        if self.writer:
            save_file(payload, self.path / ADAPTER_FILE)


# ----------------------------------------------------------------------------- reading


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError(f"{path} is missing: is {path.parent} a run folder written by mgnn train?") from None
    except ValueError as exc:
        raise TrainError(f"{path} is not valid JSON ({exc})") from None


def write_spec(path: str | os.PathLike, spec: Mapping[str, Any]) -> None:
    """The resolved spec as YAML, written atomically."""
    dump_spec(spec, path)


def read_spec(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's resolved spec as written (a plain dict), read with the spec's safe loader."""
    from ..spec import SpecError, read_yaml

    path = Path(run_dir) / SPEC_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainError(f"{run_dir} is not a run folder: it has no {SPEC_FILE} (mgnn train writes one)") from None
    try:
        spec = read_yaml(text, str(path))
    except SpecError as exc:
        raise TrainError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise TrainError(f"{path} does not hold a spec mapping")
    return spec


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    if not path.exists():
        raise TrainError(f"run folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise TrainError(f"{str(path)!r} is a file, not a run folder")
    if not (path / SPEC_FILE).is_file():
        raise TrainError(f"{str(path)!r} is not a run folder: it has no {SPEC_FILE} (mgnn train writes one)")
    return path


def checkpoint_index(run_dir: str | os.PathLike) -> dict[str, Any]:
    try:
        return runfolder.checkpoint_index(run_dir)
    except RunFolderError as exc:
        raise TrainError(str(exc)) from None


def find_checkpoint(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint policy (:func:`microgradnn.runfolder.find_checkpoint`), its errors
    as :class:`TrainError`."""
    try:
        return runfolder.find_checkpoint(run_dir, which)
    except RunFolderError as exc:
        raise TrainError(str(exc)) from None


def unique_run_dir(base: Path) -> Path:
    """``base`` if it is free (missing or empty), else ``base-2``, ``base-3``, ...: a new
    run never overwrites an old one (resume that one with ``mgnn resume``)."""
    if not base.exists() or (base.is_dir() and not any(base.iterdir())):
        return base
    n = 2
    while True:
        candidate = base.with_name(f"{base.name}-{n}")
        if not candidate.exists():
            return candidate
        n += 1
