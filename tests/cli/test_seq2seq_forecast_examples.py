"""The translation and forecasting examples through the mgnn command: each passes
``mgnn check``; a short run of each trains, ``mgnn eval`` reports its task's scores, and
``mgnn generate`` translates (with the attention picture) or writes the forecast table
and plot. Misuse gives one clear line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import REPO, assert_user_error, mgnn

EXAMPLES = ["number_words_attention.yaml", "number_words_plain.yaml", "co2_forecast.yaml"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_passes_check(name):
    proc = mgnn("check", f"examples/{name}", cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "total parameters" in proc.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    made = {}
    for name, steps in (("number_words_attention.yaml", 30), ("co2_forecast.yaml", 40)):
        proc = mgnn("train", f"examples/{name}", f"train.steps={steps}", f"output.dir={out}", "--plain",
                    cwd=REPO, timeout=600)
        assert proc.returncode == 0, proc.stderr
        made[name] = out / name.removesuffix(".yaml")
    return made


def test_translation_run_evaluates_and_translates(runs, tmp_path):
    run = runs["number_words_attention.yaml"]
    components = json.loads((run / "run.json").read_text())["components"]  # resolved from these later
    assert components["attention"]["additive"]["dist"] == "microgradnn"
    assert components["datasets"]["seq2seq"]["dist"] == "microgradnn"
    proc = mgnn("eval", str(run), "--json", cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("bleu", "chrf", "exact_match", "accuracy", "loss"):
        assert key in result and result[key] == result[key], key  # present, not NaN
    assert 0.0 <= result["bleu"] <= 1.0 and 0.0 < result["chrf"] <= 1.0
    lines = tmp_path / "sources.txt"
    lines.write_text("ninety seven\nthree hundred and seventy one\n")
    png = tmp_path / "att.png"
    proc = mgnn("generate", str(run), "--source", "twenty one", "--source-file", str(lines), "--show-attention",
                "--png", str(png), "--beam-size", "3", cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len([line for line in out[:3] if line.strip()]) == 3  # one translation per source, in order
    assert "attention of: 'twenty one'" in proc.stdout and "columns: 0=twenty  1=one" in proc.stdout
    assert png.stat().st_size > 2000
    assert_user_error(mgnn("generate", str(run), cwd=REPO), "--source")


def test_forecast_run_reports_mase_against_seasonal_naive_and_plots(runs, tmp_path):
    run = runs["co2_forecast.yaml"]
    proc = mgnn("eval", str(run), "--json", cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("mae", "rmse", "mase", "naive_mae", "naive_rmse", "naive_mase"):
        assert result[key] > 0, key
    assert result["naive_mase"] == pytest.approx(1.4139, abs=1e-3)  # the baseline does not depend on the model
    stored = json.loads((run / "run.json").read_text())["data"]["normalizer"]
    assert set(stored) == {"mean", "std"} and len(stored["mean"]) == 2  # co2 and month, training months only
    png = tmp_path / "f.png"
    proc = mgnn("generate", str(run), "--png", str(png), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2001-12" in proc.stdout and "co2 seasonal naive" in proc.stdout
    assert png.stat().st_size > 2000
    assert_user_error(mgnn("generate", str(run), "--source", "x", cwd=REPO), "seq2seq")


def test_seq2seq_keys_on_another_task_are_one_clear_line(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"model: {{attention: additive, beam_size: 4}}\n"
                    f"data: {{name: forecast, path: {REPO}/examples/data/co2_mauna_loa_monthly.csv, columns: co2}}\n")
    proc = mgnn("check", str(spec), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "model.attention" in proc.stderr and "only for a seq2seq" in proc.stderr
    assert "model.beam_size" in proc.stderr
