"""``mg.nn.utils``: PyTorch's home for gradient clipping (the code lives in
:mod:`microgradnn.optim.clip`) and for packed sequences (:mod:`.rnn`)."""

from ...optim.clip import clip_grad_norm_, clip_grad_value_
from . import rnn

__all__ = ["clip_grad_norm_", "clip_grad_value_", "rnn"]
