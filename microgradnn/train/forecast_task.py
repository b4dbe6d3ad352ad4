"""The ``forecast`` task: build a forecaster, score it against the seasonal-naive baseline,
and lay a forecast beside the truth.

Scores are computed in the series' own units (the model works on normalised values; the
data's stored :class:`~microgradnn.data.forecast.Normalizer` turns them back): MAE, RMSE
and MASE — the MAE divided by the in-sample MAE of the seasonal-naive forecast on the
training steps (Hyndman & Koehler 2006) — for the model and, on the same validation
windows, for the seasonal-naive forecast itself. A model worth having has the lower MASE.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..metrics import mae, mase, rmse
from ..models import build_recurrent
from ..nn.forecast import Forecaster
from ..tensor import Tensor

__all__ = ["build", "evaluate", "forecast_rows", "predict", "write_plot", "FINETUNE_DEFAULTS"]

#: A Forecaster names its layers as a SequenceModel does (``rnn``, ``head``), so the
#: strategies' own defaults fit, except two that cannot work on it (a string says why).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "adapter": "the forecaster reads the recurrent layer's final state, not the outputs an adapter "
               "transforms; use lora, ia3, prefix, freeze or bitfit",
    "prompt": "a Forecaster has no prompt slot (its inputs are numbers, not tokens); use prefix",
}


def build(data: Any, *, cell: Any = "lstm", hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0,
          bidirectional: bool = False, residual: bool = True, cell_options: dict | None = None) -> Forecaster:
    """A :class:`~microgradnn.nn.forecast.Forecaster` for ``data`` (a ForecastData)."""
    rnn = build_recurrent(cell, data.input_size, hidden_size, num_layers, dropout, bidirectional, None,
                          dict(cell_options or {}))
    return Forecaster(rnn, data.horizon, len(data.target_columns), residual=residual, dropout=dropout)


def build_from_spec(m: Any, info: Any) -> Forecaster:
    """The spec's ``model`` section and the data's sizes (``input_size`` features,
    ``output_size`` = horizon x ``targets``) -> the forecaster ``mgnn train`` trains."""
    rnn = build_recurrent(m.cell.name, int(info["input_size"]), m.hidden_size, m.num_layers, m.dropout,
                          m.bidirectional, None, m.cell.kwargs())
    targets = int(info["targets"])
    return Forecaster(rnn, int(info["output_size"]) // targets, targets, residual=m.residual, dropout=m.dropout)


def predict(model: Any, data: Any, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(forecast, truth) of every validation window, (N, horizon, C) in the series' units."""
    preds, truths = [], []
    was = model.training
    model.eval()
    with no_grad():
        for batch in data.val_batches(batch_size):
            out = model(Tensor(batch.x))
            out = out[0] if isinstance(out, tuple) else out
            preds.append(data.to_units(out.array))
            truths.append(data.to_units(batch.y))
    model.train(was)
    return np.concatenate(preds), np.concatenate(truths)


def evaluate(model: Any, data: Any, batch_size: int = 256) -> dict[str, float]:
    """MAE / RMSE / MASE of the model and of the seasonal-naive forecast (``naive_*``)."""
    if data.val is None:
        return {}
    pred, truth = predict(model, data, batch_size)
    naive = data.baseline()
    scale = data.mase_scale()
    return {"mae": mae(pred, truth), "rmse": rmse(pred, truth), "mase": mase(pred, truth, scale),
            "naive_mae": mae(naive, truth), "naive_rmse": rmse(naive, truth), "naive_mase": mase(naive, truth, scale)}


def forecast_rows(model: Any, data: Any, window: int = -1) -> dict[str, Any]:
    """One validation window (default: the last) as a table: its history, then for each
    forecast step the time, the truth, the model's forecast and the seasonal-naive one."""
    pred, truth = predict(model, data)
    naive = data.baseline()
    n_val = len(data.val)
    w = window % n_val
    origin = data.series.shape[0] - data.horizon - (n_val - 1 - w)  # first forecast step of that window
    times = data.times or [str(i) for i in range(data.series.shape[0])]
    C = len(data.target_columns)
    history = data.series[origin - data.context: origin, :C]
    rows = [{"time": times[origin + h], **{f"{c} truth": float(truth[w, h, k]) for k, c in enumerate(data.target_columns)},
             **{f"{c} forecast": float(pred[w, h, k]) for k, c in enumerate(data.target_columns)},
             **{f"{c} seasonal naive": float(naive[w, h, k]) for k, c in enumerate(data.target_columns)}}
            for h in range(data.horizon)]
    return {"rows": rows, "history": history, "history_times": times[origin - data.context: origin],
            "truth": truth[w], "forecast": pred[w], "naive": naive[w]}


def write_plot(table: dict[str, Any], data: Any, path: str | os.PathLike) -> Any:
    """The window of :func:`forecast_rows` as a PNG: history, truth, forecast, baseline."""
    from ..plot import forecast_plot

    col = data.target_columns[0]
    times = list(table["history_times"]) + [r["time"] for r in table["rows"]]
    return forecast_plot(table["history"][:, 0], table["truth"][:, 0],
                         {"forecast": table["forecast"][:, 0], "seasonal naive": table["naive"][:, 0]}, path,
                         times=times, ylabel=col, title=f"{col}: {data.horizon}-step forecast")
