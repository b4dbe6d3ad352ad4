"""Every file of a run folder, damaged every way: truncated, zero-filled, a bit flipped in its
head and in its tail. ``mgnn eval --json`` and ``mgnn resume`` must each end in one of:

* a clean error: exit 2, one line on stderr naming the damaged file;
* a verified fallback: exit 0, stderr saying which file was refused and what was used
  instead (and a resumed run still equals an uninterrupted one);
* an identical result: exit 0, the same output / the same final run as without the damage.

Never a silently different result, never "internal error"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from . import _forked


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return _forked.make_work(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def reference(work):
    out = _forked.run(["train", "tiny.yaml", "--plain", "--run-dir", "runs/reference"], cwd=work)
    assert out.code == 0, out.stderr
    return work / "runs" / "reference"


@pytest.fixture(scope="module")
def partial(work):
    """A run stopped by kill -9 half-way through its 6th checkpoint write (step 15: last and
    two best checkpoints exist), and its clean eval output."""
    out = _forked.run(["train", "tiny.yaml", "--plain", "--run-dir", "runs/partial"], cwd=work, in_write=6)
    assert out.killed
    run = work / "runs" / "partial"
    clean = _forked.run(["eval", "runs/partial", "--json"], cwd=work)
    assert clean.code == 0, clean.stderr
    return run, _result(clean.stdout)


def _result(stdout: str) -> dict:
    result = json.loads(stdout)
    result["checkpoint"] = Path(result["checkpoint"]).name  # (the case's own folder)
    return result


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and not p.name.startswith("."))


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "zeros":
        data = bytearray(len(data))
    elif how == "flip-head":
        data[min(10, len(data) - 1)] ^= 0x04
    elif how == "flip-tail":
        data[max(0, len(data) - 6)] ^= 0x04
    path.write_bytes(bytes(data))


def _judge(out: _forked.Outcome, damaged: str) -> str:
    assert not out.killed
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    name = Path(damaged).name
    if out.code == 2:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and name in lines[0], (damaged, out.stderr)
        return "error"
    assert out.code == 0, (damaged, out.code, out.stderr)
    if name in out.stderr and "instead" in out.stderr:
        return "fallback"
    return "same"


HOW = ["truncate", "zeros", "flip-head", "flip-tail"]
# eval (fast) runs on every case; resume (seconds each) on one per file: a bit flipped in a
# checkpoint's tensor data, a text file cut in half


def test_every_damaged_file_gives_an_error_a_fallback_or_the_same_result(work, reference, partial):
    run, clean_eval = partial
    files = _files(run)
    assert {"spec.yaml", "run.json", "vocab.json", "metrics.jsonl", "checkpoints/index.json",
            "checkpoints/last.safetensors"} <= set(files), files
    assert any(f.startswith("checkpoints/best-") for f in files), files
    seen = {}
    for i, damaged in enumerate(files):
        for how in HOW:
            case = work / "runs" / f"case-{i}-{how}"
            shutil.copytree(run, case)
            _damage(case / damaged, how)
            ev = _forked.run(["eval", str(case.relative_to(work)), "--json"], cwd=work)
            verdict = _judge(ev, damaged)
            if verdict == "same":
                assert _result(ev.stdout) == clean_eval, (damaged, how, ev.stdout)
            if how != ("flip-tail" if damaged.endswith(".safetensors") else "truncate"):
                seen[(damaged, how)] = (verdict, None)
                shutil.rmtree(case)
                continue
            res = _forked.run(["resume", str(case.relative_to(work)), "--plain"], cwd=work)
            rverdict = _judge(res, damaged)
            if rverdict in ("same", "fallback"):  # the run went on: it must be the same run
                assert _forked.same_weights(_forked.weights(case), _forked.weights(reference)), (damaged, how)
                assert _forked.records(case) == _forked.records(reference), (damaged, how)
            seen[(damaged, how)] = (verdict, rverdict)
            shutil.rmtree(case)
    # a damaged checkpoint is never used silently: whoever reads it says so
    for (damaged, how), (verdict, rverdict) in seen.items():
        if damaged == "checkpoints/last.safetensors":
            assert rverdict != "same", (damaged, how, rverdict)  # resume reads last
        if damaged.startswith("checkpoints/best-") and damaged == max(f for f in files if "best-" in f):
            pass  # (which best is "best" is the index's business; eval reads that one)
