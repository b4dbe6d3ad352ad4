"""Argument parsing, dispatch and the error policy of ``mgnn``.

Error policy: a mistake the user can fix (a bad spec, a missing file, an unknown
component, a bad override) prints ONE clear line (a spec with several problems prints its
one report) on stderr and exits with status 2, never a traceback; ``--debug`` shows the
traceback. A run that stops on a NaN/inf loss or crosses its divergence threshold exits
1 (early stopping for lack of improvement is a success: 0); Ctrl-C exits 130 after saving
a checkpoint. Anything else is a bug: one line saying so (exit 1), traceback with --debug.

Options and overrides may come in any order (``mgnn train spec.yaml --dry-run 2
train.batch_size=8`` = ``mgnn train --dry-run 2 train.batch_size=8 spec.yaml``): each
command's parser uses argparse's intermixed parsing.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Any, Callable

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed (NaN loss), a contract check failed, an internal error
EXIT_USAGE = 2  # a user error: bad spec, missing file, bad option
EXIT_INTERRUPTED = 130

COMMANDS = ("train", "resume", "eval", "generate", "check", "plugins", "export", "tutorial")

_DESCRIPTION = """\
mgnn: train, watch, evaluate, sample and fine-tune recurrent networks from a YAML spec.

commands:
  train SPEC [key=value ...]     train (live display; --dry-run N, --print-config, --nproc N)
  resume RUN_DIR [train.*=...]   continue a stopped run exactly where it stopped
  eval RUN_DIR [--data PATH]     loss / perplexity / accuracy of a run's best model
  generate RUN_DIR --prompt TXT  sample text from a language-model run
  check SPEC [key=value ...]     validate a spec; print it resolved and the model summary
  plugins [check NAME]           list components by kind / contract-check a cell plugin
  export RUN_DIR                 a standalone (merged) checkpoint of a run
  tutorial [N]                   list the tutorials / read chapter N in the terminal

`mgnn COMMAND -h` shows a command's options. --debug shows tracebacks.
"""


class UsageError(Exception):
    """A bad command line (the message is shown as is, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage + exiting (one clear line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} -h)")


