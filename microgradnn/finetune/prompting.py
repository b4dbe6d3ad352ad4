"""``prefix`` and ``prompt``: fine-tuning by what goes *into* a frozen recurrent model.

Prefix tuning (Li & Liang 2021) learns key/value vectors that every attention layer sees
before the real tokens. A recurrent layer has no keys or values, but it has the exact
analogue: the state every sequence starts from. ``prefix`` learns the initial hidden (and
cell) state of each layer and direction, ``h0``/``c0``; the base weights stay frozen. It
starts at zero, the state the base model always started from, so the fine-tune starts
as the pretrained model. (A state passed in explicitly, as truncated BPTT does with the
previous batch's final state, takes precedence: the learned state starts each fresh
sequence.)

Prompt tuning (Lester et al. 2021) learns ``n_tokens`` virtual input vectors prepended to
every embedded sequence: the model reads a learned "instruction" before the text.
:class:`~microgradnn.models.SequenceModel` has a ``prompt`` slot for them (for a language
model the prompt positions' outputs are dropped again). Unlike the other strategies a
prompt can't start as the identity: the extra steps move the state before the text
begins. Initialising them from real tokens' embeddings (``init="vocab"``) at least starts
from inputs the model knows.
"""

from __future__ import annotations

from ..autograd import no_grad
from ..nn.module import Module, Parameter
from ..nn.rnn import _learned_name, _SequenceLayer
from ..tensor import empty, randint
from .base import FinetuneError, Strategy, _as_list, _module_names, match_globs

__all__ = ["Prefix", "Prompt"]


class Prefix(Strategy):
    """Learned initial states (``h0``, and ``c0`` for an LSTM) of the recurrent layers
    matched by ``modules``; everything else frozen.

    A layer built without ``init_state="learned"`` gets the parameters (zeros, so the model
    starts unchanged); one that has them already trains them. :meth:`merge` keeps them as
    the layer's parameters: the merged model is a plain one with ``init_state: learned``."""

    name = "prefix"

    def __init__(self, modules: list[str] | None = None) -> None:
        super().__init__()
        self._options = {"modules": modules}
        self.modules = ["rnn"] if modules is None else _as_list(modules, "modules", self.name)
        self.layers: list[tuple[str, _SequenceLayer]] = []

    def _apply(self, model: Module) -> None:
        chosen = match_globs(_module_names(model), self.modules, what="module", option="modules", owner=self.name)
        layers = []
        for name in chosen:
            module = model.get_submodule(name)
            if isinstance(module, _SequenceLayer):
                layers.append((name, module))
            elif not any(name.startswith(n + ".") for n, _ in layers):
                raise FinetuneError(f"prefix: modules: {name!r} is a {type(module).__name__}, not a recurrent "
                                    "sequence layer (RNN, LSTM, GRU or Recurrent)")
        self._freeze_all(model)
        for _, layer in layers:
            if layer.init_state != "learned":
                first = next(iter(layer.parameters()))
                layer._setup_extras("learned", layer.track_grad_norms, first.device, first.dtype)
            for i in range(len(layer._state_sizes())):
                self._trainable(getattr(layer, _learned_name(i)))
        self.layers = layers


class Prompt(Strategy):
    """``n_tokens`` learned input vectors prepended to every embedded sequence; the base is
    frozen. Needs a model with a ``prompt`` slot (:class:`~microgradnn.models.SequenceModel`).

    Args:
        n_tokens: how many virtual tokens.
        init: "vocab" (copies of randomly chosen token embeddings; needs an embedding) or
            "random" (normal, with the embedding table's spread; 1.0 for float inputs).
    """

    name = "prompt"

    def __init__(self, n_tokens: int = 8, init: str = "vocab") -> None:
        super().__init__()
        self._options = {"n_tokens": n_tokens, "init": init}
        if not isinstance(n_tokens, int) or isinstance(n_tokens, bool) or n_tokens < 1:
            raise FinetuneError(f"prompt: n_tokens must be a positive int, got {n_tokens!r}")
        if init not in ("vocab", "random"):
            raise FinetuneError(f"prompt: init must be 'vocab' or 'random', got {init!r}")
        self.n_tokens, self.init = n_tokens, init

    def _apply(self, model: Module) -> None:
        if "prompt" not in model._parameters:
            raise FinetuneError(f"prompt: {type(model).__name__} has no 'prompt' slot for virtual tokens "
                                "(microgradnn.models.SequenceModel has one)")
        if model._parameters["prompt"] is not None:
            raise FinetuneError("prompt: the model already has a prompt")
        embedding = model._modules.get("embedding")
        rnn = model._modules.get("rnn")
        if embedding is not None:
            table = embedding.weight
            width = embedding.embedding_dim
        elif rnn is not None:
            table, width = None, rnn.input_size
        else:
            raise FinetuneError("prompt: can't tell the input width: the model has neither 'embedding' nor 'rnn'")
        ref = table if table is not None else next(iter(model.parameters()))
        prompt = Parameter(empty(self.n_tokens, width, dtype=ref.dtype, device=ref._backend))
        with no_grad():
            if self.init == "vocab":
                if table is None:
                    raise FinetuneError("prompt: init='vocab' needs token inputs (an embedding); use init='random'")
                vocab = table.shape[0]
                ids = randint(0, vocab, (self.n_tokens,), device=table._backend).array
                pad = getattr(embedding, "padding_idx", None)
                if pad is not None and vocab > 1:
                    ids[ids == pad] = (pad + 1) % vocab  # the padding row is all zeros
                prompt._store(..., table.array[ids])
            else:
                std = float(table.array.std()) if table is not None else 1.0
                prompt.normal_(0.0, std or 1.0)
        self._freeze_all(model)
        model.prompt = prompt

    def _merge(self, model: Module) -> None:
        """The prompt stays the model's ``prompt`` parameter (nothing to fold)."""
