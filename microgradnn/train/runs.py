"""The run folder: what ``mgnn train`` writes, and how ``resume``/``eval``/``generate`` read it.

::

    runs/charlm/
      spec.yaml                 the resolved spec (every default filled in): rerun or resume it
      run.json                  model facts (task, sizes), status, parameter counts
      vocab.json                the vocabulary (token runs): ids <-> characters
      metrics.jsonl             one JSON object per line: {"event": "train"|"eval"|"end", ...}
      checkpoints/
        last.safetensors        everything needed to continue exactly (written on cadence,
                                at every evaluation, on Ctrl-C, at the end)
        best-step00000420.safetensors   the best k by the monitored metric (train.keep_best)
        index.json              which file is which: step, epoch, score
      adapter.safetensors       fine-tune runs: only what changed + a reference to the base
      export.safetensors        after ``mgnn export``: a merged, standalone model

Checkpoints are ``mg.save`` files (safetensors, no pickle). Small JSON files are written
atomically (temporary file + rename), so a crash never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .build import TrainError
from ..fileio import atomic_write
from ..spec import dump_spec

__all__ = [
    "SPEC_FILE", "RUN_FILE", "VOCAB_FILE", "METRICS_FILE", "CKPT_DIR", "ADAPTER_FILE", "EXPORT_FILE",
    "write_json", "read_json", "write_spec", "read_spec", "checkpoint_index", "find_checkpoint",
    "check_run_dir", "unique_run_dir",
]

SPEC_FILE = "spec.yaml"
RUN_FILE = "run.json"
VOCAB_FILE = "vocab.json"
METRICS_FILE = "metrics.jsonl"
CKPT_DIR = "checkpoints"
INDEX_FILE = "index.json"
LAST = "last.safetensors"
ADAPTER_FILE = "adapter.safetensors"
EXPORT_FILE = "export.safetensors"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(Path(path), json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError(f"{path} is missing: is {path.parent} a run folder written by mgnn train?") from None
    except ValueError as exc:
        raise TrainError(f"{path} is not valid JSON ({exc})") from None


def write_spec(path: str | os.PathLike, spec: dict[str, Any]) -> None:
    """The resolved spec as YAML, written atomically."""
    dump_spec(spec, path)


def read_spec(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's resolved spec, read with the safe loader (it is already resolved: reading it
    back does not re-apply defaults, so the run is rebuilt exactly as it was)."""
    import yaml

    path = Path(run_dir) / SPEC_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainError(f"{run_dir} is not a run folder: it has no {SPEC_FILE} (mgnn train writes one)") from None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
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
    path = Path(run_dir) / CKPT_DIR / INDEX_FILE
    if not path.is_file():
        return {"last": None, "best": []}
    return read_json(path)


def find_checkpoint(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint file to load: ``"best"`` (falls back to last), ``"last"``, or a path."""
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        p = Path(which)
        if not p.is_file():
            p = run_dir / CKPT_DIR / which
        if not p.is_file():
            raise TrainError(f"checkpoint {which!r} not found (looked in {run_dir / CKPT_DIR})")
        return p
    index = checkpoint_index(run_dir)
    if which == "best" and index.get("best"):
        p = run_dir / CKPT_DIR / index["best"][0]["file"]
        if p.is_file():
            return p
    p = run_dir / CKPT_DIR / LAST
    if not p.is_file():
        raise TrainError(f"{run_dir} has no checkpoint yet ({CKPT_DIR}/{LAST} is missing): "
                         "the run was stopped before its first checkpoint")
    return p


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
