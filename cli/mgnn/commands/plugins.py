"""``mgnn plugins [check NAME]``: list components by kind, or contract-check one."""

from __future__ import annotations

import warnings
from typing import Any

from rich import box
from rich.table import Table

from ..errors import EXIT_OK, UsageError
from .base import Command, console


class Plugins(Command):
    name = "plugins"
    usage = "[check NAME]"
    summary = "list components by kind / contract-check any component"
    description = ("List every component by kind, with its distribution and version, and any plugin that failed to "
                   "load. `mgnn plugins check NAME` checks a component of any kind against its contract and uses it "
                   "once as a run does.")

    def add_arguments(self, p: Any) -> None:
        p.add_argument("action", nargs="?", choices=("list", "check"), default="list")
        p.add_argument("name", nargs="?", help="the component to check (with `check`)")
        p.add_argument("--kind", help="list (or check) one kind only")

    def run(self, args: Any) -> int:
        from microgradnn import registry

        kinds = registry.KINDS
        if args.kind:
            if args.kind not in kinds:
                raise UsageError(f"--kind: unknown kind {args.kind!r}; kinds are {', '.join(kinds)}")
            kinds = (args.kind,)
        if args.action == "check":
            if not args.name:
                raise UsageError("mgnn plugins check: name the component to check, e.g. mgnn plugins check indrnn")
            from ..plugin_checks import check_plugin

            return check_plugin(args.name, args.kind, console())
        if args.name:
            raise UsageError(f"mgnn plugins: unexpected argument {args.name!r} (did you mean: mgnn plugins check "
                             f"{args.name}?)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # failures are shown in the table instead
            registry.load_all()
            entries = {k: registry.entries(k) for k in kinds}
            failures = registry.failures()
        out = console()
        for kind in kinds:
            t = Table(title=f"{kind} (entry-point group microgradnn.{kind})", box=box.SIMPLE_HEAD,
                      title_justify="left", title_style="bold")
            t.add_column("name", style="bold", no_wrap=True)
            t.add_column("distribution", no_wrap=True)
            t.add_column("version", no_wrap=True)
            t.add_column("object", overflow="fold")
            t.add_column("status", overflow="fold")
            for e in entries[kind]:
                status = e.status if e.status != "failed" else f"[red]failed[/]: {e.error}"
                if e.clash:
                    if registry.BUILTIN_DIST in e.clash:
                        status += (f" [yellow](shadowed: the built-in {e.name!r} wins; use "
                                   f"{e.qualified_name})[/]")
                    else:
                        status += f" [yellow](also claimed by {', '.join(e.clash)}: use {e.qualified_name})[/]"
                t.add_row(e.name, e.dist, e.version, e.value, status)
            out.print(t)
        if failures:
            out.print(f"[bold red]{len(failures)} plugin(s) failed to load[/] (everything else works):")
            for f in failures:
                out.print(f"  - {f}", markup=False)
        else:
            out.print("no plugin failed to load")
        return EXIT_OK
