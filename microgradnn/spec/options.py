"""A component's options, read from the signature of the very callable that build will
call: names, defaults and type annotations, so a plugin's options are validated like a
built-in's with no schema to write."""

from __future__ import annotations

import functools
import inspect
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contracts import contract

__all__ = ["OptionInfo", "component_options", "option_range_rule", "accepts", "coerce", "describe"]

# Ranges for well-known component options, by (kind, option) ("*": any kind). A plugin
# validates its own options when built; these catch the common slips before any work.
_Range = tuple  # (low, low_open, high, high_open)
_OPTION_RANGES: dict[tuple[str, str], _Range] = {
    ("optimizers", "lr"): (0.0, True, None, False),
    ("optimizers", "weight_decay"): (0.0, False, None, False),
    ("optimizers", "eps"): (0.0, True, None, False),
    ("optimizers", "momentum"): (0.0, False, None, False),
    ("optimizers", "alpha"): (0.0, False, None, False),
    ("optimizers", "lr_decay"): (0.0, False, None, False),
    ("optimizers", "betas"): (0.0, False, 1.0, True),     # each of the pair
    ("schedulers", "step_size"): (1, False, None, False),
    ("schedulers", "gamma"): (0.0, True, None, False),
    ("schedulers", "T_max"): (1, False, None, False),
    ("schedulers", "warmup_steps"): (0, False, None, False),
    ("schedulers", "total_steps"): (1, False, None, False),
    ("schedulers", "factor"): (0.0, True, 1.0, True),
    ("schedulers", "patience"): (0, False, None, False),
    ("datasets", "seq_len"): (1, False, None, False),
    ("datasets", "val_fraction"): (0.0, False, 1.0, True),
    ("datasets", "max_len"): (1, False, None, False),
    ("finetune", "r"): (1, False, None, False),
    ("*", "dropout"): (0.0, False, 1.0, True),
}


_SCALARS = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None), "Any": typing.Any,
            "list": list, "dict": dict, "tuple": tuple}


def accepts(ann: Any, value: Any) -> bool | None:
    """Whether a YAML ``value`` fits annotation ``ann``: True, False, or None when the
    annotation is a type no YAML value could be (a class), so we can't tell and let the
    component decide when it is built."""
    if ann is inspect.Parameter.empty or ann is typing.Any or ann is object:
        return True
    if isinstance(ann, str):
        return _accepts_text(ann, value)
    if ann is None or ann is type(None):
        return value is None
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if ann in (os.PathLike, Path) or (inspect.isclass(ann) and issubclass(ann, os.PathLike)):
        return isinstance(value, str)
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(ann, types.UnionType)):
        verdicts = [accepts(a, value) for a in args]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    import collections.abc as abc

    seq_types = (list, tuple, abc.Sequence, abc.Iterable, abc.Collection, abc.MutableSequence)
    if ann in seq_types or origin in seq_types:
        if not isinstance(value, list):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                return False
            verdicts = [accepts(a, v) for a, v in zip(args, value)]
        else:
            verdicts = [accepts(args[0], v) for v in value]
        if all(v is True for v in verdicts):
            return True
        return False if any(v is False for v in verdicts) else None
    if ann in (dict, abc.Mapping, abc.MutableMapping) or origin in (dict, abc.Mapping, abc.MutableMapping):
        return isinstance(value, dict)
    if inspect.isclass(ann) and isinstance(value, ann):
        return True
    return None


