"""The run-folder writer lock: one writer, released by the kernel on any death, fresh names
claimed atomically, stale temporaries swept by the next writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from microgradnn.runlock import (LOCK_FILE, RunLockedError, claim_fresh_dir, holder_pid, is_being_written,
                                 lock_run_dir)

_HOLD = textwrap.dedent("""
    import sys, time
    from microgradnn.runlock import lock_run_dir
    lock = lock_run_dir(sys.argv[1])
    print("HELD", flush=True)
    time.sleep(60)
""")


def _holder(run_dir) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def test_second_writer_is_refused_with_the_holders_pid_and_kill_9_releases(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = _holder(run)
    try:
        start = time.perf_counter()
        with pytest.raises(RunLockedError) as info:
            lock_run_dir(run)
        assert time.perf_counter() - start < 1.0  # refused at once, never waits
        message = str(info.value)
        assert str(run) in message and f"process {proc.pid}" in message and "\n" not in message
        assert holder_pid(run) == proc.pid
        assert is_being_written(run)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the kernel let go of the lock with the process: no stale lock to clear by hand
    assert not is_being_written(run)
    with lock_run_dir(run) as lock:
        assert lock.held and holder_pid(run) == os.getpid()
    assert not lock.held


def test_lock_is_reentrant_within_a_process(tmp_path):
    first = lock_run_dir(tmp_path)
    second = lock_run_dir(tmp_path)
    assert second is first
    second.release()
    assert first.held  # still held once
    code = f"from microgradnn.runlock import lock_run_dir; lock_run_dir({str(tmp_path)!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "RunLockedError" in result.stderr
    first.release()
    assert not first.held
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_taking_the_lock_removes_stale_temporaries(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / ".run.json.0123456789ab.tmp", tmp_path / "checkpoints" / ".last.safetensors.abcdef012345.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "checkpoints" / "last.safetensors"]
    for p in keep:
        p.write_bytes(b"keep")
    with lock_run_dir(tmp_path) as lock:
        assert sorted(lock.removed_temporaries) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)


_CLAIM = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from microgradnn.runlock import claim_fresh_dir
    go = float(sys.argv[2])
    while time.time() < go:
        pass
    path, lock = claim_fresh_dir(sys.argv[1])
    (path / "mine").write_text(sys.argv[3])
    print(path, flush=True)
    time.sleep(0.5)
""")


def test_racing_claims_for_one_name_get_distinct_folders(tmp_path):
    base = tmp_path / "runs" / "same"
    for attempt in range(2):
        go = time.time() + 3.0
        procs = [subprocess.Popen([sys.executable, "-c", _CLAIM, str(base), str(go), str(i)],
                                  stdout=subprocess.PIPE, text=True) for i in range(3)]
        paths = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert len(set(paths)) == 3, paths  # never two runs in one folder
        for i, path in enumerate(paths):
            assert (tmp_path / path / "mine").read_text() == str(i)
        for path in paths:
            for f in os.listdir(path):
                os.unlink(os.path.join(path, f))
            os.rmdir(path)


def test_claim_takes_an_empty_folder_and_skips_used_ones(tmp_path):
    base = tmp_path / "r"
    base.mkdir()  # made by hand, empty: free
    path, lock = claim_fresh_dir(base)
    assert path == base and lock.held and (base / LOCK_FILE).exists()
    (base / "spec.yaml").write_text("x: 1\n")
    path2, lock2 = claim_fresh_dir(base)
    assert path2 == tmp_path / "r-2"
    lock.release()
    lock2.release()
    (tmp_path / "r-3").write_text("a file, not a folder")
    path3, lock3 = claim_fresh_dir(base)
    assert path3 == tmp_path / "r-2"  # r-2 is empty again (only its lock file) and unlocked
    lock3.release()


def test_a_resume_that_fails_lets_the_lock_go(tmp_path):
    # (it used to keep the folder locked by this very process: fixing the cause and resuming
    # again in the same process, a notebook say, was refused as "being written by process <self>")
    from microgradnn.train import Trainer, TrainError
    from tests.train._util import base_spec, charlm_data, write_corpus

    run = tmp_path / "run"
    assert Trainer(base_spec(tmp_path, charlm_data(write_corpus(tmp_path)), steps=2), run).fit()["status"] == "completed"
    last = run / "checkpoints" / "last.safetensors"
    last.rename(tmp_path / "aside")
    with pytest.raises(TrainError, match="no checkpoint to resume from"):
        Trainer.resume(run)
    assert not is_being_written(run)
    (tmp_path / "aside").rename(last)
    assert Trainer.resume(run, overrides=["train.steps=3"]).fit()["step"] == 3
