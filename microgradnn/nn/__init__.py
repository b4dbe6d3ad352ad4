"""Floor 3: modules, layers, recurrent cells and sequence layers, losses, initialisation."""

from . import utils
from .layers import (
    GELU, Dropout, Embedding, Identity, Linear, ModuleDict, ModuleList, ReLU, Sequential, Sigmoid, Tanh,
)
from .module import IncompatibleKeys, Module, Parameter, StateDictError
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, Recurrent, RNNCell, run_sequence
