"""From a resolved spec to live objects: data, model, loss, optimizer, scheduler, metrics.

Every component named in a spec (``optimizer: {name: adam, lr: 3e-3}``) is looked up in
the plugin registry (:mod:`microgradnn.registry`) by kind and name and called with the
rest of its section as keyword arguments. The built-ins go through the very same path
as a third-party plugin: there is no special case for "our own" optimizers.

One exception, on purpose: the built-in cells ``lstm``/``gru``/``rnn`` build PyTorch's
whole-sequence layers (:class:`~microgradnn.nn.LSTM` ...) with their fused kernels,
instead of the generic runner over the registered cell class. Same numbers, much faster.
Any other cell name (a plugin's) runs through :class:`~microgradnn.nn.Recurrent`.

Errors a user can cause (an option the component rejects, a dataset too small for the
batch size) become :class:`BuildError` naming the spec section, so the CLI can print one
clear line instead of a traceback.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from ..tensor import tensor as make_tensor
from ..models import BUILTIN_CELLS, SequenceModel
from ..nn.module import Module

__all__ = [
    "TrainError", "BuildError", "component", "build_data", "build_model", "build_loss",
    "build_optimizer", "build_scheduler", "build_metrics", "default_metric_names", "ModelInfo",
    "registry_get",
]


class TrainError(RuntimeError):
    """A training / evaluation problem the user can fix (bad run folder, bad option...).

    The CLI prints its message as one line, without a traceback."""


class BuildError(TrainError):
    """A spec section could not be turned into an object (the component rejected an option)."""


# ----------------------------------------------------------------------------- helpers


def component(value: Any, section: str) -> tuple[str, dict[str, Any]]:
    """``"adam"`` or ``{name: adam, lr: 1e-3}`` -> ``("adam", {"lr": 1e-3})``."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict):
        opts = dict(value)
        name = opts.pop("name", None)
        if not isinstance(name, str):
            raise BuildError(f"{section}.name: a component name (string) is required, got {name!r}")
        return name, opts
    raise BuildError(f"{section}: expected a name or a mapping with a 'name' key, got {value!r}")


def registry_get(kind: str, name: str) -> Any:
    """``registry.get`` (imported lazily: the registry reads entry points on first use)."""
    from .. import registry

    return registry.get(kind, name)


