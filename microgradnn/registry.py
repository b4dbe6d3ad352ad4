"""Entry-point discovery for every pluggable kind of component.

Each kind has one entry-point group, ``"microgradnn." + kind``::

    microgradnn.cells  microgradnn.losses  microgradnn.optimizers  microgradnn.schedulers
    microgradnn.finetune  microgradnn.datasets  microgradnn.metrics

The built-ins are registered in microgradnn's own ``pyproject.toml`` through the very same
groups, so a third-party plugin and a built-in travel one path. A plugin distribution
declares, in *its* ``pyproject.toml``::

    [project.entry-points."microgradnn.cells"]
    indrnn = "my_plugin.cells:IndRNNCell"

and, once installed, ``cell: indrnn`` works in a spec.

How it behaves, and why:

* **Lazy.** :func:`names` and :func:`entries` read installed metadata only (a few small
  text files). :func:`get` imports only the one module behind the name it is asked for,
  so a spec naming ``lstm`` never imports a slow or broken plugin it does not use.
* **A broken plugin never takes the rest down.** One that fails to import, or that
  registers the wrong kind of thing (an "optimizer" that is not an Optimizer), is
  reported once, as a :class:`PluginWarning` naming its distribution and the error, and
  is listed by :func:`failures`. Asking for it by name raises :class:`RegistryError`.
* **Name clashes are explicit.** Two plugins claiming one name make ``get(kind, name)``
  raise an error naming both; ``"dist:name"`` picks one. A plugin never shadows a
  built-in: ``lstm`` is always microgradnn's, the plugin's is ``"its-dist:lstm"``.
* **A plugin's import can't end the process**: ``SystemExit`` and ``KeyboardInterrupt``
  raised while importing it are caught and reported like any other import failure.
* **A run resolves the same way later.** :func:`resolve` with ``dist`` (or, for a block
  of code, :func:`pinned`) takes a name from one distribution only: a run folder records
  which distribution provided each of its components, and resuming or evaluating it
  pins those, so a plugin installed (or removed) since can't silently change what a
  name means for it.
* **Typos get a did-you-mean** (``difflib``), as everywhere in microgradnn.

What each kind's object is, how it is called and what it must offer is its contract,
declared once in :mod:`microgradnn.contracts` (a ``typing.Protocol`` per kind). The
registry verifies every entry against it when it loads it, so a plugin that breaks it
is reported once, with its distribution's name, instead of crashing a run later.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import importlib.metadata as metadata
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from . import contracts

__all__ = [
    "KINDS", "GROUP_PREFIX", "Entry", "Failure", "RegistryError", "NotProvidedError", "PluginWarning",
    "get", "get_entry", "resolve", "pinned", "installed_version", "names", "entries", "failures", "load_all",
    "register", "unregister", "cache_clear", "group", "suggest", "singular", "known_plugin_hint",
]

KINDS: tuple[str, ...] = contracts.KINDS
GROUP_PREFIX = "microgradnn."

#: The distribution whose components are the built-ins: a plugin claiming one of their
#: names never shadows it (the plugin's stays reachable as ``"its-dist:name"``).
BUILTIN_DIST = "microgradnn"

#: The distribution name shown for components registered in-process with :func:`register`.
IN_PROCESS = "<in-process>"


class RegistryError(LookupError):
    """An unknown, ambiguous or broken component name. The message says which, and what to do."""


class NotProvidedError(RegistryError):
    """A component asked for from one distribution that does not provide it (not installed,
    or installed without that name). ``installed`` is that distribution's installed
    version, or None when it is not installed at all; ``reason`` says it in words."""

    def __init__(self, kind: str, name: str, dist: str, installed: str | None, reason: str) -> None:
        super().__init__(f"{singular(kind)} '{name}': {reason}")
        self.kind, self.name, self.dist, self.installed, self.reason = kind, name, dist, installed, reason


class PluginWarning(UserWarning):
    """A plugin failed to load or registered the wrong kind of object (reported once)."""


@dataclass
class Entry:
    """One registered component: ``name`` in ``kind``, from distribution ``dist``.

    ``value`` is the entry point's ``"module:attribute"`` (or a repr for in-process ones).
    ``status`` is ``"not loaded"`` until :func:`get` (or ``entries(load=True)``) imports
    it, then ``"ok"`` or ``"failed"`` (``error`` says why). ``clash`` names the other
    distributions that claim the same name, if any."""

    name: str
    kind: str
    value: str
    dist: str
    version: str
    status: str = "not loaded"
    error: str | None = None
    clash: tuple[str, ...] = ()
    _ep: Any = field(default=None, repr=False, compare=False)
    _obj: Any = field(default=None, repr=False, compare=False)

    @property
    def qualified_name(self) -> str:
        """``"dist:name"``: the spelling that picks this entry when two claim the name."""
        return f"{self.dist}:{self.name}"


@dataclass(frozen=True)
class Failure:
    """A plugin that could not be used: which one, from where, and the error."""

    kind: str
    name: str
    dist: str
    version: str
    value: str
    error: str

    def __str__(self) -> str:
        where = f"distribution '{self.dist}'" + (f" {self.version}" if self.version else "")
        what = f"{self.kind} plugin '{self.name}'" if self.name else "plugin metadata"
        return f"{what} ({self.value}) from {where} failed: {self.error}"


# ----------------------------------------------------------------------------- state
# Discovery results are cached per process; cache_clear() forgets them (tests, or after
# installing a plugin into a running interpreter).

_lock = threading.RLock()
_discovered: dict[str, list[Entry]] | None = None
_in_process: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_failures: list[Failure] = []
_reported: set[tuple[str, str, str, str]] = set()


def group(kind: str) -> str:
    """The entry-point group of ``kind``: ``"microgradnn.cells"`` for ``"cells"``."""
    _check_kind_name(kind)
    return GROUP_PREFIX + kind


def _check_kind_name(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}"
                            + _did_you_mean(kind, KINDS))


def _normalize(dist: str) -> str:
    """PEP 503 name normalisation: ``My_Plugin`` and ``my-plugin`` are one distribution."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def suggest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Close matches for a misspelt ``word`` (case-insensitive first, then ``difflib``)."""
    choices = list(dict.fromkeys(choices))
    lowered = [c for c in choices if c.lower() == str(word).lower() and c != word]
    close = difflib.get_close_matches(str(word), choices, n=n, cutoff=0.6)
    return list(dict.fromkeys(lowered + close))[:n]


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = suggest(word, choices)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def _report(failure: Failure) -> None:
    """Record a failure and warn about it, once per (kind, name, dist, error)."""
    key = (failure.kind, failure.name, failure.dist, failure.error)
    with _lock:
        if key in _reported:
            return
        _reported.add(key)
        _failures.append(failure)
    warnings.warn(f"microgradnn: {failure}; everything else keeps working", PluginWarning, stacklevel=3)


