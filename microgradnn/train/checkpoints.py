"""The checkpoint policy of a run: what a checkpoint holds, which ones are kept ("best"
by the monitored value, "last"), and how one is put back into a model.

Which *file* to load ("best", "last", "base") is decided by
:func:`microgradnn.runfolder.find_checkpoint`, for resume, eval, generate, export and
fine-tuning alike; files are written by :class:`~microgradnn.train.runs.RunFolder`.

A checkpoint holds everything that decides the rest of the run: weights (for a
fine-tune only the strategy's delta, the extra trainable parameters and a reference to
the base), optimizer moments, scheduler, the random generator's state (dropout), the
data position (epoch + index of the next batch), the carried hidden state, the best
scores and the early-stopping counters. A run stopped at any checkpoint and resumed ends
with bit-identical weights to one never stopped (tested in tests/train/).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import to_host
from ..checkpoint import CheckpointError
from ..checkpoint import load as mg_load
from ..tensor import tensor as make_tensor
from .errors import TrainError

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "BestK", "CheckpointFallbackWarning", "read_checkpoint", "read_run_checkpoint", "restore_weights",
           "state_to_arrays", "state_from_arrays"]

CHECKPOINT_FORMAT = "microgradnn.run-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointFallbackWarning(UserWarning):
    """The checkpoint asked for was damaged; an earlier one that verifies was used instead."""


class BestK:
    """The best ``k`` checkpoints by a monitored value (lower is better for mode "min")."""

    def __init__(self, k: int, monitor: str, mode: str, entries: list[dict[str, Any]] | None = None) -> None:
        self.k, self.monitor, self.mode = k, monitor, mode
        self.entries: list[dict[str, Any]] = [dict(e) for e in entries or []]

    def _sort_key(self, entry: dict[str, Any]) -> tuple:
        score = entry["score"]
        return (score if self.mode == "min" else -score, entry["step"])

    def ranks(self, score: float | None) -> bool:
        """Whether a checkpoint scoring ``score`` belongs among the best k."""
        if score is None or self.k <= 0 or not math.isfinite(score):
            return False
        if len(self.entries) < self.k:
            return True
        worst = self.entries[-1]["score"]
        return score < worst if self.mode == "min" else score > worst

    def add(self, step: int, epoch: int, score: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Rank a new checkpoint: (its entry, the entries it pushes out)."""
        entry = {"file": f"best-step{step:08d}.safetensors", "step": step, "epoch": epoch, "monitor": self.monitor,
                 "score": float(score)}
        ranked = sorted(self.entries + [entry], key=self._sort_key)
        self.entries = ranked[: self.k]
        return entry, [d for d in ranked[self.k:] if d["file"] != entry["file"]]

    def is_best(self, entry: dict[str, Any]) -> bool:
        return bool(self.entries) and self.entries[0]["file"] == entry["file"]


def _not_a_run_checkpoint(state: Any) -> str | None:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return "not a run checkpoint written by mgnn train"
    progress = state.get("progress")
    if not isinstance(progress, dict) or not all(isinstance(progress.get(k), int) and not isinstance(progress.get(k), bool)
                                                 for k in ("step", "epoch", "batch")):
        return "its progress record (step, epoch, batch) is malformed"
    if not isinstance(state.get("param_groups"), list) or not isinstance(state.get("optimizer"), dict):
        return "its optimizer record is malformed"
    return None


def read_checkpoint(path: str | os.PathLike, device: str | None = None) -> dict[str, Any]:
    """A run checkpoint's contents; a clear :class:`TrainError` for anything else."""
    try:
        state = mg_load(path, device=device if device not in (None, "cpu") else None)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    why = _not_a_run_checkpoint(state)
    if why is not None:
        raise TrainError(f"{path} is {why}" if why.startswith("not") else f"{path}: {why}")
    return state


def read_run_checkpoint(run_dir: str | os.PathLike, which: str = "best",
                        device: str | None = None) -> tuple[dict[str, Any], "Path", str | None]:
    """``(state, path, note)``: the run's ``which`` checkpoint, or — when that file is
    damaged (its SHA-256 disagrees, it is cut short) — the previous one that verifies;
    ``note`` is then one line saying which file was refused and which is used instead
    (None when the first choice was fine)."""
    from .. import runfolder
    from .verified import fallback_note, load_first_verified

    try:
        candidates = runfolder.checkpoint_candidates(run_dir, which)
    except runfolder.RunFolderError as exc:
        raise TrainError(str(exc)) from None
    if not candidates:
        runfolder.find_checkpoint(run_dir, which)  # raises its clear "no checkpoint yet"
    load_device = device if device not in (None, "cpu") else None
    try:
        state, path, refused = load_first_verified(candidates, lambda p: mg_load(p, device=load_device),
                                                   accept=_not_a_run_checkpoint)
    except CheckpointError as exc:
        raise TrainError(str(exc).removeprefix("mg.load: ")) from None
    note = fallback_note(refused, path, state["progress"]["step"]) if refused else None
    return state, path, note


def restore_weights(model: Any, state: dict[str, Any], strategy: Any) -> None:
    """Put a checkpoint's weights into ``model``: the full state dict, or (fine-tune runs)
    the strategy's delta plus the extra trainable parameters on top of the loaded base."""
    if state.get("finetune") is not None:
        ft = state["finetune"]
        if strategy is None:
            raise TrainError("this checkpoint holds a fine-tune delta but the run has no finetune section")
        strategy.load_delta(model, ft["delta"])
        if ft.get("extra"):
            model.load_state_dict(ft["extra"], strict=False)
        if ft.get("strategy_state") is not None:
            strategy.load_state_dict(ft["strategy_state"])
    else:
        model.load_state_dict(state["model"])


def state_to_arrays(state: Any) -> Any:
    """A recurrent state (a Tensor or a tuple of them) as host arrays, for a checkpoint."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(np.array(to_host(s), copy=True) for s in state)
    return np.array(to_host(state), copy=True)


def state_from_arrays(arrays: Any, device: str) -> Any:
    if arrays is None:
        return None
    if isinstance(arrays, (tuple, list)):
        return tuple(make_tensor(a, device=device) for a in arrays)
    return make_tensor(arrays, device=device)
