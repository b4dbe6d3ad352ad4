"""Optimizers, learning-rate schedulers and gradient clipping, PyTorch-shaped.

``mg.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop`` and ``Adagrad`` follow ``torch.optim``'s
update formulas, option names and defaults, and their ``state_dict`` layout; each update is
one fused kernel per parameter (numba on the CPU, CuPy on the GPU).
"""

from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
    "lr_scheduler", "clip_grad_norm_", "clip_grad_value_",
]
