"""Data-parallel training over MPI: the Trainer's process seam filled for N ranks.

Every rank reads the same global batches (the data order is a pure function of the run's
seed and epoch) and keeps the rows ``start:stop`` that are its own. What makes N ranks end
with the weights of one process, not merely close to them:

* **Gradients weighted by what each rank scored.** The loss is a mean over the scored
  targets (tokens that are not padding, examples). Rank r's gradient ``g_r`` is a mean over
  its ``c_r`` targets, so the global mean's gradient is ``sum_r c_r g_r / sum_r c_r``: each
  rank scales its gradients by ``c_r / C`` and the ranks *sum* them, in one all-reduce over
  a flat buffer per bucket (:class:`~microgradnn.nn.parallel._Bucket`). A penalty every rank
  adds whole (a fine-tuning regulariser) comes out whole, since the weights sum to 1.
* **Dropout masks of one process.** Every rank keeps one process's random stream and
  draws each mask for the whole global batch, keeping its rows
  (:class:`microgradnn.tensor.batch_shard`).
* **One decision for all.** The loss and the count are reduced before backward, and a
  stop request after every step, so a NaN, a callback's stop or a Ctrl-C is taken by every
  rank at the same step and no rank waits in a collective that the others have left.
* **Validation on every rank's rows, scored once.** Each rank runs its rows; the outputs
  are gathered in row order and every rank scores the whole batch, so the loss and every
  metric are the single-process ones.
* **Carried state (truncated BPTT) per stream.** Each rank carries the state of its rows;
  a checkpoint gathers the whole ``(layers, B, H)`` state, and a resume with another
  number of ranks takes each rank's rows of it.

Rank 0 alone writes the run folder; :meth:`fail` reports a rank's error in one line and
aborts the MPI job so that no rank hangs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .. import distributed as dist
from ..nn.parallel import _Bucket
from ..tensor import batch_shard
from .build import TrainError

__all__ = ["MPIDataParallel", "launched_by_mpi", "code_hash", "spec_hash", "RefusedOnEveryRank",
           "DistributedMismatch"]

#: The world size an MPI launcher hands the processes it starts (MPICH's Hydra and Intel
#: MPI: PMI_SIZE; Open MPI: OMPI_COMM_WORLD_SIZE).
_LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_by_mpi() -> bool:
    """True when this process was started by ``mpiexec -n N`` with N > 1 (read from the
    launcher's environment, without importing MPI)."""
    import os

    for var in _LAUNCHER_VARS:
        value = os.environ.get(var)
        if value and value.isdigit() and int(value) > 1:
            return True
    return False


def rows_of(total: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous rows of ``total``: balanced, the first ranks one more."""
    return (total * rank) // world, (total * (rank + 1)) // world


def code_hash() -> str:
    """A digest of the installed microgradnn's Python sources (every rank must run the same code)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def spec_hash(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


class MPIDataParallel:
    """The Trainer's process seam over ``mg.distributed`` (``mpiexec -n N mgnn train``)."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            dist.init_process_group("mpi")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self._weight = 1.0  # c_r / C of the current training batch
        self._rows = (0, 0, 0)  # (global rows, start, stop) of the current batch
        self._buckets: list[_Bucket] = []
        self._signature: tuple = ()

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ start-up

    def agree(self, spec: Any) -> None:
        """Refuse to start unless every rank has rank 0's spec and code (one line, exit 2).

        Every check is made on what all ranks gathered (rank 0's batch size too), so a
        refusal is raised on every rank alike (:class:`RefusedOnEveryRank`)."""
        batch = int((spec.get("train") or {}).get("batch_size") or 0)
        mine = {"spec": spec_hash(spec), "code": code_hash(), "batch": batch}
        everyone = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        for r, theirs in enumerate(everyone):
            for what in ("spec", "code"):
                if theirs[what] != everyone[0][what]:
                    detail = "resolved spec" if what == "spec" else "microgradnn source code"
                    raise DistributedMismatch(
                        f"rank {r} has another {detail} than rank 0 ({what} hash {theirs[what]}, rank 0: "
                        f"{everyone[0][what]}): every rank must train the same spec with the same code"
                    )
        batch = everyone[0]["batch"]
        if 0 < batch < self.world_size:
            raise RefusedOnEveryRank(
                f"train.batch_size: {batch} is the global batch, smaller than the {self.world_size} processes; "
                f"every rank needs at least one row: use a batch of {self.world_size} or more")

    def broadcast_parameters(self, model: Any) -> None:
        """Rank 0's weights and buffers on every rank (they start equal by seed; this makes sure)."""
        for p in model.parameters():
            dist.broadcast(p, 0)
        for b in model.buffers():
            dist.broadcast(b, 0)

    # ------------------------------------------------------------------ training

    def shard(self, batches: Iterable[Any]) -> Iterator[Any]:
        """This rank's rows of each global batch; dropout drawn as for the whole batch."""
        for batch in batches:
            total = int(batch.x.shape[0])
            start, stop = rows_of(total, self.rank, self.world_size)
            self._rows = (total, start, stop)
            with batch_shard(total, start):
                yield self.rows(batch, start, stop)

    @staticmethod
    def rows(batch: Any, start: int, stop: int) -> Any:
        lengths = None if batch.lengths is None else batch.lengths[start:stop]
        return batch._replace(x=batch.x[start:stop], y=batch.y[start:stop], lengths=lengths)

    def reduce_step(self, loss: float, count: int) -> tuple[float, int]:
        """The global mean loss and count, before backward (so that a NaN is every rank's
        NaN); sets this rank's gradient weight ``count / C`` for :meth:`all_reduce_gradients`."""
        local = np.array([loss * count if count else 0.0, float(count)])
        dist.all_reduce_array(local, dist.ReduceOp.SUM)
        total = int(round(local[1]))
        self._weight = count / total if total else 0.0
        return (float(local[0] / total) if total else float("nan")), total

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop asked on one rank, by a
        callback or a Ctrl-C, is taken by all at the same step)."""
        local = np.array([1.0 if flag else 0.0])
        dist.all_reduce_array(local, dist.ReduceOp.MAX)
        return bool(local[0] > 0)

    def global_items(self, items: int) -> int:
        """Items (tokens, examples) of the whole batch from this rank's share of them."""
        total, start, stop = self._rows
        return int(round(items * total / (stop - start))) if stop > start else items

    def all_reduce_gradients(self, params: list) -> None:
        """Sum ``weight * grad`` over the ranks, one flat buffer per bucket (last layer first)."""
        signature = tuple(id(p) for p in params)
        if signature != self._signature:
            self._buckets = _buckets_of(list(reversed(params)))
            self._signature = signature
        for p in params:
            if p._grad is not None and self._weight != 1.0:
                p._grad *= p._grad.dtype.type(self._weight)
        for bucket in self._buckets:
            bucket.reduce(dist.ReduceOp.SUM)

    # ------------------------------------------------------------------ validation

    def shard_eval(self, batch: Any) -> Any:
        total = int(batch.x.shape[0])
        start, stop = rows_of(total, self.rank, self.world_size)
        return self.rows(batch, start, stop)

    def gather_rows(self, array: np.ndarray, axis: int = 0) -> np.ndarray:
        """Every rank's ``array`` joined along ``axis`` in rank order (rows may differ in number)."""
        array = np.ascontiguousarray(np.moveaxis(array, axis, 0))
        counts = [None] * self.world_size
        dist.all_gather_object(counts, [int(array.shape[0]), list(array.shape[1:]), array.dtype.str])
        rest, dtype = tuple(counts[0][1]), np.dtype(counts[0][2])
        sizes = [c[0] * int(np.prod(rest, dtype=np.int64)) for c in counts]
        out = np.empty((sum(c[0] for c in counts),) + rest, dtype=dtype)
        dist.all_gather_rows(array.astype(dtype, copy=False), sizes, out)
        return np.moveaxis(out, 0, axis)

    def reduce_sums(self, totals: dict[str, float]) -> dict[str, float]:
        keys = sorted(totals)
        values = np.array([float(totals[k]) for k in keys])
        dist.all_reduce_array(values, dist.ReduceOp.SUM)
        return {k: (int(round(v)) if isinstance(totals[k], int) else float(v)) for k, v in zip(keys, values)}

    # ------------------------------------------------------------------ carried state

    def gather_state(self, state: Any) -> Any:
        """The whole batch's carried state from every rank's rows (axis 1 of (L, B, H))."""
        if state is None:
            return None
        if isinstance(state, (tuple, list)):
            return type(state)(self.gather_state(s) for s in state)
        return self.gather_rows(state, axis=1)

    def state_rows(self, state: Any) -> Any:
        """This rank's rows (axis 1) of a whole-batch carried state read from a checkpoint."""
        if state is None:
            return None
        if isinstance(state, (tuple, list)):
            return type(state)(self.state_rows(s) for s in state)
        start, stop = rows_of(int(state.shape[1]), self.rank, self.world_size)
        return state[:, start:stop]

    # ------------------------------------------------------------------ failure

    def fail(self, message: str, code: int = 1) -> None:
        """Say in one line which rank fails and why, then end every rank (MPI_Abort)."""
        print(f"mgnn: rank {self.rank} of {self.world_size} failed: {message}; stopping all ranks",
              file=sys.stderr, flush=True)
        dist.abort(code)


class RefusedOnEveryRank(TrainError):
    """A refusal every rank reaches alike, from facts all of them gathered: each rank can end
    on its own (rank 0 says why), with no MPI abort, whose teardown would choose the job's
    exit status (a signal's number as often as the 2 of a user error)."""

    every_rank = True


class DistributedMismatch(RefusedOnEveryRank):
    """Ranks that would not train the same run (a user error: exit 2 from the command)."""


def _buckets_of(params: list, cap_bytes: int = 25 * 1024 * 1024) -> list[_Bucket]:
    buckets, current, size = [], [], 0
    for k, p in enumerate(params):
        nbytes = p.array.size * p.array.dtype.itemsize
        if current and (size + nbytes > cap_bytes or current[0][1].array.dtype != p.array.dtype):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append((str(k), p))
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets
