"""Forecasting a numeric series: ``forecast`` (task ``forecast``).

A CSV holds the series in time order, one row per step: one or more ``columns`` to
forecast and, optionally, ``covariates`` (known inputs such as a calendar feature). The
model reads a window of ``context`` past steps (all columns, covariates included) and
predicts the next ``horizon`` steps of the target columns::

    x: (B, context, F) float32      F = len(columns) + len(covariates)
    y: (B, horizon * len(columns))  step-major: y[:, h * C + c] is column c at step h + 1

Two rules keep the validation score honest:

* **Chronological split.** The last ``val_fraction`` of the steps is validation, the rest
  training; nothing is ever shuffled across that line. A training window lies wholly
  before it (its context *and* its targets); a validation window predicts steps after it
  (its context may reach back into the training steps: that past is known at forecast time).
* **Normalisation fitted on training steps only.** Each column is scaled to zero mean and
  unit variance with the mean and standard deviation of the training steps
  (:class:`Normalizer`), stored with the data (``describe()``) and in the run, so a
  forecast is turned back into the series' units the same way later.

Training windows are shuffled among themselves each epoch (that does not leak: each
window is a fixed slice of the past).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from .base import DataError, check_fraction, check_int
from .sequences import Examples, SequenceData
from .tabular import _missing_column, read_table

__all__ = ["Normalizer", "ForecastData", "forecast", "make_windows", "seasonal_naive"]


class Normalizer:
    """Per-column ``(x - mean) / std`` with statistics from the training steps only."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.shape != self.std.shape or (self.std <= 0).any():
            raise DataError(f"Normalizer: mean and std must have one positive std per column, got {self.std.tolist()}")

    @classmethod
    def fit(cls, train: np.ndarray) -> "Normalizer":
        std = train.std(axis=0)
        return cls(train.mean(axis=0), np.where(std > 0, std, 1.0))  # a constant column stays as it is

    def transform(self, x: np.ndarray, columns: slice | Sequence[int] = slice(None)) -> np.ndarray:
        return (x - self.mean[columns]) / self.std[columns]

    def inverse(self, x: np.ndarray, columns: slice | Sequence[int] = slice(None)) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) * self.std[columns] + self.mean[columns]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: Any) -> "Normalizer":
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            raise DataError("a normalizer must be a dict {mean: [...], std: [...]}")
        return cls(d["mean"], d["std"])


