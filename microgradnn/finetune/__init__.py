"""Fine-tuning strategies: cheap ways to adapt a pretrained recurrent model to a new task.

Each strategy is a class made from its options and applied to a model in place::

    from microgradnn.finetune import LoRA, load_base, replace_head

    model.load_state_dict(load_base("runs/pretrain"))
    strategy = LoRA(targets=["rnn.weight_*"], r=4, alpha=8)
    strategy.apply(model)                  # base frozen, low-rank factors added
    strategy.trainable_summary(model)      # {"trainable": ..., "total": ..., "share": ...}
    ...train: the optimizer updates only what requires grad; call strategy.on_step(step)...
    mg.save(strategy.delta_state_dict(model), "adapter.safetensors")   # only what changed
    strategy.merge(model)                  # fold into plain weights for export

====================  =========================================================  =========
name (registry)       what trains                                                 merge
====================  =========================================================  =========
``full``  Full        everything                                                  trivial
``freeze`` Freeze     all but the globs (``embedding.*``, ``rnn.weight_*_l0``),
                      optional unfreezing schedule                                trivial
``bitfit`` BitFit     biases (and optionally the head)                            trivial
``lora``  LoRA        low-rank ``W + (alpha/r) B A`` on chosen matrices           exact
``adalora`` AdaLoRA   LoRA as ``P diag(lambda) Q``, rank budget moved by importance  exact
``ia3``   IA3         per-unit scale of each gate's pre-activation / Linear output  exact
``adapter`` Adapter   bottleneck MLPs after/before chosen layers                  no
``prefix`` Prefix     learned initial hidden (and cell) states                    kept
``prompt`` Prompt     learned virtual input vectors before the sequence           kept
====================  =========================================================  =========

:func:`replace_head` gives a language model a new classification head (trained whatever
the strategy); :func:`load_base` reads a run folder, a microgradnn checkpoint or a
PyTorch ``state_dict``.
"""

from .adapter import Adapter, BottleneckAdapter
from .base import FinetuneError, Strategy, match_globs, new_module_names, replace_head
from .basic import BitFit, Freeze, Full
from .ia3 import IA3, RowScale
from .loading import find_checkpoint, infer_model_options, load_base
from .lora import AdaLoRA, LoRA, LoRAParametrization, SVDParametrization
from .prompting import Prefix, Prompt

#: The built-in strategies by registry name (pyproject.toml registers the same names
#: under the ``microgradnn.finetune`` entry-point group).
STRATEGIES = {
    "full": Full, "freeze": Freeze, "bitfit": BitFit, "lora": LoRA, "adalora": AdaLoRA,
    "ia3": IA3, "adapter": Adapter, "prefix": Prefix, "prompt": Prompt,
}

__all__ = [
    "Strategy", "FinetuneError", "STRATEGIES",
    "Full", "Freeze", "BitFit", "LoRA", "AdaLoRA", "IA3", "Adapter", "Prefix", "Prompt",
    "replace_head", "new_module_names", "match_globs", "load_base", "find_checkpoint", "infer_model_options",
    "LoRAParametrization", "SVDParametrization", "RowScale", "BottleneckAdapter",
]
