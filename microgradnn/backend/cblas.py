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

OpenBLAS's own GEMM building blocks (:data:`PACKED`). Every ``cblas_sgemm`` call copies both
operands into OpenBLAS's blocked layout ("packing") and then runs one register-blocked
kernel over the packed blocks. A recurrent layer multiplies the same W_hh at every step, so
it packs W_hh once per call and runs the kernel itself (``backend/packed.py``): the
packing routines and the kernel for this core (``sgemm_incopy_SKYLAKEX``,
``sgemm_kernel_SKYLAKEX``, ...) are exported by the DYNAMIC_ARCH build numpy ships, under
the core's name. They are internal to OpenBLAS, so they are used only after a self-test at
import (a product with ragged edges, float32 and float64, against ``cblas_?gemm``) and
under names of our own (``mgnn_openblas_sgemm_kernel``, ...) that numba's disk cache can keep
whatever the core. :func:`run_on_blas_threads` runs a compiled function on OpenBLAS's own
worker threads (its ``gotoblas_pthread``), so the time loop uses the same threads, the same
count and the same limits (threadpoolctl, ``train.threads``) as every other product.

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
           "DOMATCOPY", "PACKED", "PACKED_PARTS", "blas_threads", "run_on_blas_threads"]

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

# ----------------------------------------------------------------- packed products

#: The parts of OpenBLAS's GEMM that backend/packed.py calls, per precision ``s`` / ``d``:
#: the kernel ``C += alpha * A_packed B_packed`` (C column-major) and four packing routines
#: (``incopy``: A from a matrix stored along K; ``itcopy``: A stored along M; ``oncopy``: B
#: stored along K; ``otcopy``: B stored along N). Exported as ``{p}{part}_{CORE}``; numba sees
#: them as ``mgnn_openblas_{p}{part}``.
PACKED_PARTS = ("gemm_kernel", "gemm_incopy", "gemm_itcopy", "gemm_oncopy", "gemm_otcopy")
PACKED_ALIAS = "mgnn_openblas_{}"
_RUN_THREADS, _NUM_THREADS = "gotoblas_pthread", "scipy_openblas_get_num_threads64_"


#: Packed blocks start on a page, as OpenBLAS's own buffers do: some cores' kernels use
#: aligned vector loads on them (Sandy Bridge's crash on a 16-byte aligned block).
PACKED_ALIGN = 4096


