"""``mgnn eval RUN_DIR [--data PATH|key=value]``: loss and metrics of a run's model."""

from __future__ import annotations

import json
import os
from typing import Any

from rich import box
from rich.table import Table

from ..errors import EXIT_OK, UsageError
from .base import Command, console, positive_int


def parse_data_args(items: list[str] | None) -> tuple[str | None, dict[str, Any]]:
    """``--data`` values: at most one file/folder, and ``key=value`` dataset options."""
    from microgradnn.spec import SpecError, read_yaml

    path, options = None, {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if eq and key and not os.path.exists(item) and key.replace("_", "").isalnum():
            try:
                options[key] = read_yaml(value) if value.strip() else value
            except SpecError as exc:
                raise UsageError(f"--data {item}: bad value ({exc.problems[0].message})") from None
        else:
            if path is not None:
                raise UsageError("--data: give at most one file or folder")
            path = item
    return path, options


class Eval(Command):
    name = "eval"
    usage = "RUN_DIR [--data PATH]"
    summary = "loss / perplexity / accuracy of a run's best model"
    description = ("Evaluate a run's best checkpoint (loss, and perplexity or accuracy as fits the task, plus the "
                   "spec's train.metrics).")

    def add_arguments(self, p: Any) -> None:
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--data", action="append", metavar="PATH|key=value",
                       help="evaluate on this file/folder instead of the run's validation split, or change "
                            "dataset options (repeatable: --data seq_len=64)")
        p.add_argument("--split", choices=("val", "train", "all"),
                       help="which split (default: val; all when --data PATH is given)")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
        p.add_argument("--batch-size", type=positive_int)
        p.add_argument("--json", action="store_true", help="print the result as JSON")

    def run(self, args: Any) -> int:
        from microgradnn.train import evaluate

        from ..display import fmt

        path, options = parse_data_args(args.data)
        result = evaluate(args.run_dir, data=path, options=options, split=args.split, checkpoint=args.checkpoint,
                          batch_size=args.batch_size)
        if args.json:
            from microgradnn.train.metrics_log import json_safe

            # strict JSON: a non-finite loss is null, named under "nonfinite"
            print(json.dumps(json_safe(result), allow_nan=False))
            return EXIT_OK
        t = Table(title=f"eval {args.run_dir}", box=box.ROUNDED, show_header=False, title_style="bold")
        t.add_column(style="bold cyan", no_wrap=True)
        t.add_column(overflow="fold")
        for k, v in result.items():
            if k in ("checkpoint", "split", "step", "task", "items"):
                continue
            t.add_row(k, fmt(v))
        t.add_row("items", f"{result['items']:,} {'tokens' if result['task'] == 'lm' else 'targets'}")
        t.add_row("data", (f"{path}, " if path else "") + f"split {result['split']}")
        t.add_row("checkpoint", f"{result['checkpoint']} (step {result['step']})")
        console().print(t)
        return EXIT_OK
