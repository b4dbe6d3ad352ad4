"""Packed sequences, PyTorch's ``torch.nn.utils.rnn``.

A batch of sequences of different lengths can be handed to ``RNN``/``LSTM``/``GRU`` two ways:
padded, with ``lengths=`` (microgradnn's own keyword), or *packed*, as in PyTorch. A
:class:`PackedSequence` stores only the real steps, time-major: first step 0 of every
sequence, then step 1 of every sequence still running, and so on, with the sequences sorted
longest first. ``batch_sizes[t]`` is how many sequences are still running at step t.

::

    lengths = [5, 2, 4]                     # padded x: (T=5, B=3, F)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    packed.sorted_indices   -> [0, 2, 1]    # longest first
    packed.batch_sizes      -> [3, 3, 2, 2, 1]
    packed.data             -> (11, F)      # sum(lengths) rows

A sequence layer given a PackedSequence unpacks it, runs its ``lengths`` path (one
implementation of variable lengths, :func:`microgradnn.nn.run_sequence` and the fused
kernels) and packs the output again, so the results are PyTorch's. Packing and unpacking
are one gather each (advanced indexing), so gradients flow through them.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from ...autograd import Variable
from ...tensor import Tensor, cat, full, stack, tensor

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence", "pack_sequence",
           "unpad_sequence", "unpack_sequence", "invert_permutation"]


class PackedSequence(NamedTuple):
    """PyTorch's fields: ``data`` (sum of lengths, *) the real steps, time-major;
    ``batch_sizes`` (T,) int64 sequences running at each step; ``sorted_indices`` the batch
    order used (longest first; None when the input was already sorted) and
    ``unsorted_indices`` its inverse."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda

    def to(self, *args: Any, **kwargs: Any) -> "PackedSequence":
        """The same packing with ``data`` moved/cast (``batch_sizes`` stay on the CPU)."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        move = lambda t: None if t is None else t.to(device=data.device)  # noqa: E731
        return PackedSequence(data, self.batch_sizes, move(self.sorted_indices), move(self.unsorted_indices))

    def cpu(self) -> "PackedSequence":
        return self.to("cpu")

    def cuda(self) -> "PackedSequence":
        return self.to("cuda")

    def float(self) -> "PackedSequence":
        return PackedSequence(self.data.float(), *self[1:])

    def double(self) -> "PackedSequence":
        return PackedSequence(self.data.double(), *self[1:])


def _host_ints(values: Any, what: str) -> np.ndarray:
    if isinstance(values, Variable):
        values = values.numpy() if hasattr(values, "numpy") else values.array
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise RuntimeError(f"{what} must be a 1D tensor, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{what} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The inverse permutation (``out[perm[i]] = i``), None for None."""
    if permutation is None:
        return None
    perm = _host_ints(permutation, "permutation")
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.size)
    return tensor(inverse, device=permutation.device if isinstance(permutation, Tensor) else "cpu")


def _batch_sizes(sorted_lengths: np.ndarray) -> np.ndarray:
    """batch_sizes[t] = how many (sorted) sequences are longer than t."""
    steps = np.arange(int(sorted_lengths[0]))
    return (sorted_lengths[None, :] > steps[:, None]).sum(1).astype(np.int64)


def _pack(x: Tensor, lengths: np.ndarray, order: np.ndarray, batch_first: bool) -> tuple:
    """Gather the real steps of padded ``x`` in packed order (batch rows taken in ``order``).

    Returns ``(data, batch_sizes)``. One gather: row t*B + b of the time-major (or b*T + t
    of the batch-first) flattened input for each running (t, b)."""
    sorted_lengths = lengths[order]
    batch_sizes = _batch_sizes(sorted_lengths)
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    rows = []
    for t, running in enumerate(batch_sizes):
        b = order[:running]
        rows.append(b * steps + t if batch_first else t * batch + b)
    flat = x.reshape(steps * batch, *x.shape[2:])
    return flat[x._backend.xp.asarray(np.concatenate(rows))], batch_sizes  # the index on x's device


