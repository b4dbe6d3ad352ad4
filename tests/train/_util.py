"""Helpers for the trainer tests: a resolved spec for tiny runs, a small corpus, weight comparison."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

# A few paragraphs of real text (this project's own source), so a char LM has something to learn.
_CORPUS_SOURCE = Path(__file__).resolve().parents[2] / "microgradnn" / "nn" / "rnn.py"


def write_corpus(folder: Path, chars: int = 1400, name: str = "corpus.txt", offset: int = 0) -> Path:
    text = _CORPUS_SOURCE.read_text(encoding="utf-8")[offset: offset + chars]
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def base_spec(run_root: Path, data: dict[str, Any], **train: Any) -> dict[str, Any]:
    """A fully resolved spec (every key present, as microgradnn.spec.load_spec gives)."""
    spec = {
        "model": {"embedding_dim": 8, "cell": "lstm", "hidden_size": 12, "num_layers": 1, "dropout": 0.0,
                  "bidirectional": False, "init_state": "zeros"},
        "data": dict(data),
        "loss": None,
        "optimizer": {"name": "adam", "lr": 0.01},
        "scheduler": None,
        "train": {"epochs": None, "steps": 12, "batch_size": 4, "clip_grad_norm": None, "clip_grad_value": None,
                  "early_stopping": None, "eval_every": None, "checkpoint_every": None, "keep_best": 1, "seed": 0,
                  "device": "cpu", "tbptt": False, "log_every": 5, "metrics": [], "track_grad_norms": False},
        "finetune": None,
        "output": {"dir": str(run_root), "name": "run"},
    }
    spec["train"].update(train)
    return spec


def with_(spec: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A copy of ``spec`` with whole sections or ``section__key`` entries replaced."""
    out = copy.deepcopy(spec)
    for key, value in sections.items():
        if "__" in key:
            section, sub = key.split("__", 1)
            out[section] = dict(out[section] or {})
            out[section][sub] = value
        else:
            out[key] = value
    return out


def charlm_data(path: Path, seq_len: int = 12) -> dict[str, Any]:
    return {"name": "charlm", "paths": str(path), "seq_len": seq_len, "val_fraction": 0.2}


def weights(model: Any) -> dict[str, np.ndarray]:
    def host(v: Any) -> np.ndarray:  # CuPy arrays come back to the host
        return v.get() if hasattr(v, "get") and not isinstance(v, np.ndarray) else v

    return {k: np.array(host(v), copy=True) for k, v in model.state_dict().items()}


def assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k]), f"{k} differs: max |diff| {np.abs(a[k] - b[k]).max()}"


def write_fake_dist(root: Path, dist: str, version: str, module: str, source: str,
                    entry_points: dict[str, dict[str, str]]) -> Path:
    """An "installed" distribution in ``root`` without pip: the module and a ``.dist-info``
    folder, which importlib.metadata finds once ``root`` is on ``sys.path`` / PYTHONPATH
    (the mechanism of tests/fixtures/misbehaving_plugin). ``entry_points``:
    ``{"optimizers": {"name": "object"}}``, objects named in ``module``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source, encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("".join(
        f"[microgradnn.{kind}]\n" + "".join(f"{name} = {module}:{obj}\n" for name, obj in named.items()) + "\n"
        for kind, named in entry_points.items()), encoding="utf-8")
    return root


#: a plugin optimizer ``pinopt`` (plain SGD) and a cell claiming the built-in ``lstm`` (a GRU,
#: reachable only as ``mgnn-pin-a:lstm``); and an impostor claiming ``pinopt`` and
#: ``adam`` whose objects refuse to be used, so a test sees at once who was picked
PIN_A = ("import microgradnn as mg\nfrom microgradnn.nn.rnn import GRUCell\n\nclass PinOpt(mg.optim.SGD):\n"
         "    ORIGIN = 'mgnn-pin-a'\n\nclass LSTMCell(GRUCell):\n    ORIGIN = 'mgnn-pin-a'\n")
PIN_IMPOSTOR = ("import microgradnn as mg\n\nclass PinOpt(mg.optim.SGD):\n    def __init__(self, params, lr=0.1):\n"
                "        raise RuntimeError('the impostor was used')\n\nAdam = PinOpt\n")


def pin_plugins(folder: Path) -> tuple[Path, Path]:
    """Two plugin folders for sys.path / PYTHONPATH: mgnn-pin-a (``pinopt``, ``lstm``) and
    mgnn-impostor (``pinopt`` and ``adam``)."""
    a = write_fake_dist(folder / "a", "mgnn-pin-a", "0.1", "mgnn_pin_a", PIN_A,
                        {"optimizers": {"pinopt": "PinOpt"}, "cells": {"lstm": "LSTMCell"}})
    b = write_fake_dist(folder / "impostor", "mgnn-impostor", "0.3", "mgnn_impostor", PIN_IMPOSTOR,
                        {"optimizers": {"pinopt": "PinOpt", "adam": "Adam"}})
    return a, b
