"""``mgnn generate RUN_DIR``: sample text from a language-model run (``--prompt``), translate
with a seq2seq run (``--source TEXT`` or ``--source-file FILE``, ``--show-attention``), or
write a forecast run's forecast beside the truth (a table and a PNG)."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from .base import Command, apply_thread_policy, console, nonneg_float, nonneg_int, positive_int, threads_option


class Generate(Command):
    name = "generate"
    usage = "RUN_DIR [--prompt TXT | --source TXT]"
    summary = "sample text (language model), translate (seq2seq) or forecast (forecast run)"

    def add_arguments(self, p: Any) -> None:
        p.add_argument("run_dir", help="the run folder")
        p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
        p.add_argument("--length", type=nonneg_int, default=200, help="characters to generate (default 200)")
        p.add_argument("--temperature", type=nonneg_float, default=0.8,
                       help="< 1 conservative, > 1 wild, 0 greedy (default 0.8)")
        p.add_argument("--top-k", type=positive_int, default=None, help="sample among the k likeliest only")
        p.add_argument("--seed", type=int, default=None, help="make the sample repeatable")
        p.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
        p.add_argument("--source", action="append", metavar="TEXT", help="seq2seq: a sentence to translate "
                       "(repeatable)")
        p.add_argument("--source-file", metavar="FILE", help="seq2seq: translate each line of FILE")
        p.add_argument("--beam-size", type=positive_int, help="seq2seq: beams (default: the spec's model.beam_size)")
        p.add_argument("--max-len", type=positive_int, help="seq2seq: longest translation in tokens")
        p.add_argument("--show-attention", action="store_true",
                       help="seq2seq: draw the first translation's attention (terminal, and a PNG with --png)")
        p.add_argument("--png", metavar="FILE", help="where the picture goes (default: RUN_DIR/attention.png or "
                       "RUN_DIR/forecast.png)")
        threads_option(p)

    def run(self, args: Any) -> int:
        from microgradnn.train.inference import run_task

        apply_thread_policy(args.threads)
        task = run_task(args.run_dir)
        if task == "seq2seq":
            return self.translate(args)
        if args.source or args.source_file or args.show_attention or args.beam_size or args.max_len:
            raise UsageError(f"--source/--source-file/--show-attention/--beam-size/--max-len need a seq2seq run; "
                             f"{args.run_dir} is a {task} run")
        if task == "forecast":
            return self.forecast(args)
        return self.sample(args)

    def translate(self, args: Any) -> int:
        from microgradnn.plot import text_heatmap
        from microgradnn.train import translate

        sources = list(args.source or [])
        if args.source_file:
            if not os.path.isfile(args.source_file):
                raise UsageError(f"--source-file: {args.source_file!r} is not a file")
            with open(args.source_file, encoding="utf-8") as f:
                sources += [line.rstrip("\n") for line in f if line.strip()]
        if not sources:
            raise UsageError("a seq2seq run translates: give --source TEXT (repeatable) or --source-file FILE")
        items = translate(args.run_dir, sources, checkpoint=args.checkpoint, beam_size=args.beam_size,
                          max_len=args.max_len, attention=args.show_attention)
        for item in items:
            print(item["translation"])
        if args.show_attention:
            first = items[0]
            if "attention" not in first:
                raise UsageError(f"{args.run_dir}'s model has no attention (model.attention is null)")
            out = console()
            out.print(f"\nattention of: {first['source']!r} -> {first['translation']!r}", style="bold")
            out.print(text_heatmap(first["attention"], first["tokens"], first["source_tokens"]), highlight=False)
            from microgradnn.plot import attention_heatmap

            png = args.png or os.path.join(args.run_dir, "attention.png")
            attention_heatmap(first["attention"], first["source_tokens"], first["tokens"], png,
                              title=f"{first['source']} -> {first['translation']}")
            out.print(f"wrote {png}")
        return EXIT_OK

    def forecast(self, args: Any) -> int:
        from rich import box
        from rich.table import Table

        from microgradnn.train import forecast_report

        png = args.png or os.path.join(args.run_dir, "forecast.png")
        report = forecast_report(args.run_dir, png, checkpoint=args.checkpoint)
        rows = report["rows"]
        t = Table(title=f"forecast {args.run_dir} (last validation window)", box=box.ROUNDED, title_style="bold")
        for key in rows[0]:
            t.add_column(key, justify="left" if key == "time" else "right")
        for r in rows:
            t.add_row(*[str(v) if k == "time" else f"{v:.3f}" for k, v in r.items()])
        out = console()
        out.print(t)
        out.print(f"wrote {report['png']}")
        return EXIT_OK

    def sample(self, args: Any) -> int:
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
