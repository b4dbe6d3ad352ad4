"""The training spec: one YAML file that says what to train, on what, and how.

A spec is *data*, never code: it is read with a safe YAML loader (no ``!!python`` tags,
no eval), and validated in full before any work starts. Every problem is collected into
one :class:`SpecError` rather than stopping at the first, and each says

* where: the key path (``optimizer.lr``, ``train.metrics[1]``) and the file line,
* what was given (``-1 (int)``),
* what is allowed (``a float > 0``), and
* a did-you-mean for a misspelt key or component name.

The sections (every key has a default except ``data``)::

    model:     embedding_dim, cell, hidden_size, num_layers, dropout, bidirectional, init_state
    data:      {name: <dataset>, <dataset options>}
    loss:      null (chosen from the data's task) | {name: <loss>, <options>}
    optimizer: {name: adam, lr: 0.001, <options>}
    scheduler: null | {name: <scheduler>, <options>}
    train:     epochs | steps, batch_size, clipping, early_stopping, cadences, seed, device, ...
    finetune:  null | {from: <run or checkpoint>, strategy: {name: <strategy>, <options>}, head}
    output:    {dir: runs, name: <spec file's stem>}

The table of keys is declared once, as data (:data:`SCHEMA`), so ``mgnn check`` and the
docs print the very rules the validator applies (:func:`schema_rows`).

A *component* (the cell, dataset, loss, optimizer, scheduler, fine-tuning strategy) is
written as its registry name, ``cell: gru``, or as a mapping with a ``name`` and its
options, ``cell: {name: rnn, nonlinearity: relu}``. Its options are checked against the
registered callable's own signature (parameter names, defaults and type annotations), so
a plugin's options are validated exactly like a built-in's, with no schema to write. The
resolved spec always holds the mapping form.

Command-line overrides use the same key paths: ``optimizer.lr=3e-3``,
``train.metrics=[accuracy,f1]``, ``model.cell={name: gru}``, and ``~train.seed`` to delete
a key (back to its default). The value is read as a YAML scalar or flow collection and
then typed and validated exactly like the file.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from . import registry
from .fileio import atomic_write
from .registry import RegistryError, suggest

__all__ = [
    "SpecError", "Problem", "Field", "OptionInfo", "SCHEMA", "SECTIONS", "DERIVED_OPTIONS",
    "load_spec", "resolve_spec", "apply_overrides", "parse_override", "dump_spec", "read_yaml",
    "component_options", "schema_rows", "format_schema", "default_loss", "fill_task_defaults",
]


# =============================================================================
# Problems and the error that carries them
# =============================================================================

class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


#: "No value was given" (distinct from an explicit null).
UNSET: Any = _Unset()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _show(value: Any) -> str:
    """``-1 (int)``, ``'fast' (str)``, ``null``: a value as a problem report shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({_type_name(value)})"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec.

    ``path`` is the key path (``""`` for the file as a whole), ``message`` what is wrong,
    ``value`` what was given (:data:`UNSET` when nothing was), ``allowed`` what would be
    accepted, ``suggestions`` close matches for a misspelling, ``line`` the 1-based line
    in the file and ``origin`` the command-line override that set the value, if any."""

    path: str
    message: str
    value: Any = UNSET
    allowed: str | None = None
    suggestions: tuple[str, ...] = ()
    line: int | None = None
    origin: str | None = None

    def __str__(self) -> str:
        parts = [f"{self.path}: {self.message}" if self.path else self.message]
        if self.value is not UNSET:
            parts.append(f"got {_show(self.value)}")
        if self.allowed:
            parts.append(f"allowed: {self.allowed}")
        text = "; ".join(parts)
        if self.suggestions:
            text += "; did you mean " + " or ".join(f"'{s}'" for s in self.suggestions) + "?"
        where = []
        if self.origin:
            where.append(f"from override '{self.origin}'")
        elif self.line is not None:
            where.append(f"line {self.line}")
        return text + (f" ({', '.join(where)})" if where else "")


class SpecError(ValueError):
    """A spec (or override) that can't be used. ``problems`` lists every problem found;
    ``str()`` shows them all, one per line."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return f"{where}invalid spec: {self.problems[0]}"
        lines = [f"{where}{len(self.problems)} problems in the spec:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._format()


# =============================================================================
# The schema, declared once as data
# =============================================================================

@dataclass(frozen=True)
class Field:
    """One key of the spec: its type, default, allowed values and a line of documentation.

    ``type`` is one of ``int float bool str choice section component names``:
    ``section`` holds further fields, ``component`` is a registry name of ``kind`` with
    options, ``names`` a list of registry names of ``kind``."""

    path: str
    type: str
    default: Any = None
    doc: str = ""
    nullable: bool = False
    required: bool = False
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    choices: tuple = ()
    kind: str | None = None

    @property
    def key(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def parent(self) -> str:
        return self.path.rpartition(".")[0]

    def allowed(self) -> str:
        """What this key accepts, in words: ``an int >= 1``, ``null or a float > 0``."""
        if self.type == "section":
            base = "a mapping of " + ", ".join(f.key for f in _CHILDREN.get(self.path, ()))
        elif self.type == "component":
            noun = registry.singular(self.kind or "")
            base = f"a {noun} name or {{name: <{noun}>, <options>}}"
        elif self.type == "names":
            base = f"a list of {registry.singular(self.kind or '')} names"
        elif self.type == "choice":
            base = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.type == "bool":
            base = "true or false"
        elif self.type == "str":
            base = "a string"
        else:
            base = ("an int" if self.type == "int" else "a float") + _range_text(
                self.low, self.low_open, self.high, self.high_open)
        return f"null or {base}" if self.nullable else base


def _range_text(low: float | None, low_open: bool, high: float | None, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f" {'<' if high_open else '<='} {_num(high)}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _in_range(x: float, low: float | None, low_open: bool, high: float | None, high_open: bool) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    if high is not None and (x >= high if high_open else x > high):
        return False
    return True


F = Field
#: Every key of a spec, in the order a resolved spec is written. ``data`` is the one
#: section without a default.
SCHEMA: tuple[Field, ...] = (
    F("model", "section", doc="the network: optional embedding -> recurrent layers -> linear head"),
    F("model.embedding_dim", "int", 64, "size of the token embedding (ignored for float inputs)", low=1),
    F("model.cell", "component", "lstm", "recurrent cell: lstm, gru, rnn, rnn_relu or a plugin's", kind="cells"),
    F("model.hidden_size", "int", 128, "hidden state size of each layer", low=1),
    F("model.num_layers", "int", 1, "stacked recurrent layers", low=1),
    F("model.dropout", "float", 0.0, "dropout between stacked layers and before the head", low=0.0, high=1.0,
      high_open=True),
    F("model.bidirectional", "bool", False, "also read each sequence backwards (not for language models)"),
    F("model.init_state", "choice", "zeros", "initial hidden state: zeros, or learned parameters",
      choices=("zeros", "learned")),
    F("data", "component", None, "dataset and its options, e.g. {name: charlm, corpus: stdlib}", required=True,
      kind="datasets"),
    F("loss", "component", None, "null: cross_entropy for lm/classification, mse for regression", nullable=True,
      kind="losses"),
    F("optimizer", "component", {"name": "adam", "lr": 0.001}, "optimizer and its options (lr, weight_decay, ...)",
      kind="optimizers"),
    F("scheduler", "component", None, "learning-rate schedule (stepped every optimizer step), or null",
      nullable=True, kind="schedulers"),
    F("train", "section", doc="the training loop"),
    F("train.epochs", "int", None, "passes over the training data (default 1; give epochs or steps)",
      nullable=True, low=1),
    F("train.steps", "int", None, "optimizer steps to run instead of epochs", nullable=True, low=1),
    F("train.batch_size", "int", 32, "sequences per batch", low=1),
    F("train.clip_grad_norm", "float", None, "clip the global gradient norm to this", nullable=True, low=0.0,
      low_open=True),
    F("train.clip_grad_value", "float", None, "clip each gradient element to [-v, v]", nullable=True, low=0.0,
      low_open=True),
    F("train.early_stopping", "section", None, "stop when the monitored value stops improving (true: defaults)",
      nullable=True),
    F("train.early_stopping.monitor", "str", "val_loss", "val_loss, train_loss or val_<metric>"),
    F("train.early_stopping.mode", "choice", None, "min or max (null: max for a metric better when higher)",
      nullable=True, choices=("min", "max")),
    F("train.early_stopping.patience", "int", 5, "evaluations without improvement before stopping", low=0),
    F("train.early_stopping.min_delta", "float", 0.0, "smallest change that counts as improvement", low=0.0),
    F("train.early_stopping.divergence_threshold", "float", None,
      "stop at once when the monitored value gets worse than this", nullable=True),
    F("train.eval_every", "int", None, "evaluate every N steps (null: after each epoch)", nullable=True, low=1),
    F("train.checkpoint_every", "int", None, "checkpoint every N steps (null: after each evaluation)",
      nullable=True, low=1),
    F("train.keep_best", "int", 1, "keep the best k checkpoints by the monitored value", low=0),
    F("train.seed", "int", 0, "seed of weights, dropout and data order", low=0),
    F("train.device", "choice", "cpu", "where to train", choices=("cpu", "cuda")),
    F("train.tbptt", "bool", False, "language models: carry the hidden state across consecutive batches"),
    F("train.log_every", "int", 10, "log training loss every N steps", low=1),
    F("train.metrics", "names", [], "validation metrics besides the loss (accuracy, f1, perplexity, bleu)",
      kind="metrics"),
    F("train.track_grad_norms", "bool", False, "record the gradient norm reaching each time step"),
    F("finetune", "section", None, "fine-tune a trained model instead of starting from scratch", nullable=True),
    F("finetune.from", "str", None, "the run folder or checkpoint file to start from", required=True),
    F("finetune.strategy", "component", "full", "full, freeze, bitfit, lora, adalora, ia3, adapter, prefix, prompt",
      kind="finetune"),
    F("finetune.head", "choice", None, "null: keep the head; new: a fresh head for the new data's outputs",
      nullable=True, choices=("new",)),
    F("output", "section", doc="where the run folder goes: <dir>/<name>"),
    F("output.dir", "str", "runs", "parent folder of run folders"),
    F("output.name", "str", None, "run folder name (null: the spec file's stem)", nullable=True),
)
del F

_FIELDS: dict[str, Field] = {f.path: f for f in SCHEMA}
_CHILDREN: dict[str, list[Field]] = {}
for _f in SCHEMA:
    _CHILDREN.setdefault(_f.parent, []).append(_f)
del _f

#: The top-level sections, in order.
SECTIONS: tuple[str, ...] = tuple(f.key for f in _CHILDREN[""])

#: Component options the trainer fills in when the spec leaves them out (so they are
#: not "missing required options"): kind -> option -> what it becomes.
DERIVED_OPTIONS: dict[str, dict[str, str]] = {
    "schedulers": {"T_max": "the run's total optimizer steps", "total_steps": "the run's total optimizer steps",
                   "total_iters": "the run's total optimizer steps"},
}

# Parameters of a component's callable that the framework passes itself, so a spec can't:
# (how many leading positional parameters, names).
_SUPPLIED: dict[str, tuple[int, frozenset[str]]] = {
    "cells": (2, frozenset({"device", "dtype"})),        # cell(input_size, hidden_size, ...)
    "layers": (0, frozenset({"device", "dtype"})),
    "optimizers": (1, frozenset()),                       # Optimizer(params, ...)
    "schedulers": (1, frozenset({"last_epoch"})),         # Scheduler(optimizer, ...); resume restores it
}

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


# =============================================================================
# YAML: a safe loader with two fixes
# =============================================================================

class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only: a ``!!python/object`` tag is an error, never
    code) with two fixes for configuration files:

    * ``1e-3`` is a float. YAML 1.1 (PyYAML) wants ``1.0e-3`` and reads ``1e-3`` as the
      *string* "1e-3", the classic learning-rate trap.
    * a key written twice is an error, not silently the last value.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key_node.value}' is given twice (first on line {first})",
                        key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)

