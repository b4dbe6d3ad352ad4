"""The step: forward, loss, count. Written once, used by training, validation and ``mgnn eval``.

::

    out, state = model(x, state)                 # lengths passed for padded sequences
    loss = loss_fn(out, y)                       # per-step outputs flattened: (B*T, V) vs (B*T,)
    count = task.count(y, ignore_index)          # how many targets the mean is over

Training adds backward and the optimizer (:class:`~microgradnn.train.Trainer`);
:func:`evaluate_batches` sums ``loss * count`` over batches for an exact mean, and feeds
each metric. The task (:mod:`microgradnn.tasks`) decides what is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ..autograd import no_grad
from ..backend import to_host
from ..tasks import Task
from ..tensor import Tensor
from ..tensor import tensor as make_tensor

__all__ = ["Step", "StepOutput", "evaluate_batches"]


@dataclass
class StepOutput:
    """What one forward + loss gives: the output, the state to carry, the loss (a 0-d
    Tensor, still in the graph when training) and the number of targets it averages."""

    output: Tensor
    state: Any
    loss: Tensor
    count: int


class Step:
    """Forward, loss and count for one model on one kind of data.

    Args:
        model: called ``model(x, state)`` (and ``lengths=`` for padded sequences).
        loss_fn: ``loss_fn(output, target) -> 0-d Tensor``.
        task: the data's :class:`~microgradnn.tasks.Task`.
        device: where batches go.
        streams: the data's batches continue each other (a character stream): its rows
            are all full length, so no ``lengths`` are passed.
        ignore_index: the loss's ignored target value, if it has one.
    """

    def __init__(self, model: Any, loss_fn: Any, task: Task, device: str = "cpu", streams: bool = False,
                 ignore_index: int | None = None) -> None:
        self.model, self.loss_fn, self.task = model, loss_fn, task
        self.device, self.streams, self.ignore_index = device, streams, ignore_index

    def forward(self, batch: Any, state: Any = None) -> tuple[Tensor, Any]:
        x = make_tensor(batch.x, device=self.device)
        lengths = None if (self.task.per_step and self.streams) else batch.lengths
        if lengths is not None:
            return self.model(x, state, lengths=lengths)
        return self.model(x, state)

    def loss(self, out: Tensor, y: np.ndarray) -> Tensor:
        target = make_tensor(y, device=self.device)
        if out.ndim == 3:  # per-step predictions: (B, T, V) against (B, T)
            return self.loss_fn(out.reshape(-1, out.shape[-1]), target.reshape(-1))
        return self.loss_fn(out, target)

    def count(self, y: np.ndarray) -> int:
        return self.task.count(y, self.ignore_index)

    def items(self, batch: Any) -> int:
        return self.task.items(batch.x)

    def __call__(self, batch: Any, state: Any = None) -> StepOutput:
        out, new_state = self.forward(batch, state)
        return StepOutput(out, new_state, self.loss(out, batch.y), self.count(batch.y))


def evaluate_batches(step: Step, segments: Iterable[Iterable[Any]], metrics: list, carry_state: bool,
                     reduce: Any = None) -> dict[str, Any]:
    """Mean loss over every scored target, and each metric, over ``segments`` (lists of
    batches). With ``carry_state`` the hidden state flows from batch to batch within a
    segment (a stream read in order), fresh at each segment. ``reduce`` (a callable on
    ``{"loss_sum", "count"}``, for several processes) sums the totals. Keys:
    ``val_loss``, ``val_<metric>``, ``val_items``; empty when nothing was scored."""
    for m in metrics:
        m.reset()
    model = step.model
    was_training = model.training
    model.eval()
    loss_sum, count = 0.0, 0
    try:
        with no_grad():
            for segment in segments:
                state = None
                for batch in segment:
                    result = step(batch, state if carry_state else None)
                    if carry_state:
                        state = result.state
                    if result.count == 0:
                        continue
                    batch_sum = float(result.loss.item()) * result.count
                    loss_sum += batch_sum
                    count += result.count
                    out_np = to_host(result.output)
                    for m in metrics:
                        m.update(out_np, batch.y, batch_sum, result.count)
    finally:
        model.train(was_training)
    if reduce is not None:
        totals = reduce({"loss_sum": loss_sum, "count": count})
        loss_sum, count = totals["loss_sum"], totals["count"]
    if not count:
        return {}
    results: dict[str, Any] = {"val_loss": loss_sum / count}
    for m in metrics:
        results[f"val_{m.name}"] = float(m.compute())
    results["val_items"] = count
    return results
