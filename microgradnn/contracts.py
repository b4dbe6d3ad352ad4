"""The contract of every kind of component, declared once.

For each kind the registry serves (cells, losses, optimizers, schedulers, fine-tuning
strategies, datasets, metrics) this module holds

* a :class:`typing.Protocol`: what the *built* object offers, the methods the framework
  calls on it (and nothing it merely probes for);
* a :class:`Contract`: how the *registered* object (a class or a factory) is called
  (the arguments the framework supplies itself, the rest being the spec's options),
  the callable that build really calls (:meth:`Contract.target`), and
  :meth:`Contract.verify`, which the registry runs when it loads an entry, as pluggy
  verifies an implementation against its hookspec: a plugin that breaks the contract is
  reported once, with its distribution's name, before any run can trip over it.

The spec validates a component's options by binding them to :meth:`Contract.target`
(``inspect.signature(...).bind``), and build calls that very callable, so what
``mgnn check`` accepts is what builds. ``mgnn plugins check NAME`` runs the same
verification and then exercises the built object.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

__all__ = [
    "CellLike", "LossLike", "OptimizerLike", "SchedulerLike", "StrategyLike", "DataModuleLike", "MetricLike",
    "Contract", "CONTRACTS", "contract", "verify", "KINDS",
]


# ============================================================================ the protocols


@runtime_checkable
class CellLike(Protocol):
    """A recurrent cell (a Module): ``cell(input_size, hidden_size, **options)``.

    ``step(x_t, state) -> (h_t, new_state)`` (or ``__call__``) advances one time step.
    ``init_state(batch, device, dtype)`` is optional (else one zero (B, hidden_size)
    tensor); ``device`` and ``dtype`` may be None, meaning the defaults, as in PyTorch.
    ``output_size`` is optional (else h_t is hidden_size wide)."""

    hidden_size: int

    def __call__(self, x: Any, state: Any) -> Any: ...


@runtime_checkable
class LossLike(Protocol):
    """``loss(output, target) -> 0-d Tensor``. Optional attributes: ``targets``
    ("classes" or "values", see :mod:`microgradnn.tasks`) and ``ignore_index``."""

    def __call__(self, output: Any, target: Any) -> Any: ...


@runtime_checkable
class OptimizerLike(Protocol):
    """``Optimizer(params, **options)``: a :class:`microgradnn.optim.Optimizer` subclass."""

    param_groups: list

    def step(self) -> Any: ...

    def zero_grad(self) -> None: ...

    def add_param_group(self, group: dict) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class SchedulerLike(Protocol):
    """``Scheduler(optimizer, **options)``: stepped once per optimizer step (a scheduler
    whose ``step`` takes the monitored value is stepped once per evaluation with it)."""

    def step(self, *args: Any) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class StrategyLike(Protocol):
    """A fine-tuning strategy, ``Strategy(**options)``: every method the Trainer, the run
    folder and ``mgnn export`` call. :class:`microgradnn.finetune.Strategy` implements
    them all; a plugin subclassing it writes only ``_apply`` (and ``_merge``)."""

    def apply(self, model: Any) -> None: ...

    def on_step(self, step: int) -> None: ...

    def penalty(self, model: Any = None) -> Any: ...

    def delta_state_dict(self, model: Any = None) -> dict: ...

    def load_delta(self, model: Any, delta: dict) -> Any: ...

    def merge(self, model: Any = None) -> Any: ...

    def report(self, model: Any = None) -> dict: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class DataModuleLike(Protocol):
    """What a dataset factory ``factory(**options)`` returns (:mod:`microgradnn.data.base`)."""

    name: str
    task: str
    output_size: int

    def train_batches(self, batch_size: int, epoch: int = 0, seed: int = 0, start: int = 0) -> Iterator[Any]: ...

    def val_batches(self, batch_size: int) -> Iterable[Any]: ...

    def num_train_batches(self, batch_size: int) -> int: ...

    def num_val_batches(self, batch_size: int) -> int: ...

    def describe(self) -> dict: ...


@runtime_checkable
class MetricLike(Protocol):
    """``Metric()``: ``reset()``, ``update(output, target, loss_sum, count)`` per batch,
    ``compute() -> float``. ``name`` is its key (``val_<name>``), ``higher_is_better``
    which way "best" points; ``targets`` (optional) what it fits."""

    name: str
    higher_is_better: bool

    def reset(self) -> None: ...

    def update(self, output: Any, target: Any, loss_sum: float = 0.0, count: int = 0) -> None: ...

    def compute(self) -> float: ...


# ============================================================================ the contracts


@dataclass(frozen=True)
class Contract:
    """How one kind of component is registered, called and checked.

    ``supplied``: the leading positional arguments the framework passes (their names, for
    messages: a cell's input and hidden sizes, an optimizer's parameters);
    ``supplied_names``: keyword arguments the framework passes itself, so a spec can't;
    ``base``: the class a registered class must subclass (a dotted path, imported when
    checked); ``methods``: methods a registered class must have (the protocol's);
    ``attributes``: class attributes it must have."""

    kind: str
    protocol: type
    supplied: tuple[str, ...] = ()
    supplied_names: frozenset[str] = frozenset()
    base: str | None = None
    methods: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    factory_ok: bool = True

    def target(self, obj: Any) -> Callable[..., Any]:
        """The callable build calls with the supplied arguments and the spec's options.
        For a built-in cell that is its fused whole-sequence layer (``LSTMCell`` ->
        :class:`~microgradnn.nn.LSTM`, via the cell's ``sequence_layer``), which then
        also takes the layer's options (``proj_size``); otherwise ``obj`` itself."""
        if self.kind == "cells":
            layer = getattr(obj, "sequence_layer", None)
            if layer is not None:
                return layer
        return obj

    def target_supplied(self, obj: Any) -> tuple[tuple[str, ...], frozenset[str]]:
        """(positional, keyword) arguments the framework passes to :meth:`target`."""
        if self.kind == "cells" and getattr(obj, "sequence_layer", None) is not None:
            return self.supplied, self.supplied_names | SEQUENCE_LAYER_ARGS
        return self.supplied, self.supplied_names

    def bind(self, obj: Any, options: dict[str, Any]) -> None:
        """Bind ``options`` (plus placeholders for what the framework supplies) to the
        signature of :meth:`target`: a TypeError says exactly what a call would say
        (an unknown option, one given twice, a missing one). A callable without a
        readable signature is trusted."""
        fn = self.target(obj)
        positional, names = self.target_supplied(obj)
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return
        params = sig.parameters
        given = {n: None for n in names if n in params}
        clash = sorted(set(options) & set(given))
        if clash:
            raise TypeError(f"{', '.join(clash)} is set by the framework, not by the spec")
        sig.bind(*([None] * len(positional)), **given, **options)

    def verify(self, obj: Any) -> str | None:
        """Why ``obj`` can't be registered as a ``kind`` component, or None."""
        if not callable(obj):
            return f"{obj!r} is not callable (register a class or a factory function)"
        if self.base is not None:
            base = _import(self.base)
            if isinstance(obj, base):
                return (f"{type(obj).__name__} instance registered; register the class (or a factory), "
                        "not an instance")
            if inspect.isclass(obj) and not issubclass(obj, base):
                return f"{_qualname(obj)} is not a {_public_name(self.base)} subclass"
        if inspect.isclass(obj):
            missing = [m for m in self.methods if not callable(getattr(obj, m, None))]
            missing += [a for a in self.attributes if not hasattr(obj, a)]
            if missing:
                return (f"{_qualname(obj)} lacks {', '.join(missing)} (the {singular(self.kind)} contract: "
                        f"{self.protocol.__name__} in microgradnn.contracts)")
        elif not self.factory_ok:
            return f"{obj!r} must be a class"
        if self.supplied:
            try:
                inspect.signature(obj).bind_partial(*([None] * len(self.supplied)))
            except TypeError:
                return (f"{_qualname(obj)} can't be called as {singular(self.kind)}("
                        f"{', '.join(self.supplied)}, **options)")
            except ValueError:  # no signature to read (a builtin): trust it
                pass
        if self.kind == "cells":
            init = getattr(obj, "init_state", None)
            if inspect.isclass(obj) and callable(init):
                try:
                    inspect.signature(init).bind(None, 1, None, None)
                except TypeError:
                    return f"{_qualname(obj)}.init_state must take (batch, device, dtype)"
                except ValueError:
                    pass
        return None


#: What the framework passes to a built-in cell's whole-sequence layer itself.
SEQUENCE_LAYER_ARGS = frozenset({"num_layers", "dropout", "bidirectional", "batch_first", "init_state",
                                 "track_grad_norms", "fused", "device", "dtype"})

CONTRACTS: dict[str, Contract] = {c.kind: c for c in (
    Contract("cells", CellLike, supplied=("input_size", "hidden_size"), supplied_names=frozenset({"device", "dtype"}),
             base="microgradnn.nn.module:Module"),
    Contract("losses", LossLike, base="microgradnn.nn.module:Module"),
    Contract("optimizers", OptimizerLike, supplied=("params",), base="microgradnn.optim.optimizer:Optimizer",
             methods=("step", "zero_grad", "add_param_group", "state_dict", "load_state_dict")),
    Contract("schedulers", SchedulerLike, supplied=("optimizer",), supplied_names=frozenset({"last_epoch"}),
             base="microgradnn.optim.lr_scheduler:LRScheduler", methods=("step", "state_dict", "load_state_dict")),
    Contract("finetune", StrategyLike, methods=("apply", "on_step", "penalty", "delta_state_dict", "load_delta",
                                                "merge", "report", "state_dict", "load_state_dict")),
    Contract("datasets", DataModuleLike),
    Contract("metrics", MetricLike, methods=("update", "compute", "reset"), attributes=("name", "higher_is_better")),
)}

#: The kinds, in the order the registry and ``mgnn plugins`` list them.
KINDS: tuple[str, ...] = tuple(CONTRACTS)


def contract(kind: str) -> Contract:
    return CONTRACTS[kind]


def verify(kind: str, obj: Any) -> str | None:
    """``CONTRACTS[kind].verify(obj)``."""
    return CONTRACTS[kind].verify(obj)


def singular(kind: str) -> str:
    """``"cells"`` -> ``"cell"``, ``"finetune"`` -> ``"fine-tuning strategy"``: for messages."""
    return {"finetune": "fine-tuning strategy", "losses": "loss", "datasets": "dataset"}.get(kind, kind.rstrip("s"))


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _public_name(path: str) -> str:
    """``microgradnn.nn.module:Module`` -> ``microgradnn.nn.Module`` (as users import it)."""
    return {"microgradnn.nn.module:Module": "microgradnn.nn.Module",
            "microgradnn.optim.optimizer:Optimizer": "microgradnn.optim.Optimizer"}.get(path, path.replace(":", "."))


def _import(path: str) -> type:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