_MAX_NODES = 100_000  # a spec is small; this stops a "billion laughs" alias bomb


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    text = getattr(exc, "problem", None) or str(exc)
    tag = re.search(r"constructor for the tag '([^']*)'", text)
    if tag:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        message = (f"YAML tag {shown} is not allowed: a spec is plain data (mappings, lists, strings, numbers, "
                   "true/false, null) and never runs code")
    else:
        context = getattr(exc, "context", None)
        message = "YAML syntax error: " + text + (f" ({context})" if context else "")
    where = f" at column {col}" if col is not None else ""
    return Problem("", message + where, line=line)


def _node_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise ValueError("a YAML alias refers to itself (a recursive structure)")
    active.add(key)
    size = 1
    if isinstance(node, yaml.MappingNode):
        size += sum(_node_size(k, memo, active) + _node_size(v, memo, active) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_node_size(v, memo, active) for v in node.value)
    active.discard(key)
    memo[key] = size
    return size


def _node_lines(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    """Map each key path to its 1-based line, so problems can say where they are."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                path = f"{prefix}.{key_node.value}" if prefix else key_node.value
                out.setdefault(path, key_node.start_mark.line + 1)
                _node_lines(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            out.setdefault(path, item.start_mark.line + 1)
            _node_lines(item, path, out)


def _parse_yaml(text: str, source: str | None) -> tuple[Any, dict[str, int]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        try:
            size = _node_size(node, {}, set())
        except ValueError as exc:
            raise SpecError([Problem("", str(exc))], source) from None
        if size > _MAX_NODES:
            raise SpecError([Problem("", f"the YAML expands to {size} nodes (at most {_MAX_NODES}); "
                                         "too many aliases?")], source)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_problem(exc)], source) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    _node_lines(node, "", lines)
    return data, lines


def read_yaml(text: str, source: str | None = None) -> Any:
    """Parse YAML text with the spec's safe loader (raises :class:`SpecError` with the
    line and column of a syntax error, or for any tag that would construct an object)."""
    return _parse_yaml(text, source)[0]


# =============================================================================
# Type annotations -> "does this YAML value fit?"
# =============================================================================

_SCALARS = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None), "Any": typing.Any,
            "list": list, "dict": dict, "tuple": tuple}


def _accepts(ann: Any, value: Any) -> bool | None:
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
        verdicts = [_accepts(a, value) for a in args]
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
            verdicts = [_accepts(a, v) for a, v in zip(args, value)]
        else:
            verdicts = [_accepts(args[0], v) for v in value]
        if all(v is True for v in verdicts):
            return True
        return False if any(v is False for v in verdicts) else None
    if ann in (dict, abc.Mapping, abc.MutableMapping) or origin in (dict, abc.Mapping, abc.MutableMapping):
        return isinstance(value, dict)
    if inspect.isclass(ann) and isinstance(value, ann):
        return True
    return None


def _coerce(ann: Any, value: Any) -> Any:
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
        return _accepts(_SCALARS[ann], value)
    return None


def _describe(ann: Any) -> str:
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
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple) or ann in (list, tuple):
        if args and not (origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)):
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}"
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
        return _describe(self.annotation)


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

    Read from the callable's signature, minus what the framework passes itself (a cell's
    input and hidden sizes, an optimizer's parameters, a scheduler's optimizer).
    ``open`` is True when it takes ``**kwargs`` (any option name is then accepted).
    Raises TypeError/ValueError when there is no signature to read."""
    sig = inspect.signature(obj)
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # an annotation naming something only imported for type checkers
        hints = {}
    skip_positional, skip_names = _SUPPLIED.get(kind, (0, frozenset()))
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


