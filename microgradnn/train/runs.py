"""The run folder: every file ``mgnn train`` writes goes through :class:`RunFolder`.

The layout and which checkpoint is "best", "last" or "the base of a fine-tune" are
declared once in :mod:`microgradnn.runfolder`; this module is the one *writer*. Keeping
every write here is what lets a run folder behave as a small database: one place to
lock it against a second writer, to verify what is written, and to make only one
process of a multi-process run write (``RunFolder(path, writer=False)`` writes nothing;
so does a dry run).

Checkpoints are ``mg.save`` files (safetensors, no pickle). Small JSON files are written
atomically (temporary file + rename), so a crash never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from .. import runfolder
from ..checkpoint import save as mg_save
from ..fileio import atomic_write, read_bounded
from ..runlock import RunLock, claim_fresh_dir, lock_run_dir
from .metrics_log import MetricsFile, RunFileError
from ..runfolder import (ADAPTER_FILE, CKPT_DIR, EXPORT_FILE, INDEX_FILE, LAST, METRICS_FILE, RUN_FILE, SPEC_FILE,
                         VOCAB_FILE, RunFolderError)
from ..spec import dump_spec
from .errors import TrainError

__all__ = [
    "SPEC_FILE", "RUN_FILE", "VOCAB_FILE", "METRICS_FILE", "CKPT_DIR", "INDEX_FILE", "LAST", "ADAPTER_FILE",
    "EXPORT_FILE", "RunFolder", "write_json", "read_json", "write_spec", "read_spec", "checkpoint_index",
    "find_checkpoint", "check_run_dir", "unique_run_dir", "claim_fresh_dir", "save_file", "recorded_components",
]


#: a run folder's spec.yaml, run.json, vocab.json, index.json are small; 64 MiB is far beyond any
SMALL_FILE_LIMIT = 64 << 20


#: run-folder files whose digest run.json records (see RunFolder.write_status)
DIGESTED = (SPEC_FILE, VOCAB_FILE)


def _digests(run_dir: Path) -> dict[str, str]:
    out = {}
    for name in DIGESTED:
        try:
            out[name] = hashlib.sha256(read_bounded(run_dir / name, SMALL_FILE_LIMIT)).hexdigest()
        except (OSError, ValueError):
            pass
    return out


def _verify_recorded(path: Path, data: bytes) -> None:
    """``path`` (spec.yaml, vocab.json) against the digest run.json recorded; folders
    written before digests existed (or without run.json) are not checked."""
    if path.name not in DIGESTED:
        return
    run_json = path.parent / RUN_FILE
    if not run_json.is_file():
        return
    recorded = read_json(run_json)
    expected = recorded.get("sha256", {}).get(path.name) if isinstance(recorded, dict) and \
        isinstance(recorded.get("sha256"), dict) else None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise TrainError(f"{path} does not match the SHA-256 that {run_json.name} recorded when the run wrote it: "
                         "one of the two was damaged or edited (change a run with mgnn resume RUN key=value)")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(Path(path), json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True) + "\n")


def _write_error(path: Path, exc: OSError) -> RunFileError:
    return RunFileError(f"can't write {path}: {exc.strerror or exc}; the previous {path.name}, if any, is "
                        "unchanged (free some space, then resume the run if it has a checkpoint)")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A write of a whole run-folder file that the disk (or a file-size limit) refuses is
    one line naming the file: the atomic write left the previous file as it was."""
    try:
        yield
    except OSError as exc:
        raise _write_error(path, exc) from None