# ----------------------------------------------------------------------------- discovery


def _scan() -> dict[str, list[Entry]]:
    """Read every installed distribution's entry points in the ``microgradnn.*`` groups.

    Distributions are walked one by one (rather than one ``entry_points()`` call) so
    that one with broken metadata is reported and skipped instead of failing them all.
    As ``importlib.metadata`` does, the first distribution of a name on ``sys.path`` wins.
    """
    found: dict[str, list[Entry]] = {kind: [] for kind in KINDS}
    seen: set[str] = set()
    for dist in metadata.distributions():
        dist_name = "?"
        try:
            dist_name = dist.metadata["Name"] or "?"
            norm = _normalize(dist_name)
            if norm in seen:
                continue
            seen.add(norm)
            version = dist.version or ""
            for ep in dist.entry_points:
                if not ep.group.startswith(GROUP_PREFIX):
                    continue
                kind = ep.group[len(GROUP_PREFIX):]
                if kind not in KINDS:
                    _report(Failure("?", ep.name, dist_name, version, ep.value,
                                    f"unknown entry-point group '{ep.group}'; groups are "
                                    + ", ".join(GROUP_PREFIX + k for k in KINDS)
                                    + _did_you_mean(kind, KINDS)))
                    continue
                found[kind].append(Entry(ep.name, kind, ep.value, dist_name, version, _ep=ep))
        except Exception as exc:  # broken metadata of one distribution
            _report(Failure("?", "", dist_name, "", str(getattr(dist, "_path", "?")),
                            f"unreadable metadata: {type(exc).__name__}: {exc}"))
    if "microgradnn" not in seen:
        _add_source_tree_builtins(found)
    return found