# =============================================================================
# Overrides: key=value and ~key
# =============================================================================

_KEY_PATH = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*")
_OVERRIDE_HELP = ("key=value (the value read as YAML: optimizer.lr=3e-3, train.metrics=[accuracy,f1], "
                  "model.cell={name: gru}, scheduler=null) or ~key to delete a key")


def parse_override(text: str) -> tuple[str, Any, bool]:
    """``"optimizer.lr=3e-3"`` -> ``("optimizer.lr", 0.003, False)``; ``"~train.seed"`` ->
    ``("train.seed", None, True)``. Raises :class:`SpecError` for a malformed one."""
    if not isinstance(text, str):
        raise SpecError([Problem("", "bad override: not a string", text, _OVERRIDE_HELP)])
    raw = text.strip()
    if raw.startswith("~"):
        key = raw[1:].strip()
        if "=" in key:
            raise SpecError([Problem(key.partition("=")[0], "bad override: ~key deletes a key and takes no value",
                                     text, _OVERRIDE_HELP, origin=text)])
        if not _KEY_PATH.fullmatch(key):
            raise SpecError([Problem("", "bad override: not a key path", text, _OVERRIDE_HELP, origin=text)])
        return key, None, True
    key, eq, value_text = raw.partition("=")
    key = key.strip()
    if not eq:
        raise SpecError([Problem("", "bad override: no '='", text, _OVERRIDE_HELP, origin=text)])
    if not _KEY_PATH.fullmatch(key):
        raise SpecError([Problem("", f"bad override: {key!r} is not a key path like optimizer.lr", text,
                                 _OVERRIDE_HELP, origin=text)])
    if not value_text.strip():
        raise SpecError([Problem(key, "bad override: no value after '=' (write null to unset, '' for an "
                                      "empty string, or ~key to delete)", text, _OVERRIDE_HELP, origin=text)])
    try:
        value, _ = _parse_yaml(value_text, None)
    except SpecError as exc:
        detail = exc.problems[0].message
        raise SpecError([Problem(key, f"bad override value: {detail}", text, _OVERRIDE_HELP,
                                 origin=text)]) from None
    return key, value, False


