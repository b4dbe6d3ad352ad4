"""A plugin can't take the house down: SystemExit / KeyboardInterrupt at its import is
isolated and reported, and a plugin never shadows a built-in name (the built-in wins, the
plugin stays reachable as ``dist:name``, ``mgnn plugins`` shows the clash).

The plugin is tests/fixtures/misbehaving_plugin, found through PYTHONPATH (its dist-info
folder makes importlib.metadata see it as installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import mgnn

PLUGIN = Path(__file__).resolve().parents[1] / "fixtures" / "misbehaving_plugin"

SPEC = """\
model: {{cell: {cell}, hidden_size: 8}}
data: {{name: adding, seq_len: 6, train_size: 64, val_size: 16}}
loss: mse
optimizer: {{name: adam, lr: 0.01}}
train: {{steps: 4, batch_size: 8, eval_every: 4, log_every: 1}}
output: {{dir: {runs}}}
"""


def _mg(*args: str, cwd: Path):
    return mgnn(*args, cwd=cwd, extra_path=str(PLUGIN))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugins")
    (d / "builtin.yaml").write_text(SPEC.format(cell="lstm", runs=d / "runs"))
    (d / "qualified.yaml").write_text(SPEC.format(cell="'mgnn-misbehaving:lstm'", runs=d / "runs"))
    (d / "exits.yaml").write_text(SPEC.format(cell="exits_at_import", runs=d / "runs"))
    return d


def test_plugins_lists_everything_and_reports_the_broken_imports(work):
    proc = _mg("plugins", cwd=work)
    out = proc.stdout + proc.stderr
    assert out.strip(), "mgnn plugins printed nothing"  # SystemExit(0) at import silenced it before
    assert "Traceback" not in out and "internal error" not in out
    for name in ("exits_at_import", "interrupts_at_import"):
        assert name in out
    assert "SystemExit" in out and "KeyboardInterrupt" in out and "mgnn-misbehaving" in out
    assert "lstm" in out and "indrnn" in out  # the rest keep working
    # each clash with a built-in is shown, with the spelling that reaches the plugin
    for name in ("adam", "lstm", "mse", "adding"):
        assert f"mgnn-misbehaving:{name}" in out, name


def test_built_in_names_win_over_a_plugin_claiming_them(work):
    proc = _mg("train", "builtin.yaml", "--plain", "--run-dir", "runs/builtin", cwd=work)
    assert proc.returncode == 0, proc.stderr
    run = work / "runs" / "builtin"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("event") == "train" and "loss" in r]
    assert losses and all(loss < 10 for loss in losses)  # not the plugin's mse x1000 or lr=1000
    import microgradnn as mg

    state = mg.load(run / "checkpoints" / "last.safetensors")
    assert any(k.startswith("rnn.weight_ih_l0") for k in state["model"])  # the fused built-in LSTM
    assert state["model"]["rnn.weight_ih_l0"].shape[0] == 4 * 8  # four gates: an LSTM, not an RNN
    # the run records who provided each component
    components = json.loads((run / "run.json").read_text())["components"]
    assert components["cells"]["lstm"]["dist"] == "microgradnn"
    assert components["optimizers"]["adam"]["dist"] == "microgradnn"


def test_a_plugin_shadowed_by_a_built_in_is_reachable_as_dist_name(work):
    proc = _mg("check", "qualified.yaml", cwd=work)
    assert proc.returncode == 0, proc.stderr
    # the plugin's "lstm" is a plain RNN cell: 8·(2+8) + 2·8 weights and biases, plus a 9-weight head
    assert "total parameters: 105 " in proc.stdout, proc.stdout
    builtin = _mg("check", "builtin.yaml", cwd=work)
    assert "total parameters: 393 " in builtin.stdout, builtin.stdout  # the built-in LSTM: 4·8·(2+8) + 2·4·8 + 9


def test_a_spec_naming_a_plugin_that_exits_at_import_gets_one_line(work):
    proc = _mg("train", "exits.yaml", "--plain", "--run-dir", "runs/exits", cwd=work)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mgnn: error")]
    assert len(errors) == 1, proc.stderr  # (plus the registry's one-time warning about the plugin)
    for fragment in ("exits_at_import", "mgnn-misbehaving", "SystemExit"):
        assert fragment in errors[0], errors[0]