def _add_source_tree_builtins(found: dict[str, list[Entry]]) -> None:
    """Running from a source checkout that was never ``pip install``-ed: read the built-ins'
    entry points from the checkout's own ``pyproject.toml``, the same table an install
    would have written, so there is still one list of built-ins."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.is_file():
        return
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10 without an install
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            return
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except Exception as exc:
        _report(Failure("?", "", "microgradnn", "", str(pyproject), f"unreadable pyproject.toml: {exc}"))
        return
    if project.get("name") != "microgradnn":
        return
    version = str(project.get("version", ""))
    for grp, table in project.get("entry-points", {}).items():
        kind = grp[len(GROUP_PREFIX):] if grp.startswith(GROUP_PREFIX) else None
        if kind not in KINDS:
            continue
        for name, value in table.items():
            ep = metadata.EntryPoint(name=name, value=value, group=grp)
            found[kind].append(Entry(name, kind, value, "microgradnn", version, _ep=ep))


def _discovered_entries() -> dict[str, list[Entry]]:
    global _discovered
    with _lock:
        if _discovered is None:
            _discovered = _scan()
        return _discovered


def _all(kind: str) -> list[Entry]:
    """Installed entries and in-process ones of ``kind``, with clashes marked."""
    _check_kind_name(kind)
    with _lock:
        items = list(_discovered_entries()[kind]) + list(_in_process[kind].values())
    by_name: dict[str, list[Entry]] = {}
    for e in items:
        by_name.setdefault(e.name, []).append(e)
    for same in by_name.values():
        for e in same:
            e.clash = tuple(o.dist for o in same if o is not e)
    return items


# ----------------------------------------------------------------------------- kind checks


def _callable_error(kind: str, obj: Any) -> str | None:
    """Why ``obj`` can't be a ``kind`` component (its contract, :mod:`microgradnn.contracts`)."""
    return contracts.verify(kind, obj)


# ----------------------------------------------------------------------------- lookup


#: Within a :func:`pinned` block: {kind: {name: dist}}, the distribution each plain name
#: resolves to (a context variable: scoped to the block, and to its thread or task).
_pins: contextvars.ContextVar[Mapping[str, Mapping[str, str]] | None] = contextvars.ContextVar(
    "microgradnn_registry_pins", default=None)


