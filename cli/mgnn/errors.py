"""Exit codes and the error policy of ``mgnn``, in one place.

A mistake the user can fix (a bad spec, a missing file, an unknown component, a bad
override) prints ONE clear line (a spec with several problems prints its one report)
on stderr and exits with status 2, never a traceback; ``--debug`` shows the traceback.
A run that stops on a NaN/inf loss, or loses one of its processes, exits 1; one that
diverged (its validation loss ended far above a do-nothing model's, or crossed its
divergence threshold) exits 3 (early
stopping for lack of improvement is a success: 0); Ctrl-C exits 130 after saving a
checkpoint. A closed output pipe (``mgnn check spec.yaml | head -1``) ends quietly.
Anything else is a bug: one line saying so (exit 1), traceback with --debug.
"""

from __future__ import annotations

import os
import sys
import traceback

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_INTERRUPTED", "UsageError",
           "user_error_types", "report", "quiet_broken_pipe", "last_line", "rank_tag"]

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed (NaN loss), a contract check failed, an internal error
EXIT_USAGE = 2  # a user error: bad spec, missing file, bad option
EXIT_DIVERGED = 3  # the run ended, but its loss diverged (a result, not a success)
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad command line (the message is shown as is, exit status 2)."""


def user_error_types() -> tuple[type, ...]:
    """The exception types that mean "the user can fix this": shown as one line."""
    from microgradnn.backend import DeviceError
    from microgradnn.checkpoint import CheckpointError
    from microgradnn.data import DataError
    from microgradnn.finetune import FinetuneError
    from microgradnn.nn.module import StateDictError
    from microgradnn.onnx.exporter import OnnxExportError
    from microgradnn.registry import RegistryError
    from microgradnn.runfolder import RunFolderError
    from microgradnn.spec import SpecError
    from microgradnn.memory import MemoryLimitError
    from microgradnn.runlock import RunLockedError
    from microgradnn.train import TrainError

    return (UsageError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, SpecError,
            RegistryError, TrainError, DataError, CheckpointError, FinetuneError, DeviceError, StateDictError,
            RunFolderError, RunLockedError, MemoryLimitError, OnnxExportError)


def report(exc: BaseException, debug: bool, quiet: bool = False) -> int:
    """Print ``exc`` by the policy above (nothing when ``quiet``: one of several ranks that
    fail alike, for which rank 0 speaks); the exit status."""
    if debug:
        traceback.print_exc()
    code, line = _verdict(exc, debug)
    if not quiet:
        _last_line[0] = line
        print(line, file=sys.stderr)
    return code


def _verdict(exc: BaseException, debug: bool) -> tuple[int, str]:
    """The exit status and the one line for ``exc``."""
    if isinstance(exc, user_error_types()):
        message = str(exc) or type(exc).__name__
        if isinstance(exc, (FileNotFoundError, PermissionError)) and getattr(exc, "filename", None):
            message = f"{exc.strerror or 'not found'}: {exc.filename}"
        tag = rank_tag()  # "rank 1 of 2: " when one of several processes fails
        prefix = (f"mgnn: {tag}" if tag else "") if message.startswith("mgnn") else f"mgnn: {tag}error: "
        return EXIT_USAGE, f"{prefix}{message}"
    from microgradnn.distributed import DistBackendError

    if isinstance(exc, DistBackendError):  # another process ended: the run failed, nobody's bug
        return EXIT_FAILED, f"mgnn: {rank_tag()}error: {exc}"
    return EXIT_FAILED, (f"mgnn: {rank_tag()}internal error: {type(exc).__name__}: {exc}" +
                         ("" if debug else " (this is a bug; run again with --debug for the traceback)"))


_last_line = [""]  # the one line report() printed last (a failing rank also hands it to mgnn --nproc)


def last_line() -> str:
    return _last_line[0]


def rank_tag() -> str:
    """"rank R of N: " while this process is one of several (under mpiexec), else ""."""
    import microgradnn.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        return f"rank {dist.get_rank()} of {dist.get_world_size()}: "
    return ""


def quiet_broken_pipe() -> int:
    """The reader of our output went away (``| head``): stop writing, exit quietly.

    stdout is pointed at /dev/null so the interpreter's final flush does not raise again
    (the recipe of Python's own documentation on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_OK
