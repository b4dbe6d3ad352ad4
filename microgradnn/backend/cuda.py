"""The CUDA backend: CuPy arrays and CuPy twins of the CPU kernels."""

from __future__ import annotations

from typing import Any, Callable

from . import Backend, DeviceError

INSTALL_HINT = (
    "install the GPU extra with `pip install -e \".[cuda]\"` (CuPy for CUDA 12) "
    "on a machine with an NVIDIA GPU"
)


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(f"device 'cuda' needs CuPy, which is not installed: {INSTALL_HINT}") from exc
    except Exception as exc:  # CuPy present but broken (a CUDA library it links to is missing)
        raise DeviceError(f"device 'cuda': CuPy failed to import ({exc}); {INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise DeviceError(f"device 'cuda': CuPy is installed but found no usable GPU ({exc}); {INSTALL_HINT}") from exc
    if count == 0:
        raise DeviceError(f"device 'cuda': CuPy is installed but this machine has no GPU; {INSTALL_HINT}")
    return cupy


def _load_cuda_kernel(name: str) -> Callable:
    # kernels_cuda imports nothing heavy; each kernel compiles (per dtype) on its first call
    from . import kernels_cuda

    if name not in kernels_cuda.__all__:
        raise KeyError(f"the CUDA backend has no kernel {name!r} (it has: {', '.join(sorted(kernels_cuda.__all__))})")
    return getattr(kernels_cuda, name)


class CUDABackend(Backend):
    def __init__(self) -> None:
        super().__init__("cuda", _import_cupy(), _load_cuda_kernel)

    def generator(self, seed: int) -> Any:
        return self.xp.random.Generator(self.xp.random.XORWOW(seed))

    def to_host(self, array: Any) -> Any:
        return array.get() if hasattr(array, "get") else array

    def index_add(self, target: Any, index: Any, values: Any) -> None:
        add_at = getattr(self.xp.add, "at", None)  # CuPy >= 13; cupyx.scatter_add is deprecated there
        if add_at is not None:
            add_at(target, index, values)
        else:
            import cupyx

            cupyx.scatter_add(target, index, values)
