"""A run folder's layout, and the one checkpoint policy: which file is "best", "last",
and "the base of a fine-tune".

::

    runs/charlm/
      spec.yaml                 the resolved spec (every default filled in): rerun or resume it
      run.json                  model facts (task, sizes), status, parameter counts
      vocab.json                the vocabulary (token runs): ids <-> characters
      metrics.jsonl             one JSON object per line: {"event": "train"|"eval"|"end", ...}
      checkpoints/
        last.safetensors        everything needed to continue exactly
        best-step00000420.safetensors   the best k by the monitored metric (train.keep_best)
        index.json              which file is which: step, epoch, score
      adapter.safetensors       fine-tune runs: only what changed + a reference to the base
      export.safetensors        after ``mgnn export``: a merged, standalone model

This module only *reads*; every write goes through
:class:`microgradnn.train.runs.RunFolder`. It sits low (it imports nothing of
microgradnn) so that resume, eval, generate, export and fine-tuning
(:func:`microgradnn.finetune.load_base` too) all ask the same question the same way:
:func:`find_checkpoint`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "SPEC_FILE", "RUN_FILE", "VOCAB_FILE", "METRICS_FILE", "CKPT_DIR", "INDEX_FILE", "LAST", "ADAPTER_FILE",
    "EXPORT_FILE", "RunFolderError", "is_run_folder", "checkpoint_index", "find_checkpoint", "WHICH",
    "checkpoint_candidates",
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

#: What :func:`find_checkpoint` understands besides a file path.
WHICH = ("best", "last", "base")


class RunFolderError(ValueError):
    """A run folder, or a file in it, that can't be used (the message names it)."""


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder ``mgnn train`` wrote (it has a spec.yaml)."""
    p = Path(path)
    return p.is_dir() and (p / SPEC_FILE).is_file()


def checkpoint_index(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``checkpoints/index.json`` (``{"last": ..., "best": [...]}``; empty when absent)."""
    path = Path(run_dir) / CKPT_DIR / INDEX_FILE
    if not path.is_file():
        return {"last": None, "best": []}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
        raise RunFolderError(f"{path} is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(index, dict):
        raise RunFolderError(f"{path} does not hold a checkpoint index (a mapping)")
    best = index.get("best", [])
    if not isinstance(best, list) or not all(isinstance(b, dict) and isinstance(b.get("file"), str) for b in best):
        raise RunFolderError(f"{path}: \"best\" must be a list of {{\"file\": ..., \"step\": ...}} entries")
    for b in best:
        if "/" in b["file"] or "\\" in b["file"] or b["file"].startswith("."):
            raise RunFolderError(f"{path}: checkpoint name {b['file']!r} is not a file name in {CKPT_DIR}/")
    return index


def checkpoint_candidates(run_dir: str | os.PathLike, which: str = "best") -> list[Path]:
    """The checkpoint files :func:`find_checkpoint` would choose, in the order to try them
    when the first is damaged: the chosen one, then the other verified-able full states —
    for "best" the index's other best entries, then ``last``; for "last" the best-k
    files, newest first (each holds the whole training state of its step)."""
    run_dir = Path(run_dir)
    ckpts = run_dir / CKPT_DIR
    if which not in WHICH:
        return [find_checkpoint(run_dir, which)]
    on_disk = sorted(ckpts.glob("best-step*.safetensors"), reverse=True)  # newest step first
    # "best" is the index's word: a damaged index is an error, never a silent "last"
    ranked = [ckpts / b["file"] for b in checkpoint_index(run_dir).get("best") or []] if which != "last" else []
    order = (ranked + [ckpts / LAST] + on_disk) if which in ("best", "base") else ([ckpts / LAST] + on_disk)
    seen: list[Path] = []
    for p in order:
        if p not in seen and p.is_file():
            seen.append(p)
    return seen


def find_checkpoint(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint file of a run folder to load.

    * ``"best"``: the best-ranked checkpoint of ``index.json`` (what eval, generate and
      export use by default); falls back to ``last`` when no evaluation ranked one;
    * ``"last"``: where training stopped (what resume continues from);
    * ``"base"``: what a fine-tune started *from* this run uses: the same as ``"best"``
      (the model at its best is what one builds on);
    * anything else: a file path, or a file name inside ``checkpoints/``.
    """
    run_dir = Path(run_dir)
    ckpts = run_dir / CKPT_DIR
    if which not in WHICH:
        p = Path(which)
        if not p.is_file():
            p = ckpts / which
        if not p.is_file():
            raise RunFolderError(f"checkpoint {which!r} not found (looked in {ckpts})")
        return p
    if which in ("best", "base"):
        best = checkpoint_index(run_dir).get("best") or []
        if best and isinstance(best[0], dict) and (ckpts / str(best[0].get("file"))).is_file():
            return ckpts / str(best[0]["file"])
    last = ckpts / LAST
    if not last.is_file():
        raise RunFolderError(f"{run_dir} has no checkpoint yet ({CKPT_DIR}/{LAST} is missing): "
                             "the run was stopped before its first checkpoint")
    return last
