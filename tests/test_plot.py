"""The hand-written PNG encoder produces a valid file that decodes back to its pixels."""

import struct
import zlib

import numpy as np

from microgradnn.plot import line_plot_png, sparkline


def _decode(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, 3)


def test_png_round_trip_has_each_series_colour(tmp_path):
    rng = np.random.default_rng(0)
    series = {"a": rng.random(20) + 0.1, "b": np.geomspace(1e-6, 1.0, 20)}
    path = line_plot_png(series, tmp_path / "plot.png", width=200, height=120, log_y=True)
    img = _decode(path)
    assert img.shape == (120, 200, 3)
    for colour in [(0, 114, 178), (213, 94, 0)]:
        assert (img == colour).all(axis=-1).sum() > 50, colour
    assert not list(tmp_path.glob("*.tmp"))


def test_sparkline_orders_magnitudes():
    line = sparkline([1e-8, 1e-4, 1.0], log=True)
    assert line == "▁▅█"
    assert sparkline([2.0, 2.0]) == "▁▁"
    assert sparkline([]) == ""


def test_atomic_write_respects_the_umask_and_leaves_no_temp_file(tmp_path):
    import os

    from microgradnn.fileio import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
