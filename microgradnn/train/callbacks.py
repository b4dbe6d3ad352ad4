"""Callbacks: how a display, a logger or your own code watches a run.

A callback is any object with some of these methods (all optional)::

    on_start(trainer)                  before the first step (after a resume, too)
    on_step(trainer, info)             after every optimizer step
    on_eval(trainer, results)          after every evaluation
    on_checkpoint(trainer, path, kind) after a checkpoint is written (kind: "last", "best")
    on_end(trainer, summary)           once, when fit() returns (whatever the reason)

``info`` is a dict: ``step``, ``epoch``, ``batch`` (index within the epoch), ``loss``,
``lr``, ``grad_norm`` (before clipping), ``items`` (tokens or samples in the batch),
``seconds`` (the step's wall time) and, with ``train.track_grad_norms``, ``grad_norms``:
a numpy array, the norm of dL/dh_t for every time step t of the top recurrent layer (the
vanishing-gradient picture; see :attr:`microgradnn.nn.LSTM.last_grad_norms`).

A callback may call ``trainer.request_stop(reason)``: the run saves a checkpoint after the
current step and returns, and ``mgnn resume`` can pick it up where it stopped.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["Callback", "CallbackList"]


class Callback:
    """A base class with every hook doing nothing; override what you need."""

    def on_start(self, trainer: Any) -> None:
        pass

    def on_step(self, trainer: Any, info: dict[str, Any]) -> None:
        pass

    def on_eval(self, trainer: Any, results: dict[str, Any]) -> None:
        pass

    def on_checkpoint(self, trainer: Any, path: str, kind: str) -> None:
        pass

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        pass


class CallbackList:
    """Calls a hook on every callback that defines it (duck typing: no base class needed)."""

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

    def on_step(self, trainer: Any, info: dict[str, Any]) -> None:
        self._call("on_step", trainer, info)

    def on_eval(self, trainer: Any, results: dict[str, Any]) -> None:
        self._call("on_eval", trainer, results)

    def on_checkpoint(self, trainer: Any, path: str, kind: str) -> None:
        self._call("on_checkpoint", trainer, path, kind)

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        self._call("on_end", trainer, summary)
