"""``mgnn generate RUN_DIR --prompt TEXT``: sample text from a language-model run."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK
from .base import Command, console, nonneg_float, nonneg_int, positive_int


class Generate(Command):
    name = "generate"
    usage = "RUN_DIR --prompt TXT"
    summary = "sample text from a language-model run"

    def add_arguments(self, p: Any) -> None:
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
        p.add_argument("--length", type=nonneg_int, default=200, help="characters to generate (default 200)")
        p.add_argument("--temperature", type=nonneg_float, default=0.8,
                       help="< 1 conservative, > 1 wild, 0 greedy (default 0.8)")
        p.add_argument("--top-k", type=positive_int, default=None, help="sample among the k likeliest only")
        p.add_argument("--seed", type=int, default=None, help="make the sample repeatable")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")

    def run(self, args: Any) -> int:
        from microgradnn.train import generate

        out_console = console()
        prompt = args.prompt.replace("\\n", "\n").replace("\\t", "\t")  # --prompt "def f():\\n"
        out = sys.stdout
        started = [False]

        def stream(piece: str) -> None:
            if not started[0]:
                started[0] = True
                if out_console.is_terminal:
                    out_console.print(prompt, style="bold", end="")
                else:
                    out.write(prompt)
            out.write(piece)
            out.flush()

        text = generate(args.run_dir, prompt, length=args.length, temperature=args.temperature, top_k=args.top_k,
                        seed=args.seed, checkpoint=args.checkpoint, stream=stream)
        if not started[0]:  # length 0
            out.write(prompt)
        out.write("\n")
        out.flush()
        return EXIT_OK if text is not None else EXIT_FAILED
