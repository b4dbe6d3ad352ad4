"""``DataLoader``: PyTorch's, batch by batch from a dataset, in the main process or in workers.

The pieces, as in PyTorch: a *sampler* yields indices (sequential, or shuffled when
``shuffle=True``), a *batch sampler* groups them (``batch_size``, ``drop_last``), a *fetcher*
turns one group into samples (``dataset[i]``) and ``collate_fn`` (default
:func:`~microgradnn.utils.data.default_collate`) into one batch. With ``num_workers > 0``
the fetching and collating happen in worker processes (:mod:`.worker`) and the batches come
back in the same order as without them.
"""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any, Callable, Iterable, Iterator

from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, numpy_rng
from .worker import ExceptionWrapper, StopMarker, unpack, worker_loop

__all__ = ["DataLoader"]

_POLL_SECONDS = 1.0  # how often a waiting main process checks that its workers are alive


class _MapFetcher:
    """Samples for a list of indices (auto-batching) or for one index, then collated."""

    def __init__(self, auto_collation: bool, collate_fn: Callable) -> None:
        self.auto_collation, self.collate_fn = auto_collation, collate_fn

    def __call__(self, dataset: Any, indices: Any, state: dict) -> Any:
        if not self.auto_collation:
            return self.collate_fn(dataset[indices])
        many = getattr(dataset, "__getitems__", None)
        samples = many(indices) if callable(many) else [dataset[i] for i in indices]
        return self.collate_fn(samples)


class _IterableFetcher:
    """The next batch (or item) of an iterable dataset; ``state`` keeps the iterator."""

    def __init__(self, auto_collation: bool, collate_fn: Callable, batch_size: int | None, drop_last: bool) -> None:
        self.auto_collation, self.collate_fn = auto_collation, collate_fn
        self.batch_size, self.drop_last = batch_size, drop_last

    def __call__(self, dataset: Any, indices: Any, state: dict) -> Any:
        if "iterator" not in state:
            state["iterator"] = iter(dataset)
        it = state["iterator"]
        if not self.auto_collation:
            return self.collate_fn(next(it))
        samples = []
        for _ in range(self.batch_size):
            try:
                samples.append(next(it))
            except StopIteration:
                break
        if not samples or (self.drop_last and len(samples) < self.batch_size):
            raise StopIteration
        return self.collate_fn(samples)


class _InfiniteNones:
    """The 'index' stream of an iterable dataset: one empty request per batch."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class DataLoader:
    """Batches from ``dataset``; the arguments are PyTorch's.

    Args:
        dataset: a map-style :class:`Dataset` (anything with ``__getitem__`` and ``__len__``)
            or an :class:`IterableDataset`.
        batch_size: samples per batch; None turns batching off (each item converted alone).
        shuffle: a new random order every epoch (a :class:`RandomSampler` with ``generator``).
        sampler / batch_sampler: your own index order / index groups (exclusive with
            ``shuffle``; ``batch_sampler`` also with ``batch_size`` and ``drop_last``).
        num_workers: worker processes that fetch and collate (0: the main process).
        collate_fn: samples -> batch (default :func:`default_collate`).
        drop_last: drop the last, incomplete batch.
        timeout: seconds to wait for a worker's batch (0: forever).
        worker_init_fn: called as ``fn(worker_id)`` in each worker before its first batch.
        multiprocessing_context: a start method name ("fork", "spawn", "forkserver") or a
            context; default: the platform's. With "spawn" the dataset and functions must pickle.
        generator: the random source of ``shuffle`` / the samplers and of the workers' base
            seed (see :func:`~microgradnn.utils.data.sampler.numpy_rng`); a seeded one gives
            the same order every run.
        prefetch_factor: batches in flight per worker (default 2).
        pin_memory: accepted for PyTorch compatibility; there is no pinned memory here.

    ``persistent_workers=True`` is not supported: workers are started for each epoch and
    stopped at its end (or when the iterator is dropped).
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | Iterable | None = None, batch_sampler: Sampler | Iterable | None = None,
                 num_workers: int = 0, collate_fn: Callable | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None, generator: Any = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "") -> None:
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None.")
        if prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError("prefetch_factor option should be positive")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if persistent_workers:
            raise ValueError("DataLoader: persistent_workers=True is not supported in microgradnn "
                             "(workers are started per epoch); leave it False")
        self.dataset = dataset
        self.num_workers, self.timeout = num_workers, timeout
        self.prefetch_factor = 2 if num_workers > 0 and prefetch_factor is None else prefetch_factor
        self.pin_memory, self.pin_memory_device = pin_memory, pin_memory_device
        self.worker_init_fn, self.generator = worker_init_fn, generator
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self._iterable = isinstance(dataset, IterableDataset)

        if self._iterable:
            if shuffle not in (False, None):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified batch_sampler option, "
                                 f"but got batch_sampler={batch_sampler}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")

        if sampler is None:
            if self._iterable:
                sampler = _InfiniteNones()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None or (self._iterable and self.batch_size is not None)

    @property
    def _index_sampler(self) -> Iterable:
        return self.batch_sampler if self.batch_sampler is not None and not self._iterable else self.sampler

    def _fetcher(self) -> Callable:
        if self._iterable:
            return _IterableFetcher(self._auto_collation, self.collate_fn, self.batch_size, self.drop_last)
        return _MapFetcher(self._auto_collation, self.collate_fn)

    def __iter__(self) -> Iterator:
        # Drawn first, as PyTorch does, so the sampler's order is the same whatever num_workers.
        base_seed = int(numpy_rng(self.generator).integers(0, 2**63 - 1))
        if self.num_workers == 0:
            return _single_process(self, base_seed)
        return _MultiProcessIter(self, base_seed)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
            return n
        return len(self._index_sampler)  # type: ignore[arg-type]


