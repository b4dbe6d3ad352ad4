"""``nn.modules.activation``: PyTorch's class path; the classes are the ones in
:mod:`microgradnn.nn` (aliases, not copies)."""

from ..layers import (  # noqa: F401
    Tanh, Sigmoid, ReLU, GELU, LeakyReLU, ELU, SiLU, Softplus, LogSigmoid, Hardtanh, Softmax,
    LogSoftmax,
)

__all__ = ["Tanh", "Sigmoid", "ReLU", "GELU", "LeakyReLU", "ELU", "SiLU", "Softplus", "LogSigmoid", "Hardtanh", "Softmax", "LogSoftmax"]
