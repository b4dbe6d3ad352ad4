"""The resolved spec: a frozen, typed object built once from the validated spec.

Every default comes from the schema (:mod:`.schema`); these dataclasses have none of
their own, so there is one place to look. Consumers read attributes
(``spec.train.batch_size``, ``spec.model.cell.name``), never ``.get(key, default)``.

Each record is also a read-only mapping with the keys as YAML spells them
(``spec["train"]["batch_size"]``, ``finetune["from"]``): that view is what
:func:`~microgradnn.spec.dump_spec` writes to a run's ``spec.yaml`` and what compares
equal to the plain dict it was read from.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator

from .schema import EPOCHS_WHEN_UNSET, FIELDS

__all__ = ["model_spec_of", "Component", "ModelSpec", "EarlyStoppingSpec", "TrainSpec", "FinetuneSpec", "OutputSpec",
           "ResolvedSpec"]


def _view(value: Any) -> Any:
    """What the mapping view shows for a stored value: tuples as lists (as YAML has them)."""
    if isinstance(value, tuple):
        return [_view(v) for v in value]
    return value


def _frozen(value: Any) -> Any:
    """A stored copy of a YAML value: lists become tuples, mappings read-only ones."""
    if isinstance(value, list) or isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping) and not isinstance(value, _Record):
        return _FrozenMap({k: _frozen(v) for k, v in value.items()})
    return value


class _FrozenMap(Mapping):
    """A read-only dict (a component's options)."""

    __slots__ = ("_d",)

    def __init__(self, d: dict) -> None:
        self._d = dict(d)

    def __getitem__(self, key: str) -> Any:
        return _view(self._d[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return repr(self._d)

    def __deepcopy__(self, memo: dict) -> "_FrozenMap":
        return self

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in self._d.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, (_Record, _FrozenMap)):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class _Record(Mapping):
    """A frozen dataclass that is also a read-only mapping of its YAML keys."""

    #: YAML key -> attribute, where a key is not a Python name (``from``).
    _KEYS: dict[str, str] = {}

    def _attr(self, key: str) -> str:
        return self._KEYS.get(key, key)

    def __getitem__(self, key: str) -> Any:
        attr = self._attr(key)
        if attr not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(key)
        return _view(getattr(self, attr))

    def __iter__(self) -> Iterator[str]:
        back = {v: k for k, v in self._KEYS.items()}
        return (back.get(f.name, f.name) for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(dataclasses.fields(self))  # type: ignore[arg-type]

    def __deepcopy__(self, memo: dict) -> "_Record":
        return self  # immutable all the way down

    __hash__ = object.__hash__

    def to_dict(self) -> dict:
        """The plain dict (what ``spec.yaml`` holds)."""
        return {k: _plain(getattr(self, self._attr(k))) for k in self}

    def replace(self, **changes: Any) -> Any:
        """A copy with some attributes changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class Component(_Record):
    """A registry name and its options: ``{name: adam, lr: 0.001}``."""

    name: str
    options: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        if key == "name":
            return self.name
        return self.options[key]

    def __iter__(self) -> Iterator[str]:
        yield "name"
        yield from self.options

    def __len__(self) -> int:
        return 1 + len(self.options)

    def to_dict(self) -> dict:
        return {"name": self.name, **_plain(self.options)}

    def kwargs(self) -> dict[str, Any]:
        """The options as plain keyword arguments (lists, dicts) for the callable."""
        return _plain(self.options)

    @classmethod
    def of(cls, value: Any) -> "Component | None":
        if value is None:
            return None
        if isinstance(value, str):
            return cls(value, _FrozenMap({}))
        opts = dict(value)
        return cls(opts.pop("name"), _frozen(opts))


@dataclass(frozen=True, eq=False)
class ModelSpec(_Record):
    embedding_dim: int
    cell: Component
    hidden_size: int
    num_layers: int
    dropout: float
    bidirectional: bool
    init_state: str


@dataclass(frozen=True, eq=False)
class EarlyStoppingSpec(_Record):
    monitor: str
    mode: str | None
    patience: int
    min_delta: float
    divergence_threshold: float | None


@dataclass(frozen=True, eq=False)
class TrainSpec(_Record):
    epochs: int | None
    steps: int | None
    batch_size: int
    clip_grad_norm: float | None
    clip_grad_value: float | None
    early_stopping: EarlyStoppingSpec | None
    eval_every: int | None
    checkpoint_every: int | None
    keep_best: int
    seed: int
    device: str
    tbptt: bool
    log_every: int
    metrics: tuple[str, ...]
    track_grad_norms: bool


@dataclass(frozen=True, eq=False)
class FinetuneSpec(_Record):
    _KEYS = {"from": "from_"}

    from_: str
    strategy: Component
    head: str | None


@dataclass(frozen=True, eq=False)
class OutputSpec(_Record):
    dir: str
    name: str


@dataclass(frozen=True, eq=False)
class ResolvedSpec(_Record):
    """A validated spec, every default filled in (see the module docstring).

    ``loss`` is None until the data's task is known (:func:`~microgradnn.spec.fill_task_defaults`
    sets the task's default loss)."""

    model: ModelSpec
    data: Component
    loss: Component | None
    optimizer: Component
    scheduler: Component | None
    train: TrainSpec
    finetune: FinetuneSpec | None
    output: OutputSpec

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "ResolvedSpec":
        """From a resolved spec dict (the validator's, or a run's ``spec.yaml``). A key it
        lacks (a run folder written by an older version) gets the schema's default; no
        validation happens here (:func:`~microgradnn.spec.resolve_spec` does that)."""
        t = _section(d, "train")
        if t.get("epochs") is None and t.get("steps") is None:
            t["epochs"] = EPOCHS_WHEN_UNSET
        es = _field(t, "train.early_stopping")
        f = _field(d, "finetune")
        return cls(
            model=model_spec_of(_field(d, "model")),
            data=Component.of(d["data"]),
            loss=Component.of(_field(d, "loss")),
            optimizer=Component.of(_field(d, "optimizer")),
            scheduler=Component.of(_field(d, "scheduler")),
            train=TrainSpec(**{**_sub(t, TrainSpec, "train"), "metrics": tuple(_field(t, "train.metrics") or ()),
                               "early_stopping": None if es is None or es is False else EarlyStoppingSpec(
                                   **_sub({} if es is True else es, EarlyStoppingSpec, "train.early_stopping"))}),
            finetune=None if f is None else FinetuneSpec(
                from_=f["from"], strategy=Component.of(_field(f, "finetune.strategy")),
                head=_field(f, "finetune.head")),
            output=OutputSpec(**_sub(_field(d, "output"), OutputSpec, "output")),
        )


def model_spec_of(m: Mapping[str, Any] | None) -> ModelSpec:
    """A :class:`ModelSpec` from a ``model`` mapping, missing keys from the schema."""
    m = m or {}
    return ModelSpec(**{**_sub(m, ModelSpec, "model"), "cell": Component.of(_field(m, "model.cell"))})


def _field(d: Mapping[str, Any] | None, path: str) -> Any:
    """``d``'s entry for schema key ``path``, or the schema's default for it."""
    key = path.rpartition(".")[2]
    if isinstance(d, Mapping) and key in d:
        return d[key]
    f = FIELDS[path]
    if f.type == "section":
        return None if f.nullable else {}
    return copy.deepcopy(f.default)


def _section(d: Mapping[str, Any], path: str) -> dict[str, Any]:
    return dict(_field(d, path) or {})


def _sub(d: Mapping[str, Any], cls: type, path: str) -> dict[str, Any]:
    """The fields of ``cls`` from ``d`` (section ``path``), defaults from the schema."""
    return {f.name: _frozen(_field(d, f"{path}.{f.name}")) for f in dataclasses.fields(cls)}
