"""``mgnn --nproc``'s parent and its per-rank supervisor, against a stand-in for MPI's
launcher that replays what CI saw: rank 1 is killed by SIGKILL, and rank 0's MPICH aborts
the job with its own multi-line fatal-error stack before the launcher prints anything
about rank 1. No MPI is needed: the stand-in starts the supervised ranks itself."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

import microgradnn.distributed as dist

from .conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor's fork/prctl are Linux's")

# What rank 0's MPICH printed in CI when rank 1 died in the middle of an Allgatherv.
MPICH_FATAL = """\
Abort(543238287) on node 0 (rank 0 in comm 0): Fatal error in internal_Allgatherv_c: Other MPI error, error stack:
internal_Allgatherv_c(447)....................: MPI_Allgatherv_c(sendbuf=0x55fdafd05790, sendcount=1380, MPI_FLOAT) failed
MPID_Allgatherv(724)..........................: 
MPIC_Wait(99).................................: 
copy_iovs(224)................................: process_vm_readv failed (errno 3)

"""

# The stand-in for mpiexec: `launcher -n N CMD...` runs CMD once per rank with PMI_RANK set,
# but replaces the rank's own command (after `-m mgnn.parallel`) by a scenario.
LAUNCHER = """\
import os, subprocess, sys
n = int(sys.argv[2])
supervisor, scenario = sys.argv[3:6], {scenario!r}
ranks = [subprocess.Popen([*supervisor, sys.executable, "-c", scenario[str(r)]],
                          env=dict(os.environ, PMI_RANK=str(r))) for r in range(n)]
codes = [p.wait() for p in ranks]
sys.exit(1 if any(codes) else 0)   # like MPICH's after an abort: no banner, just a status
"""

KILLED = """\
import os, signal, time
from pathlib import Path
Path(os.environ["MGNN_RANK_PIDS"], "1.pid").write_text(str(os.getpid()))
os.kill(os.getpid(), signal.SIGKILL)
"""

# Rank 0 waits until rank 1 is gone, then MPICH's fatal error, as in CI.
ABORTS_AFTER_PEER = """\
import os, sys, time
from pathlib import Path
folder = Path(os.environ["MGNN_RANK_PIDS"])
Path(folder, "0.pid").write_text(str(os.getpid()))
while not list(folder.glob("*.ended")):
    time.sleep(0.02)
sys.stderr.write({fatal!r})
sys.exit(15)
"""

ABORTS_ALONE = "import sys; sys.stderr.write({fatal!r}); sys.exit(15)"


def _launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: dict) -> int:
    from mgnn import parallel

    script = tmp_path / "fake_mpiexec.py"
    script.write_text(LAUNCHER.format(scenario=scenario))
    script.chmod(0o755)
    wrapper = tmp_path / "mpiexec"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    wrapper.chmod(0o755)
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setattr(dist, "find_mpiexec", lambda: str(wrapper))
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setenv("MGNN_RANK_PIDS", str(pids))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "cli"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return parallel.launch(2, ["train", "spec.yaml", "--nproc", "2"])


def test_a_killed_rank_is_named_with_its_signal_even_when_mpich_aborts_first(tmp_path, monkeypatch, capfd):
    code = _launch(tmp_path, monkeypatch, {"0": ABORTS_AFTER_PEER.format(fatal=MPICH_FATAL), "1": KILLED})
    err = capfd.readouterr().err
    victim = (tmp_path / "pids" / "1.pid").read_text().strip()
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # MPICH's stack is folded away: one line
    assert lines[0].startswith(f"mgnn: rank 1 of 2 (pid {victim}) ended: killed by signal {int(signal.SIGKILL)} (SIGKILL)")


def test_mpichs_fatal_error_alone_becomes_one_line(tmp_path, monkeypatch, capfd):
    code = _launch(tmp_path, monkeypatch, {"0": ABORTS_ALONE.format(fatal=MPICH_FATAL), "1": "pass"})
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert lines == ["mgnn: rank 0 of 2: MPI stopped the job: Fatal error in internal_Allgatherv_c: "
                     "Other MPI error (process_vm_readv failed (errno 3))"], err


# Rank 0 refuses the spec (exit 2, the line handed over as after_report does), then
# MPI's teardown kills rank 1: the launcher's own status is then a signal's, 9.
REFUSES_SPEC = """\
import os, sys
from pathlib import Path
folder = os.environ["MGNN_RANK_PIDS"]
line = "mgnn: rank 0 of 2: error: train.batch_size: 1 is smaller than the 2 processes"
sys.stderr.write(line + "\\n")
Path(folder, "0.error").write_text(line)
Path(folder, "0.exit").write_text("2")
sys.exit(2)
"""
TORN_DOWN = "import os, signal, time; time.sleep(0.3); os.kill(os.getpid(), signal.SIGKILL)"


def test_the_exit_status_is_the_failing_ranks_not_the_teardowns(tmp_path, monkeypatch, capfd):
    code = _launch(tmp_path, monkeypatch, {"0": REFUSES_SPEC, "1": TORN_DOWN})
    err = capfd.readouterr().err
    assert code == 2
    assert [line for line in err.splitlines() if line.strip()] == [
        "mgnn: rank 0 of 2: error: train.batch_size: 1 is smaller than the 2 processes"]


def test_the_supervisor_ends_as_its_rank_ended(tmp_path):
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "cli"), str(ROOT)]), MGNN_RANK_PIDS=str(tmp_path))
    sup = [sys.executable, "-m", "mgnn.parallel", sys.executable, "-c"]
    assert subprocess.run([*sup, "import sys; sys.exit(7)"], env=env).returncode == 7
    assert not list(tmp_path.glob("*.ended"))  # an exit status is no signal: nothing written
    killed = subprocess.run([*sup, "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], env=env)
    assert killed.returncode == -signal.SIGTERM
    (note,) = tmp_path.glob("*.ended")
    assert '"signal": 15' in note.read_text()
    # a signal sent to the supervisor reaches the rank, which may handle it
    handled = subprocess.run([*sup, textwrap.dedent("""\
        import os, signal, sys
        signal.signal(signal.SIGUSR1, lambda *a: sys.exit(42))
        os.kill(os.getppid(), signal.SIGUSR1)
        signal.pause()
        """)], env=env, timeout=30)
    assert handled.returncode == 42


def test_a_signal_to_the_supervisors_group_reaches_the_rank_once(tmp_path):
    """MPI's launcher signals each supervisor's process group (Ctrl-C): the rank, in a
    group of its own, gets it once from the supervisor, not twice (a second SIGINT would
    interrupt the rank's own Ctrl-C handling)."""
    import subprocess
    import time

    counter = tmp_path / "count.py"
    counter.write_text(textwrap.dedent("""\
        import os, signal, sys, time
        from pathlib import Path
        got = []
        signal.signal(signal.SIGINT, lambda *a: got.append(1))
        Path(sys.argv[1], "ready").write_text("")
        end = time.time() + 3
        while time.time() < end:
            time.sleep(0.02)
        Path(sys.argv[1], "count").write_text(str(len(got)))
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "cli"), str(ROOT)]))
    sup = subprocess.Popen([sys.executable, "-m", "mgnn.parallel", sys.executable, str(counter), str(tmp_path)],
                           env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(sup.pid, signal.SIGINT)
    assert sup.wait(timeout=30) == 0
    assert (tmp_path / "count").read_text() == "1"
