"""The live training display: a trainer callback that draws with rich.

On a terminal: a progress bar (step, epoch, elapsed, ETA, throughput), a small table of
current and best metrics, and, with ``--grad-norms``, a sparkline of the gradient norm
reaching each time step of the top recurrent layer (vanishing gradients show as a ramp
rising to the right: early steps get almost nothing). Not on a terminal (a pipe, a CI
log): one plain line per log interval and per evaluation instead.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

_BLOCKS = "▁▂▃▄▅▆▇█"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def sparkline(values: np.ndarray, width: int = 60) -> str:
    """Unicode blocks, log scale (gradient norms span orders of magnitude)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return ""
    if v.size > width:  # average into `width` buckets
        edges = np.linspace(0, v.size, width + 1).astype(int)
        v = np.array([v[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    logv = np.log10(np.maximum(v, 1e-30))
    lo, hi = logv.min(), logv.max()
    if hi - lo < 1e-12:
        return _BLOCKS[3] * v.size
    idx = np.round((logv - lo) / (hi - lo) * (len(_BLOCKS) - 1)).astype(int)
    return "".join(_BLOCKS[i] for i in idx)


def epoch_of(trainer: Any) -> int:
    """The epoch (from 1) the latest step belongs to: what the progress, the log lines and
    the summary all show. ``trainer.epoch`` counts finished epochs, so after the last step
    of an epoch it is already that epoch's number."""
    if trainer.batch_in_epoch:
        return trainer.epoch + 1
    return max(trainer.epoch, 1)


def describe_model(trainer: Any) -> str:
    m = trainer.spec.get("model") or {}
    cell = m.get("cell")
    cell_name = cell.get("name") if isinstance(cell, dict) else cell
    parts = [f"{cell_name} x{m.get('num_layers', 1)}", f"hidden {m.get('hidden_size')}"]
    if m.get("bidirectional"):
        parts.append("bidirectional")
    c = trainer.counts
    parts.append(f"{c['total']:,} parameters")
    if c["trainable"] != c["total"]:
        parts.append(f"{c['trainable']:,} trainable ({100 * c['share']:.2f}%)")
    return ", ".join(parts)


def header(trainer: Any, resumed: bool) -> Panel:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    t.add_row("run", str(trainer.run_dir) if trainer.dry_run is None else f"(dry run: {trainer.dry_run} batches, "
                                                                            "nothing written)")
    info = trainer.data.describe()
    data = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("classes",) and not isinstance(v, (list, dict)))
    t.add_row("data", data)
    t.add_row("model", describe_model(trainer))
    if trainer.finetune_report:
        r = trainer.finetune_report
        t.add_row("fine-tune", f"{r['strategy']} from {r['base']}: {r['trainable']:,} of {r['total']:,} parameters "
                               f"train ({100 * r['share']:.2f}%)")
    opt = trainer.spec.get("optimizer") or {}
    t.add_row("optimizer", ", ".join(f"{k}={v}" for k, v in opt.items()) if isinstance(opt, dict) else str(opt))
    epochs = trainer.total_steps / trainer.steps_per_epoch
    t.add_row("steps", f"{trainer.total_steps:,} ({epochs:.3g} epochs of {trainer.steps_per_epoch:,} batches of "
                       f"{trainer.batch_size}), device {trainer.device}"
                       + (f"; resuming at step {trainer.step:,}" if resumed else ""))
    return Panel(t, title="[bold]mgnn train", box=box.ROUNDED, expand=False)


class TrainDisplay:
    """A trainer callback (see microgradnn.train.callbacks) that shows the run."""

    def __init__(self, console: Console | None = None, live: bool | None = None, grad_norms: bool = False,
                 resumed: bool = False) -> None:
        self.console = console or Console()
        self.live_mode = self.console.is_terminal if live is None else live
        self.grad_norms = grad_norms
        self.resumed = resumed
        self.loss_ema: float | None = None
        self.last_info: dict[str, Any] = {}
        self.last_eval: dict[str, Any] = {}
        self.best: tuple[str, float, int] | None = None
        self.norms: np.ndarray | None = None
        self.note = ""
        self._live: Live | None = None
        self._progress: Progress | None = None
        self._task: Any = None
        self._t0 = time.perf_counter()
        self._items = 0
        self._last_draw = 0.0

    # ------------------------------------------------------------------ hooks

    def on_start(self, trainer: Any) -> None:
        self.console.print(header(trainer, self.resumed))
        self._t0 = time.perf_counter()
        self._start_step = trainer.step
        if trainer.best:
            b = trainer.best[0]
            self.best = (b["monitor"], b["score"], b["step"])
        if not self.live_mode:
            return
        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]step"), BarColumn(bar_width=None), MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[speed]}"), console=self.console, expand=True)
        self._task = self._progress.add_task("train", total=trainer.total_steps, completed=trainer.step,
                                             epoch=epoch_of(trainer), speed="")
        self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self._live.start()

    def on_step(self, trainer: Any, info: dict[str, Any]) -> None:
        self.last_info = info
        loss = info.get("loss")
        if isinstance(loss, float) and math.isfinite(loss):
            self.loss_ema = loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss
        self._items += int(info.get("items", 0))
        if info.get("grad_norms") is not None:
            self.norms = np.asarray(info["grad_norms"])
        if self.live_mode:
            if self._progress is not None:
                self._progress.update(self._task, completed=trainer.step, epoch=epoch_of(trainer),
                                      speed=self._speed(trainer))
            now = time.perf_counter()
            if self._live is not None and now - self._last_draw > 0.2:
                self._live.update(self._render())
                self._last_draw = now
        elif "nonfinite" not in info and (trainer.step % trainer.log_every == 0 or trainer.step == 1
                                          or trainer.step == trainer.total_steps):
            line = (f"step {trainer.step}/{trainer.total_steps}  epoch {epoch_of(trainer)}  loss {fmt(loss)}  "
                    f"lr {fmt(info.get('lr'))}  |grad| {fmt(info.get('grad_norm'))}  {self._speed(trainer)}")
            if self.grad_norms and self.norms is not None:
                line += f"  dL/dh_t {sparkline(self.norms, 30)}"
            self.console.print(line, highlight=False, soft_wrap=True)

    def on_eval(self, trainer: Any, results: dict[str, Any]) -> None:
        self.last_eval = results
        score = results.get(trainer.monitor)
        better = False
        if isinstance(score, float) and math.isfinite(score):
            if self.best is None or (score < self.best[1] if trainer.mode == "min" else score > self.best[1]):
                self.best = (trainer.monitor, score, trainer.step)
                better = True
        if self.live_mode:
            if self._live is not None:
                self._live.update(self._render())
        else:
            vals = "  ".join(f"{k} {fmt(v)}" for k, v in results.items()
                             if k.startswith(("val_", "train_loss")) and k != "val_items")
            self.console.print(f"eval  step {trainer.step}  {vals}" + ("  (best)" if better else ""), highlight=False, soft_wrap=True)

    def on_checkpoint(self, trainer: Any, path: str, kind: str) -> None:
        self.note = f"saved {kind} checkpoint at step {trainer.step}"

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        if self._live is not None:
            if self._progress is not None:
                self._progress.update(self._task, completed=trainer.step, epoch=epoch_of(trainer),
                                      speed=self._speed(trainer))
            self._live.update(self._render())
            self._live.stop()
            self._live = None
        self.console.print(summary_table(trainer, summary))

    def close(self) -> None:
        """Stop the live display if a run ended by an exception (leave the terminal sane)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    # ------------------------------------------------------------------ drawing

    def _speed(self, trainer: Any) -> str:
        dt = time.perf_counter() - self._t0
        if dt <= 0 or not self._items:
            return ""
        unit = "tok/s" if trainer.task == "lm" else "seq/s"
        return f"{self._items / dt:,.0f} {unit}"

    def _render(self) -> Group:
        parts: list[Any] = []
        if self._progress is not None:
            parts.append(self._progress)
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        t.add_column("loss (avg)")
        t.add_column("lr")
        t.add_column("|grad|")
        ev = {k: v for k, v in self.last_eval.items() if k.startswith("val_") and k != "val_items"}
        for k in ev:
            t.add_column(k)
        t.add_column("best")
        best = f"{self.best[0]} {fmt(self.best[1])} @ {self.best[2]}" if self.best else "-"
        t.add_row(fmt(self.loss_ema), fmt(self.last_info.get("lr")), fmt(self.last_info.get("grad_norm")),
                  *[fmt(v) for v in ev.values()], best)
        parts.append(t)
        if self.grad_norms and self.norms is not None and self.norms.size:
            n = self.norms
            first, last = float(n[0]), float(n[-1])
            ratio = f"{first / last:.2e}" if last > 0 else "-"
            line = Text.assemble(("dL/dh_t  ", "bold"), ("t=0 ", "dim"), (sparkline(n), "magenta"),
                                 (f" t={n.size - 1}", "dim"), (f"   first/last {ratio}", ""))
            parts.append(line)
        if self.note:
            parts.append(Text(self.note, style="dim"))
        return Group(*parts)


_STATUS_STYLE = {"completed": "green", "early_stopped": "green", "dry_run": "green", "stopped": "yellow",
                 "interrupted": "yellow", "diverged": "red", "nan": "red"}


def summary_table(trainer: Any, summary: dict[str, Any]) -> Table:
    t = Table(title="run summary", box=box.ROUNDED, show_header=False, title_style="bold")
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column(overflow="fold")
    status = summary["status"]
    t.add_row("status", Text(status.replace("_", " "), style=_STATUS_STYLE.get(status, "")))
    if summary.get("reason"):
        t.add_row("reason", summary["reason"])
    t.add_row("steps", f"{summary['step']:,} / {summary['total_steps']:,} (epoch {epoch_of(trainer)})")
    t.add_row("time", f"{summary['elapsed']:.1f} s")
    last = summary.get("last_eval") or {}
    # the last evaluation may be older than the last step (a stop between evaluations):
    # then say when it was, rather than pass old numbers off as the run's state now
    when = f" (at step {last['step']})" if last.get("step") not in (None, summary["step"]) else ""
    for k, v in last.items():
        if (k.startswith("val_") and k != "val_items") or k == "train_loss":
            t.add_row(k + when, fmt(v))
    for i, b in enumerate(summary.get("best") or []):
        t.add_row("best" if i == 0 else "", f"{b['monitor']} {fmt(b['score'])} at step {b['step']}  ({b['file']})")
    if summary.get("finetune"):
        r = summary["finetune"]
        t.add_row("fine-tune", f"{r['strategy']}: {r['trainable']:,} / {r['total']:,} parameters trained "
                               f"({100 * r['share']:.2f}%)")
        if r.get("ranks"):  # AdaLoRA: where its rank budget ended up
            t.add_row("ranks", ", ".join(f"{name} {rank}" for name, rank in r["ranks"].items()))
    if summary.get("run_dir"):
        t.add_row("run folder", summary["run_dir"])
        hints = [f"mgnn eval {summary['run_dir']}"]
        if trainer.task == "lm":
            hints.append(f"mgnn generate {summary['run_dir']} --prompt '...'")
        if status in ("stopped", "interrupted"):
            hints.insert(0, f"mgnn resume {summary['run_dir']}")
        t.add_row("next", "\n".join(hints))
    return t
