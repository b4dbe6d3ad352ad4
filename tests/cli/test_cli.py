"""``mgnn`` driven as a user drives it: a subprocess per command, reading its exit status,
its output and the run folder it leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS_SOURCE = REPO / "microgradnn" / "nn" / "rnn.py"


def env(extra_path: str | None = None) -> dict[str, str]:
    e = dict(os.environ)
    paths = [str(REPO), str(REPO / "cli")] + ([extra_path] if extra_path else [])
    if e.get("PYTHONPATH"):
        paths.append(e["PYTHONPATH"])
    e.update(PYTHONPATH=os.pathsep.join(paths), NO_COLOR="1", COLUMNS="200", TERM="dumb")
    e.pop("MGNN_DEBUG", None)
    return e


def mgnn(*args: str, cwd: Path, extra_path: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgnn", *args], cwd=cwd, env=env(extra_path), capture_output=True,
                          text=True, timeout=timeout)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit, no traceback, one clear line on stderr that says what is wrong."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


SPEC = """\
# a tiny character LM, for tests
model: {{embedding_dim: 8, hidden_size: 12}}
data: {{name: charlm, paths: {corpus}, seq_len: 12, val_fraction: 0.2}}
optimizer: {{name: adam, lr: 0.01}}
train: {{steps: 6, batch_size: 4, eval_every: 3, log_every: 2, tbptt: true}}
output: {{dir: {runs}}}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    corpus = d / "corpus.txt"
    corpus.write_text(CORPUS_SOURCE.read_text(encoding="utf-8")[:1400], encoding="utf-8")
    (d / "tiny.yaml").write_text(SPEC.format(corpus=corpus, runs=d / "runs"))
    return d


