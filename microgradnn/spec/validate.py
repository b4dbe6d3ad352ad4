"""Validation: walk the schema over a raw spec, collect every problem, and build the
resolved spec."""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import registry
from ..tasks import get_task, misfit
from ..contracts import contract
from ..registry import RegistryError, suggest
from .errors import UNSET, Problem, SpecError
from .loading import plain, read_spec_file
from .resolved import Component, ResolvedSpec
from .options import accepts, coerce, component_options, option_range_rule
from .overrides import apply_with_origins
from .schema import EPOCHS_WHEN_UNSET, FIELDS, SCHEMA, CHILDREN, DERIVED_OPTIONS, SECTIONS, Field, in_range, range_text

__all__ = ["resolve_spec", "load_spec", "fill_task_defaults", "default_loss"]

class _Validator:
    """Walks the schema over a raw spec, building the resolved spec and collecting problems."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, value: Any = UNSET, allowed: str | None = None,
            suggestions: Iterable[str] = ()) -> None:
        self.problems.append(Problem(path, message, value, allowed, tuple(suggestions)))

    # -- sections and scalars -------------------------------------------------------------

    def section(self, path: str, value: Mapping) -> dict:
        children = CHILDREN[path]
        keys = [f.key for f in children]
        for key in value:
            if key not in keys:
                where = f"{path}.{key}" if path else str(key)
                self.add(where, "unknown key", allowed=", ".join(keys),
                         suggestions=_elsewhere(str(key), path) or suggest(str(key), keys))
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
        if f.type in ("int", "float") and not in_range(value, f.low, f.low_open, f.high, f.high_open):
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
                hint = registry.known_plugin_hint(kind, short)
                if hint:
                    self.add(path, hint, name)
                else:
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
            elif accepts(info.annotation, value) is False:
                self.add(where, f"wrong type for option of {noun} '{name}'", value, info.allowed)
                continue
            if not self.option_range(kind, str(key), value, where):
                continue
            out[key] = coerce(info.annotation, value) if info is not None else value
        derived = DERIVED_OPTIONS.get(kind, {})
        missing = False
        for key, info in params.items():
            if info.required and key not in given and key not in derived:
                self.add(f"{path}.{key}", f"missing required option of {noun} '{name}'", allowed=info.allowed)
                missing = True
        if not missing and len(out) == len(given):
            # The final word: bind them to the very callable build will call, so a
            # clash the names alone don't show (an option the layer also sets) is
            # caught here rather than when the run starts.
            fill = {k: None for k in derived if k in params and k not in out}
            try:
                contract(kind).bind(obj, {**out, **fill})
            except TypeError as exc:
                self.add(path, f"options don't fit {noun} '{name}': {exc}", {k: given[k] for k in given})
        return out

    def option_range(self, kind: str, key: str, value: Any, where: str) -> bool:
        rule = option_range_rule(kind, key)
        if rule is None:
            return True
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if not math.isfinite(item) or not in_range(item, *rule):
                what = "each a number" if isinstance(value, list) else "a number"
                self.add(where, "out of range", value, what + range_text(*rule))
                return False
        return True

    # -- checks across keys ---------------------------------------------------------------

    def cross_checks(self, spec: dict) -> None:
        train = spec["train"]
        if train["epochs"] is not None and train["steps"] is not None:
            self.add("train", "give train.epochs or train.steps, not both",
                     {"epochs": train["epochs"], "steps": train["steps"]}, "exactly one of epochs, steps")
        elif train["epochs"] is None and train["steps"] is None:
            train["epochs"] = EPOCHS_WHEN_UNSET
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
        return bool(metric.higher_is_better)  # the metric contract requires it


def _elsewhere(key: str, section: str) -> list[str]:
    """Where a key that is unknown in ``section`` belongs: another section's key of that
    name (``model.batch_size`` -> ``train.batch_size``), or an option of the default
    optimizer (``train.lr`` -> ``optimizer.lr``)."""
    found = [f.path for f in SCHEMA if f.key == key and f.parent != section]
    if not found:
        default = FIELDS["optimizer"].default["name"]
        try:
            options, _ = component_options("optimizers", registry.get("optimizers", default))
        except (RegistryError, TypeError, ValueError):
            options = {}
        if key in options:
            found.append(f"optimizer.{key}")
    return found


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
    if isinstance(raw, Mapping) and not isinstance(raw, dict):
        raw = plain(raw)
    if not isinstance(raw, dict):
        raise SpecError([Problem("", "a spec is a mapping of sections (" + ", ".join(SECTIONS) + ")", raw)],
                        source)
    problems: list[Problem] = []
    merged, origins = apply_with_origins(raw, overrides, problems)
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
                 source: str | None = None) -> ResolvedSpec:
    """Validate a spec given as a dict (plus overrides) and return it resolved: every
    section present, every default filled in, components in ``{name: ..., options}``
    form. ``name`` is the default run name (``output.name``; else ``"run"``). Raises
    :class:`SpecError` listing every problem. A :class:`ResolvedSpec` given back in is
    validated again (its mapping view is the resolved dict)."""
    if isinstance(raw, ResolvedSpec):
        raw = raw.to_dict()
    return ResolvedSpec.from_mapping(_resolve(raw, overrides, name, source, {}))


def load_spec(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ResolvedSpec:
    """Read, override and validate the spec file at ``path`` (see :func:`resolve_spec`).
    ``output.name`` defaults to the file's stem (``examples/charlm.yaml`` -> ``charlm``)."""
    source = os.fspath(path)
    raw, lines = read_spec_file(source)
    return ResolvedSpec.from_mapping(_resolve(raw, overrides, Path(source).stem, source, lines))


