"""Loading the pretrained model a fine-tune starts from.

:func:`load_base` takes what a user would point ``finetune.from`` at — a run folder, a
microgradnn checkpoint, or a PyTorch ``state_dict`` saved with ``torch.save`` — and returns
a plain ``{name: array}`` state dict. :func:`infer_model_options` reads the architecture
back from such a state dict (PyTorch's key names and shapes say it all), which is how a
PyTorch ``nn.LSTM`` language model becomes a :class:`~microgradnn.models.SequenceModel`.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .. import runfolder
from ..checkpoint import load as mg_load
from ..nn.module import _as_array
from .base import FinetuneError

__all__ = ["load_base", "find_checkpoint", "infer_model_options", "CHECKPOINT_NAMES"]

#: Files looked for in a folder that ``mgnn train`` did not write, in this order (in the
#: folder, then in its ``checkpoints/`` subfolder). An mgnn run folder is read by the one
#: checkpoint policy, :func:`microgradnn.runfolder.find_checkpoint` (its best checkpoint).
CHECKPOINT_NAMES = ("model.safetensors", "best.safetensors", "last.safetensors", "final.safetensors")
#: Keys under which a checkpoint commonly nests the model's state dict.
_NESTED = ("model", "state_dict", "model_state_dict", "model_state")


def find_checkpoint(folder: "str | os.PathLike[str]") -> Path:
    """The model checkpoint inside a folder: for a run folder of ``mgnn train``, the
    checkpoint a fine-tune starts from (``find_checkpoint(folder, "base")``: its best);
    otherwise the first of :data:`CHECKPOINT_NAMES` there or in ``checkpoints/``."""
    folder = Path(folder)
    if runfolder.is_run_folder(folder) or (folder / runfolder.CKPT_DIR / runfolder.LAST).is_file():
        try:
            return runfolder.find_checkpoint(folder, "base")
        except runfolder.RunFolderError:
            pass  # a run stopped before its first checkpoint: say what the folder holds
    places = [folder, folder / "checkpoints"]
    for place in places:
        for name in CHECKPOINT_NAMES:
            if (place / name).is_file():
                return place / name
    listing = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise FinetuneError(f"finetune.from: no checkpoint in the run folder {folder} (looked for "
                        f"{', '.join(CHECKPOINT_NAMES)}, here and in checkpoints/); "
                        f"the folder holds: {', '.join(listing) or 'nothing'}")


def _is_array_like(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _state_dict_of(obj: Any) -> "OrderedDict[str, Any] | None":
    if not isinstance(obj, dict) or not obj:
        return None
    if all(isinstance(k, str) and _is_array_like(v) for k, v in obj.items()):
        return OrderedDict((k, _as_array(v)) for k, v in obj.items())
    for key in _NESTED:
        if key in obj:
            found = _state_dict_of(obj[key])
            if found is not None:
                return found
    return None


def load_base(path: "str | os.PathLike[str]") -> "OrderedDict[str, np.ndarray]":
    """The pretrained weights at ``path`` as a ``{name: array}`` state dict.

    ``path`` may be a run folder (its best/last checkpoint), a file written by ``mg.save``
    (a bare state dict, or a training checkpoint with a ``model`` entry), a plain
    safetensors file, or a PyTorch ``.pt``/``.pth`` file (``torch.save(model.state_dict())``
    or a dict holding one under ``state_dict``/``model_state_dict``; needs PyTorch). A
    ``module.`` prefix (from ``nn.DataParallel``) is removed."""
    path = Path(path)
    if not path.exists():
        raise FinetuneError(f"finetune.from: {path} does not exist")
    file = find_checkpoint(path) if path.is_dir() else path
    obj = mg_load(file)
    state = _state_dict_of(obj)
    if state is None:
        keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise FinetuneError(f"finetune.from: {file} holds no model state dict (expected a mapping of parameter "
                            f"names to arrays, or one under {', '.join(_NESTED)}); it holds: {keys}")
    if state and all(k.startswith("module.") for k in state):
        state = OrderedDict((k[len("module."):], v) for k, v in state.items())
    return state


_GATES_TO_CELL = {4: "lstm", 3: "gru", 1: "rnn"}


def infer_model_options(state_dict: dict) -> dict:
    """:class:`~microgradnn.models.SequenceModel` keyword arguments that fit a state dict
    with ``embedding.*``/``rnn.*``/``head.*`` keys (PyTorch's names).

    Gives ``output_size``, ``vocab_size`` + ``embedding_dim`` (or ``input_size``), ``cell``
    ("lstm", "gru" or "rnn": tanh and relu RNNs look alike), ``hidden_size``,
    ``num_layers``, ``bidirectional``, and ``init_state="learned"`` where the state dict has
    learned initial states. ``proj_size`` and plugin cells are not inferred."""
    shapes = {k: tuple(np.shape(_as_array(v))) for k, v in state_dict.items()}
    need = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"]
    missing = [k for k in need if k not in shapes]
    if missing:
        raise FinetuneError(f"can't infer the model from this state dict: it lacks {', '.join(missing)} "
                            f"(it has: {', '.join(list(shapes)[:30])})")
    gates_rows, hidden = shapes["rnn.weight_hh_l0"]
    gates = gates_rows // hidden
    if gates not in _GATES_TO_CELL or gates * hidden != gates_rows:
        raise FinetuneError(f"can't infer the cell from rnn.weight_hh_l0 of shape {shapes['rnn.weight_hh_l0']}")
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := re.fullmatch(r"rnn\.weight_ih_l(\d+)", k)))
    options: dict = {
        "output_size": shapes["head.weight"][0],
        "cell": _GATES_TO_CELL[gates],
        "hidden_size": hidden,
        "num_layers": layers,
        "bidirectional": "rnn.weight_ih_l0_reverse" in shapes,
    }
    if "embedding.weight" in shapes:
        options["vocab_size"], options["embedding_dim"] = shapes["embedding.weight"]
    else:
        options["input_size"] = shapes["rnn.weight_ih_l0"][1]
    if "rnn.h0" in shapes:
        options["init_state"] = "learned"
    return options
