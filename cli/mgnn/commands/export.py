"""``mgnn export RUN_DIR``: a standalone (merged) checkpoint of a run's model, or
(``--format onnx``) an ONNX file of it (:func:`microgradnn.onnx.export_run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from .base import Command, console


class Export(Command):
    name = "export"
    usage = "RUN_DIR"
    summary = "a standalone (merged) checkpoint of a run, or an ONNX file"
    description = ("Write a standalone checkpoint of a run's model; a fine-tune's update is merged into plain weights. "
                   "--format onnx writes an ONNX model instead (needs the onnx extra).")

    def add_arguments(self, p: Any) -> None:
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--out", help="output file (default RUN_DIR/export.safetensors, or RUN_DIR/model.onnx)")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
        p.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                       help="safetensors (default: a checkpoint usable as finetune.from) or onnx")
        p.add_argument("--opset", type=int, default=None, help="ONNX opset version (14..21, default 17)")

    def run(self, args: Any) -> int:
        if args.format == "onnx":
            from microgradnn.onnx import export_run

            path = export_run(args.run_dir, out=args.out, checkpoint=args.checkpoint, opset_version=args.opset)
            size = Path(path).stat().st_size
            console().print(f"wrote {path} ({size / 1024:.1f} KiB): an ONNX model (inputs: input, lengths; "
                            "outputs: output and the final state)")
            return EXIT_OK
        from microgradnn.train import export

        path = export(args.run_dir, out=args.out, checkpoint=args.checkpoint)
        size = Path(path).stat().st_size
        console().print(f"wrote {path} ({size / 1024:.1f} KiB): a standalone checkpoint (usable as finetune.from)")
        return EXIT_OK
