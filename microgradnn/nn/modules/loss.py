"""``nn.modules.loss``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..loss import (  # noqa: F401
    MSELoss, L1Loss, SmoothL1Loss, HuberLoss, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss,
    NLLLoss,
)

__all__ = ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss"]
