"""metrics.jsonl: restored exactly to a checkpoint's view, damage refused naming the file,
end records kept, all-or-nothing appends on a full disk, valid JSON for NaN."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from microgradnn.train.metrics_log import MetricsFile, RunFileError, json_safe, read_records


def _log(tmp_path, n=6):
    log = MetricsFile(tmp_path / "metrics.jsonl")
    log.start()
    states = []
    for step in range(1, n + 1):
        log.append({"event": "train", "step": step, "loss": 1.0 / step})
        states.append(log.state())
    return log, states


def test_restore_keeps_exactly_the_checkpoints_records_and_end_records(tmp_path):
    log, states = _log(tmp_path)
    log.append({"event": "end", "step": 6, "status": "interrupted"})
    path = log.path
    full = path.read_text()
    with open(path, "a") as f:
        f.write('{"event": "train", "st')  # an append cut off by kill -9
    again = MetricsFile(path)
    again.restore(states[2], step=3)
    lines = path.read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 6]
    assert json.loads(lines[-1])["event"] == "end"
    # the restored log goes on as if it had been written in one go
    again.append({"event": "train", "step": 4, "loss": 0.25})
    assert again.state()["records"] == 5
    assert full.splitlines()[:3] == lines[:3]


@pytest.mark.parametrize("damage", ["cut", "edit", "garbage"])
def test_damage_before_the_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    log, states = _log(tmp_path)
    text = log.path.read_text()
    if damage == "cut":
        log.path.write_text("".join(text.splitlines(keepends=True)[:2]))
    elif damage == "edit":
        log.path.write_text(text.replace('"loss": 0.5', '"loss": 0.6'))
    else:
        log.path.write_bytes(b"\0" * len(text))
    with pytest.raises(RunFileError, match="metrics.jsonl") as info:
        MetricsFile(log.path).restore(states[3], step=4)
    assert "\n" not in str(info.value)


def test_read_records_names_the_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "train", "step": 1}\n[1, 2]\n')
    with pytest.raises(RunFileError, match=r"metrics.jsonl line 2 is not a metrics record"):
        read_records(path)
    path.write_text('{"event": "train", "step": "x"}\n')
    with pytest.raises(RunFileError, match=r"line 1: \"step\" must be an integer"):
        read_records(path)
    path.write_text('{"event": "train", "step": 1}\n{"event": "tr')
    assert read_records(path) == [{"event": "train", "step": 1}]


def test_old_checkpoints_without_a_log_state_restore_by_step(tmp_path):
    log, _ = _log(tmp_path)
    log.append({"event": "end", "step": 6})
    MetricsFile(log.path).restore(None, step=4)
    assert [json.loads(x)["step"] for x in log.path.read_text().splitlines()] == [1, 2, 3, 4]


def test_non_finite_values_are_null_with_a_flag(tmp_path):
    log = MetricsFile(tmp_path / "m.jsonl")
    log.start()
    log.append({"event": "train", "step": 1, "loss": float("nan"), "grad_norm": float("inf"), "lr": 0.1})
    rec = json.loads(log.path.read_text())  # strict JSON: no NaN tokens
    assert rec["loss"] is None and rec["grad_norm"] is None and rec["lr"] == 0.1
    assert rec["nonfinite"] == {"loss": "nan", "grad_norm": "inf"}
    assert json_safe({"a": 1.0}) == {"a": 1.0}


def test_a_full_disk_leaves_no_partial_line(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: writes past it fail (EFBIG) part-way."""
    path = tmp_path / "metrics.jsonl"
    code = textwrap.dedent(f"""
        import resource, signal
        from microgradnn.train.metrics_log import MetricsFile, RunFileError
        log = MetricsFile({str(path)!r})
        log.start()
        for step in range(1, 4):
            log.append({{"event": "train", "step": step, "loss": 0.5}})
        size = log.path.stat().st_size
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, resource.RLIM_INFINITY))
        try:
            log.append({{"event": "train", "step": 4, "loss": 0.5, "note": "x" * 200}})
        except RunFileError as exc:
            print("REFUSED", exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("REFUSED can't append to") and "resumed" in result.stdout, result.stdout
    assert [r["step"] for r in read_records(path)] == [1, 2, 3]
    assert path.read_text().endswith("\n")
