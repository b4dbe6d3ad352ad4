"""From a resolved spec to live objects: data, model, loss, optimizer, scheduler, metrics.

Every component named in a spec (``optimizer: {name: adam, lr: 3e-3}``) is looked up in
the plugin registry (:mod:`microgradnn.registry`) by kind and name and called, as its
contract says (:mod:`microgradnn.contracts`), with what the framework supplies and the
spec's options. The built-ins go through the very same path as a third-party plugin.
The spec bound those options to the same callable when it was validated, so what
``mgnn check`` accepted builds.

Errors a user can still cause (an option the component rejects, a dataset too small for
the batch size) become :class:`BuildError` naming the spec section, so the CLI can print
one clear line instead of a traceback.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import numpy as np

from .. import registry
from ..contracts import DataModuleLike
from ..models import SequenceModel
from ..nn.module import Module
from ..spec import Component, ModelSpec, ResolvedSpec
from ..spec.resolved import model_spec_of
from ..tasks import get_task
from ..tensor import tensor as make_tensor
from .errors import BuildError, TrainError

__all__ = [
    "TrainError", "BuildError", "build_data", "build_model", "build_loss", "build_optimizer", "build_scheduler",
    "build_metrics", "default_metric_names", "ModelInfo", "count_parameters", "is_plateau", "loss_ignore_index",
]


def _call(section: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a component's factory; turn the TypeError/ValueError a bad option raises into a
    :class:`BuildError` that names the spec section."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        opts = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise BuildError(f"{section}: {what}({opts}) failed: {exc}") from exc


def accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


# ----------------------------------------------------------------------------- data


def build_data(data: Component | Mapping[str, Any], vocab: Any = None) -> Any:
    """The DataModule of the spec's ``data`` component (registry kind "datasets").

    ``vocab``: a vocabulary to reuse (a trained model's, when evaluating it on new text or
    fine-tuning it): token ids must mean the same characters as in training. It is passed
    as the factory's ``vocab`` option when the factory takes one and the spec does not set
    it already."""
    if isinstance(data, ResolvedSpec):  # the whole spec given
        data = data.data
    if not isinstance(data, Component):
        data = Component.of(data)
    opts = data.kwargs()
    factory = registry.get("datasets", data.name)
    if vocab is not None and opts.get("vocab") is None and accepts(factory, "vocab"):
        opts["vocab"] = vocab
    shown = {k: v for k, v in opts.items() if k != "vocab"}
    try:
        dm = factory(**opts)
    except (TypeError, ValueError) as exc:
        from ..data.base import DataError

        if isinstance(exc, DataError):
            raise  # already a clear message naming the dataset and option
        raise BuildError(f"data: {data.name}({', '.join(f'{k}={v!r}' for k, v in shown.items())}) failed: {exc}") \
            from exc
    if not isinstance(dm, DataModuleLike):
        raise BuildError(f"data: dataset '{data.name}' returned a {type(dm).__name__}, which is not a DataModule "
                         "(the contract: DataModuleLike in microgradnn.contracts)")
    return dm


# ----------------------------------------------------------------------------- model


class ModelInfo(dict):
    """What the model's shape depends on besides the spec's ``model`` section (the data's
    task and sizes). Stored in each run folder (``run.json``) so ``generate`` can rebuild
    the model without reading the data again."""

    KEYS = ("task", "output_size", "vocab_size", "input_size", "padding_idx")

    @classmethod
    def from_data(cls, dm: Any) -> "ModelInfo":
        vocab = getattr(dm, "vocab", None)
        return cls(
            task=dm.task,
            output_size=int(dm.output_size),
            vocab_size=None if vocab is None else len(vocab),
            input_size=None if vocab is not None else dm.input_size,
            padding_idx=getattr(vocab, "pad_id", None) if vocab is not None else None,
        )


def build_model(model_spec: ModelSpec | Mapping[str, Any], info: Mapping[str, Any]) -> SequenceModel:
    """The model of the spec's ``model`` section (a :class:`~microgradnn.spec.ModelSpec`,
    or a mapping completed from the schema) for the data's task: a
    :class:`~microgradnn.models.SequenceModel`, or what the task's ``build_model`` builds."""
    m = model_spec if isinstance(model_spec, ModelSpec) else model_spec_of(model_spec)
    custom = get_task(info["task"]).build_model
    if custom is not None:  # a task with a model of its own shape (microgradnn.tasks)
        return _call("model", f"{info['task']} model", custom, m, info)
    vocab_size = info.get("vocab_size")
    return _call("model", f"SequenceModel(cell={m.cell.name!r})", SequenceModel, info["output_size"],
                 vocab_size=vocab_size, input_size=info.get("input_size") if vocab_size is None else None,
                 embedding_dim=m.embedding_dim, padding_idx=info.get("padding_idx"), cell=m.cell.name,
                 hidden_size=m.hidden_size, num_layers=m.num_layers, dropout=m.dropout,
                 bidirectional=m.bidirectional, task=info["task"],
                 init_state=None if m.init_state == "zeros" else m.init_state, cell_options=m.cell.kwargs())


