"""The Trainer on 2 ranks against 1 process: same weights, same validation, one run folder,
resume with another number of ranks, and a rank killed mid-run."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from microgradnn.train import Trainer

from .conftest import mpi_env, mpi_missing, run_mpi


def _trainer_test_helpers():
    """tests/train/_util.py (the trainer tests' spec helpers), loaded by path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "train" / "_util.py"
    spec = importlib.util.spec_from_file_location("_trainer_test_util", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_util = _trainer_test_helpers()
base_spec, charlm_data, with_, write_corpus = _util.base_spec, _util.charlm_data, _util.with_, _util.write_corpus

SCRIPT = Path(__file__).with_name("train_script.py")


def _run(spec: dict, run_dir: Path, out: Path, nproc: int, dtype: str = "float32", resume: bool = False,
         timeout: float = 300) -> subprocess.CompletedProcess:
    spec = dict(spec, run_dir=str(run_dir))
    spec_file = out.with_suffix(".json")
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, str(SCRIPT), str(spec_file), str(out), dtype] + (["resume"] if resume else [])
    if nproc > 1:
        reason = mpi_missing()
        if reason:
            pytest.skip(reason)
        import microgradnn.distributed as dist

        cmd = [dist.find_mpiexec(), "-n", str(nproc)] + cmd
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=mpi_env(), cwd=out.parent)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _result(out: Path) -> tuple[dict, list, str]:
    data = np.load(out)
    w = {k[2:]: data[k] for k in data.files if k.startswith("w:")}
    return w, json.loads(str(data["history"])), str(data["status"])


def _assert_same(single: Path, parallel: Path, rtol: float) -> None:
    w1, h1, s1 = _result(single)
    w2, h2, s2 = _result(parallel)
    assert s1 == s2 == "completed"
    assert w1.keys() == w2.keys()
    for k in w1:
        scale = max(float(np.abs(w1[k]).max()), 1e-3)
        diff = float(np.abs(w1[k].astype(np.float64) - w2[k]).max())
        assert diff <= rtol * scale, f"{k}: {diff / scale:.2e} relative"
    # sharded validation: the same losses and metrics as one process, at every evaluation
    assert len(h1) == len(h2) >= 2
    for a, b in zip(h1, h2):
        assert a["step"] == b["step"] and a["val_items"] == b["val_items"]
        for key in a:
            if key.startswith(("val_", "train_loss")):
                assert b[key] == pytest.approx(a[key], rel=max(rtol, 1e-9)), (a["step"], key)


@pytest.fixture()
def lm_spec(tmp_path):
    corpus = write_corpus(tmp_path, chars=1500)
    spec = base_spec(tmp_path / "runs", charlm_data(corpus, seq_len=10), steps=24, batch_size=5, eval_every=8,
                     tbptt=True, metrics=["perplexity"])
    return with_(spec, model__num_layers=2, model__dropout=0.3)


def _classification_data(tmp_path: Path) -> dict:
    rows = [("def f(x): return x", "code"), ("# a comment here", "comment"), ("x = y + 1", "code"),
            ("# TODO: fix this one day", "comment"), ("for i in range(3):", "code"), ("# why", "comment"),
            ("return a, b", "code"), ("# see the docs", "comment")] * 4
    path = tmp_path / "lines.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return {"name": "csv", "path": str(path), "val_fraction": 0.25}


@pytest.fixture()
def cls_spec(tmp_path):
    spec = base_spec(tmp_path / "runs", _classification_data(tmp_path), steps=20, batch_size=7, eval_every=5,
                     metrics=["accuracy"])
    return with_(spec, model__cell="gru", model__num_layers=2, model__dropout=0.25)


def _lora(spec: dict, base_run: Path) -> dict:
    return with_(spec, finetune={"from": str(base_run), "head": None,
                                 "strategy": {"name": "lora", "r": 2, "alpha": 4.0, "dropout": 0.1,
                                              "targets": ["rnn.weight_*"]}})


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-6), ("float32", 1e-4)])
@pytest.mark.parametrize("task", ["lm", "classification"])
def test_two_ranks_train_as_one_process(tmp_path, lm_spec, cls_spec, task, dtype, rtol):
    spec = lm_spec if task == "lm" else cls_spec
    _run(spec, tmp_path / "one", tmp_path / "one.npz", 1, dtype)
    _run(spec, tmp_path / "two", tmp_path / "two.npz", 2, dtype)
    _assert_same(tmp_path / "one.npz", tmp_path / "two.npz", rtol)
    # one run folder, written by rank 0 alone: the same files as one process writes
    one = sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*"))
    two = sorted(p.relative_to(tmp_path / "two").as_posix() for p in (tmp_path / "two").rglob("*"))
    assert one == two


@pytest.mark.parametrize("task", ["lm", "classification"])
def test_two_ranks_fine_tune_with_lora_as_one_process(tmp_path, lm_spec, cls_spec, task):
    spec = lm_spec if task == "lm" else cls_spec
    base = with_(spec, train__steps=6, train__eval_every=None)
    Trainer(base, run_dir=tmp_path / "base").fit()
    ft = _lora(with_(spec, train__steps=12, train__eval_every=4), tmp_path / "base")
    _run(ft, tmp_path / "one", tmp_path / "one.npz", 1, "float64")
    _run(ft, tmp_path / "two", tmp_path / "two.npz", 2, "float64")
    _assert_same(tmp_path / "one.npz", tmp_path / "two.npz", 1e-6)


