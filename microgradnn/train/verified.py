"""Load the first checkpoint of a list that verifies, saying which were refused and why.

Every ``mg.save`` file carries a SHA-256 of its contents (see :mod:`microgradnn.checkpoint`).
When the checkpoint a command wants is damaged, the previous verified one is the honest
next choice — a resumed run continues from an earlier step and ends the same, an
evaluation reports an earlier model — as long as the user is told. :func:`load_first_verified`
returns the state, the file it came from, and one line per refused file for the caller to
show.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ..checkpoint import CheckpointError, CheckpointNotFoundError
from ..checkpoint import load as mg_load

__all__ = ["load_first_verified", "fallback_note"]


def load_first_verified(paths: Iterable[str | os.PathLike], load: Callable[[Path], Any] = mg_load,
                        accept: Callable[[Any], str | None] | None = None) -> tuple[Any, Path, list[str]]:
    """``(state, path, refused)``: the first of ``paths`` that exists, verifies and (when
    ``accept`` is given) is accepted — ``accept(state)`` returns None or why not.
    ``refused`` holds one line per damaged/unacceptable file before it. Raises the first
    file's :class:`CheckpointError` when none can be used."""
    refused: list[str] = []
    first_error: CheckpointError | None = None
    for p in paths:
        p = Path(p)
        try:
            state = load(p)
        except CheckpointNotFoundError:
            continue
        except CheckpointError as exc:
            first_error = first_error or exc
            refused.append(str(exc).removeprefix("mg.load: "))
            continue
        why = accept(state) if accept is not None else None
        if why is not None:
            first_error = first_error or CheckpointError(f"{p}: {why}")
            refused.append(f"{p}: {why}")
            continue
        return state, p, refused
    if first_error is not None:
        raise first_error
    raise CheckpointNotFoundError("no checkpoint to load: " + ", ".join(str(Path(p)) for p in paths))


def fallback_note(refused: list[str], used: Path, step: Any = None) -> str:
    """One line: what was refused, and what is used instead."""
    at = f" (step {step})" if step is not None else ""
    return f"{'; '.join(refused)}; using {used.name}{at} instead"
