"""The seq2seq and forecast tasks at library level: build from data, a few training steps,
evaluation (BLEU/chrF/exact match; MAE/RMSE/MASE vs seasonal naive), generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import microgradnn as mg
from microgradnn.data import forecast, seq2seq
from microgradnn.metrics import bleu, chrf
from microgradnn.nn.attention import AdditiveAttention
from microgradnn.train import forecast_task, seq2seq_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    rows = [r.split("\t") for r in (ROOT / "examples/data/number_words_en_fr.tsv").read_text().splitlines()[1:120]]
    path = tmp_path_factory.mktemp("s2s") / "pairs.tsv"
    path.write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for _, s, t in rows))
    return seq2seq(str(path), val_fraction=0.2, seed=0)


@pytest.mark.parametrize("cells", [("lstm", "lstm"), ("gru", "gru"), ("rnn_relu", "lstm")])
def test_seq2seq_task_trains_and_evaluates(pairs, cells):
    mg.manual_seed(0)
    model = seq2seq_task.build(pairs, encoder_cell=cells[0], decoder_cell=cells[1], hidden_size=32,
                               embedding_dim=16, attention=AdditiveAttention, num_layers=2)
    opt = mg.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for epoch in range(3):
        for batch in pairs.train_batches(16, epoch=epoch, seed=0):
            loss, logits, count = seq2seq_task.loss(model, batch, sampling_ratio=0.2)
            assert count == int((batch.y >= 0).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = first if first is not None else loss.item()
    assert loss.item() < first
    scores = seq2seq_task.evaluate(model, pairs, beam_size=1)
    scores_beam = seq2seq_task.evaluate(model, pairs, beam_size=3, alpha=0.6)
    assert set(scores) == {"bleu", "chrf", "exact_match"} and 0.0 <= scores["chrf"] <= 1.0
    # The scores are what the metric functions give on the decoded texts.
    hyps = [pairs.tgt_vocab.decode(ids) for b in pairs.val_batches(64)
            for ids in seq2seq_task.decode(model, b.x, b.lengths, 1, 40)]
    refs = [t for _, t in pairs.val_texts]
    assert scores["bleu"] == pytest.approx(bleu(hyps, refs)) and scores["chrf"] == pytest.approx(chrf(hyps, refs))
    assert 0.0 <= scores_beam["exact_match"] <= 1.0
    out = seq2seq_task.translate(model, pairs.src_vocab, pairs.tgt_vocab, ["ninety seven", "zzz unknown"],
                                 attention=True)
    w = out[0]["attention"]
    assert w.shape == (len(out[0]["tokens"]), 2) and np.allclose(w.sum(1), 1.0)


def test_forecast_task_beats_nothing_by_accident_and_reports_the_baseline(tmp_path):
    t = np.arange(240)
    rng = np.random.default_rng(0)
    values = 5 * np.sin(2 * np.pi * t / 12) + 0.02 * t + 0.1 * rng.normal(size=t.size)
    path = tmp_path / "s.csv"
    path.write_text("date,v,month\n" + "".join(f"d{i},{v:.5f},{i % 12}\n" for i, v in enumerate(values)))
    data = forecast(str(path), columns="v", covariates=["month"], context=24, horizon=6, season=12,
                    time_column="date", val_fraction=0.2)
    mg.manual_seed(0)
    model = forecast_task.build(data, hidden_size=16)
    opt = mg.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(4):
        for batch in data.train_batches(32, epoch=epoch, seed=0):
            out, _ = model(mg.tensor(batch.x))
            loss = mg.nn.functional.mse_loss(out, mg.tensor(batch.y))
            opt.zero_grad()
            loss.backward()
            opt.step()
    scores = forecast_task.evaluate(model, data)
    assert set(scores) == {"mae", "rmse", "mase", "naive_mae", "naive_rmse", "naive_mase"}
    assert scores["rmse"] >= scores["mae"] > 0
    table = forecast_task.forecast_rows(model, data)
    assert [r["time"] for r in table["rows"]] == [f"d{i}" for i in range(234, 240)]
    np.testing.assert_allclose([r["v truth"] for r in table["rows"]], values[234:], atol=1e-4)
    np.testing.assert_allclose([r["v seasonal naive"] for r in table["rows"]], values[222:228], atol=1e-4)
    png = forecast_task.write_plot(table, data, tmp_path / "forecast.png")
    assert png.stat().st_size > 1000


STRATEGIES = ["full", "freeze", "bitfit", "lora", "adalora", "ia3", "adapter", "prefix", "prompt"]


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("task", ["seq2seq", "forecast"])
def test_finetune_strategies_fit_the_encoder_decoder_and_the_forecaster(name, task, pairs, tmp_path):
    from microgradnn import registry

    module = seq2seq_task if task == "seq2seq" else forecast_task
    default = module.FINETUNE_DEFAULTS.get(name, {})
    if isinstance(default, str):  # the strategy can't fit this model: the reason is a clear sentence
        assert len(default) > 40 and "use" in default
        return
    mg.manual_seed(0)
    if task == "seq2seq":
        model = seq2seq_task.build(pairs, hidden_size=16, embedding_dim=8, attention=AdditiveAttention)
        batch = next(iter(pairs.train_batches(8, 0, 0)))
        run = lambda: seq2seq_task.loss(model, batch)[0]  # noqa: E731
    else:
        t = np.arange(120.0)
        path = tmp_path / "s.csv"
        path.write_text("v\n" + "".join(f"{np.sin(v / 3):.4f}\n" for v in t))
        data = forecast(str(path), columns="v", context=12, horizon=3)
        model = forecast_task.build(data, hidden_size=8)
        batch = next(iter(data.train_batches(8, 0, 0)))
        run = lambda: mg.nn.functional.mse_loss(model(mg.tensor(batch.x))[0], mg.tensor(batch.y))  # noqa: E731
    before = {n: p.array.copy() for n, p in model.named_parameters()}
    strategy = registry.get("finetune", name)(**default)
    strategy.apply(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, f"{name} left nothing to train"
    opt = mg.optim.Adam(trainable, lr=0.05)
    loss = run()
    opt.zero_grad()
    loss.backward()
    assert any(p.grad is not None and np.abs(p.grad.array).sum() > 0 for p in trainable), f"{name}: no gradient flows"
    opt.step()
    assert run().item() != loss.item()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and n in before]
    for n in frozen:
        np.testing.assert_array_equal(dict(model.named_parameters())[n].array, before[n])
