"""``nn.modules.dropout``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..layers import (  # noqa: F401
    Dropout,
)

__all__ = ["Dropout"]
