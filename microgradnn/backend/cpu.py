"""The CPU backend: numpy arrays, numba kernels (compiled lazily, cached on disk)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import Backend


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

    def index_add(self, target: Any, index: Any, values: Any) -> None:
        np.add.at(target, index, values)
