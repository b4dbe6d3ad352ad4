"""``mgnn check SPEC [key=value ...]``: validate a spec, then build everything it names.

What it accepts builds and trains: the spec is validated in full (every option bound to
the callable build will call), then the data is loaded and the model, loss, optimizer,
scheduler and metrics built, with the checks that need the data's task (a loss or metric
that does not fit it). Nothing is trained and nothing is written."""

from __future__ import annotations

import sys
from typing import Any

from rich.syntax import Syntax

from ..errors import EXIT_OK
from .base import Command, console, null_context, spec_and_overrides


class Check(Command):
    name = "check"
    usage = "SPEC [key=value ...]"
    summary = "validate a spec; print it resolved and the model summary"
    description = ("Validate a spec (every problem at once), then print it resolved and a summary of the model it "
                   "builds. Trains nothing.")

    def add_arguments(self, p: Any) -> None:
        p.add_argument("spec", nargs="?", help="the YAML spec file")
        p.add_argument("overrides", nargs="*", help="key=value overrides or ~key")
        p.add_argument("--no-data", action="store_true",
                       help="validate only; do not load the data or build the model")

    def run(self, args: Any) -> int:
        from microgradnn.spec import dump_spec, load_spec

        spec_file, overrides = spec_and_overrides(args)
        spec = load_spec(spec_file, overrides)
        out = console()
        text = dump_spec(spec)
        out.print(f"[bold green]spec OK[/]: {spec_file}" + (f" with {len(overrides)} override(s)" if overrides else ""))
        if out.is_terminal:
            out.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
        else:
            sys.stdout.write(text)
        if args.no_data:
            return EXIT_OK
        from microgradnn.train import Trainer

        from ..display import describe_model

        with out.status("loading data and building the model...") if out.is_terminal else null_context():
            trainer = Trainer(spec)  # builds everything (data, model, optimizer...); fit() is what writes
        example = _example_input(trainer)
        say = lambda text, **kw: out.print(text, soft_wrap=True, **kw)  # noqa: E731 - long lines stay whole
        say("")
        say(f"[bold]data[/]: {trainer.data!r}")
        say(f"[bold]model[/]: {describe_model(trainer)}")
        try:
            say(trainer.model.summary(*example[0], **example[1]), markup=False)
        except Exception:  # a plugin cell that can't run on the example: the table without shapes
            say(trainer.model.summary(), markup=False)
        if trainer.finetune_report:
            r = trainer.finetune_report
            say(f"[bold]fine-tune[/]: {r['strategy']} from {r['base']}: {r['trainable']:,} of "
                f"{r['total']:,} parameters train ({100 * r['share']:.2f}%)")
        say(f"[bold]training[/]: {trainer.total_steps:,} steps of batch {trainer.batch_size} "
            f"({trainer.steps_per_epoch:,} batches per epoch); run folder {trainer.run_dir}")
        return EXIT_OK


def _example_input(trainer: Any) -> tuple[tuple, dict]:
    from microgradnn import tensor

    batch = next(iter(trainer.data.train_batches(min(trainer.batch_size, 2), epoch=0, seed=0)))
    x = tensor(batch.x[:2])
    if batch.lengths is not None and not getattr(trainer.data, "streams", False):
        return (x,), {"lengths": batch.lengths[:2]}
    return (x,), {}
