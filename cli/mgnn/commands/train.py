"""``mgnn train SPEC [key=value ...]``: train from a spec, with the live display."""

from __future__ import annotations

import sys
from typing import Any

from rich.syntax import Syntax

from ..errors import EXIT_OK
from .base import Command, console, display_options, exit_for, null_context, positive_int, spec_and_overrides


class Train(Command):
    name = "train"
    usage = "SPEC [key=value ...]"
    summary = "train (live display; --dry-run N, --print-config)"
    description = "Train from a YAML spec. Overrides (key=value, ~key) and options may come in any order."

    def add_arguments(self, p: Any) -> None:
        p.add_argument("spec", nargs="?", help="the YAML spec file")
        p.add_argument("overrides", nargs="*", help="key=value overrides (optimizer.lr=3e-3) or ~key to delete")
        p.add_argument("--dry-run", type=positive_int, metavar="N",
                       help="run N batches and stop; write no run folder, no checkpoint")
        p.add_argument("--print-config", action="store_true", help="print the resolved spec and exit")
        p.add_argument("--run-dir", metavar="DIR", help="write the run here (default: output.dir/output.name)")
        display_options(p)

    def run(self, args: Any) -> int:
        from microgradnn.spec import dump_spec, load_spec
        from microgradnn.train import Trainer

        from ..display import TrainDisplay

        spec_file, overrides = spec_and_overrides(args)
        if args.grad_norms:
            overrides.append("train.track_grad_norms=true")
        spec = load_spec(spec_file, overrides)
        out = console()
        if args.print_config:
            text = dump_spec(spec)
            if out.is_terminal:
                out.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
            else:
                sys.stdout.write(text)
            return EXIT_OK
        display = TrainDisplay(out, live=False if args.plain else None, grad_norms=spec.train.track_grad_norms)
        with out.status("loading data and building the model...") if out.is_terminal else null_context():
            trainer = Trainer(spec, run_dir=args.run_dir, callbacks=[display], dry_run=args.dry_run)
        try:
            summary = trainer.fit(handle_sigint=True)
        finally:
            display.close()
        return exit_for(summary)
