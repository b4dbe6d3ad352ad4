"""Two writers on one run folder: exactly one proceeds, the other exits 2 with one line
naming the folder and the holder's pid, and the folder ends equal to a single run's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from microgradnn.runlock import holder_pid

from . import _forked


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return _forked.make_work(tmp_path_factory.mktemp("writers"))


@pytest.fixture(scope="module")
def reference(work):
    out = _forked.run(["train", "tiny.yaml", "--plain", "--run-dir", "runs/reference"], cwd=work)
    assert out.code == 0, out.stderr
    return work / "runs" / "reference"


def _holding(run: Path, child: _forked.Child, timeout: float = 60.0) -> None:
    """Wait until ``child`` holds ``run``'s lock."""
    deadline = time.monotonic() + timeout
    while holder_pid(run) != child.pid:
        assert time.monotonic() < deadline, "the first writer never took the lock"
        time.sleep(0.01)


def _refused(out: _forked.Outcome, run: Path, pid: int) -> None:
    assert out.code == 2, (out.code, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert str(run.name) in lines[0] and f"process {pid}" in lines[0], lines[0]
    assert "internal error" not in out.stderr


def _equals_reference(run: Path, reference: Path) -> None:
    assert _forked.same_weights(_forked.weights(run), _forked.weights(reference))
    assert _forked.records(run) == _forked.records(reference)


def _partial(work: Path, name: str) -> Path:
    """A run killed half-way through its third checkpoint write: resumable."""
    out = _forked.run(["train", "tiny.yaml", "--plain", "--run-dir", f"runs/{name}"], cwd=work, in_write=3)
    assert out.killed
    return work / "runs" / name


@pytest.mark.parametrize("first, second", [("train", "train"), ("resume", "resume"), ("train", "resume"),
                                           ("resume", "train")])
def test_second_writer_is_refused_and_the_folder_is_one_runs(work, reference, first, second):
    name = f"{first}-{second}"
    run = work / "runs" / name
    if first == "resume":
        _partial(work, name)
    argv = {"train": ["train", "tiny.yaml", "--plain", "--run-dir", f"runs/{name}"],
            "resume": ["resume", f"runs/{name}", "--plain"]}
    # the first writer pauses 1.5 s at an atomic rename, lock held, while the second tries
    a = _forked.start(argv[first], work, pause_at_replace=(2, 1.5))
    _holding(run, a)
    b = _forked.run(argv[second] + (["train.steps=30"] if second == "resume" else []), work)
    _refused(b, run, a.pid)
    assert _forked.wait(a).code == 0
    _equals_reference(run, reference)


def test_two_trains_racing_for_one_fresh_name_get_two_folders(work, reference):
    children = [_forked.start(["train", "tiny.yaml", "--plain"], work) for _ in range(2)]
    outs = [_forked.wait(c) for c in children]
    assert [o.code for o in outs] == [0, 0], [o.stderr for o in outs]
    runs = sorted(p for p in (work / "runs").iterdir() if p.name.startswith("tiny"))
    assert [p.name for p in runs] == ["tiny", "tiny-2"]
    for run in runs:
        _equals_reference(run, reference)