def _call(section: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a component's factory; turn the TypeError/ValueError a bad option raises into a
    :class:`BuildError` that names the spec section."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        opts = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise BuildError(f"{section}: {what}({opts}) failed: {exc}") from exc


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


# ----------------------------------------------------------------------------- data


def build_data(spec: dict[str, Any], vocab: Any = None) -> Any:
    """The DataModule of ``spec["data"]`` (registry kind "datasets").

    ``vocab``: a vocabulary to reuse (a trained model's, when evaluating it on new text or
    fine-tuning it): token ids must mean the same characters as in training. It is passed
    as the factory's ``vocab`` option when the factory takes one and the spec does not set
    it already."""
    name, opts = component(spec["data"], "data")
    factory = registry_get("datasets", name)
    if vocab is not None and opts.get("vocab") is None and _accepts(factory, "vocab"):
        opts["vocab"] = vocab
    shown = {k: v for k, v in opts.items() if k != "vocab"}
    try:
        return factory(**opts)
    except (TypeError, ValueError) as exc:
        from ..data.base import DataError

        if isinstance(exc, DataError):
            raise  # already a clear message naming the dataset and option
        raise BuildError(f"data: {name}({', '.join(f'{k}={v!r}' for k, v in shown.items())}) failed: {exc}") from exc


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


def cell_choice(cell_value: Any) -> tuple[Any, dict[str, Any], str]:
    """``model.cell`` -> (what SequenceModel gets as ``cell``, cell options, display name)."""
    name, opts = component(cell_value, "model.cell")
    if name.lower() in BUILTIN_CELLS:
        return name.lower(), opts, name.lower()
    return registry_get("cells", name), opts, name


def build_model(model_spec: dict[str, Any], info: dict[str, Any]) -> SequenceModel:
    """A :class:`~microgradnn.models.SequenceModel` from the spec's ``model`` section."""
    cell, cell_options, cell_name = cell_choice(model_spec.get("cell", "lstm"))
    init_state = model_spec.get("init_state")
    kwargs = dict(
        vocab_size=info.get("vocab_size"),
        input_size=info.get("input_size") if info.get("vocab_size") is None else None,
        embedding_dim=int(model_spec.get("embedding_dim", 64)),
        padding_idx=info.get("padding_idx"),
        cell=cell,
        hidden_size=int(model_spec.get("hidden_size", 128)),
        num_layers=int(model_spec.get("num_layers", 1)),
        dropout=float(model_spec.get("dropout", 0.0)),
        bidirectional=bool(model_spec.get("bidirectional", False)),
        task=info["task"],
        init_state=None if init_state in (None, "zeros") else init_state,
        cell_options=cell_options,
    )
    return _call("model", f"SequenceModel(cell={cell_name!r})", SequenceModel, info["output_size"], **kwargs)


# ----------------------------------------------------------------------------- loss


DEFAULT_LOSS = {"lm": "cross_entropy", "classification": "cross_entropy", "regression": "mse"}


def build_loss(loss_spec: Any, task: str) -> Callable[..., Any]:
    """The loss callable ``loss(output, target) -> 0-d Tensor``: a registered loss class is
    instantiated with the section's options; a registered function gets them bound."""
    if loss_spec is None:
        loss_spec = DEFAULT_LOSS[task]
    name, opts = component(loss_spec, "loss")
    obj = registry_get("losses", name)
    for key in ("weight", "pos_weight"):  # lists in YAML, tensors for the loss
        if isinstance(opts.get(key), (list, tuple)):
            opts[key] = make_tensor(np.asarray(opts[key], dtype=np.float32))
    if isinstance(obj, type):
        return _call("loss", name, obj, **opts)
    if not opts:
        return obj

    def bound(output: Any, target: Any) -> Any:
        return obj(output, target, **opts)

    return bound


def loss_ignore_index(loss_fn: Any) -> int | None:
    value = getattr(loss_fn, "ignore_index", None)
    return int(value) if isinstance(value, (int, np.integer)) else None


# ----------------------------------------------------------------------------- optimizer


def build_optimizer(opt_spec: Any, groups: list[dict[str, Any]]) -> Any:
    name, opts = component(opt_spec, "optimizer")
    cls = registry_get("optimizers", name)
    return _call("optimizer", name, cls, groups, **opts)


def build_scheduler(sched_spec: Any, optimizer: Any, total_steps: int) -> Any:
    """The scheduler, stepped once per optimizer step (``plateau``: once per evaluation,
    with the monitored value). A horizon the spec leaves out (``T_max`` for cosine,
    ``total_steps`` for warmup, ``total_iters``) is the run's total number of steps."""
    if sched_spec is None:
        return None
    name, opts = component(sched_spec, "scheduler")
    cls = registry_get("schedulers", name)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    for horizon in ("T_max", "total_steps", "total_iters"):
        if horizon in params and opts.get(horizon) is None and params[horizon].default is inspect.Parameter.empty:
            opts[horizon] = int(total_steps)
    return _call("scheduler", name, cls, optimizer, **opts)


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
    return {"lm": ["perplexity"], "classification": ["accuracy"]}.get(task, [])


def build_metrics(names: list[str] | None, task: str) -> list[Any]:
    """Metric instances for ``train.metrics`` plus the task's defaults (no duplicates)."""
    wanted: list[str] = []
    for n in default_metric_names(task) + list(names or []):
        if n not in wanted:
            wanted.append(n)
    metrics = []
    for n in wanted:
        cls = registry_get("metrics", n)
        metric = _call(f"train.metrics[{n}]", n, cls) if isinstance(cls, type) else cls
        metrics.append(metric)
    return metrics


def metric_key(metric: Any, fallback: str) -> str:
    return str(getattr(metric, "name", None) or fallback)


def count_parameters(model: Module) -> dict[str, Any]:
    total = sum(int(p.numel()) for p in model.parameters())
    trainable = sum(int(p.numel()) for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "share": (trainable / total) if total else 0.0}
