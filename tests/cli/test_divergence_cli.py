"""A run that diverges ends as a result, not a success: status diverged, exit 3, one line."""

from __future__ import annotations

import json

from . import _forked

SPEC = """\
model: {hidden_size: 8}
data: {name: adding, seq_len: 6, train_size: 64, val_size: 32}
optimizer: {name: adam, lr: 1000000.0}
train: {steps: 16, batch_size: 8, eval_every: 8, log_every: 4}
"""


def test_lr_1e6_ends_diverged_with_exit_3(tmp_path):
    (tmp_path / "wild.yaml").write_text(SPEC)
    out = _forked.run(["train", "wild.yaml", "--plain", "--run-dir", "runs/wild"], cwd=tmp_path)
    run = tmp_path / "runs" / "wild"
    status = json.loads((run / "run.json").read_text())["status"]
    assert out.code == 3, (out.code, out.stderr)
    assert status == "diverged"
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "diverged" in lines[0] and "optimizer.lr" in lines[0], lines
    end = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end" and end["status"] == "diverged"
    ev = _forked.run(["eval", "runs/wild", "--json"], cwd=tmp_path)
    result = json.loads(ev.stdout)  # strict JSON even when the loss is not finite
    assert ev.code == 0 and isinstance(result["loss"], float) and result["loss"] > 1e3


def test_an_ordinary_run_is_not_diverged(tmp_path):
    (tmp_path / "calm.yaml").write_text(SPEC.replace("lr: 1000000.0", "lr: 0.01"))
    out = _forked.run(["train", "calm.yaml", "--plain", "--run-dir", "runs/calm"], cwd=tmp_path)
    assert out.code == 0, out.stderr
    assert json.loads((tmp_path / "runs" / "calm" / "run.json").read_text())["status"] == "completed"
