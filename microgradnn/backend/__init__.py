"""Floor 1: where arrays live.

A :class:`Backend` bundles three things an op needs and nothing more:

* ``xp`` — the array module (``numpy`` on the CPU, ``cupy`` on the GPU). Ops are written
  once against ``xp`` (the Chainer/CuPy habit), so one function body serves both devices.
* ``name`` — the device name a user sees (``"cpu"`` or ``"cuda"``).
* ``kernel(name)`` — fused kernels by name. The CPU answers with a numba ``@njit``
  function, the GPU with a CuPy kernel; :mod:`microgradnn.backend.reference` holds a
  plain-``xp`` version of each, so the fused result is always testable.

Backends are created lazily: importing microgradnn never imports numba or cupy.

The device-specific pieces outside the kernels live here too, each in one place:
:func:`to_host` (any array or Tensor to a numpy array), :meth:`Backend.generator` (the
device's random generator), and :func:`tune_allocator`, an explicit opt-in to tune
glibc's allocator for training (the ``mgnn`` command calls it; a library user may).
Nothing here changes a process-wide setting on import or on first use.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["Backend", "get_backend", "DeviceError", "cuda_is_available", "to_host", "tune_allocator"]


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


class Backend:
    """An array module plus a table of fused kernels."""

    name: str
    xp: Any

    def __init__(self, name: str, xp: Any, kernel_loader: Callable[[str], Callable]):
        self.name = name
        self.xp = xp
        self._load_kernel = kernel_loader
        self._kernels: dict[str, Callable] = {}

    def kernel(self, name: str) -> Callable:
        """The fused kernel ``name`` for this device (loaded, and for numba compiled, on first use)."""
        try:
            return self._kernels[name]
        except KeyError:
            fn = self._kernels[name] = self._load_kernel(name)
            return fn

    def sequence_driver(self, name: str) -> Callable | None:
        """A compiled whole-sequence loop (``"lstm_sequence_forward"``, ...) or None.

        Only the CPU backend has them (backend/kernels_cpu.py); elsewhere, and where they
        are unavailable, the recurrent ops run their per-step loop from Python, which gives
        the same numbers. Not a kernel name: the three kernel tables stay in step without it."""
        return None

    def weight_gradients(self, grad: Any, inputs: list, sums: bool) -> tuple | None:
        """``([grad^T x for x in inputs], grad's column sums if sums)`` by a fused route, or None:
        then the op runs one matmul each (``ops.linalg.weight_gradients``). The CPU backend packs
        ``grad`` once for all of them (backend/packed.py); elsewhere there is no such route."""
        return None

    # Scatter-add (``a[idx] += v`` with repeated indices summed) is spelled differently
    # by numpy and cupy; it is the one array primitive the backends must provide.
    def index_add(self, target: Any, index: Any, values: Any) -> None:
        raise NotImplementedError

    def generator(self, seed: int) -> Any:
        """A new random generator on this device, seeded with ``seed``."""
        raise NotImplementedError

    def to_host(self, array: Any) -> np.ndarray:
        """This device's array as a numpy array (the array itself on the CPU)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


_BACKENDS: dict[str, Backend] = {}


def get_backend(device: "str | Backend | None") -> Backend:
    """Return the backend for ``"cpu"`` or ``"cuda"`` (``"cuda:0"`` is accepted). ``None``
    is the default device, the CPU, as in PyTorch (``torch.zeros(2, device=None)``)."""
    if isinstance(device, Backend):
        return device
    name = "cpu" if device is None else str(device).split(":", 1)[0]
    backend = _BACKENDS.get(name)
    if backend is not None:
        return backend
    if name == "cpu":
        from .cpu import CPUBackend

        backend = CPUBackend()
    elif name == "cuda":
        from .cuda import CUDABackend

        backend = CUDABackend()
    else:
        raise DeviceError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
    _BACKENDS[name] = backend
    return backend


def cuda_is_available() -> bool:
    """True when CuPy is installed and sees at least one GPU."""
    try:
        get_backend("cuda")
    except DeviceError:
        return False
    return True


def to_host(a: Any) -> np.ndarray:
    """A numpy array from a numpy array, a CuPy array, a Tensor (its ``.array``) or
    anything ``np.asarray`` takes: the one place that knows how data leaves a device."""
    if isinstance(a, np.ndarray):
        return a
    a = getattr(a, "array", a)  # a Tensor
    if not isinstance(a, np.ndarray) and hasattr(a, "get") and hasattr(a, "__cuda_array_interface__"):
        return a.get()
    return np.asarray(a)


def tune_allocator() -> bool:
    """Opt in to keeping freed memory for reuse (glibc only), as PyTorch's caching
    allocator does; see :func:`microgradnn.backend.cpu.keep_freed_memory_for_reuse`.

    This changes the allocator of the whole process, so the library never does it by
    itself: the ``mgnn`` command calls it, and so may a script that trains. Returns
    whether the setting was applied."""
    from .cpu import keep_freed_memory_for_reuse

    return keep_freed_memory_for_reuse()