def _rewrite_in_place(path: Path, info: dict[str, Any]) -> bool:
    """Last resort for ``run.json`` on a full disk, where even a small new file can't be
    written: overwrite the existing file's own bytes with ``info`` as compact JSON padded
    with spaces (which JSON ignores), its ``reason`` shortened (or dropped) to fit, so its
    status still tells the truth. Writing inside a file's length needs no new space.
    Returns whether it was written."""
    try:
        size = path.stat().st_size
    except OSError:
        return False

    def compact(d: dict[str, Any]) -> bytes:
        return json.dumps(d, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode("utf-8")

    data = compact(info)
    reason = str(info.get("reason") or "")
    while len(data) >= size and reason:  # shorten the reason until the record fits
        reason = reason[: max(0, len(reason) - (len(data) - size + 1))]
        data = compact(dict(info, reason=reason) if reason else {k: v for k, v in info.items() if k != "reason"})
    if len(data) >= size:
        return False
    data += b" " * (size - len(data) - 1) + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def save_file(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``mg.save`` to ``path`` (atomic): a checkpoint, an adapter or an export."""
    mg_save(payload, path)
    return Path(path)


class RunFolder:
    """The writer of one run folder (see the module docstring).

    ``writer=False``: every write is skipped (a dry run; a process other than rank 0)."""

    def __init__(self, path: str | os.PathLike, writer: bool = True, lock: RunLock | None = None) -> None:
        self.path = Path(path)
        self.writer = writer
        self._lock = lock
        self.metrics = MetricsFile(self.path / METRICS_FILE)

    # -- one writer ----------------------------------------------------------------------

    def lock(self) -> None:
        """Take the folder's writer lock (:mod:`microgradnn.runlock`) unless held: a second
        writer gets a one-line :class:`~microgradnn.runlock.RunLockedError` naming the pid."""
        if self.writer and (self._lock is None or not self._lock.held):
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = lock_run_dir(self.path)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def checkpoints(self) -> Path:
        return self.path / CKPT_DIR

    def has_run(self) -> bool:
        return (self.checkpoints / LAST).exists()

    # -- whole files -------------------------------------------------------------------

    def create(self, spec: Mapping[str, Any], vocab: Any) -> None:
        """A new run: the folder, ``spec.yaml`` and ``vocab.json``."""
        if not self.writer:
            return
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        with _writing(self.path / METRICS_FILE):
            self.metrics.start()  # records of an attempt that died before its first checkpoint go
        self.write_spec(spec)
        if vocab is not None:
            with _writing(self.path / VOCAB_FILE):
                if hasattr(vocab, "save"):
                    vocab.save(self.path / VOCAB_FILE)
                else:
                    write_json(self.path / VOCAB_FILE, {"kind": "char", "itos": list(vocab.itos)})

    def write_spec(self, spec: Mapping[str, Any]) -> None:
        if self.writer:
            with _writing(self.path / SPEC_FILE):
                dump_spec(spec, self.path / SPEC_FILE)

    def write_status(self, info: dict[str, Any]) -> None:
        """``run.json``: status, model facts, counts, and the SHA-256 of spec.yaml and
        vocab.json as they are now (verified when they are read back: a damaged or
        hand-edited spec must not pass for the run's own).

        On a full disk a final status (failed, interrupted, ...) is still written: over the
        old file's own bytes, compactly, if the atomic write is refused (a run.json left at
        "running" would say a dead run is alive)."""
        if not self.writer:
            return
        path = self.path / RUN_FILE
        info = json.loads(json.dumps(dict(info, sha256=_digests(self.path)), default=str))
        try:
            write_json(path, info)
        except OSError as exc:
            if info.get("status") != "running" and _rewrite_in_place(path, info):
                return
            raise _write_error(path, exc) from None

    # -- metrics.jsonl -------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.writer:
            self.metrics.append(record)

    def metrics_state(self) -> dict[str, Any]:
        """What a checkpoint records of metrics.jsonl (its length and digest)."""
        return self.metrics.state()

    def restore_metrics(self, state: dict[str, Any] | None, step: int) -> None:
        """On resume: metrics.jsonl exactly as it was at the checkpoint (``state``) at
        ``step``, plus the end records written since; a file damaged before that point is
        a one-line error naming it."""
        if self.writer:
            self.metrics.restore(state, step)

    # -- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        path = self.checkpoints / name
        if self.writer:
            save_file(state, path)
        return path

    def remove_checkpoint(self, name: str) -> None:
        if self.writer:
            try:
                (self.checkpoints / name).unlink()
            except FileNotFoundError:
                pass

    def write_index(self, index: dict[str, Any]) -> None:
        if self.writer:
            with _writing(self.checkpoints / INDEX_FILE):
                write_json(self.checkpoints / INDEX_FILE, index)

    def write_adapter(self, payload: dict[str, Any]) -> None:
        if self.writer:
            save_file(payload, self.path / ADAPTER_FILE)


# ----------------------------------------------------------------------------- reading


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        data = read_bounded(path, SMALL_FILE_LIMIT, "run-folder JSON file")
        _verify_recorded(path, data)
        return json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise TrainError(f"{path} is missing: is {path.parent} a run folder written by mgnn train?") from None
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, too long, nested too deep
        detail = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise TrainError(f"{path} is not valid JSON ({detail})") from None
    except OSError as exc:  # a device or FIFO put in its place, unreadable
        raise TrainError(f"can't read {path}: {exc.strerror or exc}") from None


def write_spec(path: str | os.PathLike, spec: Mapping[str, Any]) -> None:
    """The resolved spec as YAML, written atomically."""
    dump_spec(spec, path)


def read_spec(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's resolved spec as written (a plain dict), read with the spec's safe loader."""
    from ..spec import SpecError, read_yaml

    path = Path(run_dir) / SPEC_FILE
    try:
        data = read_bounded(path, SMALL_FILE_LIMIT, "spec")
        _verify_recorded(path, data)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise TrainError(f"{run_dir} is not a run folder: it has no {SPEC_FILE} (mgnn train writes one)") from None
    except UnicodeDecodeError as exc:
        raise TrainError(f"{path} is not UTF-8 text (byte {exc.start}): the file is damaged") from None
    except ValueError as exc:  # longer than any spec
        raise TrainError(str(exc)) from None
    except OSError as exc:
        raise TrainError(f"can't read {path}: {exc.strerror or exc}") from None
    try:
        spec = read_yaml(text, str(path))  # the guarded loader: node limit, no alias bombs, no tags
    except SpecError as exc:
        raise TrainError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise TrainError(f"{path} does not hold a spec mapping")
    return spec


def recorded_components(run_dir: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Which distribution provided each component of the run, as ``run.json`` recorded it
    (``{kind: {name: dist}}``, what :func:`microgradnn.registry.pinned` takes), each one
    checked against what is installed now.

    Resume, eval, generate and export resolve the run's components under these pins, so a
    plugin installed since that claims one of the names can't take it over, and one
    removed since is said out loud: a :class:`TrainError` naming ``run.json``, the
    component, the distribution it came from and what to install. A folder written before
    the record existed (or without run.json) gives ``{}``: its names resolve as always."""
    from .. import registry

    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return {}
    info = read_json(path)
    record = info.get("components") if isinstance(info, dict) else None
    if record is None:
        return {}
    shape = 'a mapping {kind: {name: {"dist": ..., "version": ...}}}'
    if not isinstance(record, dict):
        raise TrainError(f"{path}: \"components\" must be {shape}, got {type(record).__name__}")
    pins: dict[str, dict[str, str]] = {}
    for kind, named in record.items():
        if kind not in registry.KINDS or not isinstance(named, dict):
            raise TrainError(f"{path}: components.{kind} is not a record of {shape} (kinds are "
                             f"{', '.join(registry.KINDS)})")
        for name, source in named.items():
            dist = source.get("dist") if isinstance(source, dict) else None
            if not name or not isinstance(dist, str) or not dist:
                raise TrainError(f"{path}: components.{kind}.{name} is not a record of {shape}")
            try:
                registry.resolve(kind, name, dist)
            except registry.NotProvidedError as exc:
                version = str(source.get("version") or "")
                raise TrainError(f"{path}: components.{kind}.{name} was provided by distribution '{dist}'"
                                 + (f" {version}" if version else "") + f", but {exc.reason}; "
                                 + _install_hint(kind, name, dist, version) + " (the run resolves its components "
                                 "from the distributions it was trained with)") from None
            pins.setdefault(kind, {})[name] = dist  # ("dist:name" spellings pick their dist themselves)
    return pins


def _install_hint(kind: str, name: str, dist: str, version: str) -> str:
    """What to do to use a run whose component came from ``dist``, which is gone."""
    from .. import registry

    if dist == registry.IN_PROCESS:
        return (f"register it again in this process (microgradnn.registry.register({kind!r}, {name!r}, ...)) "
                "before using the run")
    known = registry.known_plugin_hint(kind, name)  # one of the project's example plugins?
    if f"'{dist}'" in known and ": " in known:
        return "install it again: " + known.rsplit(": ", 1)[1]
    return "install it again: pip install " + (f"'{dist}=={version}'" if version else dist)


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    if not path.exists():
        raise TrainError(f"run folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise TrainError(f"{str(path)!r} is a file, not a run folder")
    if not (path / SPEC_FILE).is_file():
        raise TrainError(f"{str(path)!r} is not a run folder: it has no {SPEC_FILE} (mgnn train writes one)")
    return path


def checkpoint_index(run_dir: str | os.PathLike) -> dict[str, Any]:
    try:
        return runfolder.checkpoint_index(run_dir)
    except RunFolderError as exc:
        raise TrainError(str(exc)) from None


def find_checkpoint(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint policy (:func:`microgradnn.runfolder.find_checkpoint`), its errors
    as :class:`TrainError`."""
    try:
        return runfolder.find_checkpoint(run_dir, which)
    except RunFolderError as exc:
        raise TrainError(str(exc)) from None


def unique_run_dir(base: Path) -> Path:
    """``base`` if it is free (missing or empty), else ``base-2``, ``base-3``, ...: a new
    run never overwrites an old one (resume that one with ``mgnn resume``)."""
    if not base.exists() or (base.is_dir() and not any(base.iterdir())):
        return base
    n = 2
    while True:
        candidate = base.with_name(f"{base.name}-{n}")
        if not candidate.exists():
            return candidate
        n += 1