def _set_path(spec: dict, parts: list[str], value: Any, text: str, problems: list[Problem]) -> None:
    cur = spec
    for i, part in enumerate(parts[:-1]):
        nxt = cur.get(part)
        if nxt is None or nxt is True:
            nxt = {}  # absent / null / `early_stopping: true`: start a mapping
        elif isinstance(nxt, str):
            nxt = {"name": nxt}  # `cell: gru` then `model.cell.bias=false`: the mapping form
        elif not isinstance(nxt, dict):
            where = ".".join(parts[: i + 1])
            problems.append(Problem(where, f"bad override: can't set {'.'.join(parts)}, {where} holds no keys",
                                    nxt, "a mapping", origin=text))
            return
        cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _delete_path(spec: dict, parts: list[str], text: str, problems: list[Problem]) -> None:
    # A key the schema doesn't know is most likely a typo: say so rather than do nothing.
    field_path = ""
    for part in parts:
        here = f"{field_path}.{part}" if field_path else part
        children = _CHILDREN.get(field_path)
        if children is None:
            break  # inside a component's options: any name may be right
        if here not in _FIELDS:
            keys = [f.key for f in children]
            problems.append(Problem(here, "bad override: no such key to delete", allowed=", ".join(keys),
                                    suggestions=tuple(suggest(part, keys)), origin=text))
            return
        if _FIELDS[here].type != "section":
            break
        field_path = here
    cur: Any = spec
    for part in parts[:-1]:
        cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


