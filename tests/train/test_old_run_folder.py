"""A run folder written before issue 10 (tests/fixtures/run-v0-folder) still evaluates,
generates and resumes, with the numbers the code that wrote it measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from microgradnn.train import Trainer, evaluate, export, generate

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-v0-folder"


@pytest.fixture()
def old_run(tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(FIXTURE, work)
    monkeypatch.chdir(work)  # the spec's data path is relative to where it was trained
    return work / "run-v0", json.loads((work / "expected.json").read_text())


def test_old_run_evaluates_and_generates_as_before(old_run):
    run, expected = old_run
    result = evaluate(run)
    assert result["loss"] == pytest.approx(expected["eval_loss"], rel=1e-6)
    assert result["perplexity"] == pytest.approx(expected["eval_perplexity"], rel=1e-6)
    assert generate(run, "def ", length=30, temperature=0.8, seed=3) == expected["generate_def_seed3_len30_t0.8"]
    assert export(run).is_file()


def test_old_run_resumes_exactly(old_run):
    run, expected = old_run
    trainer = Trainer.resume(run, overrides=["train.steps=8"])
    assert trainer.step == 6
    summary = trainer.fit()
    assert summary["status"] == expected["resumed_status"] and summary["step"] == 8
    assert evaluate(run, checkpoint="last")["loss"] == pytest.approx(expected["resumed_to_8_last_loss"], rel=1e-6)
