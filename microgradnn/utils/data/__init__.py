"""``mg.utils.data``: PyTorch's ``torch.utils.data`` (datasets, samplers, ``DataLoader``).

::

    from microgradnn.utils.data import DataLoader, TensorDataset
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    for xb, yb in loader:
        ...

A spec's dataset (:mod:`microgradnn.data`) hands a split over as a map-style dataset with
``data_module.as_dataset("train")`` (see :mod:`.datamodule`).
"""

from .collate import default_collate, default_convert
from .dataloader import DataLoader
from .datamodule import DataModuleDataset, pad_collate
from .distributed import DistributedSampler
from .dataset import (
    ChainDataset, ConcatDataset, Dataset, IterableDataset, StackDataset, Subset, TensorDataset, random_split,
)
from .sampler import (
    BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler, WeightedRandomSampler,
)
from .worker import WorkerInfo, get_worker_info

__all__ = [
    "Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "ChainDataset", "StackDataset", "Subset",
    "random_split", "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
    "WeightedRandomSampler", "BatchSampler", "DistributedSampler", "DataLoader", "default_collate", "default_convert",
    "get_worker_info", "WorkerInfo", "DataModuleDataset", "pad_collate",
]