# =============================================================================
# What depends on the data's task (known once the dataset is built)
# =============================================================================

def default_loss(task: str) -> str:
    """The loss a spec gets with ``loss: null``: the task's (cross_entropy, or mse for regression)."""
    return get_task(task).default_loss


def fill_task_defaults(spec: Mapping, task: str) -> ResolvedSpec:
    """The resolved spec completed with what depends on the data's task: the default
    loss. Checks what only fits some tasks, so a mismatch is one line before any work:
    a loss or metric whose declared ``targets`` differ from the task's (``nll`` on a
    regression, ``accuracy`` on float targets), ``train.tbptt`` on data whose batches
    don't continue each other's task, a bidirectional language model."""
    if not isinstance(spec, ResolvedSpec):
        spec = ResolvedSpec.from_mapping(spec)
    the_task = get_task(task)
    problems = []
    loss = spec.loss if spec.loss is not None else Component.of(the_task.default_loss)
    problems += _misfits("losses", "loss", [loss.name], the_task)
    problems += _misfits("metrics", "train.metrics", list(spec.train.metrics), the_task, indexed=True)
    if spec.train.tbptt and not the_task.carries_state:
        problems.append(Problem("train.tbptt", f"only for language models, and this data's task is '{task}'",
                                True, "false"))
    if spec.model.bidirectional and not the_task.reads_backwards:
        problems.append(Problem("model.bidirectional", "a language model can't be bidirectional "
                                                       "(it would see the characters it must predict)", True,
                                "false"))
    if problems:
        raise SpecError(problems)
    return spec.replace(loss=loss)


def _misfits(kind: str, path: str, names: list[str], task: Any, indexed: bool = False) -> list[Problem]:
    """A problem for each named loss/metric whose declarations don't fit ``task``."""
    out = []
    for i, name in enumerate(names):
        try:
            obj = registry.get(kind, name)
        except RegistryError:
            continue  # reported by validation already
        why = misfit(obj, task)
        if why is None:
            continue
        fitting = [n for n in registry.names(kind) if _fits(kind, n, task)]
        out.append(Problem(f"{path}[{i}]" if indexed else path, f"{registry.singular(kind)} '{name}' {why}", name,
                           ", ".join(fitting) or "none registered"))
    return out


def _fits(kind: str, name: str, task: Any) -> bool:
    try:
        return misfit(registry.get(kind, name), task) is None
    except RegistryError:
        return False
