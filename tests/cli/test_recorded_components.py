"""``mgnn resume/eval/generate`` resolve a run's components from the distributions its
run.json recorded: a clashing plugin installed since changes nothing, and a recorded
plugin removed since is one line naming run.json, the component, the distribution and
what to install, exit 2.

The plugins are fake installed distributions on PYTHONPATH (tests/train/_util.py's
pin_plugins: mgnn-pin-a provides the optimizer ``pinopt``; mgnn-impostor claims it too,
with an object that refuses to be used)."""

from __future__ import annotations

import json
import os

import pytest

from tests.train._util import pin_plugins

from .test_cli import CORPUS_SOURCE, assert_user_error, mgnn

SPEC = """\
model: {{embedding_dim: 8, hidden_size: 12}}
data: {{name: charlm, paths: {corpus}, seq_len: 12, val_fraction: 0.2}}
optimizer: {{name: pinopt, lr: 0.1}}
train: {{steps: 4, batch_size: 4, eval_every: 2, log_every: 2, tbptt: true}}
output: {{dir: {runs}}}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("recorded")
    corpus = d / "corpus.txt"
    corpus.write_text(CORPUS_SOURCE.read_text(encoding="utf-8")[:1400], encoding="utf-8")
    (d / "pinned.yaml").write_text(SPEC.format(corpus=corpus, runs=d / "runs"))
    a, impostor = pin_plugins(d / "site")
    installed = {"a": str(a), "both": os.pathsep.join([str(impostor), str(a)]), "impostor": str(impostor)}
    proc = mgnn("train", "pinned.yaml", "--plain", "--run-dir", "runs/pinned", cwd=d, extra_path=installed["a"])
    assert proc.returncode == 0, proc.stderr
    record = json.loads((d / "runs" / "pinned" / "run.json").read_text())["components"]
    assert record["optimizers"]["pinopt"] == {"dist": "mgnn-pin-a", "version": "0.1"}
    return d, installed


def test_a_clashing_plugin_installed_since_changes_nothing(work):
    d, installed = work
    proc = mgnn("eval", "runs/pinned", "--json", cwd=d, extra_path=installed["both"])
    assert proc.returncode == 0, proc.stderr  # (the bare name "pinopt" is ambiguous now)
    assert json.loads(proc.stdout)["loss"] > 0
    proc = mgnn("resume", "runs/pinned", "train.steps=6", "--plain", cwd=d, extra_path=installed["both"])
    assert proc.returncode == 0, proc.stderr
    assert "impostor" not in proc.stderr and "internal error" not in proc.stderr


@pytest.mark.parametrize("command", [["eval", "runs/pinned"], ["generate", "runs/pinned", "--length", "3"],
                                     ["resume", "runs/pinned", "train.steps=8", "--plain"]])
def test_a_recorded_plugin_removed_since_is_one_line_exit_2(work, command):
    d, installed = work
    proc = mgnn(*command, cwd=d, extra_path=installed["impostor"])
    line = assert_user_error(proc, "run.json", "components.optimizers.pinopt", "'mgnn-pin-a' 0.1", "is not installed",
                             "pip install 'mgnn-pin-a==0.1'")
    assert line.startswith("mgnn: error: "), line