def make_windows(values: np.ndarray, targets: Sequence[int], context: int, horizon: int,
                 origins: range) -> tuple[np.ndarray, np.ndarray]:
    """Windows cut at each forecast origin o (the first forecast step):
    x = values[o - context : o] (all columns), y = values[o : o + horizon, targets]."""
    xs = np.stack([values[o - context: o] for o in origins]).astype(np.float32)
    ys = np.stack([values[o: o + horizon][:, list(targets)].reshape(-1) for o in origins]).astype(np.float32)
    return xs, ys


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The seasonal-naive forecast from each window's history (N, context, C): step h
    repeats the value one season before it, y_{o+h} = y_{o+h-season*(h//season+1)}.
    Returns (N, horizon, C)."""
    if history.shape[1] < season:
        raise DataError(f"seasonal_naive: the context ({history.shape[1]} steps) must cover one season ({season})")
    idx = [history.shape[1] + h - season * (h // season + 1) for h in range(horizon)]
    return history[:, idx]


class ForecastData(SequenceData):
    """Windows of a series (see the module docstring). ``normalizer`` holds the training
    statistics of every column; ``target_columns`` the forecast's; ``season`` the period
    of the seasonal-naive baseline; ``series`` the whole series in its own units."""

    def __init__(self, train: Examples, val: Examples | None, *, columns: list[str], covariates: list[str],
                 normalizer: Normalizer, context: int, horizon: int, season: int, series: np.ndarray,
                 split: int, times: list[str] | None, info: dict) -> None:
        super().__init__(train, val, "forecast", horizon * len(columns), name="forecast",
                         input_size=len(columns) + len(covariates), info=info)
        self.target_columns, self.covariates = columns, covariates
        self.normalizer, self.context, self.horizon, self.season = normalizer, context, horizon, season
        self.series, self.split, self.times = series, split, times

    def to_units(self, y: Any) -> np.ndarray:
        """Model outputs or targets (B, horizon * C), normalised -> (B, horizon, C) in the
        series' own units."""
        C = len(self.target_columns)
        y = np.asarray(getattr(y, "array", y), dtype=np.float64).reshape(-1, self.horizon, C)
        return self.normalizer.inverse(y, slice(0, C))

    def baseline(self) -> np.ndarray:
        """The seasonal-naive forecast of every validation window, (N_val, horizon, C), in units."""
        C = len(self.target_columns)
        history = self.normalizer.inverse(self.val.fixed[:, :, :C].astype(np.float64), slice(0, C))
        return seasonal_naive(history, self.horizon, self.season)

    def mase_scale(self) -> float:
        """MASE's denominator: the seasonal-naive in-sample MAE on the training steps."""
        train = self.series[: self.split, : len(self.target_columns)]
        return float(np.mean(np.abs(train[self.season:] - train[: -self.season])))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(normalizer=self.normalizer.to_dict(), context=self.context, horizon=self.horizon,
                    season=self.season, columns=self.target_columns, covariates=self.covariates)
        return info


def _column(owner: str, table: Any, name: str, option: str) -> np.ndarray:
    if name not in table.columns:
        raise _missing_column(owner, table, option, name)
    out = np.empty(len(table.rows))
    for i, (line, row) in enumerate(table.rows):
        try:
            out[i] = float(row[name])
        except (TypeError, ValueError):
            raise DataError(f"{owner}: {str(table.path)!r} line {line}: column {name!r} must hold a number, "
                            f"got {row[name]!r}") from None
        if not math.isfinite(out[i]):
            raise DataError(f"{owner}: {str(table.path)!r} line {line}: column {name!r} holds {row[name]!r}")
    return out


def forecast(path: str, columns: str | list[str] = "value", context: int = 24, horizon: int = 1,
             covariates: list[str] | None = None, val_fraction: float = 0.2, season: int = 1,
             time_column: str | None = None, normalize: bool = True, delimiter: str | None = None,
             normalizer: Any = None) -> ForecastData:
    """Windows of a numeric series read from a CSV file in time order.

    Args:
        path: the CSV (header row first, one row per time step, oldest first).
        columns: the column(s) to forecast.
        context: past steps the model reads.
        horizon: future steps it predicts.
        covariates: more input columns (read in the context, not forecast).
        val_fraction: the share of steps, at the end, held out for validation.
        season: the period of the seasonal-naive baseline (12 for monthly data with a
            yearly cycle; 1 is the plain naive "tomorrow = today").
        time_column: a column of time stamps, kept for tables and plots.
        normalize: scale each column by its training mean and std (else leave it as is).
        normalizer: reuse stored statistics (a Normalizer or its ``to_dict()``: a run's)
            instead of fitting them, so a model sees its inputs scaled as in training.
    """
    owner = "forecast"
    targets = [columns] if isinstance(columns, str) else list(columns or [])
    covariates = list(covariates or [])
    if not targets or not all(isinstance(c, str) for c in targets + covariates):
        raise DataError(f"{owner}: columns must be a column name or a list of them, got {columns!r}")
    context, horizon = check_int(owner, "context", context), check_int(owner, "horizon", horizon)
    season = check_int(owner, "season", season)
    val_fraction = check_fraction(owner, "val_fraction", val_fraction)
    if season > context:
        raise DataError(f"{owner}: season={season} is longer than context={context}; the seasonal-naive "
                        "baseline needs one season of history")
    table = read_table(path, "csv", delimiter, owner=owner)
    series = np.stack([_column(owner, table, c, "columns") for c in targets]
                      + [_column(owner, table, c, "covariates") for c in covariates], axis=1)
    times = None
    if time_column is not None:
        if time_column not in table.columns:
            raise _missing_column(owner, table, "time_column", time_column)
        times = [row[time_column] for _, row in table.rows]
    n = series.shape[0]
    split = n - int(round(n * val_fraction))
    if split - context - horizon + 1 < 1:
        raise DataError(f"{owner}: {split} training steps hold no window of context={context} + horizon={horizon}")
    if val_fraction > 0 and n - split < horizon:
        raise DataError(f"{owner}: the validation part ({n - split} steps) is shorter than horizon={horizon}")
    if normalizer is not None:
        norm = normalizer if isinstance(normalizer, Normalizer) else Normalizer.from_dict(normalizer)
        if norm.mean.shape != (series.shape[1],):
            raise DataError(f"{owner}: the stored normalizer has {norm.mean.size} columns, the data {series.shape[1]}")
    elif normalize:
        norm = Normalizer.fit(series[:split])
    else:
        norm = Normalizer(np.zeros(series.shape[1]), np.ones(series.shape[1]))
    scaled = norm.transform(series)
    target_idx = list(range(len(targets)))
    # Training windows end (targets included) before the split; validation windows forecast after it.
    train_x, train_y = make_windows(scaled, target_idx, context, horizon, range(context, split - horizon + 1))
    val = None
    if n - split >= horizon:
        vx, vy = make_windows(scaled, target_idx, context, horizon, range(max(split, context), n - horizon + 1))
        val = Examples(vx, vy)
    return ForecastData(Examples(train_x, train_y), val, columns=targets, covariates=covariates, normalizer=norm,
                        context=context, horizon=horizon, season=season, series=series, split=split, times=times,
                        info={"path": os.fspath(path), "train_steps": split, "val_steps": n - split})
