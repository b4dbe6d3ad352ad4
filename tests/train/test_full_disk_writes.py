"""The run folder's whole-file writes on a full disk (unit level; tests/cli/test_disk_full.py
drives the same through ``mgnn train`` under RLIMIT_FSIZE): a refused write is one line
naming the file, and a final run.json status is still written, over the old file's bytes."""

from __future__ import annotations

import errno
import json

import pytest

from microgradnn.train import runs
from microgradnn.train.metrics_log import RunFileError


def _refuse(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture()
def folder(tmp_path):
    f = runs.RunFolder(tmp_path / "run")
    f.path.mkdir()
    f.write_status({"status": "running", "step": 0, "model_info": {"task": "lm", "output_size": 61},
                    "data": {"dataset": "charlm", "source": "corpus.txt"}})
    return f


@pytest.mark.parametrize("status", ["failed", "interrupted"])  # "interrupted" is longer than "running"
def test_a_final_status_is_written_in_place_when_no_new_file_fits(folder, monkeypatch, status):
    path = folder.path / "run.json"
    size = path.stat().st_size
    monkeypatch.setattr(runs, "write_json", _refuse)
    folder.write_status({"status": status, "step": 1234, "reason": "RunFileError: " + "x" * 400,
                         "model_info": {"task": "lm", "output_size": 61},
                         "data": {"dataset": "charlm", "source": "corpus.txt"}})
    info = json.loads(path.read_text())
    assert path.stat().st_size == size  # no byte more than the disk already gave it
    assert info["status"] == status and info["step"] == 1234 and info["model_info"]["task"] == "lm"
    assert info["reason"].startswith("RunFileError: xx")  # shortened to fit, not dropped


def test_a_refused_write_is_one_line_naming_the_file(folder, monkeypatch):
    monkeypatch.setattr(runs, "write_json", _refuse)
    with pytest.raises(RunFileError, match=r"can't write .*run\.json: No space left on device"):
        folder.write_status({"status": "running", "step": 0})  # "running" is never forced in place
    monkeypatch.setattr(runs, "dump_spec", _refuse)
    with pytest.raises(RunFileError, match=r"can't write .*spec\.yaml: No space left on device") as exc:
        folder.write_spec({"model": {}})
    assert "\n" not in str(exc.value)
    (folder.path / "checkpoints").mkdir()
    with pytest.raises(RunFileError, match=r"can't write .*index\.json"):
        folder.write_index({"last": None, "best": []})
