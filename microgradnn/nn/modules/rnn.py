"""``nn.modules.rnn``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..rnn import (  # noqa: F401
    RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell,
)

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]
