"""Command-line overrides: ``key=value`` (the value read as YAML) and ``~key``."""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable, Mapping

from ..registry import suggest
from .errors import Problem, SpecError
from .loading import parse_yaml
from .schema import CHILDREN, FIELDS

__all__ = ["parse_override", "apply_overrides", "apply_with_origins"]

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
        value, _ = parse_yaml(value_text, None)
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
        children = CHILDREN.get(field_path)
        if children is None:
            break  # inside a component's options: any name may be right
        if here not in FIELDS:
            keys = [f.key for f in children]
            problems.append(Problem(here, "bad override: no such key to delete", allowed=", ".join(keys),
                                    suggestions=tuple(suggest(part, keys)), origin=text))
            return
        if FIELDS[here].type != "section":
            break
        field_path = here
    cur: Any = spec
    for part in parts[:-1]:
        cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


def apply_with_origins(raw: Mapping, overrides: Iterable[str], problems: list[Problem]) -> tuple[dict, dict[str, str]]:
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
    spec, _ = apply_with_origins(raw, overrides, problems)
    if problems:
        raise SpecError(problems)
    return spec