def _apply(raw: Mapping, overrides: Iterable[str], problems: list[Problem]) -> tuple[dict, dict[str, str]]:
    """Apply overrides to a copy of ``raw``; returns it and {path: override text}."""
    spec = copy.deepcopy(dict(raw))
    origins: dict[str, str] = {}
    for text in overrides:
        try:
            key, value, delete = parse_override(text)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        parts = key.split(".")
        if delete:
            _delete_path(spec, parts, text, problems)
        else:
            _set_path(spec, parts, value, text, problems)
            # The command line wins over the file: train.steps=N replaces the file's
            # epochs (and vice versa) instead of making "give epochs or steps, not both".
            if key in ("train.steps", "train.epochs") and value is not None:
                other = "train.epochs" if key == "train.steps" else "train.steps"
                train = spec.get("train")
                if isinstance(train, dict) and other not in origins:
                    train.pop(other.partition(".")[2], None)
        origins[key] = text
    return spec, origins


def apply_overrides(raw: Mapping, overrides: Iterable[str]) -> dict:
    """A copy of the (unresolved) spec ``raw`` with ``key=value`` / ``~key`` overrides
    applied. Raises :class:`SpecError` for malformed overrides; the values are validated
    later, with the rest of the spec, by :func:`resolve_spec`."""
    problems: list[Problem] = []
    spec, _ = _apply(raw, overrides, problems)
    if problems:
        raise SpecError(problems)
    return spec


# =============================================================================
# Validation
# =============================================================================

