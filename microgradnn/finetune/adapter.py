"""``adapter``: bottleneck adapters (Houlsby et al. 2019) inserted after (or before) layers.

An adapter is a small residual MLP on a layer's output::

    y = x + up(act(down(x)))         down: width -> bottleneck, up: bottleneck -> width

with ``up`` initialised to zero, so ``y == x`` exactly and the fine-tune starts from the
pretrained model's outputs. Only the adapters train (plus a new head, if any). They are
wired in with forward hooks, so the base model's code is untouched: after the module
``rnn`` the hook replaces the output sequence (the returned state is left alone, so a
carried hidden state stays the base model's); before a module (``before: [head]``) a
pre-hook replaces the first input.

Adapters add non-linear computation, so they cannot be folded into the base weights:
:meth:`Adapter.merge` refuses, and the fine-tuned model is used (and exported) with
its adapters (``adapters.*`` parameters plus this strategy to re-attach them).
"""

from __future__ import annotations

from typing import Any

from ..autograd import no_grad
from ..nn.layers import Embedding, GELU, Linear, ModuleDict, ReLU, Tanh
from ..nn.module import Module
from ..nn.rnn import RNNBase, _SequenceLayer
from .base import FinetuneError, Strategy, _as_list, _module_names, match_globs

__all__ = ["Adapter", "BottleneckAdapter"]

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "gelu": GELU}


class BottleneckAdapter(Module):
    """``x + up(act(down(x)))``, the identity at initialisation (``up`` is zero)."""

    def __init__(self, width: int, bottleneck: int, activation: str = "relu", dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        self.down = Linear(width, bottleneck, dtype=dtype, device=device)
        self.act = ACTIVATIONS[activation]()
        self.up = Linear(bottleneck, width, dtype=dtype, device=device)
        with no_grad():
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, x: Any) -> Any:
        return x + self.up(self.act(self.down(x)))


def _output_width(module: Module) -> int | None:
    if isinstance(module, RNNBase):
        return (module.proj_size or module.hidden_size) * module.num_directions
    if isinstance(module, _SequenceLayer):  # Recurrent: the last layer's cells side by side
        last = module.cells[-module.num_directions:]
        return sum(getattr(c, "output_size", module.hidden_size) for c in last)
    if isinstance(module, Embedding):
        return module.embedding_dim
    if isinstance(module, Linear):
        return module.out_features
    return None


def _input_width(module: Module) -> int | None:
    if isinstance(module, _SequenceLayer):
        return module.input_size
    if isinstance(module, Linear):
        return module.in_features
    return None


class Adapter(Strategy):
    """Bottleneck adapters after the modules matched by ``after`` and before those
    matched by ``before`` (globs over module names); the base is frozen.

    Args:
        after: e.g. ``["rnn"]`` (the recurrent output sequence), ``["embedding"]``.
        before: e.g. ``["head"]``: adapts the head's input. For a classification model
            (whose head reads the final hidden state, not the output sequence) this is
            the place; an adapter after ``rnn`` would have no effect there.
        bottleneck: the adapter's hidden width.
        activation: "relu", "tanh" or "gelu".
    """

    name = "adapter"
    mergeable = False

    def __init__(self, after: list[str] | None = None, before: list[str] | None = None, bottleneck: int = 16,
                 activation: str = "relu") -> None:
        super().__init__()
        self._options = {"after": after, "before": before, "bottleneck": bottleneck, "activation": activation}
        self.after = ["rnn"] if after is None else _as_list(after, "after", self.name)
        self.before = [] if before is None else _as_list(before, "before", self.name)
        if not self.after and not self.before:
            raise FinetuneError("adapter: give at least one module in after or before")
        if not isinstance(bottleneck, int) or isinstance(bottleneck, bool) or bottleneck < 1:
            raise FinetuneError(f"adapter: bottleneck must be a positive int, got {bottleneck!r}")
        if activation not in ACTIVATIONS:
            raise FinetuneError(f"adapter: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.bottleneck, self.activation = bottleneck, activation
        self._removers: list = []

    def _apply(self, model: Module) -> None:
        if "adapters" in model._modules:
            raise FinetuneError("adapter: the model already has a submodule named 'adapters'")
        names = _module_names(model)
        plan = []
        for where, globs in (("after", self.after), ("before", self.before)):
            if not globs:
                continue
            for name in match_globs(names, globs, what="module", option=where, owner=self.name):
                module = model.get_submodule(name)
                width = _output_width(module) if where == "after" else _input_width(module)
                if width is None:
                    raise FinetuneError(f"adapter: {where}: can't place an adapter {where} {name!r} "
                                        f"({type(module).__name__}): supported are recurrent layers, Embedding "
                                        f"and Linear{' (after)' if where == 'after' else ''}")
                if (where == "after" and isinstance(module, _SequenceLayer) and module is model._modules.get("rnn")
                        and getattr(model, "task", "lm") != "lm"):
                    raise FinetuneError(f"adapter: an adapter after {name!r} has no effect on a {model.task} model "
                                        "(its head reads the final hidden state, not the output sequence); "
                                        "use before: ['head']")
                plan.append((where, name, module, width))
        self._freeze_all(model)
        first = next(iter(model.parameters()))
        adapters = ModuleDict()
        for where, name, module, width in plan:
            adapter = BottleneckAdapter(width, self.bottleneck, self.activation, dtype=first.dtype, device=first.device)
            adapters[f"{where}_{name.replace('.', '_')}"] = adapter
            self._removers.append(self._attach(where, module, adapter))
        model.adapters = adapters

    @staticmethod
    def _attach(where: str, module: Module, adapter: Module) -> Any:
        if where == "after":
            def after_hook(mod: Module, args: tuple, out: Any) -> Any:
                if isinstance(out, tuple):  # (output, state): adapt the output only
                    return (adapter(out[0]),) + out[1:]
                return adapter(out)

            return module.register_forward_hook(after_hook)

        def before_hook(mod: Module, args: tuple) -> tuple:
            return (adapter(args[0]),) + args[1:]

        return module.register_forward_pre_hook(before_hook)

    def _merge_refusal(self) -> str:
        return ("adapter: adapters can't be merged into the base weights (the bottleneck's nonlinearity "
                "has no linear equivalent); keep the model with its adapters, or fine-tune with lora/ia3 "
                "for a mergeable result")

    def remove(self, model: Module | None = None) -> Module:
        """Detach the adapters, giving back the base model (frozen flags reset)."""
        model = self._model_or(model)
        for remover in self._removers:
            remover()
        self._removers = []
        model._modules.pop("adapters", None)
        model.requires_grad_(True)
        model.__dict__.pop("_finetune_strategy", None)
        self.model = None
        return model
