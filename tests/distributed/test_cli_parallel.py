"""``mgnn train --nproc 2``, ``mpiexec -n 2 mgnn train``, a rank that fails or is killed,
ranks that disagree on the spec, and ``--nproc`` without the mpi extra."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import microgradnn.distributed as dist

from .conftest import ROOT, mpi_env, mpi_missing

SPEC = """\
data: {name: charlm, paths: corpus.txt, seq_len: 10, val_fraction: 0.2}
model: {cell: lstm, hidden_size: 12, embedding_dim: 8, num_layers: 2, dropout: 0.2}
train: {steps: STEPS, batch_size: 5, eval_every: 10, checkpoint_every: 5, seed: 1, tbptt: true}
output: {dir: runs, name: cli}
"""

# Injected into every rank through sitecustomize: rank 1 raises at step 7.
FAIL_ON_RANK_1 = """\
import os
if os.environ.get("PMI_RANK") == "1":
    from microgradnn.train import trainer as _t
    _step = _t.Trainer.train_step
    def train_step(self, batch):
        if self.step == 7:
            raise ValueError("injected failure at step 7")
        return _step(self, batch)
    _t.Trainer.train_step = train_step
"""


@pytest.fixture()
def folder(tmp_path):
    reason = mpi_missing()
    if reason:
        pytest.skip(reason)
    (tmp_path / "corpus.txt").write_text((ROOT / "microgradnn" / "nn" / "rnn.py").read_text()[:3000])
    return tmp_path


def _spec(folder: Path, steps: int) -> Path:
    path = folder / "spec.yaml"
    path.write_text(SPEC.replace("STEPS", str(steps)))
    return path


def _mgnn(*args: str, cwd: Path, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgnn", *args], capture_output=True, text=True, cwd=cwd,
                          env=env or mpi_env(), timeout=timeout)


def _losses(run: Path) -> list:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_loss"]) for r in recs if r["event"] == "eval"]


def test_nproc_and_mpiexec_give_the_single_process_run(folder):
    _spec(folder, 20)
    alone = _mgnn("train", "spec.yaml", "--plain", "output.name=alone", cwd=folder)
    assert alone.returncode == 0, alone.stderr
    started = _mgnn("train", "spec.yaml", "--plain", "--nproc", "2", "output.name=nproc", cwd=folder)
    assert started.returncode == 0, started.stderr
    direct = subprocess.run([dist.find_mpiexec(), "-n", "2", sys.executable, "-m", "mgnn", "train", "spec.yaml",
                             "--plain", "output.name=direct"], capture_output=True, text=True, cwd=folder,
                            env=mpi_env(), timeout=240)
    assert direct.returncode == 0, direct.stderr
    reference = _losses(folder / "runs" / "alone")
    assert len(reference) == 2
    for name in ("nproc", "direct"):
        got = _losses(folder / "runs" / name)
        assert [s for s, _ in got] == [s for s, _ in reference]
        assert [v for _, v in got] == pytest.approx([v for _, v in reference], rel=1e-4)
        assert json.loads((folder / "runs" / name / "run.json").read_text())["processes"] == 2
    # rank 0 alone shows the display: one run summary, not two
    assert started.stdout.count("run summary") == 1 and direct.stdout.count("run summary") == 1


def test_a_rank_that_raises_stops_every_rank_with_one_line(folder):
    _spec(folder, 400)
    inject = folder / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(FAIL_ON_RANK_1)
    env = mpi_env()
    env["PYTHONPATH"] = os.pathsep.join([str(inject), env["PYTHONPATH"]])
    t0 = time.monotonic()
    done = _mgnn("train", "spec.yaml", "--plain", "--nproc", "2", cwd=folder, env=env, timeout=120)
    took = time.monotonic() - t0
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("mgnn:")]
    assert any("rank 1 of 2" in line and "injected failure at step 7" in line for line in lines), done.stderr
    assert "Traceback" not in done.stderr
    assert took < 60
    ckpt = folder / "runs" / "cli" / "checkpoints" / "last.safetensors"
    assert ckpt.is_file()  # step 5's checkpoint, intact: the run resumes
    resumed = _mgnn("resume", "runs/cli", "train.steps=12", "--plain", "--nproc", "2", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((folder / "runs" / "cli" / "run.json").read_text())["status"] == "completed"


def _train_on_two_until_step_10(folder: Path, steps: int) -> tuple[subprocess.Popen, Path, Path]:
    """Start ``mgnn train --nproc 2`` (each rank leaving its pid in ``pids/``) and return
    once both ranks are up and a checkpoint of step 10 or later exists: (process, pids, index)."""
    _spec(folder, steps)
    pids = folder / "pids"
    pids.mkdir()
    env = dict(mpi_env(), MGNN_RANK_PIDS=str(pids))
    proc = subprocess.Popen([sys.executable, "-m", "mgnn", "train", "spec.yaml", "--plain", "--nproc", "2"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    index = folder / "runs" / "cli" / "checkpoints" / "index.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((pids / "0.pid").is_file() and (pids / "1.pid").is_file()
                                               and index.is_file()
                                               and json.loads(index.read_text())["last"]["step"] >= 10):
        time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
    return proc, pids, index


def test_a_rank_killed_mid_run_stops_the_others_and_the_run_resumes(folder):
    proc, pids, index = _train_on_two_until_step_10(folder, 3000)
    victim = int((pids / "1.pid").read_text())
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the other rank did not stop within 60 s of rank 1's kill -9")
    assert time.monotonic() - killed < 30
    assert proc.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("mgnn:")]
    assert len(ours) == 1 and f"rank 1 of 2 (pid {victim})" in ours[0] and "signal 9" in ours[0], err
    assert "BAD TERMINATION" not in err and "Traceback" not in err and "error stack" not in err, err
    step = json.loads(index.read_text())["last"]["step"]
    assert step >= 10
    resumed = _mgnn("resume", "runs/cli", f"train.steps={step + 5}", "--plain", cwd=folder)  # on one process
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((folder / "runs" / "cli" / "run.json").read_text())["step"] == step + 5


def test_ranks_with_different_specs_are_refused(folder):
    _spec(folder, 10)
    cmd = [dist.find_mpiexec(), "-n", "1", sys.executable, "-m", "mgnn", "train", "spec.yaml", "--plain", ":",
           "-n", "1", sys.executable, "-m", "mgnn", "train", "spec.yaml", "--plain", "train.seed=2"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=folder, env=mpi_env(), timeout=120)
    # Every rank finds the mismatch in what all gathered and ends by itself: no MPI_Abort,
    # whose teardown made mpiexec exit 9 instead of 2 on a loaded machine (3 runs in 3).
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("mgnn:")]
    assert len(lines) == 1 and "rank 1 has another resolved spec than rank 0" in lines[0], done.stderr
    assert "MPI_Abort" not in done.stderr, done.stderr
    assert not (folder / "runs" / "cli" / "checkpoints" / "last.safetensors").exists()


def test_ctrl_c_under_nproc_saves_a_checkpoint_and_every_rank_stops(folder):
    proc, pids, _ = _train_on_two_until_step_10(folder, 300000)
    ranks = [int((pids / f"{r}.pid").read_text()) for r in (0, 1)]
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the ranks did not stop within 60 s of Ctrl-C")
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err, err
    for pid in ranks:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    run = json.loads((folder / "runs" / "cli" / "run.json").read_text())
    assert run["status"] == "interrupted" and run["step"] >= 10


# Injected into every rank: at step 3 the rank goes quiet for ever (no output, no MPI call).
HANG_AT_STEP_3 = """\
import os, time
if os.environ.get("PMI_RANK") is not None:
    from microgradnn.train import trainer as _t
    _step = _t.Trainer.train_step
    def train_step(self, batch):
        if self.step == 3:
            open(os.path.join(os.environ["MGNN_RANK_PIDS"], os.environ["PMI_RANK"] + ".quiet"), "w").close()
            time.sleep(600)
        return _step(self, batch)
    _t.Trainer.train_step = train_step
