"""What every fine-tuning strategy shares: the interface, name globs, bookkeeping, the head.

A strategy is a small object made from its options, ``LoRA(r=4, targets=["rnn.weight_*"])``,
that changes a pretrained model in place:

* :meth:`Strategy.apply` freezes what must not train and adds what should (low-rank
  factors, adapters, scales, learned states, prompt vectors);
* :meth:`Strategy.trainable_summary` counts what trains, which is the point of the
  exercise: a fine-tune that trains 2% of the weights can be stored, shipped and swapped
  at 2% of the cost;
* :meth:`Strategy.delta_state_dict` returns only that part (the "adapter-only" file) and
  :meth:`Strategy.load_delta` puts it back onto a fresh copy of the base;
* :meth:`Strategy.merge` folds the change into plain weights where the algebra allows
  (LoRA, IA3) for a standalone export, and says why not where it doesn't (adapters);
* :meth:`Strategy.on_step` is called by the trainer after each optimizer step, for
  strategies with a schedule (gradual unfreezing, AdaLoRA's rank reallocation).

What stays frozen stays bit-identical: frozen parameters get ``requires_grad=False``, so
backward gives them no gradient and the optimizers skip them (also their weight decay).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import OrderedDict
from typing import Any, Iterable

import numpy as np

from ..nn.module import Module, Parameter, _as_array

__all__ = ["FinetuneError", "Strategy", "match_globs", "replace_head", "new_module_names"]

#: Marker attributes this package sets on a model (plain attributes: not in state_dict).
_APPLIED = "_finetune_strategy"
_NEW = "_finetune_new_modules"


class FinetuneError(ValueError):
    """A fine-tuning option does not fit the model (a glob that matches nothing, a layer
    type a strategy can't handle, a delta for a different model, a merge that can't be)."""


# ----------------------------------------------------------------------------- globs


def _as_list(value: Any, option: str, owner: str) -> list[str]:
    """A list of strings from a list/tuple of strings or one string."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise FinetuneError(f"{owner}: {option} must be a glob or a list of globs (strings), got {value!r}")


def match_globs(names: Iterable[str], patterns: Iterable[str], *, what: str = "parameter",
                option: str = "targets", owner: str = "finetune") -> list[str]:
    """The names (in model order) matched by any of the shell-style globs ``patterns``.

    Every glob must match something: a glob that matches nothing is almost always a typo,
    and silently fine-tuning nothing would waste a run. The error lists every such glob
    with close names (did-you-mean) and the names that exist."""
    names = list(names)
    chosen: list[str] = []
    problems = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
            # "embedding" meant as a module prefix: suggest "embedding.*"
            close += [f"{pattern}.*"] if any(n.startswith(pattern + ".") for n in names) else []
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            problems.append(f"{option}: {pattern!r} matches no {what}{hint}")
        chosen += [h for h in hits if h not in chosen]
    if problems:
        shown = names if len(names) <= 40 else names[:40] + [f"... ({len(names) - 40} more)"]
        raise FinetuneError(f"{owner}: " + "; ".join(problems) + f". The model's {what}s are: " + ", ".join(shown))
    order = {n: i for i, n in enumerate(names)}
    return sorted(chosen, key=order.__getitem__)


def _module_names(model: Module) -> list[str]:
    """Every submodule's dotted name, except the machinery fine-tuning itself adds."""
    return [n for n, _ in model.named_modules() if n and not _is_internal(n)]


def _is_internal(name: str) -> bool:
    parts = name.split(".")
    return "parametrizations" in parts or (parts[0] == "adapters")


# ----------------------------------------------------------------------------- new head


def new_module_names(model: Module) -> list[str]:
    """Names of modules that :func:`replace_head` (or a user) marked as new: freshly
    initialised, so every strategy keeps them trainable and includes them in the delta."""
    return list(model.__dict__.get(_NEW, ()))


def mark_new(model: Module, name: str) -> None:
    """Mark submodule ``name`` as new (see :func:`new_module_names`)."""
    model.get_submodule(name)  # raises a clear error for a wrong name
    names = new_module_names(model)
    if name not in names:
        names.append(name)
    object.__setattr__(model, _NEW, names)