def _single_process(loader: DataLoader, base_seed: int) -> Iterator:
    fetch, state = loader._fetcher(), {}
    for indices in loader._index_sampler:
        try:
            batch = fetch(loader.dataset, indices, state)
        except StopIteration:
            return
        yield batch


class _MultiProcessIter:
    """One epoch with worker processes (see :mod:`.worker`): tasks out round-robin, at most
    ``prefetch_factor * num_workers`` in flight, results re-ordered by task id. The workers
    are stopped when the epoch ends, when an error is raised, or when the iterator is dropped."""

    def __init__(self, loader: DataLoader, base_seed: int) -> None:
        self._shut = False
        self._workers: list = []
        self._index_queues: list = []
        ctx = loader.multiprocessing_context
        if ctx is None or isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        self._loader = loader
        self._timeout = loader.timeout
        self._indices = iter(loader._index_sampler)
        self._result_queue = ctx.Queue()
        fetch = loader._fetcher()
        n = loader.num_workers
        for worker_id in range(n):
            index_queue = ctx.Queue()
            index_queue.cancel_join_thread()
            w = ctx.Process(target=worker_loop, daemon=True,
                            args=(fetch, loader.dataset, index_queue, self._result_queue, worker_id, n,
                                  (base_seed + worker_id) % 2**63, loader.worker_init_fn))
            w.start()
            self._index_queues.append(index_queue)
            self._workers.append(w)
        self._active = [True] * n
        self._task_worker: dict[int, int] = {}
        self._buffer: dict[int, Any] = {}
        self._sent = self._next_task = 0
        self._turn = 0
        self._exhausted = False
        for _ in range(loader.prefetch_factor * n):
            self._send_one()

    def __iter__(self) -> "_MultiProcessIter":
        return self

    def _send_one(self) -> None:
        if self._exhausted or not any(self._active):
            return
        try:
            indices = next(self._indices)
        except StopIteration:
            self._exhausted = True
            return
        n = len(self._workers)
        for _ in range(n):  # the next worker that still has data
            worker = self._turn
            self._turn = (self._turn + 1) % n
            if self._active[worker]:
                break
        self._index_queues[worker].put((self._sent, indices))
        self._task_worker[self._sent] = worker
        self._sent += 1

    def __next__(self) -> Any:
        try:
            while True:
                if self._next_task >= self._sent:
                    raise StopIteration
                task = self._next_task
                if task not in self._buffer and not self._active[self._task_worker[task]]:
                    self._next_task += 1  # a task sent to a worker whose stream had already ended
                    continue
                while task not in self._buffer:
                    task_id, result = self._get()
                    self._buffer[task_id] = result
                result = self._buffer.pop(task)
                del self._task_worker[task]
                self._next_task += 1
                if isinstance(result, StopMarker):
                    self._active[result.worker_id] = False
                    self._send_one()
                    continue
                self._send_one()
                if isinstance(result, ExceptionWrapper):
                    result.reraise()
                return unpack(result)
        except BaseException:
            self._shutdown()
            raise

    def _get(self) -> tuple:
        waited = 0.0
        while True:
            try:
                return self._result_queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                waited += _POLL_SECONDS
                dead = [w for w in self._workers if not w.is_alive()]
                if dead:
                    codes = ", ".join(f"pid {w.pid}: exit code {w.exitcode}" for w in dead)
                    raise RuntimeError(f"DataLoader worker ({codes}) exited unexpectedly") from None
                if self._timeout and waited >= self._timeout:
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None

    def _shutdown(self) -> None:
        """Stop every worker: a sentinel first, then terminate what has not exited."""
        if getattr(self, "_shut", True):
            return
        self._shut = True
        for q in self._index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
                w.join(timeout=5)
        for q in self._index_queues:
            q.close()
        if hasattr(self, "_result_queue"):
            self._result_queue.cancel_join_thread()
            self._result_queue.close()

    def __del__(self) -> None:
        self._shutdown()

    def __len__(self) -> int:
        return len(self._loader)