"""


def test_killing_the_nproc_command_ends_every_rank(folder):
    """``kill -9`` of ``mgnn train --nproc 2`` (a test's timeout, a closed terminal) ends
    MPI's launcher and the ranks too, even when they are silent and would never notice."""
    _spec(folder, 400)
    inject = folder / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(HANG_AT_STEP_3)
    pids = folder / "pids"
    pids.mkdir()
    env = dict(mpi_env(), MGNN_RANK_PIDS=str(pids))
    env["PYTHONPATH"] = os.pathsep.join([str(inject), env["PYTHONPATH"]])
    proc = subprocess.Popen([sys.executable, "-m", "mgnn", "train", "spec.yaml", "--plain", "--nproc", "2"],
                            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all((pids / f"{r}.quiet").is_file() for r in (0, 1)):
        time.sleep(0.2)
        assert proc.poll() is None
    if not all((pids / f"{r}.quiet").is_file() for r in (0, 1)):
        proc.kill()
        pytest.fail("the ranks did not reach step 3 within 120 s")
    ranks = [int((pids / f"{r}.pid").read_text()) for r in (0, 1)]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    alive = ranks
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in ranks if _alive(pid)]
    for pid in alive:  # (so a failure leaves nothing behind for the next test)
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"ranks {alive} outlived the killed command by 20 s"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (its supervisor not yet gone) counts as ended
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_nproc_without_the_mpi_extra_says_how_to_install_it(tmp_path):
    (tmp_path / "corpus.txt").write_text((ROOT / "microgradnn" / "nn" / "rnn.py").read_text()[:3000])
    _spec(tmp_path, 10)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "mpi4py.py").write_text("raise ImportError('hidden by the test')\n")
    (hide / "sitecustomize.py").write_text(
        "import importlib.util as u\n_find = u.find_spec\n"
        "u.find_spec = lambda name, *a, **k: None if name == 'mpi4py' else _find(name, *a, **k)\n")
    env = mpi_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hide), env["PYTHONPATH"]])
    done = _mgnn("train", "spec.yaml", "--nproc", "2", cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert 'pip install "microgradnn[mpi]"' in done.stderr


def test_a_global_batch_smaller_than_the_ranks_is_refused(folder):
    _spec(folder, 10)
    done = _mgnn("train", "spec.yaml", "--plain", "--nproc", "2", "train.batch_size=1", cwd=folder, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("mgnn:")]
    assert len(lines) == 1 and "train.batch_size: 1 is the global batch, smaller than the 2 processes" in lines[0], \
        done.stderr
