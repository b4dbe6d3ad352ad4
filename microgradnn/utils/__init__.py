"""``mg.utils``: PyTorch's ``torch.utils`` home. :mod:`microgradnn.utils.data` holds
datasets, samplers and the :class:`~microgradnn.utils.data.DataLoader`."""

from . import data

__all__ = ["data"]
