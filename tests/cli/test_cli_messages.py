"""`mgnn` as a new user meets it: the findings of issue 10 about messages and output."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

from .test_cli import CORPUS_SOURCE, assert_user_error, env, mgnn

SPEC = """\
model: {{embedding_dim: 8, hidden_size: 12}}
data: {{name: charlm, paths: {corpus}, seq_len: 12, val_fraction: 0.2}}
train: {{steps: 4, batch_size: 4, eval_every: 2, log_every: 2}}
output: {{dir: {runs}}}
"""


def _spec(tmp_path) -> str:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS_SOURCE.read_text(encoding="utf-8")[:1400], encoding="utf-8")
    (tmp_path / "tiny.yaml").write_text(SPEC.format(corpus=corpus, runs=tmp_path / "runs"))
    return "tiny.yaml"


def test_check_into_a_closed_pipe_ends_quietly(tmp_path):
    """Finding: `mgnn check spec.yaml | head -1` ended in `internal error: BrokenPipeError`."""
    from .test_cli import REPO

    spec = REPO / "examples" / "char_lstm_stdlib.yaml"  # its data takes a moment: head is gone by then
    proc = subprocess.Popen([sys.executable, "-m", "mgnn", "check", str(spec)], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"spec OK")
    proc.stdout.close()  # what `head -1` does once it has its line
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert "internal error" not in err and "Traceback" not in err and "BrokenPipe" not in err, err


def test_tutorial_pager_shows_no_raw_escape_codes(tmp_path):
    """Finding: `mgnn tutorial 3 --pager` showed raw escape codes."""
    e = env()
    e.update(PAGER="cat", TERM="xterm-256color", FORCE_COLOR="1")  # colours on: a pager must not show codes
    e.pop("NO_COLOR", None)
    e.pop("LESS", None)
    proc = subprocess.run([sys.executable, "-m", "mgnn", "tutorial", "3", "--pager"], cwd=tmp_path, env=e,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout and "Tensor" in proc.stdout


def test_train_without_arguments_asks_for_the_spec(tmp_path):
    """Finding: `mgnn train` with no arguments said overrides were required."""
    line = assert_user_error(mgnn("train", cwd=tmp_path), "give the spec file")
    assert "overrides" not in line.split("give the spec file")[0]


def test_a_key_in_the_wrong_section_suggests_the_right_one(tmp_path):
    """Finding: `train.lr=abc` did not suggest `optimizer.lr`."""
    spec = _spec(tmp_path)
    assert_user_error(mgnn("check", spec, "train.lr=abc", "--no-data", cwd=tmp_path), "train.lr", "optimizer.lr")
    assert_user_error(mgnn("check", spec, "model.batch_size=3", "--no-data", cwd=tmp_path), "train.batch_size")


def test_an_unknown_cell_a_known_plugin_provides_names_the_package(tmp_path):
    """Finding: an unknown cell that a known plugin provides suggested `rnn`."""
    from microgradnn import registry

    assert "mgnn-indrnn" in registry.known_plugin_hint("cells", "indrnn")
    assert registry.known_plugin_hint("cells", "nosuchcell") == ""


def test_resume_with_nothing_to_do_leaves_the_run_alone(tmp_path):
    """Finding: `mgnn resume RUN train.steps=10` on a finished longer run did nothing but
    rewrote spec.yaml (epochs: null, steps: 10), so re-running that spec changed."""
    spec = _spec(tmp_path)
    assert mgnn("train", spec, "--plain", cwd=tmp_path).returncode == 0
    run = tmp_path / "runs" / "tiny"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file() and p.name != ".lock"}  # (.lock: the writer lock's holder pid)
    proc = mgnn("resume", str(run), "train.steps=3", cwd=tmp_path)
    assert proc.returncode == 0 and "already ran all 4 steps" in proc.stdout, proc.stdout + proc.stderr
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before


def _summary_text(trainer, summary) -> str:
    import io

    from rich.console import Console

    from mgnn.display import summary_table

    buf = io.StringIO()
    Console(file=buf, width=120, no_color=True).print(summary_table(trainer, summary))
    return buf.getvalue()


class _FakeTrainer:
    task = "lm"

    def __init__(self, epoch, batch_in_epoch):
        self.epoch, self.batch_in_epoch = epoch, batch_in_epoch


def test_progress_and_summary_agree_on_the_epoch():
    """Finding: the progress bar said `epoch 7` where the summary said `epoch 8`: the
    progress counted from 0 during an epoch, the summary finished epochs."""
    from mgnn.display import epoch_of

    summary = {"status": "completed", "step": 80, "total_steps": 80, "elapsed": 1.0, "epoch": 8, "best": []}
    at_boundary = _FakeTrainer(epoch=8, batch_in_epoch=0)  # the last step finished epoch 8
    assert epoch_of(at_boundary) == 8 and "(epoch 8)" in _summary_text(at_boundary, summary)
    mid = _FakeTrainer(epoch=7, batch_in_epoch=3)  # three steps into the 8th epoch
    assert epoch_of(mid) == 8 and "(epoch 8)" in _summary_text(mid, dict(summary, epoch=7))


def test_a_stale_train_loss_is_marked_in_the_summary():
    """Finding: the Ctrl-C summary showed the last evaluation's train_loss, from an
    earlier step, as if it were current."""
    summary = {"status": "interrupted", "step": 7, "total_steps": 20, "elapsed": 1.0, "epoch": 0, "best": [],
               "last_eval": {"step": 4, "train_loss": 2.5, "val_loss": 2.6}}
    text = _summary_text(_FakeTrainer(0, 7), summary)
    assert "train_loss (at step 4)" in text and "val_loss (at step 4)" in text
    fresh = dict(summary, last_eval={"step": 7, "train_loss": 2.5})
    assert "(at step" not in _summary_text(_FakeTrainer(0, 7), fresh)


def test_tables_keep_paths_whole_at_80_columns(tmp_path):
    """Finding: at 80 columns tables cut the paths a user needs to copy."""
    e = env()
    e["COLUMNS"] = "80"
    proc = subprocess.run([sys.executable, "-m", "mgnn", "plugins", "--kind", "metrics"], cwd=tmp_path, env=e,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "microgradnn.metrics:Accuracy" in proc.stdout.replace("\n", "").replace(" ", "").replace("│", "") \
        or "microgradnn.metrics:Accuracy" in proc.stdout
    assert "…" not in proc.stdout


def test_plugins_check_any_kind_from_the_command_line(tmp_path):
    proc = mgnn("plugins", "check", "adam", cwd=tmp_path)
    assert proc.returncode == 0 and "keeps the optimizer contract" in proc.stdout, proc.stdout + proc.stderr
    assert_user_error(mgnn("plugins", "check", "adma", cwd=tmp_path), "adam")


def test_tutorial_code_blocks_stay_whole_at_80_columns(tmp_path):
    """Finding: at 80 columns tutorial code blocks wrapped (a copied line was broken)."""
    from .test_cli import REPO

    chapter = (REPO / "tutorials" / "08-plugin.md").read_text(encoding="utf-8")
    code = "\n".join(re.findall(r"```python\n(.*?)```", chapter, re.S))
    long_lines = [line for line in code.splitlines() if len(line) > 80]
    assert long_lines  # the chapter has lines longer than the terminal
    e = env()
    e["COLUMNS"] = "80"
    proc = subprocess.run([sys.executable, "-m", "mgnn", "tutorial", "8"], cwd=tmp_path, env=e, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = [line.rstrip() for line in proc.stdout.splitlines()]
    for line in long_lines:
        assert line.rstrip() in shown, line