# ----------------------------------------------------------------------------- loss


def build_loss(loss: Component | None, task: str) -> Callable[..., Any]:
    """The loss callable ``loss(output, target) -> 0-d Tensor``: a registered loss class is
    instantiated with the section's options; a registered function gets them bound.
    ``None``: the task's default loss."""
    if loss is None:
        loss = Component.of(get_task(task).default_loss)
    elif not isinstance(loss, Component):
        loss = Component.of(loss)
    opts = loss.kwargs()
    obj = registry.get("losses", loss.name)
    for key in ("weight", "pos_weight"):  # lists in YAML, tensors for the loss
        if isinstance(opts.get(key), (list, tuple)):
            opts[key] = make_tensor(np.asarray(opts[key], dtype=np.float32))
    if isinstance(obj, type):
        return _call("loss", loss.name, obj, **opts)
    if not opts:
        return obj

    def bound(output: Any, target: Any) -> Any:
        return obj(output, target, **opts)

    bound.targets = getattr(obj, "targets", None)  # type: ignore[attr-defined]
    return bound


def loss_ignore_index(loss_fn: Any) -> int | None:
    value = getattr(loss_fn, "ignore_index", None)
    return int(value) if isinstance(value, (int, np.integer)) else None


# ----------------------------------------------------------------------------- optimizer


def build_optimizer(opt: Component, groups: list[dict[str, Any]]) -> Any:
    cls = registry.get("optimizers", opt.name)
    return _call("optimizer", opt.name, cls, groups, **opt.kwargs())


def build_scheduler(sched: Component | None, optimizer: Any, total_steps: int) -> Any:
    """The scheduler, stepped once per optimizer step (``plateau``: once per evaluation,
    with the monitored value). A horizon the spec leaves out (``T_max`` for cosine,
    ``total_steps`` for warmup, ``total_iters``) is the run's total number of steps."""
    if sched is None:
        return None
    opts = sched.kwargs()
    cls = registry.get("schedulers", sched.name)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    for horizon in ("T_max", "total_steps", "total_iters"):
        if horizon in params and opts.get(horizon) is None and params[horizon].default is inspect.Parameter.empty:
            opts[horizon] = int(total_steps)
    return _call("scheduler", sched.name, cls, optimizer, **opts)


def is_plateau(scheduler: Any) -> bool:
    """Schedulers whose ``step`` takes the monitored metric (ReduceLROnPlateau and kin)."""
    if scheduler is None:
        return False
    try:
        params = list(inspect.signature(scheduler.step).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] in ("metrics", "metric", "value")


# ----------------------------------------------------------------------------- metrics


def default_metric_names(task: str) -> list[str]:
    """What an evaluation reports besides the loss when the spec asks for nothing more."""
    return list(get_task(task).default_metrics)


def build_metrics(names: Any, task: str) -> list[Any]:
    """Metric instances for ``train.metrics`` plus the task's defaults (no duplicates)."""
    wanted: list[str] = []
    for n in default_metric_names(task) + list(names or []):
        if n not in wanted:
            wanted.append(n)
    metrics = []
    for n in wanted:
        cls = registry.get("metrics", n)
        metrics.append(_call(f"train.metrics[{n}]", n, cls) if isinstance(cls, type) else cls)
    return metrics


def count_parameters(model: Module) -> dict[str, Any]:
    total = sum(int(p.numel()) for p in model.parameters())
    trainable = sum(int(p.numel()) for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "share": (trainable / total) if total else 0.0}