@contextlib.contextmanager
def pinned(pins: Mapping[str, Mapping[str, str]]) -> Iterator[None]:
    """Within the block, a plain ``name`` of ``kind`` listed in ``pins[kind]`` resolves only
    to the distribution given there (as ``resolve(kind, name, dist)`` would); names not
    listed, and ``"dist:name"`` spellings, resolve as always. Blocks nest: the inner
    pins replace the outer ones until the inner block ends.

    What a run folder uses so that a run resolves its components the same way later::

        with registry.pinned({"cells": {"indrnn": "mgnn-indrnn"}}):
            registry.get("cells", "indrnn")   # mgnn-indrnn's, whoever else claims it now
    """
    token = _pins.set({kind: dict(named) for kind, named in pins.items()})
    try:
        yield
    finally:
        _pins.reset(token)


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (None when it is not installed)."""
    if _normalize(dist) == _normalize(IN_PROCESS):
        return None
    try:
        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - not installed, or unreadable metadata: not usable either way
        return None


def resolve(kind: str, name: str, dist: str | None = None) -> Entry:
    """The :class:`Entry` that ``name`` means in ``kind`` (metadata only: nothing imported).

    The one rule, in order:

    1. ``dist`` given: that distribution's entry of ``name``, or :class:`NotProvidedError`;
    2. ``"dist:name"``: the same (an unknown short name gets a did-you-mean);
    3. a plain name pinned by an enclosing :func:`pinned` block: as 1 with the pinned dist;
    4. the one entry claiming the name; a built-in over any plugin (a plugin never shadows
       a built-in); two plugins and no built-in: an error naming both spellings."""
    if not isinstance(name, str) or not name:
        raise RegistryError(f"a {kind[:-1] if kind.endswith('s') else kind} name must be a non-empty string, "
                            f"got {name!r}")
    items = _all(kind)
    if dist is None and ":" not in name:
        dist = ((_pins.get() or {}).get(kind) or {}).get(name)
    if dist is not None:
        return _from_dist(kind, name, dist, items)
    if ":" in name:
        dist, _, short = name.partition(":")
        matches = [e for e in items if e.name == short and _normalize(e.dist) == _normalize(dist)]
        if matches:
            return matches[-1]
        owners = [e.qualified_name for e in items if e.name == short]
        if owners:
            raise RegistryError(f"{kind}: no distribution '{dist}' provides '{short}'; "
                                f"it comes from {', '.join(owners)}")
        name = short
    matches = [e for e in items if e.name == name]
    if len(matches) == 1:
        return matches[0]
    builtin = [e for e in matches if _normalize(e.dist) == _normalize(BUILTIN_DIST)]
    if builtin:  # a plugin never shadows a built-in name; it stays reachable as "dist:name"
        return builtin[0]
    if len(matches) > 1:
        who = " and ".join(f"'{e.dist}'" for e in matches)
        picks = " or ".join(f"'{e.qualified_name}'" for e in matches)
        raise RegistryError(f"{kind}: '{name}' is registered by {who}; pick one with {picks}")
    known = sorted({e.name for e in items})
    raise RegistryError(f"unknown {singular(kind)} '{name}'" + _did_you_mean(name, known)
                        + (f" (known: {', '.join(known)})" if known else f" (no {kind} are registered)"))


def _from_dist(kind: str, name: str, dist: str, items: list[Entry]) -> Entry:
    """``dist``'s entry of ``name``, or :class:`NotProvidedError` saying what is there instead."""
    short = name.partition(":")[2] if ":" in name else name
    matches = [e for e in items if e.name == short and _normalize(e.dist) == _normalize(dist)]
    if matches:
        return matches[-1]
    installed = installed_version(dist)
    if installed is None and any(_normalize(e.dist) == _normalize(dist) for k in KINDS for e in _all(k)):
        installed = ""  # registered (in-process, or a source checkout) though without metadata
    owners = [e.qualified_name for e in items if e.name == short]
    where = (f"distribution '{dist}' is not installed" if installed is None
             else f"distribution '{dist}'" + (f" {installed}" if installed else "") + " does not provide it")
    raise NotProvidedError(kind, short, dist, installed,
                           where + (f" (now provided by {', '.join(owners)})" if owners else ""))


def singular(kind: str) -> str:
    """``"cells"`` -> ``"cell"``, ``"finetune"`` -> ``"fine-tuning strategy"``: for messages."""
    return contracts.singular(kind)


def _load(entry: Entry) -> Any:
    with _lock:
        if entry.status == "ok":
            return entry._obj
        if entry.status == "failed":
            raise RegistryError(str(_failure_of(entry)))
        try:
            obj = entry._ep.load() if entry._ep is not None else entry._obj
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # a plugin's import is never allowed to end the process: SystemExit(0) at
            # import once made `mgnn plugins` exit silently; it is a failure like any other
            error = f"import failed: {type(exc).__name__}: {exc}"
            cause: BaseException | None = exc
        else:
            error = _callable_error(entry.kind, obj)
            cause = None
            if error is not None:
                error = f"wrong kind: {error}"
        if error is not None:
            entry.status, entry.error = "failed", error
            failure = _failure_of(entry)
            _report(failure)
            raise RegistryError(str(failure)) from cause
        entry.status, entry._obj = "ok", obj
        return obj


def _failure_of(entry: Entry) -> Failure:
    return Failure(entry.kind, entry.name, entry.dist, entry.version, entry.value, entry.error or "")


# ----------------------------------------------------------------------------- public API


def get(kind: str, name: str, dist: str | None = None) -> Any:
    """The component registered as ``name`` in ``kind``, importing only its module.

    ``name`` may be ``"dist:name"`` (or ``dist`` given) to choose between two distributions
    that claim it; which entry a name means is :func:`resolve`'s rule. Raises
    :class:`RegistryError` for an unknown name (with a did-you-mean), a clash, or a plugin
    that failed to load."""
    return _load(resolve(kind, name, dist))


