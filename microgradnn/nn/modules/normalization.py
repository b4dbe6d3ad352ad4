"""``nn.modules.normalization``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..layers import (  # noqa: F401
    LayerNorm, RMSNorm,
)

__all__ = ["LayerNorm", "RMSNorm"]
