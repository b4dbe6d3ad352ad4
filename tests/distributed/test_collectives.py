"""mg.distributed's collectives on 2 ranks, and what a single process sees without MPI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT, mpi_env, run_mpi

COLLECTIVES = """
import json, sys
import numpy as np
import microgradnn as mg
import microgradnn.distributed as dist

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
rng = np.random.default_rng(100 + rank)
mine = rng.standard_normal((3, 4))
out = {"rank": rank, "world": world, "mine": mine.tolist(), "backend": dist.get_backend()}
for op in ("SUM", "AVG", "MAX", "MIN"):
    t = mg.tensor(mine.copy(), dtype=mg.float64)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    out[op] = t.numpy().tolist()
ints = mg.tensor(rng.integers(-50, 50, size=5), dtype=mg.int64)
out["ints"] = ints.numpy().tolist()
dist.all_reduce(ints)
out["ints_sum"] = ints.numpy().tolist()
# a non-contiguous view is reduced into its own storage
base = mg.tensor(mine.copy(), dtype=mg.float32)
view = base.transpose(0, 1)
dist.all_reduce(view)
out["base_after_view"] = base.numpy().tolist()
b = mg.tensor(rng.standard_normal(6), dtype=mg.float32)
out["before_bcast"] = b.numpy().tolist()
dist.broadcast(b, src=1)
out["after_bcast"] = b.numpy().tolist()
objs = [{"rank": rank, "text": "é"}] if rank == 1 else [None]
dist.broadcast_object_list(objs, src=1)
out["objs"] = objs
gathered = [None] * world
dist.all_gather_object(gathered, {"r": rank, "sq": rank * rank})
out["gathered"] = gathered
dist.barrier()
dist.destroy_process_group()
out["initialized_after"] = dist.is_initialized()
open(f"out{rank}.json", "w").write(json.dumps(out))
"""


def test_collectives_on_two_ranks(tmp_path):
    run_mpi(COLLECTIVES, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"out{r}.json").read_text()) for r in (0, 1))
    assert (r0["rank"], r1["rank"], r0["world"], r0["backend"]) == (0, 1, 2, "mpi")
    a, b = np.array(r0["mine"]), np.array(r1["mine"])
    for r in (r0, r1):
        np.testing.assert_allclose(r["SUM"], a + b, rtol=1e-15)
        np.testing.assert_allclose(r["AVG"], (a + b) / 2, rtol=1e-15)
        np.testing.assert_array_equal(r["MAX"], np.maximum(a, b))
        np.testing.assert_array_equal(r["MIN"], np.minimum(a, b))
        assert r["ints_sum"] == (np.array(r0["ints"]) + np.array(r1["ints"])).tolist()
        np.testing.assert_allclose(r["base_after_view"], (a.astype(np.float32) + b.astype(np.float32)), rtol=1e-6)
        np.testing.assert_array_equal(r["after_bcast"], r1["before_bcast"])
        assert r["objs"] == [{"rank": 1, "text": "é"}]
        assert r["gathered"] == [{"r": 0, "sq": 0}, {"r": 1, "sq": 1}]
        assert r["initialized_after"] is False
    assert r0["before_bcast"] != r1["before_bcast"]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=mpi_env(), cwd=ROOT)


def test_a_single_process_loads_no_mpi():
    code = (
        "import sys, microgradnn as mg\n"
        "import microgradnn.distributed, microgradnn.nn.parallel, microgradnn.utils.data\n"
        "m = mg.nn.Linear(3, 2); m(mg.randn(4, 3)).sum().backward()\n"
        "assert not mg.distributed.is_initialized()\n"
        "print(sorted(n for n in sys.modules if n.startswith('mpi4py')))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_mpi4py_one_line_names_the_extra():
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import microgradnn.distributed as dist\n"
        "try:\n    dist.init_process_group()\nexcept dist.DistributedError as e:\n    print(e)\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and 'pip install "microgradnn[mpi]"' in lines[0]


def test_not_initialised_and_bad_backend_are_clear_errors():
    import microgradnn as mg
    import microgradnn.distributed as dist

    with pytest.raises(dist.DistributedError, match="has not been initialized"):
        dist.get_rank()
    with pytest.raises(dist.DistributedError, match="has not been initialized"):
        dist.all_reduce(mg.ones(2))
    with pytest.raises(dist.DistributedError, match="backend 'nccl' is not available"):
        dist.init_process_group("nccl")
    with pytest.raises(dist.DistributedError, match="has not been initialized"):
        mg.nn.parallel.DistributedDataParallel(mg.nn.Linear(2, 2))


MISMATCHED_BROADCAST = """
import json
import numpy as np
import microgradnn as mg
import microgradnn.distributed as dist
from mpi4py import MPI

before = MPI.COMM_WORLD.Get_errhandler() == MPI.ERRORS_ARE_FATAL
dist.init_process_group()
rank = dist.get_rank()
t = mg.tensor(np.arange(100 if rank == 0 else 3, dtype=np.float32))  # rank 1's buffer is too small
out = {"world_handler_kept": (MPI.COMM_WORLD.Get_errhandler() == MPI.ERRORS_ARE_FATAL) == before}
try:
    dist.broadcast(t, src=0)
    out["error"] = None
except dist.DistBackendError as exc:
    out["error"] = str(exc)
open(f"out{rank}.json", "w").write(json.dumps(out))
"""


def test_an_mpi_error_inside_a_collective_is_a_dist_backend_error(tmp_path):
    """MPI's own error (here: rank 1's buffer too small for the broadcast) comes back as a
    one-line DistBackendError naming the call, not mpi4py's MPI.Exception or an abort; the
    group's communicator is its own copy, COMM_WORLD's error handler is left as it was."""
    run_mpi(MISMATCHED_BROADCAST, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"out{r}.json").read_text()) for r in (0, 1))
    assert r0["world_handler_kept"] and r1["world_handler_kept"]
    assert r0["error"] is None  # the root's send completes
    assert r1["error"].startswith("broadcast: MPI could not complete the collective (Message truncated)")
    assert "\n" not in r1["error"]
