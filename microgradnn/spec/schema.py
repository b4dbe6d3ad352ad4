"""The schema: every key of a spec, declared once as data, with its type, default and
allowed values. This table is the one home of every default; the resolved spec
(:mod:`.resolved`) holds what it says, and ``mgnn check`` prints it (:func:`schema_rows`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from .. import registry

__all__ = ["EPOCHS_WHEN_UNSET", "Field", "SCHEMA", "SECTIONS", "FIELDS", "CHILDREN", "DERIVED_OPTIONS", "schema_rows", "format_schema"]

@dataclass(frozen=True)
class Field:
    """One key of the spec: its type, default, allowed values and a line of documentation.

    ``type`` is one of ``int float bool str choice section component names``:
    ``section`` holds further fields, ``component`` is a registry name of ``kind`` with
    options, ``names`` a list of registry names of ``kind``."""

    path: str
    type: str
    default: Any = None
    doc: str = ""
    nullable: bool = False
    required: bool = False
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    choices: tuple = ()
    kind: str | None = None

    @property
    def key(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def parent(self) -> str:
        return self.path.rpartition(".")[0]

    def allowed(self) -> str:
        """What this key accepts, in words: ``an int >= 1``, ``null or a float > 0``."""
        if self.type == "section":
            base = "a mapping of " + ", ".join(f.key for f in CHILDREN.get(self.path, ()))
        elif self.type == "component":
            noun = registry.singular(self.kind or "")
            base = f"a {noun} name or {{name: <{noun}>, <options>}}"
        elif self.type == "names":
            base = f"a list of {registry.singular(self.kind or '')} names"
        elif self.type == "choice":
            base = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.type == "bool":
            base = "true or false"
        elif self.type == "str":
            base = "a string"
        else:
            base = ("an int" if self.type == "int" else "a float") + range_text(
                self.low, self.low_open, self.high, self.high_open)
        return f"null or {base}" if self.nullable else base


def range_text(low: float | None, low_open: bool, high: float | None, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f" {'<' if high_open else '<='} {_num(high)}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def in_range(x: float, low: float | None, low_open: bool, high: float | None, high_open: bool) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    if high is not None and (x >= high if high_open else x > high):
        return False
    return True


F = Field
#: Every key of a spec, in the order a resolved spec is written. ``data`` is the one
#: section without a default.
SCHEMA: tuple[Field, ...] = (
    F("model", "section", doc="the network: optional embedding -> recurrent layers -> linear head"),
    F("model.embedding_dim", "int", 64, "size of the token embedding (ignored for float inputs)", low=1),
    F("model.cell", "component", "lstm", "recurrent cell: lstm, gru, rnn, rnn_relu or a plugin's", kind="cells"),
    F("model.hidden_size", "int", 128, "hidden state size of each layer", low=1),
    F("model.num_layers", "int", 1, "stacked recurrent layers", low=1),
    F("model.dropout", "float", 0.0, "dropout between stacked layers and before the head", low=0.0, high=1.0,
      high_open=True),
    F("model.bidirectional", "bool", False, "also read each sequence backwards (not for language models)"),
    F("model.init_state", "choice", "zeros", "initial hidden state: zeros, or learned parameters",
      choices=("zeros", "learned")),
    F("data", "component", None, "dataset and its options, e.g. {name: charlm, corpus: stdlib}", required=True,
      kind="datasets"),
    F("loss", "component", None, "null: cross_entropy for lm/classification, mse for regression", nullable=True,
      kind="losses"),
    F("optimizer", "component", {"name": "adam", "lr": 0.001}, "optimizer and its options (lr, weight_decay, ...)",
      kind="optimizers"),
    F("scheduler", "component", None, "learning-rate schedule (stepped every optimizer step), or null",
      nullable=True, kind="schedulers"),
    F("train", "section", doc="the training loop"),
    F("train.epochs", "int", None, "passes over the training data (default 1; give epochs or steps)",
      nullable=True, low=1),
    F("train.steps", "int", None, "optimizer steps to run instead of epochs", nullable=True, low=1),
    F("train.batch_size", "int", 32, "sequences per batch", low=1),
    F("train.clip_grad_norm", "float", None, "clip the global gradient norm to this", nullable=True, low=0.0,
      low_open=True),
    F("train.clip_grad_value", "float", None, "clip each gradient element to [-v, v]", nullable=True, low=0.0,
      low_open=True),
    F("train.early_stopping", "section", None, "stop when the monitored value stops improving (true: defaults)",
      nullable=True),
    F("train.early_stopping.monitor", "str", "val_loss", "val_loss, train_loss or val_<metric>"),
    F("train.early_stopping.mode", "choice", None, "min or max (null: max for a metric better when higher)",
      nullable=True, choices=("min", "max")),
    F("train.early_stopping.patience", "int", 5, "evaluations without improvement before stopping", low=0),
    F("train.early_stopping.min_delta", "float", 0.0, "smallest change that counts as improvement", low=0.0),
    F("train.early_stopping.divergence_threshold", "float", None,
      "stop at once when the monitored value gets worse than this", nullable=True),
    F("train.eval_every", "int", None, "evaluate every N steps (null: after each epoch)", nullable=True, low=1),
    F("train.checkpoint_every", "int", None, "checkpoint every N steps (null: after each evaluation)",
      nullable=True, low=1),
    F("train.keep_best", "int", 1, "keep the best k checkpoints by the monitored value", low=0),
    F("train.seed", "int", 0, "seed of weights, dropout and data order", low=0),
    F("train.device", "choice", "cpu", "where to train", choices=("cpu", "cuda")),
    F("train.tbptt", "bool", False, "language models: carry the hidden state across consecutive batches"),
    F("train.log_every", "int", 10, "log training loss every N steps", low=1),
    F("train.metrics", "names", [], "validation metrics besides the loss (accuracy, f1, perplexity, bleu)",
      kind="metrics"),
    F("train.track_grad_norms", "bool", False, "record the gradient norm reaching each time step"),
    F("finetune", "section", None, "fine-tune a trained model instead of starting from scratch", nullable=True),
    F("finetune.from", "str", None, "the run folder or checkpoint file to start from", required=True),
    F("finetune.strategy", "component", "full", "full, freeze, bitfit, lora, adalora, ia3, adapter, prefix, prompt",
      kind="finetune"),
    F("finetune.head", "choice", None, "null: keep the head; new: a fresh head for the new data's outputs",
      nullable=True, choices=("new",)),
    F("output", "section", doc="where the run folder goes: <dir>/<name>"),
    F("output.dir", "str", "runs", "parent folder of run folders"),
    F("output.name", "str", None, "run folder name (null: the spec file's stem)", nullable=True),
)
del F

FIELDS: dict[str, Field] = {f.path: f for f in SCHEMA}
CHILDREN: dict[str, list[Field]] = {}
for _f in SCHEMA:
    CHILDREN.setdefault(_f.parent, []).append(_f)
del _f

#: The top-level sections, in order.
SECTIONS: tuple[str, ...] = tuple(f.key for f in CHILDREN[""])

#: How many epochs a run has when the spec gives neither train.epochs nor train.steps.
EPOCHS_WHEN_UNSET = 1

#: Component options the trainer fills in when the spec leaves them out (so they are
#: not "missing required options"): kind -> option -> what it becomes.
DERIVED_OPTIONS: dict[str, dict[str, str]] = {
    "schedulers": {"T_max": "the run's total optimizer steps", "total_steps": "the run's total optimizer steps",
                   "total_iters": "the run's total optimizer steps"},
}

def schema_rows() -> list[dict[str, str]]:
    """One row per key: ``{"key", "type", "default", "allowed", "doc"}``, in spec order."""
    rows = []
    for f in SCHEMA:
        if f.required:
            default = "(required)"
        elif f.type == "section":
            default = "null" if f.nullable else ""
        elif isinstance(f.default, (dict, list)):
            default = yaml.safe_dump(f.default, default_flow_style=True, sort_keys=False).strip()
        else:
            default = "null" if f.default is None else yaml.safe_dump(f.default).strip().removesuffix("...").strip()
        kind = f"{f.type}:{f.kind}" if f.kind else f.type
        rows.append({"key": f.path, "type": kind, "default": default, "allowed": f.allowed(), "doc": f.doc})
    return rows


def format_schema() -> str:
    """The schema as a plain-text table."""
    rows = schema_rows()
    keys = ["  " * r["key"].count(".") + r["key"].rpartition(".")[2] for r in rows]
    width = max(len(k) for k in keys)
    dwidth = max(len(r["default"]) for r in rows)
    return "\n".join(f"{k:<{width}}  {r['default']:<{dwidth}}  {r['doc']}".rstrip() for k, r in zip(keys, rows))
