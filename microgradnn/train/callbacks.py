"""Callbacks: one hook list for everything that watches or steers a run.

Early stopping, checkpoint cadence, the non-finite-loss stop, the metrics log and the
CLI's live display are all callbacks on the Trainer's one :class:`CallbackList` (as in
Lightning and Keras); your own code joins the same list. A callback is any object with
some of these methods (all optional)::

    on_start(trainer)                  before the first step (after a resume, too)
    on_after_backward(trainer)         gradients are ready (before their norm and clipping)
    on_step(trainer, info)             after every optimizer step (and a step that went NaN)
    on_eval(trainer, results)          after every evaluation
    on_step_end(trainer, info)         after the step's evaluation, if there was one
    on_checkpoint(trainer, path, kind) after a checkpoint is written (kind: "last", "best")
    on_end(trainer, summary)           once, when fit() returns (whatever the reason)

``info`` is a dict: ``step``, ``epoch``, ``batch`` (index within the epoch), ``loss``,
``lr``, ``grad_norm`` (before clipping), ``items`` (tokens or samples in the batch),
``seconds`` (the step's wall time) and, with ``train.track_grad_norms``, ``grad_norms``:
a numpy array, the norm of dL/dh_t for every time step t of the top recurrent layer.
A step whose loss or gradient norm is not finite carries ``nonfinite`` (why) instead
of having updated anything.

A callback may call ``trainer.request_stop(reason, status)``: the run saves a checkpoint
after the current step (unless the status is ``"nan"``) and returns; ``mgnn resume``
picks it up where it stopped. It may call ``trainer.save_checkpoint(score)``. Across
several processes every stop is taken where they vote on stopping, after ``on_step`` and
``on_eval``: a stop asked in ``on_step_end`` takes effect one step later.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .errors import BuildError

__all__ = ["Callback", "CallbackList", "EarlyStopping", "CheckpointCadence", "NonFiniteStop", "MetricsLog",
           "HOOKS"]

HOOKS = ("on_start", "on_after_backward", "on_step", "on_eval", "on_step_end", "on_checkpoint", "on_end")


class Callback:
    """A base class with every hook doing nothing; override what you need."""

    def on_start(self, trainer: Any) -> None:
        pass

    def on_after_backward(self, trainer: Any) -> None:
        pass

    def on_step(self, trainer: Any, info: dict[str, Any]) -> None:
        pass

    def on_eval(self, trainer: Any, results: dict[str, Any]) -> None:
        pass

    def on_step_end(self, trainer: Any, info: dict[str, Any]) -> None:
        pass

    def on_checkpoint(self, trainer: Any, path: str, kind: str) -> None:
        pass

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        pass


class CallbackList:
    """Calls a hook on every callback that defines it, in order (duck typing: no base
    class needed)."""

    def __init__(self, callbacks: Iterable[Any] = ()) -> None:
        self.callbacks = list(callbacks)

    def append(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def __iter__(self):
        return iter(self.callbacks)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(*args)

    def on_start(self, trainer: Any) -> None:
        self._call("on_start", trainer)

    def on_after_backward(self, trainer: Any) -> None:
        self._call("on_after_backward", trainer)

    def on_step(self, trainer: Any, info: dict[str, Any]) -> None:
        self._call("on_step", trainer, info)

    def on_eval(self, trainer: Any, results: dict[str, Any]) -> None:
        self._call("on_eval", trainer, results)

    def on_step_end(self, trainer: Any, info: dict[str, Any]) -> None:
        self._call("on_step_end", trainer, info)

    def on_checkpoint(self, trainer: Any, path: str, kind: str) -> None:
        self._call("on_checkpoint", trainer, path, kind)

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        self._call("on_end", trainer, summary)


# ============================================================================ built-ins


class NonFiniteStop(Callback):
    """Stop at once when a step's loss or gradient norm is NaN/inf (status ``"nan"``).
    Nothing was updated by that step, and the last good checkpoint is kept."""

    def on_step(self, trainer: Any, info: dict[str, Any]) -> None:
        why = info.get("nonfinite")
        if why is None:
            return
        saved = trainer.last_saved_step
        kept = (f"the last good checkpoint (step {saved}) is kept in {trainer.folder.checkpoints / 'last.safetensors'}"
                if trainer.folder.writer and saved >= 0 else "no checkpoint had been written yet")
        trainer.request_stop(f"stopped at step {info['step']}: {why}; {kept}. Try a lower optimizer.lr or "
                             "train.clip_grad_norm", "nan")


class MetricsLog(Callback):
    """The mean training loss, lr, gradient norm and throughput every ``log_every``
    steps, as ``{"event": "train", ...}`` records of ``metrics.jsonl``."""

    def __init__(self, log_every: int) -> None:
        self.log_every = log_every
        self._losses: list[float] = []
        self._items = 0
        self._seconds = 0.0

    def on_step(self, trainer: Any, info: dict[str, Any]) -> None:
        if "nonfinite" in info:
            return
        self._losses.append(info["loss"])
        self._items += info["items"]
        self._seconds += info.get("seconds", 0.0)
        if trainer.step % self.log_every == 0:
            trainer.folder.append_metrics({
                "event": "train", "step": trainer.step, "epoch": trainer.epoch,
                "loss": sum(self._losses) / len(self._losses), "lr": info["lr"], "grad_norm": info.get("grad_norm"),
                "throughput": self._items / self._seconds if self._seconds > 0 else None,
                "elapsed": trainer.elapsed})
            self._losses, self._items, self._seconds = [], 0, 0.0

    def state_dict(self) -> dict[str, Any]:
        """The running window since the last record: part of a checkpoint, so the first
        record after a resume averages the same losses as an uninterrupted run's."""
        return {"losses": list(self._losses), "items": self._items, "seconds": self._seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._losses = [float(v) for v in state.get("losses") or []]
        self._items, self._seconds = int(state.get("items", 0)), float(state.get("seconds", 0.0))


class EarlyStopping(Callback):
    """Stop when the monitored value stops improving, or diverges.

    * improvement: better than the best so far by more than ``min_delta``
      (lower for mode "min", higher for "max");
    * ``patience``: evaluations in a row without improvement before stopping;
    * ``divergence_threshold``: stop at once when the value is worse than this
      (e.g. val_loss above 10: the run has blown up, waiting is pointless);
    * a NaN/inf value stops at once.

    ``state_dict``/``load_state_dict`` make it part of a checkpoint."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 5, min_delta: float = 0.0,
                 divergence_threshold: float | None = None) -> None:
        if mode not in ("min", "max"):
            raise BuildError(f"train.early_stopping.mode: must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = int(patience), abs(float(min_delta))
        self.divergence_threshold = divergence_threshold
        self.best: float | None = None
        self.bad_evals = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> tuple[str, str] | None:
        """Record one evaluation; return (status, why) to stop, or None to go on."""
        if not math.isfinite(value):
            return "diverged", f"{self.monitor} is {value}"
        if self.divergence_threshold is not None:
            worse = value > self.divergence_threshold if self.mode == "min" else value < self.divergence_threshold
            if worse:
                return "diverged", (f"{self.monitor} = {value:.6g} is past the divergence threshold "
                                    f"{self.divergence_threshold:g}")
        if self.improved(value):
            self.best, self.bad_evals = value, 0
            return None
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            return "early_stopped", (f"no improvement of {self.monitor} (best {self.best:.6g}) in {self.bad_evals} "
                                     f"evaluations (patience {self.patience}, min_delta {self.min_delta:g})")
        return None

    def on_eval(self, trainer: Any, results: dict[str, Any]) -> None:
        score = results.get(self.monitor)
        if isinstance(score, float):
            verdict = self.update(score)
            if verdict is not None:
                trainer.request_stop(verdict[1], verdict[0])

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evals = state.get("best"), int(state.get("bad_evals", 0))


class CheckpointCadence(Callback):
    """When checkpoints are written: after every evaluation (ranked by the monitored
    value for the best-k files), every ``every`` steps between evaluations, and at a
    requested stop (:meth:`on_step_end`)."""

    def __init__(self, every: int | None) -> None:
        self.every = every

    def on_eval(self, trainer: Any, results: dict[str, Any]) -> None:
        score = results.get(trainer.monitor)
        trainer.save_checkpoint(score if isinstance(score, float) else None)

    def on_step_end(self, trainer: Any, info: dict[str, Any]) -> None:
        if trainer.last_saved_step == trainer.step:
            return
        stopping = trainer.stop_request is not None and trainer.stop_request[0] != "nan"
        if stopping or (self.every is not None and trainer.step % self.every == 0 and "nonfinite" not in info):
            trainer.save_checkpoint()
