"""kill -9 at random points, several inside checkpoint writes: resume always ends where an
uninterrupted run ends — bit-identical weights, identical metrics.jsonl records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from . import _forked


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return _forked.make_work(tmp_path_factory.mktemp("crash"))


@pytest.fixture(scope="module")
def reference(work):
    out = _forked.run(["train", "tiny.yaml", "--plain", "--run-dir", "runs/reference"], cwd=work)
    assert out.code == 0, out.stderr
    return work / "runs" / "reference"


_records, _weights = _forked.records, _forked.weights


def _finish(work: Path, run: str, first: dict, later: list[dict]) -> list[str]:
    """Train with the first kill armed, then resume (with the later kills armed, one per
    attempt) until the run completes; return what happened, attempt by attempt."""
    path = work / "runs" / run
    history = []
    kills = [first] + later
    for attempt in range(12):
        kill = kills[attempt] if attempt < len(kills) else {}
        started = (path / "checkpoints" / "last.safetensors").is_file()
        argv = ["resume", f"runs/{run}", "--plain"] if started else \
            ["train", "tiny.yaml", "--plain", "--run-dir", f"runs/{run}"]
        out = _forked.run(argv, cwd=work, **kill)
        history.append(f"{argv[0]}:{'killed' if out.killed else out.code}")
        if out.killed:
            continue
        assert out.code == 0, (history, out.stderr)
        assert "internal error" not in out.stderr
        return history
    raise AssertionError(f"run {run} never completed: {history}")


# (first kill, kills during the resumes): inside checkpoint writes (half the bytes written),
# at atomic renames (checkpoint, index.json, run.json, metrics), and after random delays
CASES = {
    "mid-write-1st": ({"in_write": 1}, []),
    "mid-write-3rd": ({"in_write": 3}, [{"in_write": 2}]),
    "at-rename-5": ({"at_replace": 5}, [{"at_replace": 3}]),
    "at-rename-9": ({"at_replace": 9}, []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kill_9_then_resume_equals_an_uninterrupted_run(work, reference, case):
    first, later = CASES[case]
    history = _finish(work, case, first, later)
    assert history[0].endswith("killed"), history
    run = work / "runs" / case
    ref_w, got_w = _weights(reference), _weights(run)
    assert ref_w.keys() == got_w.keys()
    for k in ref_w:
        assert np.array_equal(ref_w[k], got_w[k]), (case, history, k)
    assert _records(run) == _records(reference), (case, history)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, leftovers  # the next writer swept what the killed one left


def test_kill_9_at_random_times(work, reference):
    rng = np.random.default_rng(11)
    for i in range(3):
        later = [{"kill_after": float(rng.uniform(0.05, 0.6))} for _ in range(2)]
        history = _finish(work, f"random-{i}", {"kill_after": float(rng.uniform(0.1, 0.8))}, later)
        run = work / "runs" / f"random-{i}"
        ref_w, got_w = _weights(reference), _weights(run)
        for k in ref_w:
            assert np.array_equal(ref_w[k], got_w[k]), (i, history, k)
        assert _records(run) == _records(reference), (i, history)
