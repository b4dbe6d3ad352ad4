"""The fused kernels: numba (kernels_cpu) against the plain-numpy reference, and the rules
that keep the three kernel tables (kernels_cpu, reference, kernels_cuda) in step.

* every CPU kernel equals its reference twin on random inputs (float32 and float64), for
  every option variant in tests/kernel_cases.py; hypothesis draws the seed;
* every kernel name exists in all three modules with the same parameters, so a new CPU
  kernel without a reference or a CUDA twin (or test cases) fails here;
* every numba function is compiled with ``cache=True`` (a second run pays no compile time),
  and importing microgradnn imports neither numba nor cupy (kernels load lazily).

The CuPy twins themselves run in tests/test_cuda.py, on a machine with a GPU.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_cases import CASES, VARIANTS, make_args, run, tolerances
from microgradnn.backend import kernels_cpu, reference

KERNELS_CUDA_PATH = Path(kernels_cpu.__file__).with_name("kernels_cuda.py")


def _public_functions(module) -> dict:
    """Public functions defined in ``module`` (not the ones it imports, except its own twins)."""
    return {
        name: fn
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__ == module.__name__
    }


def _cuda_kernel_names() -> set:
    """The names kernels_cuda exports, read from its source with ``ast``: this needs neither
    CuPy nor a GPU, and does not even need the module to import."""
    tree = ast.parse(KERNELS_CUDA_PATH.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("kernels_cuda.py has no __all__ list")


CPU_KERNELS = _public_functions(kernels_cpu)


# ------------------------------------------------------------------------- name parity


def test_kernel_tables_have_the_same_names():
    cpu = set(CPU_KERNELS)
    ref = set(_public_functions(reference))
    cuda = _cuda_kernel_names()
    assert cpu, "found no kernels in kernels_cpu"
    assert cpu - ref == set(), f"CPU kernels without a plain-xp reference in reference.py: {sorted(cpu - ref)}"
    assert ref - cpu == set(), f"reference functions without a numba kernel in kernels_cpu.py: {sorted(ref - cpu)}"
    assert cpu - cuda == set(), f"CPU kernels without a CuPy twin in kernels_cuda.py (__all__): {sorted(cpu - cuda)}"
    assert cuda - cpu == set(), f"kernels_cuda.py exports names with no CPU kernel: {sorted(cuda - cpu)}"


def test_kernels_cuda_imports_without_cupy_and_exports_functions():
    # importing must never need CuPy: the CUDA backend (and this suite) import it lazily
    from microgradnn.backend import kernels_cuda

    for name in kernels_cuda.__all__:
        assert inspect.isfunction(getattr(kernels_cuda, name)), name


@pytest.mark.parametrize("name", sorted(CPU_KERNELS))
def test_kernel_signatures_match(name):
    from microgradnn.backend import kernels_cuda

    cpu = list(inspect.signature(CPU_KERNELS[name]).parameters)
    ref = list(inspect.signature(getattr(reference, name)).parameters)
    cuda = list(inspect.signature(getattr(kernels_cuda, name)).parameters)
    assert ref[0] == "xp", f"reference.{name} must take xp first"
    assert ref[1:] == cpu, f"reference.{name}{ref[1:]} != kernels_cpu.{name}{cpu}"
    assert cuda == cpu, f"kernels_cuda.{name}{cuda} != kernels_cpu.{name}{cpu}"


def test_every_kernel_has_cases():
    assert set(CASES) == set(CPU_KERNELS), (
        f"tests/kernel_cases.py lacks cases for {sorted(set(CPU_KERNELS) - set(CASES))} "
        f"(or has stale ones: {sorted(set(CASES) - set(CPU_KERNELS))})"
    )


# ------------------------------------------------------------------------- numba caching


def test_every_numba_kernel_is_cached_on_disk():
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    jitted = {name: fn for name, fn in vars(kernels_cpu).items() if isinstance(fn, Dispatcher)}
    assert len(jitted) >= len(CPU_KERNELS), f"expected a numba function per kernel, found {sorted(jitted)}"
    uncached = sorted(name for name, fn in jitted.items() if isinstance(fn._cache, NullCache))
    assert not uncached, f"numba functions compiled without cache=True: {uncached}"


def test_import_is_lazy():
    """``import microgradnn`` loads neither numba (compiled on the first fused op) nor cupy."""
    code = "import sys, microgradnn; print(sorted(m for m in ('numba', 'cupy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,variant", VARIANTS, ids=[f"{n}-{i}" for n, i in VARIANTS])
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_numba_kernel_matches_reference(name, variant, dtype, seed):
    args = make_args(name, variant, dtype, seed)
    fused = run(CPU_KERNELS[name], args)
    ref_fn = getattr(reference, name)
    expected = run(lambda *a: ref_fn(np, *a), args)
    assert len(fused) == len(expected)
    # In float32 the plain-xp reference itself rounds (1 - tanh(x)**2 cancels for large |x|),
    # while several kernels accumulate in float64. So the same reference run in float64 is
    # the truth, and the kernel passes where it is within tolerance of the float32
    # reference or at least as close to the truth as that reference is.
    truth = None
    if dtype == np.float32:
        widened = tuple(a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a
                        for a in args)
        truth = run(lambda *a: ref_fn(np, *a), widened)
    for k, (got, want) in enumerate(zip(fused, expected)):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape, f"{name} output {k}: shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, f"{name} output {k}: dtype {got.dtype} != {want.dtype}"
        if truth is not None and np.issubdtype(got.dtype, np.floating):
            exact = np.asarray(truth[k], dtype=np.float64)
            no_worse = np.abs(got - exact) <= np.abs(want.astype(np.float64) - exact) * (1 + 1e-6)
            got = np.where(no_worse, want, got)  # where the kernel is the more accurate, accept it
        np.testing.assert_allclose(got, want, err_msg=f"{name} output {k}", **tolerances(dtype))


def test_cases_are_not_degenerate():
    """The random inputs are random: no kernel is tested on all-zero arrays."""
    for name, index in VARIANTS:
        args = make_args(name, index, np.float64, 1)
        floats = [a for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size]
        assert floats or name == "embedding_backward", name  # its n=0 variant is empty on purpose
        assert all(np.count_nonzero(a) > 0 for a in floats), name


def test_vectorised_float32_exp_is_within_one_ulp():
    """The float32 exp the cross-entropy kernels use (Cephes' expf written for SIMD) against
    float64 numpy over the whole range where e^x is a normal float32."""
    from numba import njit

    @njit
    def exp_all(a, out):
        for i in range(a.shape[0]):
            out[i] = kernels_cpu._act_exp(a[i])

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-87.3, 88.3, 200_000), rng.uniform(-1, 1, 50_000),
                        [0.0, -1e-30, 1e-30, 1.0, -1.0, -87.3, 88.3]]).astype(np.float32)
    got = np.empty_like(x)
    exp_all(x, got)
    want = np.exp(x.astype(np.float64))
    ulps = np.abs(got.astype(np.float64) - want) / np.spacing(want.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 1.0, f"max error {ulps.max():.2f} ulp at x = {x[ulps.argmax()]}"
    assert got[x == 0.0][0] == 1.0
    # below the float32 normal range the result stays a tiny non-negative number, never NaN or inf
    exp_all(np.array([-200.0, -1e30, -np.inf], np.float32), tiny := np.empty(3, np.float32))
    assert np.all(np.isfinite(tiny)) and np.all(tiny >= 0) and np.all(tiny < 2e-38)


def test_cross_entropy_with_non_finite_logits_matches_torch():
    """NaN and +-inf logits give torch's losses (NaN where torch has NaN), not a clamped number."""
    import torch

    import microgradnn as mg

    x = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    x[1, 2], x[2, 3], x[3, 1] = np.nan, np.inf, -np.inf
    t = np.array([0, 1, 2, 3])
    got = mg.nn.functional.cross_entropy(mg.tensor(x), mg.tensor(t), reduction="none").array
    want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t), reduction="none").numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-6)
