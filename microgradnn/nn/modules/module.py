"""``nn.modules.module``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..module import (  # noqa: F401
    Module,
)

__all__ = ["Module"]
