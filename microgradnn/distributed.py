"""``mg.distributed``: a process group over MPI, shaped like ``torch.distributed``.

Start the processes with MPI's launcher and add one line to the script::

    mpiexec -n 2 python train.py

    import microgradnn.distributed as dist
    dist.init_process_group()            # backend="mpi": the only one
    dist.get_rank(), dist.get_world_size()
    dist.all_reduce(t)                   # in place, SUM by default
    dist.broadcast(t, src=0)

The transport is MPI through mpi4py (``pip install "microgradnn[mpi]"`` brings mpi4py and
MPICH with its own ``mpiexec``); nothing here speaks sockets itself. mpi4py is imported
only by :func:`init_process_group`, so a single-process program never loads MPI.

Objects (``broadcast_object_list``, ``all_gather_object``) travel as JSON, not pickle: a
message from another process is data, never code.
"""

from __future__ import annotations

import enum
import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .backend import to_host
from .tensor import Tensor, batch_shard

__all__ = [
    "ReduceOp", "is_available", "is_initialized", "init_process_group", "destroy_process_group",
    "get_rank", "get_world_size", "get_backend", "all_reduce", "broadcast", "barrier",
    "broadcast_object_list", "all_gather_object", "abort", "batch_shard", "DistributedError", "DistBackendError",
    "find_mpiexec",
]

INSTALL_HINT = 'multi-process training needs the "mpi" extra: pip install "microgradnn[mpi]" (mpi4py and MPICH)'


class DistributedError(RuntimeError):
    """A process-group call that cannot be made (no MPI, not initialised, bad argument)."""


class DistBackendError(DistributedError):
    """A collective that MPI could not complete: most often another process of the group
    has ended (killed, crashed) while this one was talking to it. The group's communicator
    returns MPI's errors instead of aborting on them, so the process can say so (and the
    launcher, which knows how the other process ended, can say it first). Errors MPICH
    itself deems fatal still end the process inside the call."""


class ReduceOp(enum.Enum):
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


_comm: Any = None  # the group's MPI communicator while initialised
_MPI: Any = None   # the mpi4py.MPI module, once loaded


def is_available() -> bool:
    """True when mpi4py can be imported (without importing it, so without starting MPI)."""
    import importlib.util

    return importlib.util.find_spec("mpi4py") is not None


def _load_mpi() -> Any:
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedError(INSTALL_HINT) from exc
        except RuntimeError as exc:  # mpi4py present but no MPI library it can open
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DistributedError(f"mpi4py could not load an MPI library ({first}); {INSTALL_HINT}") from exc
        _MPI = MPI
    return _MPI


def find_mpiexec() -> str | None:
    """The ``mpiexec`` to start processes with: the one on PATH, else the one next to this
    Python (a venv's bin), else the one the ``mpich`` wheel installed; None if there is none."""
    import shutil

    found = shutil.which("mpiexec")
    if found:
        return found
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file():
        return str(beside)
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        files = distribution("mpich").files or []
    except PackageNotFoundError:
        return None
    for f in files:
        if f.name == "mpiexec":
            path = Path(f.locate()).resolve()
            if path.is_file():
                return str(path)
    return None


def init_process_group(backend: str = "mpi", init_method: str | None = None, timeout: Any = None,
                       world_size: int = -1, rank: int = -1, **unused: Any) -> None:
    """Join the processes ``mpiexec`` started into one group (``MPI.COMM_WORLD``).

    ``world_size`` and ``rank``, when given, are checked against what MPI says: under MPI the
    launcher, not the script, decides them. ``init_method`` and ``timeout`` are accepted for
    PyTorch's signature and not used."""
    global _comm
    if backend is None:
        backend = "mpi"
    if str(backend).lower() != "mpi":
        raise DistributedError(f"init_process_group: backend {backend!r} is not available; microgradnn has 'mpi'")
    if _comm is not None:
        raise DistributedError("trying to initialize the default process group twice!")
    MPI = _load_mpi()
    world = MPI.COMM_WORLD
    if world_size not in (-1, None) and world_size != world.Get_size():
        raise DistributedError(f"init_process_group: world_size={world_size} but mpiexec started {world.Get_size()} processes")
    if rank not in (-1, None) and rank != world.Get_rank():
        raise DistributedError(f"init_process_group: rank={rank} but MPI says this process is rank {world.Get_rank()}")
    # The group's own copy of COMM_WORLD (a library leaves MPI's global communicator and
    # its error handler as it found them), set to return errors whatever mpi4py.rc.errors
    # says: MPI's own default aborts the process inside the failing call, saying nothing.
    comm = world.Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    _comm = comm


def is_initialized() -> bool:
    return _comm is not None


def destroy_process_group(group: Any = None) -> None:
    """Leave the group. MPI itself stays up until the process exits (mpi4py finalises it then)."""
    global _comm
    if _comm is not None:
        try:
            _comm.Free()
        except Exception:  # noqa: BLE001 - a group whose peers are gone is left, not freed
            pass
    _comm = None


def _collective(call: Any) -> Any:
    """Turn MPI's error from inside ``call`` into :class:`DistBackendError`, naming the call."""

    @functools.wraps(call)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if _MPI is None or not isinstance(exc, _MPI.Exception):
                raise
            raise DistBackendError(
                f"{call.__name__.lstrip('_')}: MPI could not complete the collective ({_mpi_reason(exc)}); "
                "another process of the group may have ended, or the processes disagree on the call") from None

    return guarded


