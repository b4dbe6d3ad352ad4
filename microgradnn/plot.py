"""Tiny plotting with no plotting library: line charts as PNG files and as terminal text.

Used by the vanishing-gradient tutorial and the CLI's gradient-norm display. A PNG is
just rows of RGB pixels, zlib-compressed, in three chunks (IHDR, IDAT, IEND); writing one
by hand takes a page and keeps matplotlib out of the dependencies.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from typing import Mapping, Sequence

import numpy as np

from .fileio import atomic_write

__all__ = ["line_plot_png", "sparkline", "PALETTE"]

#: Line colours in series order (colour-blind-friendly Okabe-Ito palette).
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233)]
_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], log: bool = False) -> str:
    """One character per value, ▁ (smallest) to █ (largest); log=True compares magnitudes."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return ""
    if log:
        v = np.log10(np.maximum(v, 1e-300))
    lo, hi = float(np.min(v)), float(np.max(v))
    if not math.isfinite(lo) or not math.isfinite(hi) or hi - lo < 1e-12:
        return _BLOCKS[0] * v.size
    idx = np.clip(((v - lo) / (hi - lo) * (len(_BLOCKS) - 1)).round().astype(int), 0, len(_BLOCKS) - 1)
    return "".join(_BLOCKS[i] for i in idx)


def line_plot_png(series: Mapping[str, Sequence[float]], path: str | os.PathLike, *,
                  width: int = 640, height: int = 360, log_y: bool = False) -> str:
    """Draw each series as a coloured line (x = index) on white with axes; write a PNG.

    Colours follow :data:`PALETTE` in the order of ``series``; the y range covers all
    series (in log10 when ``log_y``). Returns the path written (atomically).
    """
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    margin = 30
    img[height - margin, margin:width - 10] = 0  # x axis
    img[10:height - margin + 1, margin] = 0  # y axis
    arrays = [np.asarray(v, dtype=np.float64) for v in series.values()]
    if log_y:
        arrays = [np.log10(np.maximum(a, 1e-300)) for a in arrays]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    for i, a in enumerate(arrays):
        colour = PALETTE[i % len(PALETTE)]
        n = max(len(a) - 1, 1)
        xs = margin + 1 + np.arange(len(a)) / n * (width - margin - 12)
        ys = (height - margin - 1) - (a - lo) / (hi - lo) * (height - margin - 12)
        for k in range(len(a) - 1):
            if np.isfinite(ys[k]) and np.isfinite(ys[k + 1]):
                _line(img, xs[k], ys[k], xs[k + 1], ys[k + 1], colour)
    return _write_png(img, path)


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: tuple) -> None:
    """A 2-pixel-thick segment, sampled densely enough to leave no gaps."""
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    for t in np.linspace(0.0, 1.0, steps + 1):
        x, y = int(round(x0 + t * (x1 - x0))), int(round(y0 + t * (y1 - y0)))
        img[max(y - 1, 0):y + 1, max(x - 1, 0):x + 1] = colour


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png(img: np.ndarray, path: str | os.PathLike) -> str:
    height, width, _ = img.shape
    # Each row starts with a filter-type byte (0 = none), then the RGB bytes.
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    return os.fspath(atomic_write(path, png))