def pack_padded_sequence(input: Tensor, lengths: Any, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded batch: ``input`` (T, B, *) or (B, T, *) with ``batch_first``;
    ``lengths`` (B,) a list or CPU int64 tensor. With ``enforce_sorted`` the lengths must be
    in decreasing order (``sorted_indices`` is then None); otherwise they are sorted here."""
    lens = _host_ints(lengths, "lengths")
    batch = input.shape[0] if batch_first else input.shape[1]
    steps = input.shape[1] if batch_first else input.shape[0]
    if lens.shape[0] != batch:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got {lens.shape[0]} "
                           f"(batch_size={batch})")
    if lens.size and lens.min() <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an element in 'lengths' "
                           "that is <= 0")
    if lens.size and lens.max() > steps:
        raise RuntimeError(f"Expected every length to be at most the number of time steps ({steps}), "
                           f"got {lens.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence "
                               "to sidestep this requirement if you do not need ONNX exportability.")
        order, sorted_indices = np.arange(batch), None
    else:
        order = np.argsort(-lens, kind="stable")
        sorted_indices = tensor(order, device=input.device)
    data, batch_sizes = _pack(input, lens, order, batch_first)
    return PackedSequence(data, tensor(batch_sizes), sorted_indices, invert_permutation(sorted_indices))


def _layout(sequence: PackedSequence) -> tuple:
    """(lengths in original batch order, batch order used for packing) of a PackedSequence."""
    batch_sizes = _host_ints(sequence.batch_sizes, "batch_sizes")
    batch = int(batch_sizes[0])
    sorted_lengths = (batch_sizes[None, :] > np.arange(batch)[:, None]).sum(1)
    order = np.arange(batch) if sequence.sorted_indices is None else _host_ints(sequence.sorted_indices, "sorted_indices")
    lengths = np.empty(batch, dtype=np.int64)
    lengths[order] = sorted_lengths
    return lengths, order, batch_sizes


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple:
    """Undo :func:`pack_padded_sequence`: ``(padded, lengths)`` with the batch in its
    original order; padded is (T, B, *) or (B, T, *), T = ``total_length`` or the longest."""
    lengths, order, batch_sizes = _layout(sequence)
    longest, batch = batch_sizes.shape[0], lengths.shape[0]
    if total_length is not None:
        if total_length < longest:
            raise ValueError("Expected total_length to be at least the length of the longest sequence in input, "
                             f"but got total_length={total_length} and max sequence length being {longest}")
        steps = total_length
    else:
        steps = longest
    data = sequence.data
    # position of each (t, b) in data, or the extra padding row at index len(data)
    where = np.full((steps, batch), data.shape[0], dtype=np.int64)
    start = 0
    for t, running in enumerate(batch_sizes):
        where[t, order[:running]] = np.arange(start, start + running)
        start += running
    if batch_first:
        where = where.T
    pad_row = full((1, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    gather = data._backend.xp.asarray(where.reshape(-1))  # the index on the data's device
    padded = cat([data, pad_row], 0)[gather].reshape(*where.shape, *data.shape[1:])
    return padded, tensor(lengths)


def pad_sequence(sequences: Sequence[Tensor], batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack sequences (L_i, *) into (T, B, *) (or (B, T, *)), padding each to the longest."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got {padding_side}.")
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    longest = max(s.shape[0] for s in sequences)
    rows = []
    for s in sequences:
        missing = longest - s.shape[0]
        if missing:
            pad = full((missing, *s.shape[1:]), padding_value, dtype=s.dtype, device=s.device)
            s = cat([s, pad] if padding_side == "right" else [pad, s], 0)
        rows.append(s)
    return stack(rows, 0 if batch_first else 1)


def pack_sequence(sequences: Sequence[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of sequences (L_i, *) directly."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences: Tensor, lengths: Any, batch_first: bool = False) -> list:
    """Undo :func:`pad_sequence`: a list of (L_i, *) tensors."""
    lens = _host_ints(lengths, "lengths")
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    return [x[b, : int(n)] for b, n in enumerate(lens)]


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """Undo :func:`pack_sequence`: a list of (L_i, *) tensors in the original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


def forward_packed(layer: Any, input: PackedSequence, hx: Any) -> tuple:
    """What a sequence layer does with a PackedSequence: unpack (original batch order), run
    the padded ``lengths`` path, pack the output with the input's own order. ``hx`` and the
    returned state are in the original batch order, as PyTorch's."""
    lengths, order, _ = _layout(input)
    padded, _ = pad_packed_sequence(input, batch_first=layer.batch_first)
    output, state = layer.forward(padded, hx, lengths=lengths)
    data, batch_sizes = _pack(output, lengths, order, layer.batch_first)
    return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), state
