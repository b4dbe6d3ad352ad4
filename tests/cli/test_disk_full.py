"""A full disk, end to end through ``mgnn train``: one line naming the file, exit 2, a
run.json that tells the truth, no temporary file left behind, and a run that ``mgnn
resume`` (with room again) finishes bit-identical to an uninterrupted one.

``RLIMIT_FSIZE`` (set in the child with SIGXFSZ ignored, so a write past it fails with
EFBIG instead of killing the process) stands in for the full disk. The limits are chosen
from the sizes the uninterrupted runs wrote, so each case fails where it says: inside a
checkpoint write (the second one, or a later, larger one), in a metrics.jsonl append
after several checkpoints, and before the first checkpoint (spec.yaml/run.json, and a
metrics append whose failed-status run.json no longer fits as a new file)."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import _forked
from .test_cli import env

#: the tiny spec of _forked with every step logged and fewer checkpoints, so that
#: metrics.jsonl outgrows a checkpoint while the run goes on
LONG = {"steps: 24": "steps: 300", "log_every: 2": "log_every: 1", "checkpoint_every: 3": "checkpoint_every: 20",
        "eval_every: 6": "eval_every: 50"}


def _reference(work: Path, spec: str, name: str) -> tuple[Path, list[int]]:
    """An uninterrupted run, and the size of every checkpoint it wrote, in order."""
    from microgradnn import checkpoint

    sizes_file = work / f"{name}.sizes"
    real = checkpoint._write_all

    def write_all(f, data):  # (in the forked child: it appends to a file the test reads)
        with open(sizes_file, "a") as out:
            out.write(f"{len(data)}\n")
        return real(f, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "_write_all", write_all)
        out = _forked.run(["train", spec, "--plain", "--run-dir", f"runs/{name}"], cwd=work)
    assert out.code == 0, out.stderr
    return work / "runs" / name, [int(n) for n in sizes_file.read_text().split()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = _forked.make_work(tmp_path_factory.mktemp("diskfull"))
    text = (work / "tiny.yaml").read_text()
    for old, new in LONG.items():
        assert old in text
        text = text.replace(old, new)
    (work / "long.yaml").write_text(text)
    return work


@pytest.fixture(scope="module")
def references(work):
    return {spec: _reference(work, f"{spec}.yaml", f"ref-{spec}") for spec in ("tiny", "long")}


def _train_limited(work: Path, spec: str, run: str, limit: int) -> subprocess.CompletedProcess:
    def full_disk() -> None:  # in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    argv = ["train", f"{spec}.yaml", "--plain", "--run-dir", f"runs/{run}"]
    return subprocess.run([sys.executable, "-m", "mgnn", *argv], cwd=work, env=env(), capture_output=True, text=True, timeout=300, preexec_fn=full_disk)


def _limit(case: str, refs: dict) -> tuple[str, int, str]:
    """(spec, file-size limit, the file the error must name) of each case."""
    (_, tiny), (long_run, long) = refs["tiny"], refs["long"]
    if case == "second-checkpoint":  # the first checkpoint fits, the next (larger) one does not
        bigger = next((s for s in tiny if s > tiny[0]), None)
        assert bigger is not None, f"every checkpoint has the first one's size: {tiny}"
        return "tiny", (tiny[0] + bigger) // 2, ".safetensors"
    if case == "later-checkpoint":  # the first two checkpoints fit, a later (larger) one does not
        # A checkpoint records the run's elapsed seconds, whose digits (so the header,
        # padded to 8 bytes) vary from run to run: the limit keeps 40 bytes from the sizes
        # that must fit and at least 40 from one that must not. ("max - 1", the largest
        # checkpoint's size, let a run whose floats came out shorter finish: 1 in 4 here.)
        fits = max(tiny[:2])
        assert max(tiny[2:]) >= fits + 80, tiny
        return "tiny", fits + 40, ".safetensors"
    if case == "metrics-append":  # every checkpoint fits; metrics.jsonl outgrows them
        return "long", max(long) + 512, "metrics.jsonl"
    if case == "run-json":  # before the first checkpoint: run.json "running" is barely written
        return "long", (long_run / "run.json").stat().st_size + 24, "metrics.jsonl"
    if case == "spec-yaml":  # the run can't even write its spec
        return "long", (long_run / "spec.yaml").stat().st_size - 1, "spec.yaml"
    raise AssertionError(case)


CASES = ["second-checkpoint", "later-checkpoint", "metrics-append", "run-json", "spec-yaml"]


@pytest.mark.parametrize("case", CASES)
def test_a_full_disk_is_one_line_and_the_run_resumes_exactly(work, references, case):
    spec, limit, culprit = _limit(case, references)
    ref, _ = references[spec]
    run = work / "runs" / case
    proc = _train_limited(work, spec, case, limit)

    assert proc.returncode == 2, (case, limit, proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("mgnn: error: "), proc.stderr
    assert culprit in lines[-1] and "File too large" in lines[-1], (case, lines[-1])

    if (run / "run.json").exists():  # written before the disk filled: it must not say "running"
        status = json.loads((run / "run.json").read_text())["status"]
        assert status == "failed", (case, status)
    leftovers = [p.name for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    metrics = (run / "metrics.jsonl").read_bytes() if (run / "metrics.jsonl").exists() else b""
    assert not metrics or metrics.endswith(b"\n")  # no partial line

    started = (run / "checkpoints" / "last.safetensors").is_file()
    assert started == (case in ("second-checkpoint", "later-checkpoint", "metrics-append")), case
    out = _forked.run(["resume", f"runs/{case}", "--plain"], cwd=work)  # with room again
    if not started:  # nothing to resume: resume says so in one line, and training again into the folder works
        assert out.code == 2 and "internal error" not in out.stderr, out.stderr
        assert "no checkpoint" in out.stderr or "not a run folder" in out.stderr, out.stderr
        out = _forked.run(["train", f"{spec}.yaml", "--plain", "--run-dir", f"runs/{case}"], cwd=work)
    assert out.code == 0, (case, out.stderr)
    ref_w, got_w = _forked.weights(ref), _forked.weights(run)
    assert ref_w.keys() == got_w.keys()
    for k in ref_w:
        assert np.array_equal(ref_w[k], got_w[k]), (case, k)
    assert _forked.records(run) == _forked.records(ref), case
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
