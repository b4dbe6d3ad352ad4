"""``mgnn resume RUN_DIR [train.*=...]``: continue a stopped run exactly where it stopped."""

from __future__ import annotations

from typing import Any

from ..errors import EXIT_OK, UsageError
from .base import Command, console, display_options, exit_for, is_override, null_context


class Resume(Command):
    name = "resume"
    usage = "RUN_DIR [train.*=...]"
    summary = "continue a stopped run exactly where it stopped"
    description = ("Continue a run from its last checkpoint: same data order, random state and optimizer state as "
                   "if it had never stopped. Overrides may extend it (train.steps=N, train.epochs=N) or change its "
                   "cadences.")

    def add_arguments(self, p: Any) -> None:
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("overrides", nargs="*", help="train.* overrides, e.g. train.steps=2000")
        display_options(p)

    def run(self, args: Any) -> int:
        from microgradnn.train import Trainer

        from ..display import TrainDisplay

        words = [args.run_dir] + list(args.overrides)
        dirs = [w for w in words if not is_override(w)]
        if len(dirs) != 1:
            raise UsageError("mgnn resume: give one run folder, then train.* overrides; got "
                             + (", ".join(repr(d) for d in dirs) or "none"))
        run_dir = dirs[0]
        overrides = [w for w in words if w is not run_dir]
        if args.grad_norms:
            overrides.append("train.track_grad_norms=true")
        out = console()
        display = TrainDisplay(out, live=False if args.plain else None, grad_norms=args.grad_norms, resumed=True)
        with out.status("restoring the run...") if out.is_terminal else null_context():
            trainer = Trainer.resume(run_dir, callbacks=[display], overrides=overrides)
        if trainer.step >= trainer.total_steps:
            # nothing to do: the run (and its spec.yaml) stays exactly as it was
            out.print(f"{run_dir} already ran all {trainer.step:,} steps; extend it with train.steps=N "
                      f"(more than {trainer.step:,}) or train.epochs=N")
            return EXIT_OK
        display.grad_norms = display.grad_norms or trainer.tc.track_grad_norms
        try:
            summary = trainer.fit(handle_sigint=True)
        finally:
            display.close()
        return exit_for(summary)
