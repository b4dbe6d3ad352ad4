"""Tasks: what a dataset asks a model to do, declared once.

A *task* says what shape the model's output takes, what its targets are, which losses
and metrics fit it, and how a batch is counted. Everything that depends on the task reads
it from here: the model's head (:class:`~microgradnn.models.SequenceModel`), the default
loss and metrics, the checks ``mgnn check`` runs before any work (a loss or a metric that
does not fit the task's targets is one clear line), and the step's counting
(:mod:`microgradnn.train.step`).

Losses and metrics declare what targets they take with a ``targets`` attribute:
``"classes"`` (integer class ids, an output with a class axis) or ``"values"`` (float
targets of the output's own shape), and with ``per_step = True`` that they need an
output at every time step (BLEU, CER). One without them is taken to fit any task.

A new task is one more :class:`Task` given to :func:`register_task`: its targets and
defaults, and, when a SequenceModel (``per_step`` or not) is not its shape, the function
that builds its model (``build_model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Task", "TASKS", "get_task", "register_task", "task_names", "targets_of", "misfit", "CLASSES", "VALUES"]

#: Target kinds: integer class ids (cross-entropy, accuracy) or float values (MSE).
CLASSES = "classes"
VALUES = "values"


@dataclass(frozen=True)
class Task:
    """One task.

    Args:
        name: its name in datasets and run folders (``lm``, ``classification``...).
        targets: :data:`CLASSES` or :data:`VALUES`.
        per_step: the model predicts at every time step (a language model) rather than
            once per sequence from the final hidden state.
        default_loss: the loss a spec with ``loss: null`` gets.
        default_metrics: what an evaluation reports besides the loss.
        carries_state: batches may continue each other (``train.tbptt``).
        reads_backwards: a bidirectional model is allowed (not for a model that must
            not see the future it predicts).
        build_model: ``build_model(model_spec, info) -> Module`` for a task whose model
            is not a :class:`~microgradnn.models.SequenceModel` (an encoder-decoder, say);
            None: the SequenceModel, whose head ``per_step`` shapes.
    """

    name: str
    targets: str
    per_step: bool
    default_loss: str
    default_metrics: tuple[str, ...] = ()
    carries_state: bool = False
    reads_backwards: bool = True
    build_model: Any = None

    def count(self, y: np.ndarray, ignore_index: int | None) -> int:
        """How many targets a batch's mean loss is over (ignored positions are not)."""
        if self.targets == CLASSES and ignore_index is not None:
            return int((y != ignore_index).sum())
        return int(y.size)

    def items(self, x: np.ndarray) -> int:
        """What throughput counts: tokens for a per-step task, sequences otherwise."""
        return int(x.shape[0] * x.shape[1]) if self.per_step else int(x.shape[0])


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` known (replacing one of the same name)."""
    if task.targets not in (CLASSES, VALUES):
        raise ValueError(f"Task.targets must be {CLASSES!r} or {VALUES!r}, got {task.targets!r}")
    _TASKS[task.name] = task
    return task


for _t in (
    Task("lm", CLASSES, per_step=True, default_loss="cross_entropy", default_metrics=("perplexity",),
         carries_state=True, reads_backwards=False),
    Task("classification", CLASSES, per_step=False, default_loss="cross_entropy", default_metrics=("accuracy",)),
    Task("regression", VALUES, per_step=False, default_loss="mse"),
):
    register_task(_t)
del _t

#: The names of the known tasks (a live view: register_task adds to it).
TASKS = _TASKS.keys()


def task_names() -> tuple[str, ...]:
    return tuple(_TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; a ValueError listing the known ones otherwise."""
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; tasks are {', '.join(_TASKS)}") from None


def misfit(component: Any, task: Task) -> str | None:
    """Why a loss or metric does not fit ``task`` (from its declarations), or None."""
    wants = targets_of(component)
    if wants is not None and wants != task.targets:
        return f"needs {wants} targets, and this data's task '{task.name}' has {task.targets} targets"
    if getattr(component, "per_step", False) and not task.per_step:
        return f"needs an output at every time step, and this data's task '{task.name}' gives one per sequence"
    return None


def targets_of(component: Any) -> str | None:
    """The target kind a loss or metric declares (``targets``), or None: fits any task."""
    value = getattr(component, "targets", None)
    return value if value in (CLASSES, VALUES) else None
