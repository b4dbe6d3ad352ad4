"""The trainer's side of fine-tuning: load the pretrained base, then hand the model to a
strategy from the registry (kind ``finetune``: lora, freeze, bitfit, prefix, ...).

``finetune.from`` may be

* a run folder written by ``mgnn train`` (its best checkpoint, its vocabulary, and its
  architecture: the fine-tune model is built with the base run's ``model`` section, so
  the spec need not repeat it; only ``dropout`` comes from the fine-tune spec);
* a microgradnn checkpoint file (``mg.save``: a run checkpoint, an ``mgnn export`` file,
  or a bare ``{name: array}`` state dict);
* a PyTorch ``state_dict`` (``.pt``/``.pth``) of a compatible model. Keys are matched to
  ours by role when they differ (``encoder.weight`` -> ``embedding.weight``, ``lstm.*`` ->
  ``rnn.*``, ``decoder.*``/``fc.*`` -> ``head.*``), since PyTorch's parameter names inside
  an ``nn.LSTM`` are the same as ours.

``finetune.head: new`` drops the base's head (its vocabulary-sized output layer, say) and
trains a fresh one sized for the new data: how a pretrained language model becomes a
classifier.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..nn.module import Module
from ..spec import Component, FinetuneSpec, ModelSpec, ResolvedSpec
from ..spec.resolved import model_spec_of
from . import runs
from .build import count_parameters
from .errors import BuildError, TrainError

__all__ = ["Base", "load_base", "match_state_dict", "load_into", "make_strategy", "ARCH_KEYS"]

#: model keys that fix the parameters' shapes: taken from the base run when fine-tuning one.
ARCH_KEYS = ("embedding_dim", "cell", "hidden_size", "num_layers", "bidirectional", "init_state")


class Base:
    """A pretrained model's weights and what came with them."""

    def __init__(self, state: dict[str, Any], source: str, vocab: Any = None,
                 model_spec: dict[str, Any] | None = None, info: dict[str, Any] | None = None) -> None:
        self.state = state
        self.source = source
        self.vocab = vocab
        self.model_spec = model_spec
        self.info = info


def _arrays_only(state: Any) -> bool:
    return isinstance(state, dict) and bool(state) and all(hasattr(v, "shape") for v in state.values())


def load_base(source: str | os.PathLike) -> Base:
    """Read ``finetune.from`` (see the module docstring)."""
    from ..checkpoint import CheckpointError, load

    path = Path(source).expanduser()
    shown = str(source)
    if not path.exists():
        raise TrainError(f"finetune.from: {shown!r} does not exist (give a run folder, a checkpoint file or a "
                         "PyTorch state_dict)")
    if path.is_dir():
        run_dir = runs.check_run_dir(path)
        ckpt_path = runs.find_checkpoint(run_dir, "base")  # the one policy: a base run at its best
        ckpt = _load(ckpt_path, load, CheckpointError)
        if ckpt.get("finetune") is not None or ckpt.get("model") is None:
            raise TrainError(f"finetune.from: {shown!r} is itself a fine-tune run, whose checkpoints hold only what "
                             f"changed; merge it first with `mgnn export {shown}` and fine-tune from "
                             f"{os.path.join(shown, runs.EXPORT_FILE)}")
        spec = runs.read_spec(run_dir)
        vocab = _read_vocab(run_dir / runs.VOCAB_FILE)
        info = runs.read_json(run_dir / runs.RUN_FILE).get("model_info") if (run_dir / runs.RUN_FILE).is_file() else None
        return Base(dict(ckpt["model"]), str(ckpt_path), vocab, spec.get("model"), info)
    obj = _load(path, load, CheckpointError)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # run checkpoint or export
        if obj.get("finetune") is not None:
            raise TrainError(f"finetune.from: {shown!r} is a fine-tune checkpoint holding only what changed; "
                             "export the merged model with `mgnn export RUN_DIR` and fine-tune from that")
        return Base(dict(obj["model"]), str(path), obj.get("vocab"), obj.get("model_spec"), obj.get("model_info"))
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # {"state_dict": ...} wrappers
        obj = obj["state_dict"]
    if not _arrays_only(obj):
        raise TrainError(f"finetune.from: {shown!r} holds no state_dict (expected a mapping of parameter names to "
                         "arrays, a microgradnn run checkpoint, or a run folder)")
    return Base(dict(obj), str(path))


def _load(path: Path, load: Any, error: type) -> Any:
    try:
        return load(path)
    except error as exc:
        raise TrainError(f"finetune.from: {exc}") from None


def _read_vocab(path: Path) -> Any:
    if not path.is_file():
        return None
    return runs.read_json(path)


# ----------------------------------------------------------------------------- key matching


_ROLE_ALIASES = {
    "embedding": ("embedding", "embed", "embeddings", "encoder", "emb", "tok_emb", "wte"),
    "rnn": ("rnn", "lstm", "gru", "recurrent", "cell"),
    "head": ("head", "decoder", "fc", "out", "output", "linear", "proj", "classifier", "lm_head"),
}


def canonical_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with PyTorch-style module names mapped to ours by role (``lstm.*`` ->
    ``rnn.*``, ``fc.*`` -> ``head.*``, ``encoder.*`` -> ``embedding.*``) and a leading
    ``module.``/``model.`` removed; keys already named our way are kept."""
    tops = {k.split(".", 1)[0] for k in state}
    out: dict[str, Any] = {}
    for key, value in state.items():
        k = key
        for prefix in ("module.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if "." in k:
            top, rest = k.split(".", 1)
            if top not in _ROLE_ALIASES:
                for role, aliases in _ROLE_ALIASES.items():
                    if top.lower() in aliases and role not in tops:
                        k = f"{role}.{rest}"
                        break
        out[k] = value
    return out


def infer_architecture(state: dict[str, Any]) -> dict[str, Any] | None:
    """The spec's model keys that a state dict's shapes fix (cell, sizes, layers...), or
    None when they can't be read from it."""
    from ..finetune.loading import infer_model_options

    try:
        opts = infer_model_options(canonical_state(state))
    except ValueError:
        return None
    arch = {k: opts[k] for k in ("cell", "hidden_size", "num_layers", "bidirectional", "embedding_dim")
            if k in opts}
    arch["init_state"] = opts.get("init_state", "zeros")
    return arch


