"""How many threads the matrix products (BLAS) and numba use: a policy, applied on request.

Importing or using microgradnn changes no thread pool: a library must not. The ``mgnn``
command applies the policy explicitly when it starts (``train.threads`` in the spec,
``--threads`` on the command line); a library user calls :func:`apply_threads` (for the
rest of the process) or uses :func:`limit_threads` (for a ``with`` block).

Why a policy at all. numpy's OpenBLAS starts one worker per core and its workers
busy-wait for the next product. Recurrent training runs thousands of small products per
step, each split over all workers, so every worker must be running for any product to
finish: when another process holds one of two cores, each product waits for the
scheduler to hand the core back. Measured on the project's 2-core machine (char-LM
example, 200 steps; benchmarks/README.md): 4,271 tokens/s with OpenBLAS's default of 2
threads against 34,150 with 1 thread while another process was busy. On an idle machine a
second thread helps the large products of big models, and the whole-sequence drivers
(backend/kernels_cpu.py) keep that benefit, but a default has to survive a laptop with a
browser open.

The default is therefore one core fewer than this process may use (``os.sched_getaffinity``),
at least 1 and at most 8: 1 on the 2-core machine, where it leaves a core to whatever else
runs, and on bigger machines enough threads for the per-step products, which stop scaling
long before 8. ``threads`` given explicitly wins.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

__all__ = ["default_threads", "usable_cpus", "apply_threads", "limit_threads", "thread_info"]

MAX_DEFAULT_THREADS = 8


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads(cpus: int | None = None) -> int:
    """The policy's thread count for ``cpus`` usable CPUs (default: this process's)."""
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, min(cpus - 1, MAX_DEFAULT_THREADS))


def _check(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int (or None for the default), got {threads!r}")
    return threads


def _set_numba_threads(threads: int) -> int | None:
    """Numba's own pool (parallel kernels; the project's kernels are single-threaded).
    Only touched when numba is already imported: the policy never imports it."""
    import sys

    numba = sys.modules.get("numba")
    if numba is None:
        return None
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return previous


class ThreadPolicy:
    """What :func:`apply_threads` did; :meth:`restore` undoes it."""

    def __init__(self, threads: int, limiter: Any, numba_previous: int | None):
        self.threads, self._limiter, self._numba_previous = threads, limiter, numba_previous

    def restore(self) -> None:
        self._limiter.restore_original_limits()
        if self._numba_previous is not None:
            _set_numba_threads(self._numba_previous)

    def __repr__(self) -> str:
        return f"ThreadPolicy(threads={self.threads})"


def apply_threads(threads: int | None = None) -> ThreadPolicy:
    """Set the BLAS libraries loaded in this process (numpy's OpenBLAS, and any other that
    threadpoolctl finds) and numba to ``threads`` threads, or to :func:`default_threads`.

    This changes process-wide state on purpose; it is what ``mgnn`` calls at start-up.
    Returns a :class:`ThreadPolicy` whose ``restore()`` puts the previous limits back."""
    from threadpoolctl import threadpool_limits

    import numpy  # noqa: F401  (its BLAS must be loaded for threadpoolctl to find it)

    n = default_threads() if threads is None else _check(threads)
    limiter = threadpool_limits(limits=n, user_api="blas")
    return ThreadPolicy(n, limiter, _set_numba_threads(n))


@contextlib.contextmanager
def limit_threads(threads: int | None = None) -> Iterator[ThreadPolicy]:
    """``with limit_threads(1): ...``: the policy inside the block only."""
    policy = apply_threads(threads)
    try:
        yield policy
    finally:
        policy.restore()


def thread_info() -> list[dict]:
    """threadpoolctl's view of the BLAS/OpenMP pools loaded now (for ``mgnn`` diagnostics)."""
    from threadpoolctl import threadpool_info

    return threadpool_info()
