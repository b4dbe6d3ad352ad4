"""Atomic file writes: a crash, a full disk or Ctrl-C never leaves half a file behind.

The data goes to a temporary file in the same folder (so the final rename stays on one
file system), is flushed to disk, and is then renamed over the target in one step
(``os.replace`` is atomic on POSIX and Windows). Readers see the old file or the new one,
never a mix. ``mg.save`` does the same with checkpoint-specific error messages.

Reading is guarded too: :func:`open_regular_file` refuses devices, FIFOs and sockets by
kind, :func:`read_bounded` refuses a file longer than its format allows before reading it,
and :func:`glob_files` never loops through symlinked folders.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "kind_of", "not_a_file_reason", "NotARegularFileError", "open_regular_file",
           "read_bounded", "glob_files", "remove_stale_temporaries"]


def atomic_write(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically; return the path."""
    target = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    # os.open with mode 0o666 (then the umask), not mkstemp: mkstemp's files are private
    # (0600), and a run folder's spec.yaml should be as readable as any file the user writes.
    tmp = str(target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


# ----------------------------------------------------------------------------- reading safely
#
# A path a user (or a spec, or a run folder) names may be anything the file system holds:
# /dev/zero reads forever, a FIFO blocks the open() until a writer comes, a socket can't be
# read at all. Such paths are refused by what they are, before anything is read.

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """What an ``st_mode`` is, in words: "a regular file", "a folder", "a FIFO (named pipe)"..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def not_a_file_reason(path: str | os.PathLike) -> str | None:
    """None when ``path`` is a regular file (after symlinks); otherwise why it is not, in
    words that can follow the path in a message: "does not exist", "is a character device"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:  # ELOOP (a symlink loop), EACCES, ENAMETOOLONG, ...
        return f"can't be examined ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return _not_a_file(mode)


def _not_a_file(mode: int) -> str:
    return "is a folder, not a file" if stat.S_ISDIR(mode) else f"is {kind_of(mode)}, not a regular file"


class NotARegularFileError(OSError):
    """A path that exists but is a device, FIFO, socket or folder where a file was expected."""


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading in binary mode, refusing anything that is not a regular file.

    The open itself is non-blocking (a FIFO would otherwise wait for a writer), and the kind
    is checked on the opened descriptor (``fstat``), so a path swapped between a check and
    the open cannot slip through. Raises ``FileNotFoundError`` for a missing path and
    :class:`NotARegularFileError` (naming the kind) for a device, FIFO, socket or folder."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a folder (EISDIR), a socket (ENXIO), ...: say what it is
        reason = not_a_file_reason(path)
        if reason is not None and reason.startswith("is "):
            raise NotARegularFileError(exc.errno, reason, os.fspath(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(errno.EINVAL, _not_a_file(mode), os.fspath(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # regular files ignore O_NONBLOCK; reset it all the same
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file that may hold at most ``limit`` bytes; a longer file is
    refused (``ValueError`` saying both sizes) without reading it."""
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ValueError(f"{os.fspath(path)} is {size:,} bytes, more than a {what} may be ({limit:,})")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise ValueError(f"{os.fspath(path)} is more than {limit:,} bytes, more than a {what} may be")
    return data


# ----------------------------------------------------------------------------- globbing

_GLOB_CHARS = set("*?[")


def glob_files(pattern: str) -> list[Path]:
    """Regular files matching a glob ``pattern`` (``**`` for any depth), sorted.

    Like ``glob.glob(pattern, recursive=True)`` — names starting with a dot are matched only
    by a pattern part that starts with one — except that ``**`` never descends through a
    symlinked folder, so a symlink loop (``a/loop -> ..``) can't make the walk endless."""
    parts = Path(os.path.expanduser(pattern)).parts
    first = next((i for i, part in enumerate(parts) if _GLOB_CHARS.intersection(part)), len(parts))
    if first == len(parts):  # no wildcard at all
        p = Path(*parts) if parts else Path(".")
        return [p] if p.is_file() else []
    anchor = Path(*parts[:first]) if first else Path(".")
    rest = parts[first:]
    wants_hidden = any(part.startswith(".") for part in rest)
    found = []
    # pathlib's "**" (3.11+) does not follow symlinks to folders; glob.glob's does
    for match in anchor.glob("/".join(rest)):
        relative = match.relative_to(anchor).parts
        if not wants_hidden and any(part.startswith(".") for part in relative):
            continue
        try:
            if match.is_file():
                found.append(match)
        except OSError:  # ELOOP, EACCES: not a file we can read
            continue
    return sorted(found)


# ----------------------------------------------------------------------------- temporaries

# atomic_write's and mg.save's temporaries: ".<name>.<12 hex digits>.tmp"
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove what interrupted atomic writes left in ``directory`` (a ``kill -9`` between
    creating the temporary and renaming it); return what was removed.

    Only safe for whoever is the folder's one writer (a run folder's lock holder): another
    writer's temporary, still being written, looks the same."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed
