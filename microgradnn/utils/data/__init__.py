"""``mg.utils.data`` (minimal here: the i13b branch brings datasets, samplers and the DataLoader;
merging keeps theirs and adds the DistributedSampler line below)."""

from .distributed import DistributedSampler

__all__ = ["DistributedSampler"]
