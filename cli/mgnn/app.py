"""``mgnn``: parse the command line, dispatch to a subcommand, apply the error policy.

Options and overrides may come in any order (``mgnn train spec.yaml --dry-run 2
train.batch_size=8`` = ``mgnn train --dry-run 2 train.batch_size=8 spec.yaml``): each
command's parser uses argparse's intermixed parsing. The subcommands are in
:mod:`mgnn.commands` (one module each); errors and exit codes in :mod:`mgnn.errors`.

The command, unlike the library, may change process-wide settings, and says so here:
it shows warnings as one line each, and it opts in to the allocator tuning training
benefits from (:func:`microgradnn.backend.tune_allocator`).
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from typing import Any

from .errors import (EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, last_line, quiet_broken_pipe, report,
                     user_error_types)

__all__ = ["main", "description"]


def description() -> str:
    from .commands import COMMANDS

    width = max(len(f"{c.name} {c.usage}") for c in COMMANDS.values())
    lines = [f"  {(c.name + ' ' + c.usage).ljust(width)}  {c.summary}" for c in COMMANDS.values()]
    return ("mgnn: train, watch, evaluate, sample and fine-tune recurrent networks from a YAML spec.\n\n"
            "commands:\n" + "\n".join(lines) + "\n\n`mgnn COMMAND -h` shows a command's options. --debug shows "
            "tracebacks.\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("MGNN_DEBUG"))
    argv = [a for a in argv if a != "--debug"]
    warnings.showwarning = _show_warning
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print("mgnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return quiet_broken_pipe()
    except BaseException as exc:  # noqa: BLE001 - the error policy lives in errors.py
        if isinstance(exc, SystemExit):
            raise
        from .parallel import after_report, before_report, speaks

        before_report(exc, isinstance(exc, user_error_types()))
        code = report(exc, debug, quiet=not speaks(exc))
        after_report(code, last_line(), exc)  # one of several ranks: end them all, now that it has said why
        return code


def _show_warning(message: Warning | str, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Warnings as one line each (a broken plugin, say), not the file:line + source pair."""
    kind = "warning" if category.__name__ in ("UserWarning", "PluginWarning", "CheckpointFallbackWarning") \
        else category.__name__
    print(f"mgnn: {kind}: {message}", file=sys.stderr)


def _command_of(argv: list[str]) -> tuple[str | None, list[str]]:
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            return a, argv[:i] + argv[i + 1:]
    return None, argv


def _dispatch(argv: list[str]) -> int:
    from .commands import COMMANDS

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(description())
        return EXIT_OK
    if argv[0] in ("-V", "--version"):
        from microgradnn import __version__

        print(f"mgnn (microgradnn) {__version__}")
        return EXIT_OK
    name, rest = _command_of(argv)
    if name is None:
        raise UsageError(f"no command given; commands are {', '.join(COMMANDS)} (see mgnn -h)")
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown command {name!r}{hint} (commands: {', '.join(COMMANDS)})")
    command = COMMANDS[name]
    parser = command.parser()
    if any(a in ("-h", "--help") for a in rest):
        parser.print_help()
        return EXIT_OK
    args = parser.parse_intermixed_args(rest)
    args.command = name
    args.argv = argv  # --nproc starts this same command line under mpiexec
    from microgradnn.backend import tune_allocator

    tune_allocator()  # the command's explicit opt-in; the library never does this by itself
    return command.run(args)


__all__ += ["EXIT_USAGE"]
