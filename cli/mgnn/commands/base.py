"""What every ``mgnn`` subcommand shares: the :class:`Command` base and small helpers."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console

from ..errors import EXIT_DIVERGED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError

__all__ = ["Command", "Parser", "console", "err", "is_override", "spec_and_overrides", "exit_for", "null_context",
           "display_options", "positive_int", "nonneg_int", "nonneg_float"]


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage + exiting (one clear line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} -h)")


class Command:
    """One subcommand: ``name``, a one-line ``summary`` (for ``mgnn -h``), its arguments
    (:meth:`add_arguments`) and what it does (:meth:`run`, returning the exit status)."""

    name: str = ""
    usage: str = ""  # e.g. "SPEC [key=value ...]", shown in `mgnn -h`
    summary: str = ""
    description: str = ""

    def parser(self) -> Parser:
        p = Parser(prog=f"mgnn {self.name}", description=self.description or self.summary)
        self.add_arguments(p)
        return p

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: Any) -> int:
        raise NotImplementedError


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


positive_int = _number_at_least(int, 1, "a positive integer")
nonneg_int = _number_at_least(int, 0, "an integer >= 0")
nonneg_float = _number_at_least(float, 0.0, "a number >= 0")


def display_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plain", action="store_true",
                   help="plain log lines instead of the live display (the default when not on a terminal)")
    p.add_argument("--grad-norms", action="store_true",
                   help="show the gradient norm reaching each time step (sets train.track_grad_norms=true)")
    threads_option(p, "sets train.threads")


def threads_option(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="BLAS/numba threads (default: one fewer than the usable cores, 1 to 8"
                        + (f"; {what}" if what else "") + ")")


def apply_thread_policy(threads: int | None) -> None:
    """The process-wide thread policy: mgnn's to set, never the library's (backend/threads.py)."""
    from microgradnn.backend.threads import apply_threads

    apply_threads(threads)


def console() -> Console:
    return Console(highlight=False)


def err(message: str) -> None:
    print(message, file=sys.stderr)


def is_override(arg: str) -> bool:
    return arg.startswith("~") or ("=" in arg and not os.path.exists(arg))


def spec_and_overrides(args: Any) -> tuple[str, list[str]]:
    """The spec file and the overrides among the positional arguments, in any order
    (``mgnn train train.steps=5 spec.yaml`` works too)."""
    words = ([args.spec] if args.spec is not None else []) + list(args.overrides)
    files = [w for w in words if not is_override(w)]
    if len(files) != 1:
        if not files:
            if not words:
                raise UsageError(f"mgnn {args.command}: give the spec file (a YAML file), e.g. "
                                 f"mgnn {args.command} examples/char_lstm_stdlib.yaml")
            raise UsageError(f"mgnn {args.command}: give the spec file (a YAML file) besides the key=value overrides")
        raise UsageError(f"mgnn {args.command}: give one spec file, then key=value overrides; got "
                         + ", ".join(repr(f) for f in files)
                         + (" (an override needs '=': key=value)" if any("." in f and not os.path.exists(f)
                                                                         for f in files) else ""))
    return files[0], [w for w in words if w is not files[0]]


def exit_for(summary: dict[str, Any], quiet: bool = False) -> int:
    """The exit status of a finished ``fit()`` (see :mod:`mgnn.errors`); ``quiet``: a rank
    other than 0 under mpiexec, where rank 0 says it."""
    status = summary["status"]
    if quiet:
        return {"nan": EXIT_FAILED, "diverged": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}.get(status, EXIT_OK)
    if status == "nan":
        err(f"mgnn: the loss became non-finite: {summary['reason']}")
        return EXIT_FAILED
    if status == "diverged":
        err(f"mgnn: the run diverged: {summary['reason']}")
        return EXIT_DIVERGED
    if status == "interrupted":
        where = summary.get("run_dir")
        if where:
            err(f"mgnn: interrupted at step {summary['step']}; checkpoint saved. Continue with: mgnn resume {where}")
        return EXIT_INTERRUPTED
    return EXIT_OK


class null_context:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