def replace_head(model: Module, num_classes: int, task: str = "classification") -> Module:
    """Give a pretrained model a fresh ``head``: e.g. a character-level language model
    moved to sequence classification.

    The new ``Linear(head.in_features, num_classes)`` gets PyTorch's default init and is
    marked new: whatever strategy is applied afterwards trains it (even BitFit or Prefix,
    which freeze all weights) and stores it in the delta. ``model.task`` and
    ``model.output_size`` are updated (a :class:`~microgradnn.models.SequenceModel` then
    reads the final hidden state instead of every step's output)."""
    from ..tasks import TASKS
    from ..nn.layers import Linear

    if task not in TASKS:
        raise FinetuneError(f"replace_head: task must be one of {list(TASKS)}, got {task!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise FinetuneError(f"replace_head: num_classes must be a positive int, got {num_classes!r}")
    old = model._modules.get("head")
    if not isinstance(old, Linear):
        raise FinetuneError(f"replace_head: the model needs a Linear submodule named 'head', found {type(old).__name__}")
    if getattr(model, _APPLIED, None) is not None:
        raise FinetuneError("replace_head: replace the head before applying a fine-tuning strategy")
    rnn = model._modules.get("rnn")
    if task == "lm" and rnn is not None and getattr(rnn, "bidirectional", False):
        raise FinetuneError("replace_head: a bidirectional model can't be a language model")
    weight = old.weight
    model.head = Linear(old.in_features, num_classes, bias=old.bias is not None,
                        device=weight.device, dtype=weight.dtype)
    if hasattr(model, "task"):
        model.task = task
    if hasattr(model, "output_size"):
        model.output_size = num_classes
    mark_new(model, "head")
    return model


# ----------------------------------------------------------------------------- strategy


def _copy(array: Any) -> Any:
    array = _as_array(array)
    return array.copy() if hasattr(array, "copy") else np.array(array)


class Strategy:
    """Base class of the fine-tuning strategies (see the module docstring).

    Subclasses set ``name`` and implement :meth:`_apply` (and :meth:`_merge` where merging
    is possible). Each instance fine-tunes one model at a time: :meth:`apply` remembers the
    model so :meth:`on_step` can act on it."""

    name = "strategy"
    #: Whether :meth:`merge` can fold this strategy into plain weights.
    mergeable = True

    def __init__(self) -> None:
        self.model: Module | None = None
        self._base_keys: frozenset = frozenset()

    # -- the interface ------------------------------------------------------------

    def apply(self, model: Module) -> None:
        """Freeze / inject parameters in place. Modules marked new (:func:`replace_head`)
        stay trainable whatever the strategy."""
        if not isinstance(model, Module):
            raise TypeError(f"{self.name}: apply() needs a Module, got {type(model).__name__}")
        current = model.__dict__.get(_APPLIED)
        if current is not None:
            raise FinetuneError(f"{self.name}: the model is already being fine-tuned with {current.name!r} "
                                "(merge() it first, or start from a fresh copy of the base)")
        self._base_keys = frozenset(model.state_dict())
        self._apply(model)
        for name in new_module_names(model):
            model.get_submodule(name).requires_grad_(True)
        object.__setattr__(model, _APPLIED, self)
        self.model = model

    def trainable_summary(self, model: Module | None = None) -> dict:
        """``{"trainable": n, "total": n, "share": trainable / total}`` over the model's
        parameters as they are now (the added ones included in both counts)."""
        model = self._model_or(model)
        params = list(model.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}

    def delta_state_dict(self, model: Module | None = None) -> "OrderedDict[str, Any]":
        """Only what fine-tuning changes or adds, by ``state_dict`` key, as array copies:
        every trainable parameter, and every buffer the strategy added. Save it with
        ``mg.save``; :meth:`load_delta` puts it onto a fresh base."""
        model = self._model_or(model)
        keys = set(self._delta_keys(model))
        return OrderedDict((k, _copy(v)) for k, v in model.state_dict().items() if k in keys)

    def _delta_keys(self, model: Module) -> list[str]:
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        buffers = {n for n, _ in model.named_buffers()}
        return [k for k in model.state_dict()
                if k in trainable or (k in buffers and k not in self._base_keys)]

    def load_delta(self, model: Module, delta: dict) -> Module:
        """Apply this strategy to ``model`` (a fresh base) if it isn't yet, then load
        ``delta`` (from :meth:`delta_state_dict`). Every key must exist with its shape, and
        everything the strategy adds must be given (else it would silently stay at its
        initial value). Returns the model."""
        if model.__dict__.get(_APPLIED) is not self:
            self.apply(model)
        own = model.state_dict()
        added = [k for k in self._delta_keys(model) if k not in self._base_keys]
        added += [k for k in self._new_keys(model) if k not in added]
        unexpected = [k for k in delta if k not in own]
        missing = [k for k in added if k not in delta]
        mismatched = []
        for key, value in delta.items():
            if key in own:
                shape = tuple(np.shape(_as_array(value)))
                if shape != tuple(own[key].shape):
                    mismatched.append(f"{key}: the delta has shape {shape}, the model {tuple(own[key].shape)}")
        problems = []
        if unexpected:
            problems.append("keys the model doesn't have: " + ", ".join(unexpected))
        if missing:
            problems.append("keys the strategy adds but the delta lacks: " + ", ".join(missing))
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if problems:
            hint = ""
            if any(k.startswith("head.") for k in unexpected + [m.split(":")[0] for m in mismatched]):
                hint = " (a delta with a new head: call replace_head(model, num_classes) before load_delta)"
            raise FinetuneError(f"{self.name}: load_delta: the delta does not fit this model{hint}:\n  " + "\n  ".join(problems))
        model.load_state_dict(delta, strict=False)
        self._after_load(model)
        return model

    def merge(self, model: Module | None = None) -> Module:
        """Fold the fine-tuning into plain weights, in place, and return the model: its
        ``state_dict`` then has the base's keys (plus what the strategy adds as plain
        parameters: a learned initial state, a prompt) and every parameter trains again.
        Raises :class:`FinetuneError` where the strategy can't be folded."""
        model = self._model_or(model)
        if not self.mergeable:
            raise FinetuneError(self._merge_refusal())
        was_training = model.training
        model.eval()  # dropout inside a parametrization must not leak into the merged weights
        try:
            self._merge(model)
        finally:
            model.train(was_training)
        model.requires_grad_(True)
        model.__dict__.pop(_APPLIED, None)
        model.__dict__.pop(_NEW, None)
        self.model = None
        return model

    def on_step(self, step: int) -> None:
        """Called by the trainer after optimizer step ``step`` (1-based). No-op here."""

    def state_dict(self) -> dict:
        """Training-time state beyond the model's tensors (AdaLoRA's importance averages),
        for a checkpoint that resumes exactly; ``{}`` for most strategies."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (after :meth:`apply` on the resumed model)."""

    def penalty(self, model: Module | None = None) -> Any:
        """An extra loss term to add before backward, or None (AdaLoRA's orthogonality
        regulariser is the one user)."""
        return None

    def report(self, model: Module | None = None) -> dict:
        """A summary for logs: the strategy name, its options and the trainable counts
        (AdaLoRA adds the rank of every adapted weight)."""
        return {"strategy": self.name, "options": self.options(), **self.trainable_summary(model)}

    def options(self) -> dict:
        """The options this strategy was made with."""
        return dict(getattr(self, "_options", {}))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    # -- for subclasses -----------------------------------------------------------

    def _apply(self, model: Module) -> None:
        raise NotImplementedError

    def _merge(self, model: Module) -> None:
        """Default: nothing to fold (the trained values already are plain parameters)."""

    def _merge_refusal(self) -> str:
        return f"{self.name}: this strategy cannot be merged into plain weights"

    def _after_load(self, model: Module) -> None:
        """Hook after :meth:`load_delta` copied the arrays in."""

    def _new_keys(self, model: Module) -> list[str]:
        keys = []
        for name in new_module_names(model):
            keys += [f"{name}.{k}" for k in model.get_submodule(name).state_dict()]
        return keys

    def _model_or(self, model: Module | None) -> Module:
        model = model if model is not None else self.model
        if model is None:
            raise FinetuneError(f"{self.name}: apply(model) first")
        return model

    @staticmethod
    def _freeze_all(model: Module) -> None:
        for p in model.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _trainable(param: Parameter, flag: bool = True) -> None:
        if param.dtype.kind == "f":
            param.requires_grad_(flag)
