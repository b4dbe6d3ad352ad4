"""Floor 3: modules, layers, recurrent cells and sequence layers, losses, initialisation.

``mg.nn.functional`` (``import microgradnn.nn.functional as F``) holds the stateless
functions and ``mg.nn.init`` the in-place initialisers, as in PyTorch.
"""

from . import functional, init, parametrize, utils
from .layers import (
    ELU, GELU, Dropout, Embedding, Flatten, Hardtanh, Identity, LayerNorm, LeakyReLU, Linear, LogSigmoid,
    LogSoftmax, ModuleDict, ModuleList, ParameterDict, ParameterList, ReLU, RMSNorm, Sequential, Sigmoid, SiLU,
    Softmax, Softplus, Tanh, Unflatten,
)
from .loss import (
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss,
)
from .module import IncompatibleKeys, Module, Parameter, StateDictError
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, Recurrent, RNNCell, run_sequence
