"""``DistributedDataParallel``: the same model on every process, gradients averaged.

Each process (rank) runs forward and backward on its own shard of the batch. The gradients
of the trainable parameters are then averaged over the ranks, so every rank's optimizer
takes the same step and the replicas stay identical::

    dist.init_process_group()
    model = DistributedDataParallel(model)   # rank 0's weights copied to every rank
    loss = loss_fn(model(x_shard), y_shard)
    loss.backward()                          # .grad is now the average over the ranks
    optimizer.step()

How the averaging is done (PyTorch's design, scaled down): the trainable parameters are
grouped, last layer first, into buckets of about ``bucket_cap_mb`` megabytes. Each
parameter carries a post-accumulate-grad hook; when every parameter of a bucket has its
gradient, the bucket's gradients are copied into one flat buffer and averaged with a single
``MPI_Allreduce``, while backward goes on computing the rest. Buckets are reduced strictly
in order, so every rank issues the same collectives in the same sequence. Only parameters
with ``requires_grad`` are in a bucket: under LoRA only the adapters travel.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from .. import distributed as dist
from ..autograd import is_grad_enabled
from ..tensor import Tensor
from .module import Module, Parameter

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients are averaged together through one flat buffer.

    The buffer ends with one flag per parameter (1 where this rank has a gradient), reduced
    with the gradients: a parameter no rank has a gradient for keeps ``grad = None``, so an
    optimizer skips it exactly as it would in one process."""

    def __init__(self, params: list[tuple[str, Parameter]]) -> None:
        self.names = [n for n, _ in params]
        self.params = [p for _, p in params]
        sizes = [p.array.size for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.buffer = np.empty(int(self.offsets[-1]) + len(self.params), dtype=self.params[0].array.dtype)
        self.ready: set[int] = set()

    @property
    def complete(self) -> bool:
        return len(self.ready) == len(self.params)

    def reduce(self, op: "dist.ReduceOp" = dist.ReduceOp.AVG) -> None:
        """Average (or sum) this bucket's gradients over the ranks, writing them back in place."""
        flags = self.buffer[self.offsets[-1]:]
        for k, p in enumerate(self.params):
            part = self.buffer[self.offsets[k]:self.offsets[k + 1]]
            if p._grad is None:  # unused by this rank's graph: it contributes zeros
                part[...] = 0
                flags[k] = 0
            else:
                part[...] = dist.host_buffer(p._grad).reshape(-1)
                flags[k] = 1
        dist.all_reduce_array(self.buffer, op)
        for k, p in enumerate(self.params):
            part = self.buffer[self.offsets[k]:self.offsets[k + 1]].reshape(p.array.shape)
            if p._grad is None:
                if flags[k] > 0:  # another rank had a gradient: this rank takes the average too
                    p._grad = p._backend.xp.asarray(part.copy())
            elif isinstance(p._grad, np.ndarray):
                p._grad[...] = part
            else:
                p._grad[...] = p._backend.xp.asarray(part)
        self.ready.clear()


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the default process group.

    At construction every parameter and buffer is broadcast from rank 0, so the replicas
    start equal however each rank initialised them. ``state_dict()`` keys carry the
    ``module.`` prefix, as PyTorch's; save ``ddp.module.state_dict()`` for plain keys.
    ``device_ids``, ``output_device``, ``dim``, ``process_group``, ``check_reduction``,
    ``gradient_as_bucket_view`` and ``static_graph`` are accepted for PyTorch's signature.
    """

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group: Any = None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a Module, got {type(module).__name__}")
        if not dist.is_initialized():
            raise dist.DistributedError(
                "Default process group has not been initialized, please make sure to call init_process_group."
            )
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.bucket_cap_bytes = int((25 if bucket_cap_mb is None else bucket_cap_mb) * 1024 * 1024)
        self._sync = True
        self._hook_handles: list = []
        self._buckets: list[_Bucket] = []
        self._signature: tuple = ()
        self._next_bucket = 0
        self._sync_module_states()
        self._build_buckets()

    # ------------------------------------------------------------------ set-up

    def _sync_module_states(self) -> None:
        for p in self.module.parameters():
            dist.broadcast(p, 0)
        for b in self.module.buffers():
            dist.broadcast(b, 0)

    def _trainable(self) -> list[tuple[str, Parameter]]:
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def _build_buckets(self) -> None:
        """Group the trainable parameters, last first (backward meets them in about that
        order), into buckets of at most ``bucket_cap_bytes`` and one dtype each."""
        for remove in self._hook_handles:
            remove()
        trainable = self._trainable()
        self._signature = tuple(id(p) for _, p in trainable)
        self._buckets, current, size = [], [], 0
        for name, p in reversed(trainable):
            nbytes = p.array.size * p.array.dtype.itemsize
            if current and (size + nbytes > self.bucket_cap_bytes or current[0][1].array.dtype != p.array.dtype):
                self._buckets.append(_Bucket(current))
                current, size = [], 0
            current.append((name, p))
            size += nbytes
        if current:
            self._buckets.append(_Bucket(current))
        self._hook_handles = []
        for index, bucket in enumerate(self._buckets):
            for k, p in enumerate(bucket.params):
                self._hook_handles.append(p.register_post_accumulate_grad_hook(self._make_hook(index, k)))
        self._next_bucket = 0

    def _make_hook(self, bucket_index: int, position: int) -> Any:
        def on_grad(_param: Tensor) -> None:
            if self._sync:
                self._buckets[bucket_index].ready.add(position)
                self._reduce_ready_buckets()
        return on_grad

    def _reduce_ready_buckets(self) -> None:
        """Reduce complete buckets in index order: every rank issues the same sequence."""
        while self._next_bucket < len(self._buckets) and self._buckets[self._next_bucket].complete:
            self._buckets[self._next_bucket].reduce()
            self._next_bucket += 1
        if self._next_bucket == len(self._buckets):
            self._next_bucket = 0

    # ------------------------------------------------------------------ forward

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        self._check_previous_reduction()
        if self._signature != tuple(id(p) for _, p in self._trainable()):
            self._build_buckets()  # parameters were frozen or unfrozen: same on every rank
        if self.broadcast_buffers:
            for b in self.module.buffers():
                dist.broadcast(b, 0)
        output = self.module(*inputs, **kwargs)
        if self.find_unused_parameters and self._sync and is_grad_enabled():
            self._mark_unused(output)
        return output

    def _check_previous_reduction(self) -> None:
        pending = [b for b in self._buckets if b.ready]
        if not pending:
            return
        missing = [n for b in pending for k, n in enumerate(b.names) if k not in b.ready]
        raise RuntimeError(
            "Expected to have finished reduction in the prior iteration before starting a new one: "
            f"parameters that did not receive a gradient: {', '.join(missing[:8])}"
            f"{' ...' if len(missing) > 8 else ''}. Pass find_unused_parameters=True to "
            "DistributedDataParallel if some parameters take no part in the loss."
        )

    def _mark_unused(self, output: Any) -> None:
        """Walk the graph back from the outputs; trainable parameters it never reaches count
        as ready now (they contribute zeros), so their buckets do not wait for ever."""
        reached: set[int] = set()
        stack = [t._ctx for t in _tensors_in(output) if t._ctx is not None]
        seen: set[int] = set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            for inp in node.inputs:
                if inp._ctx is None:
                    reached.add(id(inp))
                elif id(inp._ctx) not in seen:
                    stack.append(inp._ctx)
        for bucket in self._buckets:
            for k, p in enumerate(bucket.params):
                if id(p) not in reached:
                    bucket.ready.add(k)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate local gradients only; the first backward after
        the block averages the accumulated sum (gradient accumulation with one reduction)."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous


def _tensors_in(output: Any) -> Iterator[Tensor]:
    if isinstance(output, Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from _tensors_in(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors_in(item)
