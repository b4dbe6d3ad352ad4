"""``mgnn export RUN_DIR``: a standalone (merged) checkpoint of a run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from .base import Command, console


class Export(Command):
    name = "export"
    usage = "RUN_DIR"
    summary = "a standalone (merged) checkpoint of a run"
    description = "Write a standalone checkpoint of a run's model; a fine-tune's update is merged into plain weights."

    def add_arguments(self, p: Any) -> None:
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--out", help="output file (default RUN_DIR/export.safetensors)")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")

    def run(self, args: Any) -> int:
        from microgradnn.train import export

        path = export(args.run_dir, out=args.out, checkpoint=args.checkpoint)
        size = Path(path).stat().st_size
        console().print(f"wrote {path} ({size / 1024:.1f} KiB): a standalone checkpoint (usable as finetune.from)")
        return EXIT_OK
