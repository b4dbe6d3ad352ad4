"""``nn.modules.flatten``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..layers import (  # noqa: F401
    Flatten, Unflatten,
)

__all__ = ["Flatten", "Unflatten"]