def _mpi_reason(exc: Any) -> str:
    """The headline of MPICH's error string ("Message truncated", "Other MPI error"); the
    stack below it names MPI's internals (and arrives cut at MPI_MAX_ERROR_STRING)."""
    text = str(exc.Get_error_string()).strip()
    return text.splitlines()[0].split(", error stack")[0] if text else f"MPI error {exc.Get_error_code()}"


def _group() -> Any:
    if _comm is None:
        raise DistributedError(
            "Default process group has not been initialized, please make sure to call init_process_group."
        )
    return _comm


def get_rank(group: Any = None) -> int:
    return _group().Get_rank()


def get_world_size(group: Any = None) -> int:
    return _group().Get_size()


def get_backend(group: Any = None) -> str:
    _group()
    return "mpi"


def host_buffer(array: Any) -> np.ndarray:
    """A contiguous host array MPI can read and write: the array itself when it already is
    one, else a copy (a GPU array comes to the host: MPICH from the wheel is not CUDA-aware)."""
    host = to_host(array)
    return host if host.flags.c_contiguous and host.flags.writeable else np.ascontiguousarray(host).copy()


def _store(tensor: Tensor, host: np.ndarray) -> None:
    """Write ``host`` back into the tensor's own storage (views stay views)."""
    if host is tensor.array:
        return
    xp = tensor._backend.xp
    tensor._store(..., host if xp is np else xp.asarray(host))


def _mpi_op(op: ReduceOp) -> Any:
    MPI = _load_mpi()
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.MAX: MPI.MAX,
            ReduceOp.MIN: MPI.MIN, ReduceOp.PRODUCT: MPI.PROD}[op]


def _check_tensor(tensor: Any, what: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(tensor).__name__}")


@_collective
def all_reduce_array(array: np.ndarray, op: ReduceOp = ReduceOp.SUM) -> np.ndarray:
    """Reduce a contiguous host array across the group in place; returns it."""
    comm = _group()
    comm.Allreduce(_load_mpi().IN_PLACE, array, op=_mpi_op(op))
    if op is ReduceOp.AVG:
        array /= comm.Get_size()
    return array


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group: Any = None, async_op: bool = False) -> None:
    """Reduce ``tensor`` across every process, in place, so each ends with the result."""
    _check_tensor(tensor, "all_reduce")
    if not isinstance(op, ReduceOp):
        raise ValueError(f"all_reduce: op must be a ReduceOp, got {op!r}")
    if op is ReduceOp.AVG and tensor.dtype.kind not in "fc":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating tensor, got {tensor.dtype}")
    host = host_buffer(tensor.array)
    all_reduce_array(host, op)
    _store(tensor, host)
    return None


@_collective
def broadcast(tensor: Tensor, src: int = 0, group: Any = None, async_op: bool = False) -> None:
    """Copy ``tensor`` from rank ``src`` into the same-shaped tensor of every other rank."""
    _check_tensor(tensor, "broadcast")
    comm = _group()
    if not 0 <= src < comm.Get_size():
        raise ValueError(f"broadcast: src must be a rank in [0, {comm.Get_size()}), got {src}")
    host = host_buffer(tensor.array)
    comm.Bcast(host, root=src)
    _store(tensor, host)
    return None


@_collective
def barrier(group: Any = None, async_op: bool = False) -> None:
    _group().Barrier()


@_collective
def _bcast_bytes(payload: bytes | None, src: int) -> bytes:
    comm = _group()
    size = np.array([len(payload) if payload is not None else 0], dtype=np.int64)
    comm.Bcast(size, root=src)
    buffer = np.frombuffer(payload, dtype=np.uint8).copy() if comm.Get_rank() == src else np.empty(int(size[0]), np.uint8)
    comm.Bcast(buffer, root=src)
    return buffer.tobytes()


def broadcast_object_list(object_list: list, src: int = 0, group: Any = None, device: Any = None) -> None:
    """Replace ``object_list``'s items on every rank by rank ``src``'s (JSON-serialisable) items."""
    mine = json.dumps(object_list).encode() if get_rank() == src else None
    object_list[:] = json.loads(_bcast_bytes(mine, src).decode())


@_collective
def all_gather_object(object_list: list, obj: Any, group: Any = None) -> None:
    """``object_list[r]`` becomes rank r's ``obj`` (JSON-serialisable), on every rank."""
    comm = _group()
    if len(object_list) != comm.Get_size():
        raise ValueError(f"all_gather_object: object_list needs {comm.Get_size()} slots, has {len(object_list)}")
    mine = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    sizes = np.array(comm.allgather(int(mine.size)), dtype=np.int64)
    gathered = np.empty(int(sizes.sum()), dtype=np.uint8)
    comm.Allgatherv(mine, [gathered, sizes.tolist()])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for r in range(comm.Get_size()):
        object_list[r] = json.loads(gathered[offsets[r]:offsets[r + 1]].tobytes().decode())


@_collective
def all_gather_rows(rows: np.ndarray, sizes: list[int], out: np.ndarray) -> np.ndarray:
    """Every rank's contiguous ``rows`` (``sizes[r]`` elements from rank r) into ``out``, in rank order."""
    _group().Allgatherv(rows, [out, sizes])
    return out


def abort(errorcode: int = 1) -> None:
    """End every process of the group now (MPI_Abort): what a rank calls after it has said why
    it fails, so that the others, maybe blocked in a collective, do not wait for ever."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _comm is not None:
        _comm.Abort(errorcode)
    raise SystemExit(errorcode)
