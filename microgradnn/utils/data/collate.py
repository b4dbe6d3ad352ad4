"""``default_collate``: a list of samples -> one batch, PyTorch's rules.

Tensors are stacked on a new first axis; numpy arrays become tensors and are stacked;
Python floats become a float64 tensor, ints an int64 tensor, bools a bool tensor (as
PyTorch); strings stay a list; a dict, namedtuple or list/tuple sample is collated field by
field (a tuple sample gives a list, as in PyTorch).
"""

from __future__ import annotations

import collections.abc
from typing import Any

import numpy as np

from ...dtypes import float64
from ...tensor import Tensor, stack, tensor

__all__ = ["default_collate", "default_convert"]


def default_convert(data: Any) -> Any:
    """What the loader applies when it does not batch (``batch_size=None``): numpy arrays
    (not of strings) become tensors, containers are converted element by element."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind in "SUO" else tensor(data)
    if isinstance(data, np.generic) and data.dtype.kind not in "SUO":
        return tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return [default_convert(d) for d in data]
    return data


def default_collate(batch: list) -> Any:
    """Collate a list of samples into a batch (see the module docstring)."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(list(batch), 0)
    if isinstance(elem, np.ndarray) and elem.dtype.kind not in "SUO":
        return tensor(np.stack(batch))
    if isinstance(elem, np.generic) and elem.dtype.kind not in "SUO":
        return tensor(np.array(batch))
    if isinstance(elem, bool):
        return tensor(batch)
    if isinstance(elem, float):
        return tensor(batch, dtype=float64)
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(samples)) for samples in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {type(elem)}")