def coerce(ann: Any, value: Any) -> Any:
    """``lr: 1`` for a ``float`` option becomes ``1.0`` (so the resolved spec says what
    the component gets); everything else is kept as written."""
    if isinstance(value, int) and not isinstance(value, bool):
        members = typing.get_args(ann) if typing.get_args(ann) and not isinstance(ann, str) else (ann,)
        if int not in members and float in members:
            return float(value)
    return value


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _accepts_text(ann: str, value: Any) -> bool | None:
    """The fallback for a string annotation that could not be evaluated: understand the
    simple ones (``int``, ``str | None``, ``list[str]``), trust the rest."""
    alts = _split_top(ann, "|")
    if len(alts) > 1:
        verdicts = [_accepts_text(a, value) for a in alts]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    ann = alts[0].strip("'\"")
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", ann)
    if m:
        return True if value is None else _accepts_text(m.group(1), value)
    base, _, inner = ann.partition("[")
    if base in ("list", "List", "Sequence", "tuple", "Tuple"):
        return isinstance(value, list)
    if base in ("dict", "Dict", "Mapping"):
        return isinstance(value, dict)
    if ann in _SCALARS:
        return accepts(_SCALARS[ann], value)
    return None


def describe(ann: Any) -> str:
    """An annotation in words for an ``allowed:`` line."""
    if ann is inspect.Parameter.empty or ann is typing.Any:
        return "any value"
    if isinstance(ann, str):
        return ann
    if ann is None or ann is type(None):
        return "null"
    named = {bool: "true or false", int: "an int", float: "a float", str: "a string"}
    if ann in named:
        return named[ann]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(ann, types.UnionType)):
        return " or ".join(describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple) or ann in (list, tuple):
        if args and not (origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)):
            return f"a list of {describe(args[0]).removeprefix('an ').removeprefix('a ')}"
        if args:
            return f"a list of {len(args)} values"
        return "a list"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


# =============================================================================
# A component's options, from its signature
# =============================================================================

@dataclass(frozen=True)
class OptionInfo:
    """One option of a component: ``required`` when its parameter has no default."""

    name: str
    default: Any
    annotation: Any
    required: bool

    @property
    def allowed(self) -> str:
        return describe(self.annotation)


def _annotation_from_default(default: Any) -> Any:
    if default is inspect.Parameter.empty or default is None:
        return inspect.Parameter.empty
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return typing.Union[int, float]  # a number: an int default does not forbid 0.5
    if isinstance(default, float):
        return float
    if isinstance(default, str):
        return str
    if isinstance(default, (list, tuple)):
        return list
    return inspect.Parameter.empty


def component_options(kind: str, obj: Any) -> tuple[dict[str, OptionInfo], bool]:
    """The options a spec may give component ``obj`` of ``kind``: ``(options, open)``.

    Read from the signature of the callable build will call (``contract(kind).target``:
    a built-in cell's fused layer, else ``obj``), minus what the framework passes itself
    (a cell's input and hidden sizes, an optimizer's parameters, a scheduler's
    optimizer). ``open`` is True when it takes ``**kwargs`` (any option name is then
    accepted). Raises TypeError/ValueError when there is no signature to read."""
    the_contract = contract(kind)
    fn = the_contract.target(obj)
    sig = inspect.signature(fn)
    hinted = fn.func if isinstance(fn, functools.partial) else fn
    try:
        hints = typing.get_type_hints(hinted.__init__ if inspect.isclass(hinted) else hinted)
    except Exception:  # an annotation naming something only imported for type checkers
        hints = {}
    positional, skip_names = the_contract.target_supplied(obj)
    skip_positional = len(positional)
    options: dict[str, OptionInfo] = {}
    open_ = False
    for param in sig.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            open_ = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and skip_positional > 0:
            skip_positional -= 1
            continue
        if param.kind is param.POSITIONAL_ONLY or param.name in skip_names or param.name.startswith("_"):
            continue  # private parameters (torch's Embedding(_weight=...)) are not spec options
        ann = hints.get(param.name, param.annotation)
        if ann is inspect.Parameter.empty:
            ann = _annotation_from_default(param.default)
        required = param.default is inspect.Parameter.empty
        options[param.name] = OptionInfo(param.name, None if required else param.default, ann, required)
    return options, open_



def option_range_rule(kind: str, key: str) -> tuple | None:
    """The (low, low_open, high, high_open) range of a well-known option, or None."""
    return _OPTION_RANGES.get((kind, key)) or _OPTION_RANGES.get(("*", key))
