"""Attention: a decoder step looks back at every encoder position and takes a weighted mix.

An encoder turns a source sentence into S vectors ``keys`` (B, S, K), one per source
position. At each output step a decoder holds a ``query`` (B, Q), its own hidden state.
Attention answers "which source positions matter now?" in three lines::

    e_s   = score(query, key_s)                     one number per source position
    a     = softmax(e) over s (padding excluded)    the alignment: weights that sum to 1
    c     = sum_s a_s * key_s                       the context vector (B, K)

The ``score`` function is the only thing the variants disagree on:

=============  ==========================================  ================================
name           score(q, k)                                 paper
=============  ==========================================  ================================
``additive``   ``v . tanh(W_q q + W_k k)``                 Bahdanau, Cho & Bengio 2015
``dot``        ``q . k`` (Q must equal K)                  Luong, Pham & Manning 2015
``general``    ``q . (W k)``                               Luong, Pham & Manning 2015
=============  ==========================================  ================================

Each is a Module ``forward(query, keys, mask=None) -> (context, weights)``. ``mask`` (B, S)
bool marks the **real** source positions (True = attend, False = padding, as Hugging
Face's ``attention_mask``); padded positions get a score of -inf, so after the softmax
their weight is exactly 0, and so is the gradient that reaches them.

Everything that does not depend on the query (``W_k k`` for additive, ``W k`` for general)
is computed once per source sentence by :meth:`Attention.project_keys` and passed back
as ``projected=`` at every decoder step: for T target steps that saves T - 1 matrix
products over the whole source.

Attention is a plugin kind of its own (entry-point group ``microgradnn.attention``): a
plugin subclasses :class:`Attention`, takes ``(query_size, key_size, **options)`` and
implements ``score`` (and, if it likes, ``project_keys``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor, empty
from . import init
from .layers import Linear
from .module import Module, Parameter

__all__ = ["Attention", "AdditiveAttention", "DotAttention", "GeneralAttention", "lengths_to_mask"]


def lengths_to_mask(lengths: Any, max_len: int, xp: Any = np) -> Any:
    """(B,) lengths -> (B, max_len) bool array, True at positions t < length (real)."""
    lens = xp.asarray(getattr(lengths, "array", lengths)).reshape(-1, 1)
    return xp.arange(max_len)[None, :] < lens


class Attention(Module):
    """The shared part of every attention: mask, softmax, weighted sum.

    Subclasses define ``score(query, projected) -> (B, S)`` and may define
    ``project_keys(keys)`` (default: the keys themselves)."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        for name, value in (("query_size", query_size), ("key_size", key_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}")
        self.query_size, self.key_size = query_size, key_size

    def project_keys(self, keys: Tensor) -> Tensor:
        """The query-independent part of the score, computed once per source (B, S, ·)."""
        return keys

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, mask: Any = None,
                projected: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``query`` (B, Q), ``keys`` (B, S, K), ``mask`` (B, S) bool (True = real position)
        -> ``(context (B, K), weights (B, S))``."""
        if query.ndim != 2 or keys.ndim != 3 or query.shape[0] != keys.shape[0]:
            raise ValueError(f"{type(self).__name__}: expected query (B, {self.query_size}) and keys "
                             f"(B, S, {self.key_size}), got {query.shape} and {keys.shape}")
        if projected is None:
            projected = self.project_keys(keys)
        scores = self.score(query, projected)  # (B, S)
        if mask is not None:
            real = getattr(mask, "array", mask)
            if tuple(real.shape) != tuple(scores.shape):
                raise ValueError(f"{type(self).__name__}: mask must be (B, S) = {scores.shape}, got {tuple(real.shape)}")
            # exp(-inf) = 0 exactly, so padding gets weight 0 and no gradient.
            scores = scores.masked_fill(~real.astype(bool), float("-inf"))
        weights = scores.softmax(-1)
        context = (weights.unsqueeze(1) @ keys).squeeze(1)  # (B, 1, S) @ (B, S, K) -> (B, K)
        return context, weights

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}"


class AdditiveAttention(Attention):
    """Bahdanau's "concat" score ``v . tanh(W_q q + W_k k)`` through a hidden layer of
    ``attention_size`` units (default: ``query_size``). Names follow the paper: ``W_q``
    (``query_proj``), ``W_k`` (``key_proj``, with the bias), ``v``."""

    def __init__(self, query_size: int, key_size: int, attention_size: int | None = None) -> None:
        super().__init__(query_size, key_size)
        size = query_size if attention_size is None else attention_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"AdditiveAttention: attention_size must be a positive int, got {attention_size!r}")
        self.attention_size = size
        self.query_proj = Linear(query_size, size, bias=False)
        self.key_proj = Linear(key_size, size)
        self.v = Parameter(empty(size))
        bound = 1.0 / size ** 0.5  # as a Linear(size, 1) would be initialised
        init.uniform_(self.v, -bound, bound)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (B, S, A)

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        hidden = (projected + self.query_proj(query).unsqueeze(1)).tanh()  # (B, S, A)
        return hidden @ self.v  # (B, S)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", attention_size={self.attention_size}"


class DotAttention(Attention):
    """Luong's "dot" score ``q . k``: no parameters; ``scale=True`` divides by sqrt(K)
    (the Transformer's scaled dot product)."""

    def __init__(self, query_size: int, key_size: int, scale: bool = False) -> None:
        super().__init__(query_size, key_size)
        if query_size != key_size:
            raise ValueError(f"DotAttention: query_size ({query_size}) must equal key_size ({key_size}); "
                             "use 'general' attention for different sizes")
        self.scale = bool(scale)

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        scores = (projected @ query.unsqueeze(-1)).squeeze(-1)  # (B, S, K) @ (B, K, 1)
        return scores * (1.0 / self.key_size ** 0.5) if self.scale else scores


class GeneralAttention(Attention):
    """Luong's "general" score ``q . (W k)`` with ``W`` (Q, K), stored as ``linear.weight``."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__(query_size, key_size)
        self.linear = Linear(key_size, query_size, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.linear(keys)  # (B, S, Q)

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        return (projected @ query.unsqueeze(-1)).squeeze(-1)
