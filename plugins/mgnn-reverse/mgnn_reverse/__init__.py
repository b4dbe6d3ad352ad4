"""mgnn-reverse: the ``reverse`` dataset and the ``cer`` metric, as microgradnn plugins."""

from __future__ import annotations

from .dataset import reverse
from .metric import CER, cer, edit_distance

__all__ = ["reverse", "CER", "cer", "edit_distance"]
__version__ = "0.1.0"
