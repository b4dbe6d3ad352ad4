"""Pictures: sparklines and text heatmaps in the terminal, PNG figures through matplotlib
(read back with matplotlib's own PNG reader, and their axes, labels and legends checked)."""

from __future__ import annotations

import numpy as np
import pytest

from microgradnn import plot
from microgradnn.plot import attention_heatmap, forecast_plot, line_plot, sparkline, text_heatmap


def _read_png(path):
    import matplotlib.image

    img = matplotlib.image.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def _capture(monkeypatch):
    """Keep each Figure a plot function saves, to inspect what it drew."""
    figures = []
    real = plot._save

    def keep(fig, path):
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plot, "_save", keep)
    return figures


def test_line_plot_has_labels_legend_and_log_axis(tmp_path, monkeypatch):
    figures = _capture(monkeypatch)
    series = {"tanh RNN": np.geomspace(1e-20, 1.0, 50), "LSTM": np.geomspace(1e-8, 1.0, 50)}
    path = line_plot(series, tmp_path / "v.png", log_y=True, xlabel="time step", ylabel="||dL/dh_t||", title="vanishing")
    img = _read_png(path)
    assert img[..., :3].std() > 0.05  # not a blank canvas
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "time step" and ax.get_ylabel() == "||dL/dh_t||" and ax.get_title() == "vanishing"
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["tanh RNN", "LSTM"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_attention_heatmap_labels_tokens(tmp_path, monkeypatch):
    figures = _capture(monkeypatch)
    w = np.random.default_rng(0).dirichlet(np.ones(4), size=3)
    attention_heatmap(w, ["ninety", "seven", "<eos>", "x"], ["quatre", "vingt", "dix"], tmp_path / "a.png")
    _read_png(tmp_path / "a.png")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ninety", "seven", "<eos>", "x"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["quatre", "vingt", "dix"]
    assert ax.get_xlabel() == "source token" and ax.get_ylabel() == "output token"
    np.testing.assert_allclose(ax.images[0].get_array(), w)
    with pytest.raises(ValueError, match="do not match"):
        attention_heatmap(w, ["a"], ["b"], tmp_path / "b.png")


def test_forecast_plot_shows_history_truth_and_each_forecast(tmp_path, monkeypatch):
    figures = _capture(monkeypatch)
    forecast_plot(np.arange(24.0), np.arange(24.0, 30.0), {"model": np.arange(24.0, 30.0) + 0.3,
                                                         "seasonal naive": np.arange(12.0, 18.0)},
                  tmp_path / "f.png", ylabel="CO2 (ppm)", times=[f"t{i}" for i in range(30)])
    _read_png(tmp_path / "f.png")
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["history", "truth", "model", "seasonal naive"]
    assert ax.get_ylabel() == "CO2 (ppm)" and ax.get_xlabel() == "time"
    truth = ax.get_lines()[1]
    np.testing.assert_array_equal(truth.get_xdata(), np.arange(24, 30))


def test_drawing_changes_no_global_matplotlib_state(tmp_path):
    import matplotlib

    backend, params = matplotlib.get_backend(), dict(matplotlib.rcParams)
    line_plot({"a": [1.0, 2.0, 3.0]}, tmp_path / "x.png")
    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == params


def test_sparkline_orders_magnitudes_and_buckets():
    assert sparkline([1e-8, 1e-4, 1.0], log=True) == "▁▅█"
    assert sparkline([2.0, 2.0]) == "▁▁"
    assert sparkline([]) == ""
    assert sparkline(np.arange(100.0), width=10) == "▁▂▃▃▄▅▆▆▇█"


def test_cli_display_uses_the_library_sparkline():
    from mgnn import display

    assert display.sparkline(np.geomspace(1e-9, 1, 120), width=30) == sparkline(np.geomspace(1e-9, 1, 120), log=True, width=30)


def test_text_heatmap_shades_weights():
    text = text_heatmap(np.array([[1.0, 0.0], [0.5, 0.5]]), ["un", "deux"], ["one", "two"])
    lines = text.splitlines()
    assert lines[1] == "  un ██  "
    assert lines[2] == "deux ▒▒▒▒"
    assert lines[-1] == "columns: 0=one  1=two"


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
