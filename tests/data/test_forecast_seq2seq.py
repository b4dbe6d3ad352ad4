"""The forecast windows (chronological split, no leak, train-only normalisation) and the
seq2seq pairs (vocabularies with reserved ids, teacher-forcing batches)."""

from __future__ import annotations

import numpy as np
import pytest

from microgradnn.data import IGNORE_INDEX, DataError, TokenVocab, forecast, seq2seq
from microgradnn.data.forecast import seasonal_naive
from microgradnn.metrics import mase, seasonal_naive_scale


def _write_series(path, values, covariate=None):
    lines = ["t,value" + (",cov" if covariate is not None else "")]
    for i, v in enumerate(values):
        lines.append(f"{i},{float(v)!r}" + (f",{float(covariate[i])!r}" if covariate is not None else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("context,horizon", [(5, 1), (8, 3), (12, 6)])
def test_training_windows_never_see_validation_steps(tmp_path, context, horizon):
    n, val_fraction = 100, 0.25
    split = n - int(round(n * val_fraction))
    rng = np.random.default_rng(0)
    values = rng.normal(size=n)
    values[split:] += 1000.0  # the marker: every validation step is far above the rest
    cov = np.where(np.arange(n) >= split, -500.0, rng.normal(size=n))  # and so is its covariate
    data = forecast(str(_write_series(tmp_path / "s.csv", values, cov)), columns="value", covariates=["cov"],
                    context=context, horizon=horizon, val_fraction=val_fraction, season=1)
    train_x = data.normalizer.inverse(data.train.fixed.astype(np.float64))
    train_y = data.to_units(data.train.ys)
    assert np.abs(train_x).max() < 100 and np.abs(train_y).max() < 100, "a training window saw validation steps"
    assert data.train.fixed.shape == (split - context - horizon + 1, context, 2)
    # Every window's target is the step right after its context, in order (chronological).
    np.testing.assert_allclose(train_y[0, :, 0], values[context:context + horizon], rtol=1e-5)
    np.testing.assert_allclose(train_y[-1, -1, 0], values[split - 1], rtol=1e-5)
    # Every validation window forecasts steps at or after the split, and there is one per origin.
    val_y = data.to_units(data.val.ys)
    assert (val_y > 900).all()
    assert len(data.val) == n - horizon + 1 - split
    # Batches: shuffling moves training windows among themselves only.
    for batch in data.train_batches(7, epoch=3, seed=1):
        assert np.abs(data.to_units(batch.y)).max() < 100


def test_normaliser_is_fitted_on_training_steps_only(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 2.0, size=80)
    a = forecast(str(_write_series(tmp_path / "a.csv", values)), context=6, horizon=2, val_fraction=0.25)
    train = values[:60]
    np.testing.assert_allclose(a.normalizer.mean, [train.mean()], rtol=1e-12)
    np.testing.assert_allclose(a.normalizer.std, [train.std()], rtol=1e-12)
    changed = values.copy()
    changed[60:] = rng.normal(50.0, 9.0, size=20)  # a very different future...
    b = forecast(str(_write_series(tmp_path / "b.csv", changed)), context=6, horizon=2, val_fraction=0.25)
    np.testing.assert_array_equal(a.normalizer.mean, b.normalizer.mean)  # ...changes no statistic
    np.testing.assert_array_equal(a.train.fixed, b.train.fixed)
    np.testing.assert_array_equal(a.train.ys, b.train.ys)
    assert a.describe()["normalizer"] == a.normalizer.to_dict()
    assert abs(float(a.train.fixed[..., 0].mean())) < 0.2  # training inputs are roughly standardised


def test_seasonal_naive_and_mase(tmp_path):
    season, n = 12, 120
    t = np.arange(n)
    values = 10 * np.sin(2 * np.pi * t / season) + 0.05 * t  # a yearly cycle and a slow trend
    data = forecast(str(_write_series(tmp_path / "s.csv", values)), context=24, horizon=6, val_fraction=0.2,
                    season=season)
    naive = data.baseline()
    truth = data.to_units(data.val.ys)
    # Seasonal naive repeats last season: its error is the trend over one season, 0.6 exactly.
    np.testing.assert_allclose(np.abs(naive - truth), 0.05 * season, rtol=1e-4)
    scale = seasonal_naive_scale(values[: data.split], season)
    assert scale == pytest.approx(data.mase_scale())
    assert mase(naive, truth, scale) == pytest.approx(1.0, rel=1e-4)
    history = np.arange(24.0).reshape(1, 24, 1)
    assert seasonal_naive(history, 14, 12)[0, :, 0].tolist() == [12.0 + h % 12 for h in range(12)] + [12.0, 13.0]


def test_forecast_bad_options(tmp_path):
    path = str(_write_series(tmp_path / "s.csv", np.arange(30.0)))
    with pytest.raises(DataError, match="not a column"):
        forecast(path, columns="valeu")
    with pytest.raises(DataError, match="season=12 is longer than context=6"):
        forecast(path, context=6, season=12)
    with pytest.raises(DataError, match="hold no window"):
        forecast(path, context=24, horizon=6)


def test_seq2seq_pairs_and_teacher_forcing_batches(tmp_path):
    path = tmp_path / "pairs.tsv"
    rows = [("one", "un"), ("twenty one", "vingt et un"), ("seventy", "soixante-dix"), ("two", "deux"),
            ("seventy one", "soixante et onze")]
    path.write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in rows))
    data = seq2seq(str(path), val_fraction=0.2, seed=0)
    assert data.task == "seq2seq" and len(data.train) == 4 and len(data.val) == 1
    tv = data.tgt_vocab
    assert tv.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    batch = next(iter(data.train_batches(4, epoch=0, seed=0)))
    for r in range(4):
        n = batch.tgt_lengths[r]
        assert batch.tgt_in[r, 0] == tv.bos_id
        np.testing.assert_array_equal(batch.tgt_in[r, 1:n], batch.y[r, : n - 1])  # shifted by one
        assert batch.y[r, n - 1] == tv.eos_id
        assert (batch.y[r, n:] == IGNORE_INDEX).all() and (batch.tgt_in[r, n:] == tv.pad_id).all()
        assert (batch.x[r, batch.lengths[r]:] == 0).all()
    texts = {data.src_vocab.decode(x[:n]): tv.decode(y) for x, n, y in zip(batch.x, batch.lengths, batch.y)}
    for s, t in texts.items():
        assert (s, t) in rows
    chars = TokenVocab.build(["abc", "cab"], tokenize="chars")
    assert chars.decode(chars.encode("bad")) == "ba<unk>"
    assert TokenVocab.from_dict(chars.to_dict()) == chars
    data.vocab.save(tmp_path / "vocab.json")  # both vocabularies in one file, as a run folder keeps them
    again = seq2seq(str(path), val_fraction=0.2, seed=0, vocab=type(data.vocab).load(tmp_path / "vocab.json").to_dict())
    assert again.src_vocab == data.src_vocab and again.tgt_vocab == data.tgt_vocab
