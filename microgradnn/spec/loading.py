"""Reading and writing spec YAML: a safe loader (plain data only, ``1e-3`` is a float,
duplicate keys are errors), a size limit against alias bombs, and the line of every key
path so a problem can say where it is."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..fileio import atomic_write
from .errors import Problem, SpecError
from .schema import SECTIONS

__all__ = ["read_yaml", "parse_yaml", "read_spec_file", "dump_spec", "plain"]

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


def parse_yaml(text: str, source: str | None) -> tuple[Any, dict[str, int]]:
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
    return parse_yaml(text, source)[0]


def plain(value: Any) -> Any:
    """Tuples -> lists, numpy scalars -> Python numbers: what safe_dump can write."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
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
    text = yaml.safe_dump(plain(ordered), sort_keys=False, default_flow_style=False, allow_unicode=True)
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text)
    return text


def read_spec_file(source: str) -> tuple[Any, dict[str, int]]:
    """The raw spec in file ``source`` and the line of each key path; a missing,
    unreadable or non-UTF-8 file is a :class:`SpecError` naming it."""
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
    return parse_yaml(text, source)
