"""The CPU backend: numpy arrays, numba kernels (compiled lazily, cached on disk)."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np

from . import Backend


def keep_freed_memory_for_reuse() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MiB for reuse instead of unmapping them.

    By default glibc serves big requests (128 KiB and up, a threshold it raises a little
    as it goes) with fresh ``mmap`` pages and hands them back to the kernel on ``free``.
    A training step allocates and frees the same multi-MB activations and gradients
    every time, so every step page-faults them in again, a fault per 4 KiB page:
    measured 1770 faults, about 4 ms of a 36 ms LSTM training step (benchmarks/). With
    these settings freed blocks stay in the heap (up to 256 MiB of free memory at its top
    before it is trimmed) and the next step reuses them: the trade PyTorch's caching
    allocator makes. Peak memory is unchanged (measured on the char-LM step).

    It changes the whole process's allocator, so it is an explicit opt-in
    (:func:`microgradnn.backend.tune_allocator`), never a side effect of importing or
    using the library. glibc only (Linux); skipped when the user tunes malloc
    (MALLOC_*_ or GLIBC_TUNABLES) or sets ``MICROGRADNN_MALLOC_TUNING=0``. Returns
    whether it was applied."""
    if not sys.platform.startswith("linux") or os.environ.get("MICROGRADNN_MALLOC_TUNING", "1") == "0":
        return False
    if "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt  # absent on musl and other libcs
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


def _load_cpu_kernel(name: str) -> Callable:
    # numba is imported here, on the first fused op, not when microgradnn is imported.
    from . import kernels_cpu

    try:
        return getattr(kernels_cpu, name)
    except AttributeError:
        raise KeyError(f"the CPU backend has no kernel {name!r}") from None


class CPUBackend(Backend):
    def __init__(self) -> None:
        super().__init__("cpu", np, _load_cpu_kernel)

    def generator(self, seed: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(seed))

    def to_host(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def sequence_driver(self, name: str) -> Callable | None:
        from . import kernels_cpu, packed

        driver = kernels_cpu.SEQUENCE_DRIVERS.get(name)
        return None if driver is None else packed.with_packed_loop(name, driver)

    def weight_gradients(self, grad: Any, inputs: list, sums: bool) -> tuple | None:
        from . import packed

        return packed.weight_grads(grad, inputs, sums)

    def index_add(self, target: Any, index: Any, values: Any) -> None:
        np.add.at(target, index, values)