def get_entry(kind: str, name: str, dist: str | None = None) -> Entry:
    """The :class:`Entry` for ``name`` (metadata only; nothing is imported): :func:`resolve`."""
    return resolve(kind, name, dist)


def known_plugin_hint(kind: str, name: str) -> str:
    """For a name no installed distribution registers: which of the project's example
    plugins (``plugins/*/pyproject.toml`` of a checkout) provides it, and how to install
    it; ``""`` when none does. Read from those files, so there is no second list."""
    folder = Path(__file__).resolve().parent.parent / "plugins"
    if not folder.is_dir():
        return ""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        return ""
    for pyproject in sorted(folder.glob("*/pyproject.toml")):
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except Exception:
            continue
        if name in project.get("entry-points", {}).get(group(kind), {}):
            dist = project.get("name", pyproject.parent.name)
            return (f"{singular(kind)} '{name}' comes from the plugin distribution '{dist}', which is not "
                    f"installed: pip install -e {pyproject.parent}")
    return ""


def names(kind: str) -> list[str]:
    """Sorted names registered for ``kind`` (reads metadata; imports nothing)."""
    return sorted({e.name for e in _all(kind)})


def entries(kind: str | None = None, load: bool = False) -> list[Entry]:
    """Every registered entry of ``kind`` (all kinds when None), sorted by kind and name.

    With ``load=True`` each is imported first, so ``status`` says whether it works (what
    ``mgnn plugins`` shows); a failure is then also in :func:`failures`."""
    kinds = KINDS if kind is None else (kind,)
    out: list[Entry] = []
    for k in kinds:
        items = _all(k)
        if load:
            for e in items:
                try:
                    _load(e)
                except RegistryError:
                    pass
        out.extend(sorted(items, key=lambda e: (e.name, e.dist)))
    return out


def load_all(kind: str | None = None) -> list[Failure]:
    """Import every entry (of ``kind``, or all): the failures found."""
    entries(kind, load=True)
    return failures()


def failures() -> list[Failure]:
    """Plugins reported as broken so far in this process (load errors, wrong kinds,
    unreadable metadata). Lazy discovery means an unused plugin is only checked by
    ``entries(load=True)`` / :func:`load_all`."""
    _discovered_entries()
    with _lock:
        return list(_failures)


def register(kind: str, name: str, obj: Any = None, *, dist: str = IN_PROCESS, version: str = "",
             replace: bool = False) -> Any:
    """Register ``obj`` as ``name`` in ``kind`` for this process only (tests, notebooks).

    Checked at once (a wrong kind raises :class:`RegistryError`). Without ``obj`` it is a
    decorator::

        @registry.register("cells", "mycell")
        class MyCell(mg.nn.Module): ...

    ``dist`` names the (pretend) distribution, e.g. to exercise a name clash.
    An in-process name that an installed distribution also claims is a clash like any
    other; ``replace=True`` replaces an earlier in-process registration of the name."""
    _check_kind_name(kind)
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise RegistryError(f"a component name must be a non-empty string without ':' or surrounding spaces, "
                            f"got {name!r}")
    if obj is None:
        return lambda o: register(kind, name, o, dist=dist, version=version, replace=replace)
    error = _callable_error(kind, obj)
    if error is not None:
        raise RegistryError(f"can't register {name!r} as one of the {kind}: {error}")
    with _lock:
        if name in _in_process[kind] and not replace:
            raise RegistryError(f"{kind}: '{name}' is already registered in this process; pass replace=True")
        value = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
        _in_process[kind][name] = Entry(name, kind, value, dist, version, status="ok", _obj=obj)
    return obj


def unregister(kind: str, name: str) -> None:
    """Forget an in-process registration (no error when there is none)."""
    _check_kind_name(kind)
    with _lock:
        _in_process[kind].pop(name, None)


def cache_clear() -> None:
    """Forget discovered entry points, loaded objects and reported failures (in-process
    registrations stay). The next lookup re-reads the installed metadata, so a plugin
    installed since is seen."""
    global _discovered
    importlib.invalidate_caches()
    with _lock:
        _discovered = None
        _failures.clear()
        _reported.clear()