def _number_at_least(convert: type, minimum: float, what: str):
    """An argparse ``type=``: ``convert(text)``, refused below ``minimum`` with a clear message."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive_int = _number_at_least(int, 1, "a positive integer")
_nonneg_int = _number_at_least(int, 0, "an integer >= 0")
_nonneg_float = _number_at_least(float, 0.0, "a number >= 0")


def _display_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plain", action="store_true",
                   help="plain log lines instead of the live display (the default when not on a terminal)")
    p.add_argument("--grad-norms", action="store_true",
                   help="show the gradient norm reaching each time step (sets train.track_grad_norms=true)")


def _nproc_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=_positive_int, metavar="N",
                   help="data-parallel over N processes (starts mpiexec -n N; needs the mpi extra)")


def build_parser(command: str) -> argparse.ArgumentParser:
    prog = f"mgnn {command}"
    if command == "train":
        p = _Parser(prog=prog, description="Train from a YAML spec. Overrides (key=value, ~key) and options may "
                                           "come in any order.")
        p.add_argument("spec", help="the YAML spec file")
        p.add_argument("overrides", nargs="*", help="key=value overrides (optimizer.lr=3e-3) or ~key to delete")
        p.add_argument("--dry-run", type=_positive_int, metavar="N",
                       help="run N batches and stop; write no run folder, no checkpoint")
        p.add_argument("--print-config", action="store_true", help="print the resolved spec and exit")
        p.add_argument("--run-dir", metavar="DIR", help="write the run here (default: output.dir/output.name)")
        _nproc_option(p)
        _display_options(p)
    elif command == "resume":
        p = _Parser(prog=prog, description="Continue a run from its last checkpoint: same data order, random "
                                           "state and optimizer state as if it had never stopped. Overrides may "
                                           "extend it (train.steps=N, train.epochs=N) or change its cadences.")
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("overrides", nargs="*", help="train.* overrides, e.g. train.steps=2000")
        _nproc_option(p)
        _display_options(p)
    elif command == "eval":
        p = _Parser(prog=prog, description="Evaluate a run's best checkpoint (loss, and perplexity or accuracy "
                                           "as fits the task, plus the spec's train.metrics).")
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--data", action="append", metavar="PATH|key=value",
                       help="evaluate on this file/folder instead of the run's validation split, or change "
                            "dataset options (repeatable: --data seq_len=64)")
        p.add_argument("--split", choices=("val", "train", "all"),
                       help="which split (default: val; all when --data PATH is given)")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
        p.add_argument("--batch-size", type=_positive_int)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
    elif command == "generate":
        p = _Parser(prog=prog, description="Sample text from a language-model run.")
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
        p.add_argument("--length", type=_nonneg_int, default=200, help="characters to generate (default 200)")
        p.add_argument("--temperature", type=_nonneg_float, default=0.8,
                       help="< 1 conservative, > 1 wild, 0 greedy (default 0.8)")
        p.add_argument("--top-k", type=_positive_int, default=None, help="sample among the k likeliest only")
        p.add_argument("--seed", type=int, default=None, help="make the sample repeatable")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
    elif command == "check":
        p = _Parser(prog=prog, description="Validate a spec (every problem at once), then print it resolved and "
                                           "a summary of the model it builds. Trains nothing.")
        p.add_argument("spec", help="the YAML spec file")
        p.add_argument("overrides", nargs="*", help="key=value overrides or ~key")
        p.add_argument("--no-data", action="store_true", help="validate only; do not load the data or build the model")
    elif command == "plugins":
        p = _Parser(prog=prog, description="List every component by kind, with its distribution and version, and "
                                           "any plugin that failed to load. `mgnn plugins check NAME` runs the "
                                           "contract check of a cell plugin.")
        p.add_argument("action", nargs="?", choices=("list", "check"), default="list")
        p.add_argument("name", nargs="?", help="the cell to check (with `check`)")
        p.add_argument("--kind", help="list one kind only")
    elif command == "export":
        p = _Parser(prog=prog, description="Write a standalone checkpoint of a run's model; a fine-tune's update is "
                                           "merged into plain weights.")
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--out", help="output file (default RUN_DIR/export.safetensors)")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
    elif command == "tutorial":
        p = _Parser(prog=prog, description="List the tutorial chapters, or read chapter N in the terminal.")
        p.add_argument("chapter", nargs="?", help="chapter number (or a part of its name)")
        p.add_argument("--dir", help="the tutorials folder (default: the project's tutorials/)")
        p.add_argument("--pager", action="store_true", help="page the chapter")
    else:  # pragma: no cover - guarded by the caller
        raise UsageError(f"unknown command {command!r}")
    return p


def _split_global(argv: list[str]) -> tuple[bool, list[str]]:
    debug = "--debug" in argv
    return debug, [a for a in argv if a != "--debug"]


def _command_of(argv: list[str]) -> tuple[str | None, list[str]]:
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            return a, argv[:i] + argv[i + 1:]
    return None, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, argv = _split_global(argv)
    if os.environ.get("MGNN_DEBUG"):
        debug = True
    warnings.showwarning = _show_warning
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print("mgnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - the error policy lives here
        if isinstance(exc, SystemExit):
            raise
        from .parallel import after_report, before_report

        before_report(isinstance(exc, _user_error_types()))
        code = _report(exc, debug)
        after_report(code, _last_line[0])  # one of several ranks: end them all, now that it has said why
        return code


def _show_warning(message: Warning | str, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Warnings as one line each (a broken plugin, say), not the file:line + source pair."""
    kind = "warning" if category.__name__ in ("UserWarning", "PluginWarning") else category.__name__
    print(f"mgnn: {kind}: {message}", file=sys.stderr)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_DESCRIPTION)
        return EXIT_OK
    if argv[0] in ("-V", "--version"):
        from microgradnn import __version__

        print(f"mgnn (microgradnn) {__version__}")
        return EXIT_OK
    command, rest = _command_of(argv)
    if command is None:
        raise UsageError(f"no command given; commands are {', '.join(COMMANDS)} (see mgnn -h)")
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown command {command!r}{hint} (commands: {', '.join(COMMANDS)})")
    parser = build_parser(command)
    if any(a in ("-h", "--help") for a in rest):
        parser.print_help()
        return EXIT_OK
    args = parser.parse_intermixed_args(rest)
    from . import commands

    args.command = command
    args.argv = argv  # --nproc starts this same command line under mpiexec
    handler: Callable[[Any], int] = getattr(commands, f"cmd_{command}")
    return handler(args)


def _user_error_types() -> tuple[type, ...]:
    """The exception types that mean "the user can fix this": shown as one line."""
    types: list[type] = [UsageError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError]
    for module, names in (("microgradnn.spec", ("SpecError",)), ("microgradnn.registry", ("RegistryError",)),
                          ("microgradnn.train", ("TrainError",)), ("microgradnn.data", ("DataError",)),
                          ("microgradnn.checkpoint", ("CheckpointError",)),
                          ("microgradnn.finetune", ("FinetuneError",)), ("microgradnn.backend", ("DeviceError",)),
                          ("microgradnn.nn.module", ("StateDictError",))):
        try:
            mod = __import__(module, fromlist=list(names))
        except Exception:  # a module that can't load: its errors can't occur either
            continue
        for n in names:
            t = getattr(mod, n, None)
            if isinstance(t, type):
                types.append(t)
    return tuple(types)


_last_line = [""]  # the one line _report printed last (a failing rank also hands it to mgnn --nproc)


def _say(line: str) -> None:
    _last_line[0] = line
    print(line, file=sys.stderr)


def _report(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    if isinstance(exc, _user_error_types()):
        message = str(exc) or type(exc).__name__
        if isinstance(exc, (FileNotFoundError, PermissionError)) and getattr(exc, "filename", None):
            message = f"{exc.strerror or 'not found'}: {exc.filename}"
        from .parallel import rank_tag

        tag = rank_tag()  # "rank 1 of 2: " when one of several processes fails
        prefix = (f"mgnn: {tag}" if tag else "") if message.startswith("mgnn") else f"mgnn: {tag}error: "
        _say(f"{prefix}{message}")
        return EXIT_USAGE
    from .parallel import rank_tag

    _say(f"mgnn: {rank_tag()}internal error: {type(exc).__name__}: {exc}" +
         ("" if debug else " (this is a bug; run again with --debug for the traceback)"))
    return EXIT_FAILED
