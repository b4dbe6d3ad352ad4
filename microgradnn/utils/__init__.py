"""``mg.utils``: PyTorch's ``torch.utils`` home (minimal here: the i13b branch brings the full package)."""

from . import data

__all__ = ["data"]
