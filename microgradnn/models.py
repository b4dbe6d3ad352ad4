"""Ready-made models: the embedding -> recurrent stack -> head network that specs build.

``SequenceModel``'s submodules are named ``embedding``, ``rnn`` and ``head`` so its
``state_dict`` keys match the usual PyTorch char-LM (``embedding.weight``,
``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``): such a PyTorch checkpoint loads
unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

from .nn.layers import Dropout, Embedding, Linear
from .nn.module import Module, Parameter
from .nn.rnn import GRU, LSTM, RNN, Recurrent
from .tensor import Tensor, cat

__all__ = ["SequenceModel", "TASKS", "BUILTIN_CELLS"]

TASKS = ("lm", "classification", "regression")

#: Cells with a fused PyTorch-compatible sequence layer; any other cell runs through
#: the generic runner (:class:`~microgradnn.nn.Recurrent`).
BUILTIN_CELLS: dict[str, Callable[..., Module]] = {
    "lstm": lambda **kw: LSTM(**kw),
    "gru": lambda **kw: GRU(**kw),
    "rnn": lambda **kw: RNN(nonlinearity="tanh", **kw),
    "rnn_tanh": lambda **kw: RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: RNN(nonlinearity="relu", **kw),
}


class SequenceModel(Module):
    """Tokens (or feature vectors) -> optional embedding -> recurrent layers -> linear head.

    Args:
        output_size: vocabulary size for ``task="lm"``, number of classes for
            ``"classification"``, number of targets for ``"regression"``.
        vocab_size: give it for token inputs (an ``Embedding(vocab_size, embedding_dim)``
            is built); leave None for float inputs with ``input_size`` features per step.
        cell: "lstm" | "gru" | "rnn" | "rnn_tanh" | "rnn_relu", or a cell class/factory
            (a plugin cell) that the generic :class:`~microgradnn.nn.Recurrent` runs.
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
            raise ValueError(f"SequenceModel: task must be one of {TASKS}, got {task!r}")
        if (vocab_size is None) == (input_size is None):
            raise ValueError("SequenceModel: give exactly one of vocab_size (tokens) or input_size (features)")
        if task == "lm" and bidirectional:
            raise ValueError("SequenceModel: a language model can't be bidirectional (it would see the future)")
        self.task = task
        self.output_size = output_size
        if vocab_size is not None:
            self.embedding = Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
            rnn_input = embedding_dim
        else:
            self.embedding = None
            rnn_input = input_size
        self.rnn = _build_rnn(cell, rnn_input, hidden_size, num_layers, dropout, bidirectional,
                              init_state, cell_options or {})
        self.drop = Dropout(dropout)
        directions = 2 if bidirectional else 1
        self.head = Linear(hidden_size * directions, output_size)
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
        if self.task == "lm":
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


def _build_rnn(cell: Any, input_size: int, hidden_size: int, num_layers: int, dropout: float,
               bidirectional: bool, init_state: str | None, cell_options: dict) -> Module:
    common = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                  dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional,
                  batch_first=True, init_state=init_state)
    if isinstance(cell, str):
        key = cell.lower()
        if key not in BUILTIN_CELLS:
            raise ValueError(f"unknown cell {cell!r}; built-in cells are {sorted(BUILTIN_CELLS)}")
        return BUILTIN_CELLS[key](**common, **cell_options)
    return Recurrent(cell, **common, **cell_options)