class _Validator:
    """Walks the schema over a raw spec, building the resolved spec and collecting problems."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, value: Any = UNSET, allowed: str | None = None,
            suggestions: Iterable[str] = ()) -> None:
        self.problems.append(Problem(path, message, value, allowed, tuple(suggestions)))

    # -- sections and scalars -------------------------------------------------------------

    def section(self, path: str, value: Mapping) -> dict:
        children = _CHILDREN[path]
        keys = [f.key for f in children]
        for key in value:
            if key not in keys:
                where = f"{path}.{key}" if path else str(key)
                self.add(where, "unknown key", allowed=", ".join(keys), suggestions=suggest(str(key), keys))
        return {f.key: (self.field(f, value[f.key]) if f.key in value else self.default(f)) for f in children}

    def default(self, f: Field) -> Any:
        if f.required:
            self.add(f.path, "required", allowed=f.allowed())
            return None
        if f.type == "section":
            return None if f.nullable else self.section(f.path, {})
        if f.type == "component" and f.default is not None:
            return self.component(f, copy.deepcopy(f.default))
        return copy.deepcopy(f.default)

    def field(self, f: Field, value: Any) -> Any:
        if f.type == "section":
            if value is None or value is False:
                return None if f.nullable else self.section(f.path, {})
            if value is True and f.nullable:
                value = {}
            if not isinstance(value, dict):
                self.add(f.path, "wrong type", value, f.allowed())
                return None
            return self.section(f.path, value)
        if f.type == "component":
            return self.component(f, value)
        if f.type == "names":
            return self.names(f, value)
        return self.scalar(f, value)

    def scalar(self, f: Field, value: Any) -> Any:
        if value is None:
            if f.nullable:
                return None
            self.add(f.path, "wrong type", value, f.allowed())
            return f.default
        if f.type == "bool":
            ok = isinstance(value, bool)
        elif f.type == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif f.type == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not math.isfinite(value):
                self.add(f.path, "not a finite number", value, f.allowed())
                return f.default
            if ok:
                value = float(value)
        elif f.type == "str":
            ok = isinstance(value, str) and value != ""
        elif f.type == "choice":
            if value not in f.choices:
                self.add(f.path, "not an allowed value", value, f.allowed(),
                         suggest(str(value), [str(c) for c in f.choices]))
                return f.default
            return value
        else:  # pragma: no cover - a schema typo
            raise AssertionError(f"unknown field type {f.type!r}")
        if not ok:
            self.add(f.path, "wrong type", value, f.allowed())
            return f.default
        if f.type in ("int", "float") and not _in_range(value, f.low, f.low_open, f.high, f.high_open):
            self.add(f.path, "out of range", value, f.allowed())
            return f.default
        return value

    # -- registry names ---------------------------------------------------------------------

    def lookup(self, kind: str, name: str, path: str) -> Any:
        """The registered object, or None with the problem recorded."""
        try:
            return registry.get(kind, name)
        except RegistryError as exc:
            known = registry.names(kind)
            short = name.partition(":")[2] if ":" in name else name
            if short not in known:
                self.add(path, f"unknown {registry.singular(kind)}", name, ", ".join(known),
                         suggest(short, known))
            else:  # a clash between two distributions, or a plugin that failed to load
                self.add(path, str(exc), name)
            return None

    def names(self, f: Field, value: Any) -> list:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.add(f.path, "wrong type", value, f.allowed())
            return []
        out = []
        for i, name in enumerate(value):
            path = f"{f.path}[{i}]"
            if not isinstance(name, str) or not name:
                self.add(path, "wrong type", name, f"a {registry.singular(f.kind)} name")
                continue
            if self.lookup(f.kind, name, path) is not None and name not in out:
                out.append(name)
        return out

    # -- components -------------------------------------------------------------------------

    def component(self, f: Field, value: Any) -> dict | None:
        kind, path = f.kind, f.path
        noun = registry.singular(kind)
        if value is None:
            if f.nullable:
                return None
            if f.required:
                self.add(path, "required", allowed=f.allowed())
                return None
            value = copy.deepcopy(f.default)
        if isinstance(value, str):
            name, options, name_path = value, {}, path
        elif isinstance(value, dict):
            options = dict(value)
            name = options.pop("name", UNSET)
            name_path = f"{path}.name"
            if name is UNSET:
                default = f.default.get("name") if isinstance(f.default, dict) else f.default
                if default is None:
                    self.add(name_path, "required", allowed=f"a {noun} name, one of "
                             + ", ".join(registry.names(kind)))
                    return None
                name = default  # `optimizer: {lr: 0.01}` tunes the default optimizer
        else:
            self.add(path, "wrong type", value, f.allowed())
            return None
        if not isinstance(name, str) or not name:
            self.add(name_path, "wrong type", name, f"a {noun} name, one of " + ", ".join(registry.names(kind)))
            return None
        obj = self.lookup(kind, name, name_path)
        if obj is not None:
            options = self.options(kind, name, obj, options, path)
        return {"name": name, **options}

    def options(self, kind: str, name: str, obj: Any, given: dict, path: str) -> dict:
        noun = registry.singular(kind)
        try:
            params, open_ = component_options(kind, obj)
        except (TypeError, ValueError):  # no signature to read: the component checks itself
            return given
        out = {}
        for key, value in given.items():
            where = f"{path}.{key}"
            info = params.get(key) if isinstance(key, str) else None
            if info is None:
                if not open_:
                    allowed = ", ".join(params) if params else f"none ({noun} '{name}' takes no options)"
                    self.add(where, f"unknown option of {noun} '{name}'", value, allowed,
                             suggest(str(key), list(params)))
                    continue
            elif _accepts(info.annotation, value) is False:
                self.add(where, f"wrong type for option of {noun} '{name}'", value, info.allowed)
                continue
            if not self.option_range(kind, str(key), value, where):
                continue
            out[key] = _coerce(info.annotation, value) if info is not None else value
        derived = DERIVED_OPTIONS.get(kind, {})
        for key, info in params.items():
            if info.required and key not in given and key not in derived:
                self.add(f"{path}.{key}", f"missing required option of {noun} '{name}'", allowed=info.allowed)
        return out

    def option_range(self, kind: str, key: str, value: Any, where: str) -> bool:
        rule = _OPTION_RANGES.get((kind, key)) or _OPTION_RANGES.get(("*", key))
        if rule is None:
            return True
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if not math.isfinite(item) or not _in_range(item, *rule):
                what = "each a number" if isinstance(value, list) else "a number"
                self.add(where, "out of range", value, what + _range_text(*rule))
                return False
        return True

    # -- checks across keys ---------------------------------------------------------------

    def cross_checks(self, spec: dict) -> None:
        train = spec["train"]
        if train["epochs"] is not None and train["steps"] is not None:
            self.add("train", "give train.epochs or train.steps, not both",
                     {"epochs": train["epochs"], "steps": train["steps"]}, "exactly one of epochs, steps")
        elif train["epochs"] is None and train["steps"] is None:
            train["epochs"] = 1
        stop = train["early_stopping"]
        if stop is not None:
            metrics = train["metrics"]
            allowed = ["val_loss", "train_loss"] + [f"val_{m}" for m in metrics]
            monitor = stop["monitor"]
            if monitor not in allowed:
                bare = monitor.removeprefix("val_")
                hint = (f" (add {bare} to train.metrics to monitor it)" if bare in registry.names("metrics")
                        else "")
                self.add("train.early_stopping.monitor", "not a value the run records" + hint, monitor,
                         ", ".join(allowed), suggest(monitor, allowed))
            elif stop["mode"] is None:
                stop["mode"] = "max" if self.higher_is_better(monitor) else "min"
        finetune = spec["finetune"]
        if finetune is not None and finetune["from"] is not None and not Path(finetune["from"]).exists():
            self.add("finetune.from", "no such file or folder", finetune["from"],
                     "a run folder or checkpoint file that exists")
        out = spec["output"]
        name = out["name"]
        if name is not None and (name in (".", "..") or "/" in name or "\\" in name):
            self.add("output.name", "not a plain folder name", name,
                     "a name without '/' (put parent folders in output.dir)")

    def higher_is_better(self, monitor: str) -> bool:
        if monitor.endswith("loss"):
            return False
        try:
            metric = registry.get("metrics", monitor.removeprefix("val_"))
        except RegistryError:
            return False
        return bool(getattr(metric, "higher_is_better", False))


def _locate(problems: list[Problem], origins: Mapping[str, str], lines: Mapping[str, int]) -> list[Problem]:
    """Attach to each problem the override that set its value, or else its file line."""
    out = []
    for p in problems:
        if p.origin is None and p.line is None and p.path:
            path = p.path
            while path:
                if path in origins:
                    p = replace(p, origin=origins[path])
                    break
                if path in lines:
                    p = replace(p, line=lines[path])
                    break
                path = re.sub(r"(\[\d+\]|\.[^.\[]*)$", "", path) if re.search(r"[.\[]", path) else ""
        out.append(p)
    return out


def _resolve(raw: Any, overrides: Iterable[str], name: str | None, source: str | None,
             lines: Mapping[str, int]) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError([Problem("", "a spec is a mapping of sections (" + ", ".join(SECTIONS) + ")", raw)],
                        source)
    problems: list[Problem] = []
    merged, origins = _apply(raw, overrides, problems)
    v = _Validator()
    spec = v.section("", merged)
    v.cross_checks(spec)
    if spec["output"]["name"] is None:
        spec["output"]["name"] = name or "run"
    problems.extend(v.problems)
    if problems:
        raise SpecError(_locate(problems, origins, lines), source)
    return spec


def resolve_spec(raw: Mapping | None, overrides: Iterable[str] = (), *, name: str | None = None,
                 source: str | None = None) -> dict:
    """Validate a spec given as a dict (plus overrides) and return it resolved: every
    section present, every default filled in, components in ``{name: ..., options}``
    form. ``name`` is the default run name (``output.name``; else ``"run"``). Raises
    :class:`SpecError` listing every problem."""
    return _resolve(raw, overrides, name, source, {})


def load_spec(path: str | os.PathLike, overrides: Iterable[str] = ()) -> dict:
    """Read, override and validate the spec file at ``path`` (see :func:`resolve_spec`).
    ``output.name`` defaults to the file's stem (``examples/charlm.yaml`` -> ``charlm``)."""
    source = os.fspath(path)
    p = Path(source)
    if not p.exists():
        raise SpecError([Problem("", "spec file not found", source, "a YAML file that exists")], source)
    if not p.is_file():
        raise SpecError([Problem("", "not a file", source, "a YAML file")], source)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")], source) from None
    except OSError as exc:
        raise SpecError([Problem("", f"can't read the file: {exc.strerror or exc}")], source) from None
    raw, lines = _parse_yaml(text, source)
    return _resolve(raw, overrides, p.stem, source, lines)