def test_resume_with_another_number_of_ranks(tmp_path, lm_spec):
    """Stopped at step 12 on 2 ranks, resumed on 1 (and the other way round): the carried
    tbptt state of every stream and the weights end as an uninterrupted run's."""
    full = dict(lm_spec)
    _run(full, tmp_path / "full", tmp_path / "full.npz", 1, "float64")
    half = with_(lm_spec, train__steps=12)
    _run(half, tmp_path / "a", tmp_path / "a1.npz", 2, "float64")
    resume = {"resume_overrides": ["train.steps=24"]}
    _run(resume, tmp_path / "a", tmp_path / "a.npz", 1, "float64", resume=True)
    _run(half, tmp_path / "b", tmp_path / "b1.npz", 1, "float64")
    _run(resume, tmp_path / "b", tmp_path / "b.npz", 2, "float64", resume=True)
    w, _, _ = _result(tmp_path / "full.npz")
    for out in ("a.npz", "b.npz"):
        w2, _, status = _result(tmp_path / out)
        assert status == "completed"
        for k in w:
            scale = max(float(np.abs(w[k]).max()), 1e-3)
            assert float(np.abs(w[k] - w2[k]).max()) <= 1e-6 * scale, (out, k)


def test_a_stop_asked_on_rank_0_stops_both_ranks_at_that_step(tmp_path, lm_spec):
    """A callback's stop (rank 0 runs the callbacks) is every rank's stop at the same step:
    the checkpoint then written (a collective: the carried state is gathered) completes,
    and the run resumes to the uninterrupted run's weights."""
    _run(dict(lm_spec), tmp_path / "full", tmp_path / "full.npz", 1, "float64")
    _run(dict(lm_spec, stop_at=7), tmp_path / "s", tmp_path / "s1.npz", 2, "float64")
    data = np.load(tmp_path / "s1.npz")
    assert str(data["status"]) == "stopped" and int(data["step"]) == 7
    _run({}, tmp_path / "s", tmp_path / "s.npz", 2, "float64", resume=True)
    w, _, _ = _result(tmp_path / "full.npz")
    w2, _, status = _result(tmp_path / "s.npz")
    assert status == "completed"
    for k in w:
        scale = max(float(np.abs(w[k]).max()), 1e-3)
        assert float(np.abs(w[k] - w2[k]).max()) <= 1e-6 * scale, k


def test_a_stop_asked_on_rank_0_after_the_vote_stops_both_ranks_at_the_next_step(tmp_path, lm_spec):
    """Asked in on_step_end (after the step's vote on stopping) on rank 0 alone, the stop is
    taken at the next vote: rank 0 stopping at once would have waited in the checkpoint's
    gather while rank 1 waited in the next step's all-reduce."""
    _run(dict(lm_spec, stop_at=7, stop_hook="on_step_end"), tmp_path / "s", tmp_path / "s1.npz", 2, "float64",
         timeout=120)
    data = np.load(tmp_path / "s1.npz")
    assert str(data["status"]) == "stopped" and int(data["step"]) == 8


AGREE_SCRIPT = """
import json, os, sys
from microgradnn.train.data_parallel import MPIDataParallel, RefusedOnEveryRank
seam = MPIDataParallel()
spec = json.loads(sys.argv[1 + seam.rank])
try:
    seam.agree(spec)
    print(f"rank {seam.rank}: agreed", flush=True)
except RefusedOnEveryRank as exc:
    print(f"rank {seam.rank}: refused: {type(exc).__name__}: {exc}", flush=True)
"""


@pytest.mark.parametrize("batches, refusal", [((1, 1), "RefusedOnEveryRank: train.batch_size: 1"),
                                              ((1, 5), "DistributedMismatch: rank 1 has another resolved spec"),
                                              ((5, 1), "DistributedMismatch: rank 1 has another resolved spec")])
def test_every_rank_refuses_alike_from_what_all_gathered(tmp_path, batches, refusal):
    """The refusals ``agree`` makes are decided on gathered facts, so every rank raises the
    same one and none is left waiting in a collective (the batch check used to run first,
    on each rank's own spec: rank 0 refused while rank 1 waited in the gather for ever)."""
    specs = [json.dumps({"train": {"batch_size": b, "steps": 3}}) for b in batches]
    done = run_mpi(AGREE_SCRIPT, tmp_path, timeout=60, args=specs)
    # findall, not lines: MPI's launcher may put the two ranks' output on one line
    said = sorted(re.findall(r"rank (\d): (refused: \w+: [^:(]+|agreed)", done.stdout))
    assert [rank for rank, _ in said] == ["0", "1"], done.stdout
    assert all(what.startswith("refused: " + refusal.split(": ")[0]) for _, what in said), done.stdout
    assert done.stdout.count(refusal) == 2, done.stdout
