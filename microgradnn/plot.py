"""Pictures: terminal sparklines and shaded matrices, and PNG figures through matplotlib.

The terminal pieces (:func:`sparkline`, :func:`text_heatmap`) need nothing but numpy. The
PNG figures need matplotlib, the optional ``plot`` extra (``pip install
microgradnn[plot]``); it is imported only when a figure is drawn, and through its
object-oriented API (``Figure`` + the Agg canvas), never ``pyplot``: drawing a figure
changes no global state (no backend switch, no open-figure registry, no rcParams).

* :func:`line_plot` — one line per series (the vanishing-gradient figure of chapter 6);
* :func:`attention_heatmap` — a decoder's attention weights, target rows by source columns;
* :func:`forecast_plot` — a series' history, the truth after it, the forecast and a baseline.

Every figure has axes labels, a title and (with more than one series) a legend, and is
written atomically; each function returns the path it wrote.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .fileio import atomic_write

__all__ = ["sparkline", "text_heatmap", "line_plot", "attention_heatmap", "forecast_plot", "PlotError"]

_BLOCKS = "▁▂▃▄▅▆▇█"
_SHADES = " ░▒▓█"


class PlotError(RuntimeError):
    """A figure was asked for but matplotlib (the ``plot`` extra) is not installed."""


def sparkline(values: Sequence[float], log: bool = False, width: int | None = None) -> str:
    """One character per value, ▁ (smallest) to █ (largest); ``log=True`` compares
    magnitudes (gradient norms span orders of magnitude). With ``width``, longer inputs
    are averaged into ``width`` buckets first."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return ""
    if width is not None and v.size > width:
        edges = np.linspace(0, v.size, width + 1).astype(int)
        v = np.array([v[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    if log:
        v = np.log10(np.maximum(v, 1e-300))
    lo, hi = float(np.min(v)), float(np.max(v))
    if not math.isfinite(lo) or not math.isfinite(hi) or hi - lo < 1e-12:
        return _BLOCKS[0] * v.size
    idx = np.clip(((v - lo) / (hi - lo) * (len(_BLOCKS) - 1)).round().astype(int), 0, len(_BLOCKS) - 1)
    return "".join(_BLOCKS[i] for i in idx)


def text_heatmap(weights: Any, rows: Sequence[str], columns: Sequence[str]) -> str:
    """A matrix in [0, 1] as shaded blocks (" ░▒▓█", two characters a cell), one row per
    line with its label; the column labels are listed underneath, numbered."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(rows), len(columns)):
        raise ValueError(f"text_heatmap: weights {w.shape} do not match {len(rows)} rows x {len(columns)} columns")
    width = max((len(r) for r in rows), default=0)
    lines = [" " * width + " " + "".join(f"{j % 100:<2d}" for j in range(len(columns)))]
    for label, row in zip(rows, w):
        idx = np.clip(np.round(row * (len(_SHADES) - 1)).astype(int), 0, len(_SHADES) - 1)
        lines.append(f"{label:>{width}} " + "".join(_SHADES[i] * 2 for i in idx))
    lines.append("columns: " + "  ".join(f"{j}={c}" for j, c in enumerate(columns)))
    return "\n".join(lines)


def _figure(width: float = 7.0, height: float = 4.0) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("drawing a PNG needs matplotlib: pip install 'microgradnn[plot]'") from None
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, path: str | os.PathLike) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())


def line_plot(series: Mapping[str, Sequence[float]], path: str | os.PathLike, *, log_y: bool = False,
              xlabel: str = "step", ylabel: str = "value", title: str = "") -> Path:
    """Each series as a line against its index; a legend when there is more than one."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, values in series.items():
        ax.plot(np.arange(len(values)), np.asarray(values, dtype=np.float64), label=name, linewidth=1.6)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return _save(fig, path)


def attention_heatmap(weights: Any, source: Sequence[str], target: Sequence[str], path: str | os.PathLike, *,
                      title: str = "attention") -> Path:
    """The (T, S) attention matrix: row t is where output token ``target[t]`` looked in
    ``source`` (each row sums to 1)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(target), len(source)):
        raise ValueError(f"attention_heatmap: weights {w.shape} do not match {len(target)} target x {len(source)} source tokens")
    fig = _figure(max(3.0, 0.55 * len(source) + 1.8, 0.09 * len(title) + 1.0), max(2.5, 0.4 * len(target) + 1.2))
    ax = fig.add_subplot()
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), labels=list(source), rotation=45, ha="right")
    ax.set_yticks(range(len(target)), labels=list(target))
    ax.set_xlabel("source token")
    ax.set_ylabel("output token")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="attention weight")
    return _save(fig, path)


def forecast_plot(history: Sequence[float], truth: Sequence[float], forecasts: Mapping[str, Sequence[float]],
                  path: str | os.PathLike, *, times: Sequence[Any] | None = None, ylabel: str = "value",
                  title: str = "forecast") -> Path:
    """The last known steps (``history``), then the true continuation and each forecast
    (``{"model": ..., "seasonal naive": ...}``) over the same steps. ``times`` labels
    the x axis (len(history) + len(truth) entries), else step numbers."""
    h, y = np.asarray(history, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    x = np.arange(h.size + y.size)
    fig = _figure(8.0, 4.0)
    ax = fig.add_subplot()
    ax.plot(x[: h.size], h, color="0.35", label="history")
    ax.plot(x[h.size:], y, color="black", linewidth=2.0, label="truth")
    for name, f in forecasts.items():
        ax.plot(x[h.size:], np.asarray(f, dtype=np.float64), linestyle="--", marker=".", label=name)
    ax.axvline(h.size - 0.5, color="0.6", linewidth=0.8)
    if times is not None:
        step = max(1, len(x) // 8)
        ax.set_xticks(x[::step], labels=[str(t) for t in list(times)[::step]], rotation=30, ha="right")
    ax.set_xlabel("time" if times is not None else "step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)
