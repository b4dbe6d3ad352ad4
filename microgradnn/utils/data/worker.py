"""Worker processes for ``DataLoader(num_workers=N)``.

Each worker runs :func:`worker_loop`: it takes ``(task_id, indices)`` from its own index
queue, builds and collates that batch, and puts ``(task_id, batch)`` on the shared result
queue. The main process hands tasks out round-robin and puts results back in ``task_id``
order, so the batches come out exactly as with ``num_workers=0``.

Batches cross the process boundary as plain numpy arrays (:func:`pack` / :func:`unpack`):
a Tensor is rebuilt on the main side, so nothing needs to pickle the autograd machinery.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...tensor import Tensor

__all__ = ["WorkerInfo", "get_worker_info"]


@dataclass(frozen=True)
class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker (PyTorch's fields)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker: its :class:`WorkerInfo`; in the main process: None.

    An :class:`~microgradnn.utils.data.IterableDataset` uses it to give each worker its
    own share of the stream."""
    return _worker_info


class _TensorPayload:
    """A Tensor on its way between processes: its host array and whether it needs grad."""

    __slots__ = ("array", "requires_grad")

    def __init__(self, array: np.ndarray, requires_grad: bool) -> None:
        self.array, self.requires_grad = array, requires_grad


def pack(data: Any) -> Any:
    """Replace every Tensor in (nested lists, tuples, namedtuples, dicts of) ``data`` by a
    picklable payload."""
    if isinstance(data, Tensor):
        return _TensorPayload(data.numpy(), data.requires_grad)
    return _map(pack, data)


def unpack(data: Any) -> Any:
    """Undo :func:`pack` (in the main process)."""
    if isinstance(data, _TensorPayload):
        from ...tensor import from_numpy

        out = from_numpy(data.array)
        return out.requires_grad_(True) if data.requires_grad else out
    return _map(unpack, data)


def _map(fn: Callable[[Any], Any], data: Any) -> Any:
    if isinstance(data, dict):
        return {k: fn(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(fn(v) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(fn(v) for v in data)
    return data


class StopMarker:
    """A worker's iterable dataset ran out (its task and all later ones to it are void)."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id


class ExceptionWrapper:
    """An exception raised in a worker, carried to the main process with its traceback."""

    def __init__(self, worker_id: int, exc: BaseException) -> None:
        self.worker_id = worker_id
        self.exc_type = type(exc)
        self.message = f"Caught {type(exc).__name__} in DataLoader worker process {worker_id}.\n" \
                       f"Original {traceback.format_exc()}"

    def reraise(self) -> None:
        try:
            error = self.exc_type(self.message)
        except Exception:  # an exception type whose constructor wants other arguments
            error = RuntimeError(self.message)
        raise error


def worker_loop(fetch: Callable[[Any], Any], dataset: Any, index_queue: Any, result_queue: Any, worker_id: int,
                num_workers: int, seed: int, init_fn: Callable[[int], None] | None) -> None:
    """The body of one worker process (see the module docstring).

    The worker's own random streams are seeded from ``seed`` (``base_seed + worker_id``,
    as PyTorch): mg's global generator and Python's ``random``."""
    global _worker_info
    from ...tensor import manual_seed

    manual_seed(seed)
    random.seed(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    init_error = None
    if init_fn is not None:
        try:
            init_fn(worker_id)
        except Exception as exc:  # reported with the first task, in the main process
            init_error = ExceptionWrapper(worker_id, exc)
    state: dict = {}
    while True:
        try:
            task = index_queue.get()
        except (KeyboardInterrupt, EOFError):
            break
        if task is None:  # the main process says stop
            break
        task_id, indices = task
        if init_error is not None:
            result: Any = init_error
        else:
            try:
                result = pack(fetch(dataset, indices, state))
            except StopIteration:
                result = StopMarker(worker_id)
            except Exception as exc:
                result = ExceptionWrapper(worker_id, exc)
        result_queue.put((task_id, result))
