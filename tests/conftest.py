"""Shared test helpers: hypothesis profiles, shape strategies, seeded random arrays, to_torch.

Hypothesis draws only small things (shapes and a seed); the arrays themselves come from a
numpy generator seeded by that seed, so a failing example is reproduced by its seed alone.

Profiles: ``default`` (25 examples, no deadline) and ``ci`` (derandomized, no example
database). Pick one with ``HYPOTHESIS_PROFILE=ci``. Modules that pass their own
``settings(...)`` keep them.

Test modules import the helpers with ``from conftest import ...``.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

settings.register_profile(
    "default", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# ----------------------------------------------------------------------------- strategies

#: A seed for :func:`floats` (and anything else random in a test).
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Small array shapes: up to 3 dims of 1..4 by default."""
    return array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcast_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3, max_side: int = 4) -> st.SearchStrategy:
    """Tuples of ``num_shapes`` mutually broadcast-compatible small shapes."""
    return mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side
    ).map(lambda s: s.input_shapes)


# ----------------------------------------------------------------------------- arrays


def floats(
    seed: int,
    shape: Iterable[int],
    low: float = 0.1,
    high: float = 2.0,
    positive: bool = False,
    avoid: Iterable[float] = (),
    margin: float = 0.05,
) -> np.ndarray:
    """A float64 array whose magnitudes lie in ``[low, high]`` (so never all zeros, never 0).

    ``positive`` drops the random sign (for log, sqrt, a power's base). Values within
    ``margin`` of a point in ``avoid`` (a clamp bound, say) are pushed ``2 * margin`` away,
    so finite differences never straddle a kink."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    x = rng.uniform(low, high, shape)
    if not positive:
        x = x * rng.choice([-1.0, 1.0], shape)
    x = np.asarray(x, dtype=np.float64)
    for point in avoid:
        near = np.abs(x - point) < margin
        x = np.where(near, point + np.where(x >= point, 2 * margin, -2 * margin), x)
    return x


def to_torch(t: Any, requires_grad: bool | None = None):
    """A torch leaf holding a copy of ``t`` (an mg.Tensor or array), requiring grad like ``t``."""
    import torch

    import microgradnn as mg

    data = np.array(t.detach().cpu().numpy() if isinstance(t, mg.Tensor) else t, copy=True)
    if requires_grad is None:
        requires_grad = bool(getattr(t, "requires_grad", False))
    return torch.tensor(data, requires_grad=requires_grad)
