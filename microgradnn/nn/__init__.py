"""Floor 3: modules, layers, recurrent cells and sequence layers, losses, initialisation."""

from . import utils
from .module import IncompatibleKeys, Module, Parameter, StateDictError
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, Recurrent, RNNCell, run_sequence