def match_state_dict(state: dict[str, Any], model: Module) -> dict[str, Any]:
    """``state`` with its keys renamed to ``model``'s where they differ only in the names of
    the top-level modules (and a leading ``module.``/``model.`` as DataParallel and Lightning
    add)."""
    ours = dict(model.state_dict())
    if set(state) <= set(ours):
        return dict(state)
    out: dict[str, Any] = {}
    for key, value in state.items():
        k = key
        for prefix in ("module.", "model."):
            if k.startswith(prefix) and k not in ours:
                k = k[len(prefix):]
        if k not in ours and "." in k:
            top, rest = k.split(".", 1)
            for role, aliases in _ROLE_ALIASES.items():
                if top.lower() in aliases and f"{role}.{rest}" in ours:
                    k = f"{role}.{rest}"
                    break
        out[k] = value
    return out


def load_into(model: Module, state: dict[str, Any], source: str, skip_head: bool) -> None:
    """Copy the base's weights into ``model``, with one clear error for every mismatch."""
    state = match_state_dict(state, model)
    if skip_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    _materialise_prompt(model, state)
    ours = dict(model.state_dict())
    expected = {k for k in ours if not (skip_head and k.startswith("head."))}
    # Parameters a strategy adds later (lora_A ...) are not there yet; the prompt slot is None.
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(ours))
    wrong = sorted(k for k in set(state) & set(ours)
                   if tuple(np.shape(state[k])) != tuple(ours[k].shape))
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    for k in wrong[:4]:
        hint = " (a different task or number of classes? set finetune.head: new)" if k.startswith("head.") else \
            " (a different vocabulary?)" if k.startswith("embedding.") else ""
        problems.append(f"{k} is {tuple(np.shape(state[k]))} in the base but {tuple(ours[k].shape)} here{hint}")
    if problems:
        raise TrainError(f"finetune.from: {source} does not fit the model: " + "; ".join(problems)
                         + f". The model's parameters are: {_few(sorted(ours), 12)}")
    model.load_state_dict(state, strict=False)


def _materialise_prompt(model: Module, state: dict[str, Any]) -> None:
    """A prompt-tuned base (``mgnn export`` of a ``prompt`` run) has a ``prompt`` entry: its
    learned virtual tokens are part of the model. A freshly built SequenceModel has the
    slot but no parameter in it, so make one of the right shape for the values to load into."""
    if "prompt" in state and "prompt" in model._parameters and model._parameters["prompt"] is None:
        from ..nn.module import Parameter
        from ..tensor import zeros

        ref = next(iter(model.parameters()))
        model.prompt = Parameter(zeros(*np.shape(state["prompt"]), dtype=ref.dtype, device=ref._backend))


def _few(names: list[str], n: int = 6) -> str:
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


# ----------------------------------------------------------------------------- strategies


def make_strategy(strategy: Component) -> tuple[Any, str]:
    """The strategy object of ``finetune.strategy`` (registry kind "finetune")."""
    cls = registry.get("finetune", strategy.name)
    opts = strategy.kwargs()
    try:
        return cls(**opts), strategy.name
    except (TypeError, ValueError) as exc:
        raise BuildError(f"finetune.strategy: {strategy.name}({', '.join(f'{k}={v!r}' for k, v in opts.items())}) "
                         f"failed: {exc}") from exc


def apply_strategy(strategy: Any, name: str, model: Module, new_head: bool) -> dict[str, Any]:
    """``strategy.apply(model)``; a new head always trains. Returns trainable/total/share."""
    try:
        strategy.apply(model)
    except (TypeError, ValueError, KeyError) as exc:
        raise BuildError(f"finetune.strategy ({name}): {exc}") from exc
    if new_head:
        model.head.requires_grad_(True)
    counts = count_parameters(model)
    if counts["trainable"] == 0:
        raise TrainError(f"finetune.strategy ({name}) left no parameter trainable: check its options")
    return counts


def prepare(model: Module, ft: FinetuneSpec, base: Base) -> tuple[Any, str, dict[str, Any]]:
    """Load the base into ``model`` (a freshly built model of the fine-tune's shape), mark
    a new head, make and apply the strategy. Returns (strategy, its name, report)."""
    new_head = ft.head == "new"
    load_into(model, base.state, base.source, skip_head=new_head)
    if new_head:
        from ..finetune.base import mark_new

        mark_new(model, "head")  # every strategy keeps it trainable and stores it in the delta
    strategy, name = make_strategy(ft.strategy)
    report = apply_strategy(strategy, name, model, new_head)
    report.update(strategy=name, base=os.path.abspath(str(ft.from_)))
    return strategy, name, report


def effective_model_spec(spec: ResolvedSpec, base: Base) -> ModelSpec:
    """The fine-tune's model section: the base's architecture (its run's model section,
    or what its weights' shapes say), the fine-tune spec's dropout."""
    model = spec.model.to_dict()
    arch = base.model_spec or infer_architecture(base.state) or {}
    for key in ARCH_KEYS:
        if key in arch:
            model[key] = arch[key]
    return model_spec_of(model)