# =============================================================================
# Writing a resolved spec, and the task-dependent defaults
# =============================================================================

def _plain(value: Any) -> Any:
    """Tuples -> lists, numpy scalars -> Python numbers: what safe_dump can write."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dump_spec(spec: Mapping, path: str | os.PathLike | None = None) -> str:
    """The spec as YAML text (sections in schema order); with ``path`` also written there
    atomically (a temporary file renamed over it, so a crash never leaves half a file).
    ``load_spec`` reads it back to the same resolved spec."""
    order = {key: i for i, key in enumerate(SECTIONS)}
    ordered = dict(sorted(dict(spec).items(), key=lambda kv: order.get(kv[0], len(order))))
    text = yaml.safe_dump(_plain(ordered), sort_keys=False, default_flow_style=False, allow_unicode=True)
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text)
    return text


def default_loss(task: str) -> str:
    """The loss a spec gets with ``loss: null``: cross_entropy, or mse for regression."""
    return "mse" if task == "regression" else "cross_entropy"


def fill_task_defaults(spec: Mapping, task: str) -> dict:
    """The resolved spec completed with what depends on the data's task (known once the
    dataset is built): the default loss. Also checks the options that only make sense for
    some tasks (``train.tbptt`` and a unidirectional model for language models)."""
    out = copy.deepcopy(dict(spec))
    problems = []
    if out.get("loss") is None:
        out["loss"] = {"name": default_loss(task)}
    if task != "lm" and out["train"].get("tbptt"):
        problems.append(Problem("train.tbptt", f"only for language models, and this data's task is '{task}'",
                                True, "false"))
    if task == "lm" and out["model"].get("bidirectional"):
        problems.append(Problem("model.bidirectional", "a language model can't be bidirectional "
                                                       "(it would see the characters it must predict)", True,
                                "false"))
    if problems:
        raise SpecError(problems)
    return out


# =============================================================================
# The schema as a table, for `mgnn check` and the docs
# =============================================================================

def schema_rows() -> list[dict[str, str]]:
    """One row per key: ``{"key", "type", "default", "allowed", "doc"}``, in spec order."""
    rows = []
    for f in SCHEMA:
        if f.required:
            default = "(required)"
        elif f.type == "section":
            default = "null" if f.nullable else ""
        elif isinstance(f.default, (dict, list)):
            default = yaml.safe_dump(f.default, default_flow_style=True, sort_keys=False).strip()
        else:
            default = "null" if f.default is None else yaml.safe_dump(f.default).strip().removesuffix("...").strip()
        kind = f"{f.type}:{f.kind}" if f.kind else f.type
        rows.append({"key": f.path, "type": kind, "default": default, "allowed": f.allowed(), "doc": f.doc})
    return rows


def format_schema() -> str:
    """The schema as a plain-text table."""
    rows = schema_rows()
    keys = ["  " * r["key"].count(".") + r["key"].rpartition(".")[2] for r in rows]
    width = max(len(k) for k in keys)
    dwidth = max(len(r["default"]) for r in rows)
    return "\n".join(f"{k:<{width}}  {r['default']:<{dwidth}}  {r['doc']}".rstrip() for k, r in zip(keys, rows))