def aligned_zeros(size: int, dtype) -> np.ndarray:
    """A zeroed 1-D array of ``size`` elements starting on a :data:`PACKED_ALIGN` boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(size * itemsize + PACKED_ALIGN, np.uint8)
    start = -raw.ctypes.data % PACKED_ALIGN
    return raw[start : start + size * itemsize].view(dtype)


def _packed_functions(path: str | None, core: str) -> dict | None:
    """name -> ctypes function of every packed part, or None where one is missing."""
    if path is None or not core:
        return None
    lib = ctypes.CDLL(path)
    found = {}
    for p in "sd":
        for part in PACKED_PARTS:
            fn = getattr(lib, f"{p}{part}_{core.upper()}", None)
            if fn is None:
                return None
            copy = part != "gemm_kernel"
            real = ctypes.c_float if p == "s" else ctypes.c_double
            fn.restype = ctypes.c_int
            fn.argtypes = ([ctypes.c_int64] * 2 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p] if copy else
                           [ctypes.c_int64] * 3 + [real] + [ctypes.c_void_p] * 3 + [ctypes.c_int64])
            found[p + part] = fn
    for name in (_RUN_THREADS, _NUM_THREADS):
        fn = getattr(lib, name, None)
        if fn is None:
            return None
        found[name] = fn
    found[_RUN_THREADS].restype = ctypes.c_int
    found[_RUN_THREADS].argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    found[_NUM_THREADS].restype = ctypes.c_int
    found[_NUM_THREADS].argtypes = []
    return found


def _packed_product_agrees(fns: dict, p: str) -> bool:
    """The self-test: out (N, M) = x (N, K) @ w (M, K)^T, out2 (N, K) = g (N, M) @ w, out3 (M, K) =
    g^T x and g's column sums, through
    the packing routines and the kernel, against numpy's product (odd sizes: every edge case
    of the panels is on the way)."""
    dtype = np.float32 if p == "s" else np.float64
    rng = np.random.default_rng(12)
    M, N, K = 45, 7, 19
    w = rng.standard_normal((M, K)).astype(dtype)
    x = rng.standard_normal((N, K)).astype(dtype)
    g = rng.standard_normal((N, M)).astype(dtype)
    sa = aligned_zeros((M + 64) * (K + 64), dtype)
    sb = aligned_zeros((M + 64) * (N + 64), dtype)
    out = np.zeros((N, M), dtype)
    fns[p + "gemm_incopy"](K, M, w.ctypes.data, K, sa.ctypes.data)
    fns[p + "gemm_oncopy"](K, N, x.ctypes.data, K, sb.ctypes.data)
    fns[p + "gemm_kernel"](M, N, K, 1.0, sa.ctypes.data, sb.ctypes.data, out.ctypes.data, M)
    out2 = np.zeros((N, K), dtype)
    fns[p + "gemm_itcopy"](M, K, w.ctypes.data, K, sa.ctypes.data)
    fns[p + "gemm_oncopy"](M, N, g.ctypes.data, M, sb.ctypes.data)
    fns[p + "gemm_kernel"](K, N, M, 1.0, sa.ctypes.data, sb.ctypes.data, out2.ctypes.data, K)
    # out3 (M, K) = g^T x (a weight gradient: A = x^T stored along M, B = g stored along N),
    # and g's column sums as the same product with a row of ones for A (M = 1)
    out3 = np.zeros((M, K), dtype)
    fns[p + "gemm_itcopy"](N, K, x.ctypes.data, K, sa.ctypes.data)
    fns[p + "gemm_otcopy"](N, M, g.ctypes.data, M, sb.ctypes.data)
    fns[p + "gemm_kernel"](K, M, N, 1.0, sa.ctypes.data, sb.ctypes.data, out3.ctypes.data, K)
    ones, sums = aligned_zeros(N + 64, dtype), np.zeros(M, dtype)
    ones[:] = 1
    fns[p + "gemm_kernel"](1, M, N, 1.0, ones.ctypes.data, sb.ctypes.data, sums.ctypes.data, 1)
    tol = 1e-4 if p == "s" else 1e-12
    return bool(np.allclose(out, x @ w.T, rtol=tol, atol=tol) and np.allclose(out2, g @ w, rtol=tol, atol=tol)
                and np.allclose(out3, g.T @ x, rtol=tol, atol=tol) and np.allclose(sums, g.sum(0), rtol=tol, atol=tol))


def _load_packed(path: str | None, core: str) -> dict | None:
    fns = _packed_functions(path, core)
    if fns is None or not all(_packed_product_agrees(fns, p) for p in "sd"):
        return None
    import llvmlite.binding as llvm

    for p in "sd":
        for part in PACKED_PARTS:
            llvm.add_symbol(PACKED_ALIAS.format(p + part), ctypes.cast(fns[p + part], ctypes.c_void_p).value)
    return fns


_PACKED_FUNCTIONS = _load_packed(LIBRARY, CORE) if os.environ.get("MICROGRADNN_PACKED", "1") != "0" else None
PACKED: bool = _PACKED_FUNCTIONS is not None


_most_threads = 1  # the largest count blas_threads() has returned: OpenBLAS's pool is at least that big


def blas_threads() -> int:
    """How many threads OpenBLAS uses for a product now (its own count, as threadpoolctl sets it)."""
    global _most_threads
    if _PACKED_FUNCTIONS is None:
        return 1
    threads = max(1, int(_PACKED_FUNCTIONS[_NUM_THREADS]()))
    _most_threads = max(_most_threads, threads)
    return threads


def run_on_blas_threads(function_address: int, args: np.ndarray) -> None:
    """Run the C function ``void f(void *)`` at ``function_address`` once per row of the
    int64 array ``args`` (row k is thread k's argument block): row 0 on the calling thread,
    the others on OpenBLAS's workers; returns when all are done. Take as many rows as
    :func:`blas_threads` said. If the count has been lowered since (threadpoolctl in another
    thread), OpenBLAS hands each row to a worker of its own, waiting for one to be free: the
    rows run one after another, correct and no faster. More rows than OpenBLAS ever ran
    threads are refused (its queue for them is a fixed array)."""
    if (args.ndim != 2 or not args.flags.c_contiguous or args.dtype != np.int64
            or not 1 <= args.shape[0] <= max(_most_threads, blas_threads())):
        raise ValueError(f"run_on_blas_threads: args must be a C-contiguous int64 (threads, n) array with "
                         f"1..{_most_threads} rows, got {args.dtype} {args.shape}")
    rows, width = args.shape
    _PACKED_FUNCTIONS[_RUN_THREADS](rows, function_address, args.ctypes.data, width * 8)
