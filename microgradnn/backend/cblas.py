"""numpy's own BLAS, callable from numba-compiled code.

The whole-sequence recurrent drivers (:mod:`microgradnn.backend.kernels_cpu`) run the time
loop inside compiled code and need a matrix product at every step. Three ways were
measured (2-core EPYC, benchmarks/README.md):

* numba's ``np.dot`` inside ``@njit`` calls the BLAS that *scipy* ships (a second OpenBLAS,
  with its own thread pool, spinning next to numpy's) and goes through a generic wrapper
  that copies non-contiguous operands; it was the slowest of the three for B <= 4 rows
  and needs scipy as a dependency;
* ``numpy.matmul`` from Python, once per step: what the per-step path does; ~2-3 us of
  interpreter and dispatch per call, forward and backward;
* **this module**: the ``cblas_?gemm`` / ``cblas_?gemv`` (and ``cblas_?omatcopy``, a transpose) that numpy itself links (the
  OpenBLAS bundled in numpy's wheels, 64-bit integer interface, symbols prefixed
  ``scipy_`` and suffixed ``64_``), declared to numba by symbol name. Compiled code calls
  it directly, the same library and the same thread pool as every other matrix product of
  the process, and numba's on-disk cache keeps working (the call is resolved by name when
  the cached code is loaded, not baked in as an address).

Which kernels OpenBLAS picked for this CPU (:data:`CORE`) decides one route of the drivers:
on the cores whose kernels include OpenBLAS's small-matrix GEMMs (:data:`SMALL_GEMM`), a
product of a few rows in the plain ``NN`` form skips the packing every other GEMM does
(``kernels_cpu._times_transposed``).

Where numpy was built against another BLAS (conda's MKL, a distribution's OpenBLAS) the
symbols are not there: :data:`AVAILABLE` is False and the recurrent ops keep their per-step
path, which gives the same numbers.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

__all__ = ["AVAILABLE", "LIBRARY", "CORE", "SMALL_GEMM", "SGEMM", "DGEMM", "SGEMV", "DGEMV", "SOMATCOPY",
           "DOMATCOPY"]

SGEMM, DGEMM = "scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"
SGEMV, DGEMV = "scipy_cblas_sgemv64_", "scipy_cblas_dgemv64_"
# OpenBLAS's out-of-place transpose (an extension every OpenBLAS has): vectorised, where a
# compiled loop of ours moves one element at a time
SOMATCOPY, DOMATCOPY = "scipy_cblas_somatcopy64_", "scipy_cblas_domatcopy64_"
CORENAME = "scipy_openblas_get_corename64_"
# The cores whose OpenBLAS kernels include the avx512 small-matrix GEMMs (Cooper Lake and
# Sapphire Rapids reuse Skylake-X's). Measured on SkylakeX (an AMD EPYC with avx512 is given
# those kernels too); on Haswell's kernels the NN form packs like any other GEMM.
SMALL_GEMM_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def _find_numpy_openblas() -> str | None:
    """The path of the OpenBLAS that numpy's wheel bundles, if it has the symbols we call."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    here = os.path.dirname(np.__file__)
    patterns = [os.path.join(root, "numpy.libs", "libscipy_openblas64_*"),  # Linux wheels
                os.path.join(here, ".dylibs", "libscipy_openblas64_*"),     # macOS wheels
                os.path.join(root, "numpy.libs", "libscipy_openblas64_*.dll")]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            try:
                lib = ctypes.CDLL(path)
                if all(hasattr(lib, name) for name in (SGEMM, DGEMM, SGEMV, DGEMV, SOMATCOPY, DOMATCOPY)):
                    return path
            except OSError:
                continue
    return None


def _load() -> str | None:
    if os.environ.get("MICROGRADNN_SEQUENCE_DRIVERS", "1") == "0":  # an escape hatch for debugging
        return None
    path = _find_numpy_openblas()
    if path is None:
        return None
    import llvmlite.binding as llvm

    llvm.load_library_permanently(path)  # makes its symbols resolvable by name for numba
    return path


def _core(path: str | None) -> str:
    """OpenBLAS's name for the kernels it chose here, lower case ("" if unknown). It can
    differ from the CPU: ``OPENBLAS_CORETYPE`` overrides the choice."""
    if path is None:
        return ""
    corename = getattr(ctypes.CDLL(path), CORENAME, None)
    if corename is None:
        return ""
    corename.restype = ctypes.c_char_p
    return (corename() or b"").decode("ascii", "replace").strip().lower()


LIBRARY: str | None = _load()
AVAILABLE: bool = LIBRARY is not None
CORE: str = _core(LIBRARY)
SMALL_GEMM: bool = CORE in SMALL_GEMM_CORES