@pytest.fixture(scope="module")
def trained(work):
    """One `mgnn train` run shared by the tests that use a finished run."""
    proc = mgnn("train", "tiny.yaml", "--plain", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work / "runs" / "tiny", proc


# ----------------------------------------------------------------------------- the happy path


def test_train_writes_a_run_and_shows_progress(trained):
    run, proc = trained
    assert "run summary" in proc.stdout and "completed" in proc.stdout
    assert "step 6/6" in proc.stdout and "val_loss" in proc.stdout
    for name in ("spec.yaml", "run.json", "vocab.json", "metrics.jsonl", "checkpoints/last.safetensors"):
        assert (run / name).is_file(), name
    events = [json.loads(line)["event"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert events.count("eval") == 2 and events[-1] == "end"


def test_resume_extends_a_run(trained, tmp_path):
    run, _ = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    proc = mgnn("resume", "train.steps=9", "--plain", str(copy), cwd=tmp_path)  # any order
    assert proc.returncode == 0, proc.stderr
    assert "resuming at step 6" in proc.stdout and "step 9/9" in proc.stdout
    last = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["event"] == "end" and last["step"] == 9
    # what would change the run itself is refused, with the reason
    bad = mgnn("resume", str(copy), "optimizer.lr=1", cwd=tmp_path)
    assert_user_error(bad, "optimizer.lr", "can't be changed when resuming")


def test_eval_generate_export(trained, work):
    run, _ = trained
    proc = mgnn("eval", str(run), "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["split"] == "val" and result["loss"] > 0 and result["perplexity"] > 1
    table = mgnn("eval", str(run), "--data", str(work / "corpus.txt"), cwd=work)
    assert table.returncode == 0 and "perplexity" in table.stdout and "split all" in table.stdout
    gen = [mgnn("generate", str(run), "--prompt", "def ", "--length", "25", "--seed", "1", "--top-k", "5",
                cwd=work) for _ in range(2)]
    assert gen[0].returncode == 0, gen[0].stderr
    assert gen[0].stdout.startswith("def ") and len(gen[0].stdout.rstrip("\n")) >= 4 + 25 - 5
    assert gen[0].stdout == gen[1].stdout  # --seed makes it repeatable
    exp = mgnn("export", str(run), "--out", str(work / "model.safetensors"), cwd=work)
    assert exp.returncode == 0 and (work / "model.safetensors").is_file()


def test_export_onnx(trained, work):
    """`mgnn export RUN --format onnx`: a model onnxruntime runs, equal to the run's own
    forward; a bad option is one line and exit 2."""
    import numpy as np
    import onnxruntime as ort

    import microgradnn as mg
    from microgradnn.train.inference import load_run

    run, _ = trained
    exp = mgnn("export", str(run), "--format", "onnx", "--out", str(work / "model.onnx"), cwd=work)
    assert exp.returncode == 0, exp.stderr
    assert "an ONNX model" in exp.stdout
    session = ort.InferenceSession(str(work / "model.onnx"), providers=["CPUExecutionProvider"])
    model = load_run(run).model
    tokens = np.random.default_rng(0).integers(0, model.embedding.num_embeddings, size=(2, 7))
    lengths = np.array([7, 3])
    got = session.run(None, {"input": tokens, "lengths": lengths})
    with mg.no_grad():
        out, _ = model(mg.tensor(tokens), lengths=mg.tensor(lengths))
    np.testing.assert_allclose(got[0], out.numpy(), atol=1e-5, rtol=0)
    assert_user_error(mgnn("export", str(run), "--format", "onnx", "--opset", "9", cwd=work), "opset_version", "14..21")


def test_check_prints_the_resolved_spec_and_model(work):
    proc = mgnn("check", "tiny.yaml", "train.batch_size=2", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "spec OK" in proc.stdout and "batch_size: 2" in proc.stdout
    assert "total parameters" in proc.stdout and "LSTM" in proc.stdout


def test_dry_run_and_print_config_in_any_order(work, tmp_path):
    proc = mgnn("train", "--dry-run", "2", "output.dir=" + str(tmp_path / "dry"), str(work / "tiny.yaml"), "--plain",
                "train.batch_size=2", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "dry run" in proc.stdout and not (tmp_path / "dry").exists()
    import yaml

    cfg = mgnn("train", "tiny.yaml", "--print-config", "optimizer.lr=0.05", "~train.tbptt", cwd=work)
    assert cfg.returncode == 0, cfg.stderr
    spec = yaml.safe_load(cfg.stdout)
    assert spec["optimizer"]["lr"] == 0.05 and spec["train"]["tbptt"] is False and spec["train"]["steps"] == 6


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(work, tmp_path):
    spec = tmp_path / "long.yaml"
    spec.write_text((work / "tiny.yaml").read_text() + f"\n# long run\n")
    proc = subprocess.Popen([sys.executable, "-m", "mgnn", "train", str(spec), "--plain", "train.steps=100000",
                             f"output.dir={tmp_path / 'runs'}", "train.eval_every=1000"],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    metrics = tmp_path / "runs" / "long" / "metrics.jsonl"
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "interrupted at step" in err and "mgnn resume" in err
    run = tmp_path / "runs" / "long"
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


# ----------------------------------------------------------------------------- user errors


BAD_SPECS = {
    "unknown_key": ("model: {hiden_size: 8}\ndata: {name: parity}\n", ["model.hiden_size", "hidden_size"]),
    "wrong_type": ("data: {name: parity}\ntrain: {batch_size: big}\n", ["train.batch_size", "big"]),
    "unknown_component": ("data: {name: parity}\noptimizer: {name: adamm}\n", ["adamm", "adam"]),
    "unknown_option": ("data: {name: parity, seq_lenn: 3}\n", ["seq_lenn", "seq_len"]),
    "bad_yaml": ("model: {hidden_size: 8\ndata: parity\n", ["spec.yaml"]),
    "python_tag": ("data: !!python/object:os.system {name: parity}\n", ["spec.yaml"]),
    "missing_data_file": ("data: {name: charlm, paths: /nonexistent/corpus.txt}\n", ["/nonexistent/corpus.txt"]),
    "missing_finetune_base": ("data: {name: parity}\nfinetune: {from: /nonexistent/run}\n", ["finetune.from"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_one_clear_line(case, tmp_path):
    text, fragments = BAD_SPECS[case]
    (tmp_path / "spec.yaml").write_text(text)
    proc = mgnn("train", "spec.yaml", "train.steps=1", cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "runs").exists()  # nothing started


BAD_COMMANDS = {
    "missing_spec_file": (["train", "nope.yaml"], ["nope.yaml", "not found"]),
    "override_without_equals": (["train", "ok.yaml", "train.batch_size"], ["train.batch_size", "'='"]),
    "override_bad_value": (["train", "ok.yaml", "optimizer.lr=-1"], ["optimizer.lr", "-1"]),
    "override_unknown_key": (["train", "ok.yaml", "train.bach_size=3"], ["train.bach_size", "batch_size"]),
    "missing_run_dir": (["eval", "no/such/run"], ["no/such/run", "does not exist"]),
    "not_a_run_dir": (["resume", "."], ["not a run folder"]),
    "unknown_command": (["trian", "ok.yaml"], ["trian", "train"]),
    "unknown_option": (["train", "ok.yaml", "--dry-rnu", "2"], ["--dry-rnu"]),
    "bad_option_value": (["train", "ok.yaml", "--dry-run", "zero"], ["--dry-run", "zero"]),
    "unknown_plugin": (["plugins", "check", "lstmm"], ["lstmm", "lstm"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COMMANDS))
def test_bad_command_line_is_one_clear_line(case, tmp_path):
    (tmp_path / "ok.yaml").write_text("data: {name: parity, train_size: 16, val_size: 4}\n")
    args, fragments = BAD_COMMANDS[case]
    assert_user_error(mgnn(*args, cwd=tmp_path), *fragments)


def test_debug_shows_the_traceback(tmp_path):
    proc = mgnn("train", "nope.yaml", "--debug", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_nan_loss_exits_nonzero_with_a_clear_message(tmp_path, work):
    spec = tmp_path / "nan.yaml"
    # an lr this large sends an SGD LSTM to inf/NaN within a few steps
    spec.write_text((work / "tiny.yaml").read_text().replace("{name: adam, lr: 0.01}", "{name: sgd, lr: 1.0e+30}"))
    proc = mgnn("train", str(spec), "--plain", f"output.dir={tmp_path / 'runs'}", "train.steps=50",
                "train.checkpoint_every=1", cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "non-finite" in proc.stderr and "last good checkpoint" in proc.stderr


# ----------------------------------------------------------------------------- plugins


def test_plugins_lists_components_by_kind(tmp_path):
    proc = mgnn("plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for fragment in ("cells", "optimizers", "datasets", "lstm", "charlm", "microgradnn", "no plugin failed"):
        assert fragment in proc.stdout, fragment


def test_plugins_check_passes_a_good_cell(tmp_path):
    proc = mgnn("plugins", "check", "gru", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout and "keeps the cell contract" in proc.stdout


BROKEN_CELL = '''
import microgradnn as mg

class LeakyCell(mg.nn.Module):
    """Breaks the contract: its new state is twice as wide as the state it got."""
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.lin = mg.nn.Linear(input_size + hidden_size, 2 * hidden_size)
    def step(self, x, h):
        out = self.lin(mg.cat([x, h], dim=1)).tanh()
        return out[:, :self.hidden_size], out
'''


def _fake_dist(site: Path, name: str, entry_points: str, module: str | None = None, code: str = "") -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    if module:
        (site / f"{module}.py").write_text(code)


def test_broken_plugins_are_reported_and_training_goes_on(tmp_path):
    site = tmp_path / "site"
    _fake_dist(site, "broken_plugin", "[microgradnn.cells]\nbroken = broken_plugin_mod:Cell\n",
               "broken_plugin_mod", "raise ImportError('this plugin is broken on purpose')\n")
    _fake_dist(site, "leaky_plugin", "[microgradnn.cells]\nleaky = leaky_plugin_mod:LeakyCell\n",
               "leaky_plugin_mod", BROKEN_CELL)
    listing = mgnn("plugins", "--kind", "cells", cwd=tmp_path, extra_path=str(site))
    assert listing.returncode == 0, listing.stderr
    assert "broken_plugin" in listing.stdout and "broken on purpose" in listing.stdout
    assert "1 plugin(s) failed" in listing.stdout and "leaky" in listing.stdout
    # the built-ins still train
    (tmp_path / "ok.yaml").write_text("data: {name: parity, seq_len: 6, train_size: 16, val_size: 4}\n"
                                      "model: {hidden_size: 6, embedding_dim: 4}\ntrain: {steps: 2, batch_size: 8}\n")
    proc = mgnn("train", "ok.yaml", "--plain", cwd=tmp_path, extra_path=str(site))
    assert proc.returncode == 0, proc.stderr
    # the contract check names the broken rule
    check = mgnn("plugins", "check", "leaky", cwd=tmp_path, extra_path=str(site))
    flat = " ".join(check.stdout.split())  # the table may wrap a long detail
    assert check.returncode == 1 and "FAIL" in flat and "the new state has shapes" in flat
    failed_import = mgnn("plugins", "check", "broken", cwd=tmp_path, extra_path=str(site))
    assert failed_import.returncode == 1 and "broken on purpose" in " ".join(failed_import.stdout.split())


# ----------------------------------------------------------------------------- tutorial


def test_tutorial_lists_and_renders_chapters(tmp_path):
    tut = tmp_path / "tutorials"
    tut.mkdir()
    (tut / "01-first.md").write_text("# 1. The first chapter\n\nSome *text*.\n\n```python\nx = 1 + 1\n```\n")
    (tut / "02-second.md").write_text("# 2. The second chapter\n\nMore.\n")
    listing = mgnn("tutorial", "--dir", str(tut), cwd=tmp_path)
    assert listing.returncode == 0 and "The first chapter" in listing.stdout and "The second chapter" in listing.stdout
    page = mgnn("tutorial", "1", "--dir", str(tut), cwd=tmp_path)
    assert page.returncode == 0 and "The first chapter" in page.stdout and "x = 1 + 1" in page.stdout
    assert "mgnn tutorial 2" in page.stdout
    assert_user_error(mgnn("tutorial", "9", "--dir", str(tut), cwd=tmp_path), "no chapter 9")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(mgnn("tutorial", "--dir", str(empty), cwd=tmp_path), "not a folder of numbered chapters")


def test_tutorial_finds_the_projects_chapters(tmp_path):
    assert any((REPO / "tutorials").glob("0*.md")), "the project's tutorials/ has no chapters"
    proc = mgnn("tutorial", cwd=tmp_path)
    assert proc.returncode == 0 and "01-" in proc.stdout


def test_finetune_spec_shows_the_strategy_and_exports(trained, work, tmp_path):
    base, _ = trained
    other = tmp_path / "domain.txt"
    other.write_text(CORPUS_SOURCE.read_text(encoding="utf-8")[9000:10200], encoding="utf-8")
    (tmp_path / "ft.yaml").write_text(textwrap.dedent(f"""\
        data: {{name: charlm, paths: {other}, seq_len: 12, val_fraction: 0.2}}
        train: {{steps: 4, batch_size: 4, eval_every: 2}}
        finetune:
          from: {base}
          strategy: {{name: lora, r: 2, alpha: 4, targets: ["rnn.weight_*"]}}
        output: {{dir: {tmp_path / 'runs'}}}
        """))
    proc = mgnn("train", "ft.yaml", "--plain", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    flat = " ".join(proc.stdout.split())
    assert "fine-tune lora from" in flat and "parameters train (" in flat and "% )" not in flat
    run = tmp_path / "runs" / "ft"
    assert (run / "adapter.safetensors").is_file()
    exp = mgnn("export", str(run), cwd=tmp_path)
    assert exp.returncode == 0, exp.stderr
    assert (run / "export.safetensors").is_file() and "standalone" in exp.stdout
    ev = mgnn("eval", str(run), "--json", cwd=tmp_path)
    assert ev.returncode == 0 and json.loads(ev.stdout)["loss"] > 0
