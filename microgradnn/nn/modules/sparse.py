"""``nn.modules.sparse``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..layers import (  # noqa: F401
    Embedding,
)

__all__ = ["Embedding"]
