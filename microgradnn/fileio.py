"""Atomic file writes: a crash, a full disk or Ctrl-C never leaves half a file behind.

The data goes to a temporary file in the same folder (so the final rename stays on one
file system), is flushed to disk, and is then renamed over the target in one step
(``os.replace`` is atomic on POSIX and Windows). Readers see the old file or the new one,
never a mix. ``mg.save`` does the same with checkpoint-specific error messages.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["atomic_write"]


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
