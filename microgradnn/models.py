"""Ready-made models: the embedding -> recurrent stack -> head network that specs build.

``SequenceModel``'s submodules are named ``embedding``, ``rnn`` and ``head`` so its
``state_dict`` keys match the usual PyTorch char-LM (``embedding.weight``,
``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``): such a PyTorch checkpoint loads
unchanged.
"""

from __future__ import annotations

from typing import Any

from . import registry
from .contracts import SEQUENCE_LAYER_ARGS, contract
from .nn.layers import Dropout, Embedding, Linear
from .nn.module import Module
from .nn.rnn import Recurrent
from .tasks import get_task, task_names
from .tensor import Tensor, cat

__all__ = ["SequenceModel", "TASKS", "build_recurrent"]

#: The tasks a SequenceModel serves (declared in :mod:`microgradnn.tasks`).
TASKS = task_names()


class SequenceModel(Module):
    """Tokens (or feature vectors) -> optional embedding -> recurrent layers -> linear head.

    Args:
        output_size: vocabulary size for ``task="lm"``, number of classes for
            ``"classification"``, number of targets for ``"regression"``.
        vocab_size: give it for token inputs (an ``Embedding(vocab_size, embedding_dim)``
            is built); leave None for float inputs with ``input_size`` features per step.
        cell: a registered cell name ("lstm", "gru", "rnn", "rnn_relu", a plugin's) or a
            cell class/factory. A built-in name builds its cell's fused whole-sequence
            layer (``cell.sequence_layer``: LSTM, GRU, RNN); a plugin's name, or a class
            given directly, runs through the generic :class:`~microgradnn.nn.Recurrent`.
        cell_options: passed to that layer (``proj_size`` for an LSTM) or to the cell.
        init_state: None or "learned" (a trained initial state; also what prefix tuning uses).

    ``forward(x, state=None, lengths=None) -> (output, state)``: ``x`` is batch-first
    (B, T) int tokens or (B, T, F) floats. For ``"lm"`` the output is (B, T, output_size)
    logits at every step; otherwise (B, output_size) from each sequence's final hidden
    state (both directions' when bidirectional). ``state`` is the recurrent state to
    carry to the next chunk (truncated BPTT).

    ``prompt`` (None or a (P, embedding_dim) Parameter) is prepended to every embedded
    sequence: prompt tuning. The P prompt positions' outputs are dropped again for "lm".
    """

    def __init__(self, output_size: int, *, vocab_size: int | None = None, input_size: int | None = None,
                 embedding_dim: int = 64, padding_idx: int | None = None, cell: Any = "lstm",
                 hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, task: str = "lm", init_state: str | None = None,
                 cell_options: dict | None = None) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"SequenceModel: task must be one of {tuple(TASKS)}, got {task!r}")
        if (vocab_size is None) == (input_size is None):
            raise ValueError("SequenceModel: give exactly one of vocab_size (tokens) or input_size (features)")
        if bidirectional and not get_task(task).reads_backwards:
            raise ValueError("SequenceModel: a language model can't be bidirectional (it would see the future)")
        self.task = task
        self.output_size = output_size
        if vocab_size is not None:
            self.embedding = Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
            rnn_input = embedding_dim
        else:
            self.embedding = None
            rnn_input = input_size
        self.rnn = build_recurrent(cell, rnn_input, hidden_size, num_layers, dropout, bidirectional,
                                   init_state, cell_options or {})
        self.drop = Dropout(dropout)
        directions = 2 if bidirectional else 1
        width = getattr(self.rnn, "proj_size", 0) or hidden_size  # an LSTM projection narrows h
        self.head = Linear(width * directions, output_size)
        self.register_parameter("prompt", None)

    @property
    def hidden_size(self) -> int:
        return self.rnn.hidden_size

    def forward(self, x: Tensor, state: Any = None, lengths: Any = None) -> tuple[Tensor, Any]:
        inputs = self.embedding(x) if self.embedding is not None else x
        prompt_len = 0
        if self.prompt is not None:
            prompt_len = self.prompt.shape[0]
            batch = inputs.shape[0]
            prefix = self.prompt.unsqueeze(0).expand(batch, *self.prompt.shape)
            inputs = cat([prefix, inputs], dim=1)
            if lengths is not None:
                lengths = _shift_lengths(lengths, prompt_len)
        outputs, state = self.rnn(inputs, state, lengths=lengths) if lengths is not None else self.rnn(inputs, state)
        if get_task(self.task).per_step:
            if prompt_len:
                outputs = outputs[:, prompt_len:]
            return self.head(self.drop(outputs)), state
        return self.head(self.drop(self._final_hidden(state))), state

    def _final_hidden(self, state: Any) -> Tensor:
        """The top layer's final hidden state (each sequence's own end), both directions."""
        h_n = state[0] if isinstance(state, tuple) else state
        if self.rnn.bidirectional:
            return cat([h_n[-2], h_n[-1]], dim=1)
        return h_n[-1]


def _shift_lengths(lengths: Any, by: int) -> Any:
    if isinstance(lengths, Tensor):
        return lengths + by
    return [int(n) + by for n in lengths]


def build_recurrent(cell: Any, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                    bidirectional: bool = False, init_state: str | None = None,
                    cell_options: dict | None = None) -> Module:
    """The recurrent stack of a model: ``contract("cells").target(cell)`` (a built-in
    cell's fused layer, else the generic :class:`~microgradnn.nn.Recurrent` over the
    cell) called with the framework's arguments and ``cell_options``. The spec binds
    its options to this same callable, so what it accepts here builds."""
    common = dict(num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional,
                  batch_first=True, init_state=init_state)
    assert set(common) <= SEQUENCE_LAYER_ARGS
    if isinstance(cell, str):  # a registered name: what the spec's `cell:` builds
        target = contract("cells").target(registry.get("cells", cell))
        if target is not registry.get("cells", cell):
            return target(input_size, hidden_size, **common, **(cell_options or {}))
        cell = target
    # a cell class or factory given directly (or a plugin's): the generic runner
    return Recurrent(cell, input_size, hidden_size, **common, **(cell_options or {}))
