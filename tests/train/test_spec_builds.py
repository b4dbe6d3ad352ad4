"""What `mgnn check` accepts builds and trains; what it refuses would have failed (issue 10).

Each test names the finding it covers."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import registry
from microgradnn.contracts import CONTRACTS
from microgradnn.spec import (SCHEMA, EarlyStoppingSpec, ModelSpec, OutputSpec, ResolvedSpec, SpecError, TrainSpec,
                              component_options, dump_spec, load_spec, resolve_spec)
from microgradnn.train import Callback, Trainer
from microgradnn.train import build as train_build
from microgradnn.train import trainer as train_trainer

from ._util import charlm_data, write_corpus

ADDING = {"name": "adding", "seq_len": 6, "train_size": 16, "val_size": 8}


def trainer_for(tmp_path, **raw):
    raw.setdefault("data", ADDING)
    raw.setdefault("model", {"hidden_size": 6, "embedding_dim": 4})
    train = {"steps": 1, "batch_size": 4, **raw.pop("train", {})}
    spec = resolve_spec({**raw, "train": train, "output": {"dir": str(tmp_path / "runs")}})
    return Trainer(spec, dry_run=1)


# ----------------------------------------------------------------------------- cells


def test_rnn_nonlinearity_option_builds(tmp_path):
    """Finding: {name: rnn, nonlinearity: relu} passed check, then 'got multiple values'."""
    t = trainer_for(tmp_path, model={"cell": {"name": "rnn", "nonlinearity": "relu"}, "hidden_size": 6})
    assert t.model.rnn.nonlinearity == "relu" and t.fit()["status"] == "dry_run"


def test_lstm_proj_size_is_accepted_and_builds(tmp_path):
    """Finding: {name: lstm, proj_size: 2} was refused though nn.LSTM has proj_size."""
    t = trainer_for(tmp_path, model={"cell": {"name": "lstm", "proj_size": 2}, "hidden_size": 6})
    assert t.model.rnn.proj_size == 2 and t.model.head.in_features == 2
    assert t.fit()["status"] == "dry_run"


def test_a_cell_option_the_layer_sets_itself_is_refused():
    with pytest.raises(SpecError, match="model.cell.num_layers"):
        resolve_spec({"data": "adding", "model": {"cell": {"name": "lstm", "num_layers": 3}}})


def test_one_table_of_builtin_cells():
    """Finding: three tables of built-in cells (nn/rnn.py, models.py, registry.py)."""
    import microgradnn.models as models
    import microgradnn.nn.rnn as rnn

    assert not hasattr(models, "BUILTIN_CELLS") and not hasattr(rnn, "_BUILTIN_CELLS")
    assert not hasattr(registry, "rnn_relu_cell")
    for name, layer in (("lstm", mg.nn.LSTM), ("gru", mg.nn.GRU), ("rnn", mg.nn.RNN)):
        assert CONTRACTS["cells"].target(registry.get("cells", name)) is layer


# ----------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("loss", ["nll", "cross_entropy"])
def test_class_losses_on_a_regression_are_refused_before_any_work(tmp_path, loss):
    """Finding: loss=nll on the adding problem passed check, died at the first batch."""
    with pytest.raises(SpecError, match=r"loss: loss '\w+' needs classes targets.*regression.*allowed: .*mse"):
        trainer_for(tmp_path, loss=loss)


@pytest.mark.parametrize("loss", ["mse", "smooth_l1", "huber", "l1"])
def test_value_losses_on_a_language_model_are_refused(tmp_path, loss):
    """Finding: loss=mse on a classification/LM spec died with a shape mismatch."""
    corpus = write_corpus(tmp_path)
    with pytest.raises(SpecError, match="needs values targets.*'lm'"):
        trainer_for(tmp_path, data=charlm_data(corpus), loss=loss)


@pytest.mark.parametrize("metric", ["accuracy", "perplexity", "f1"])
def test_class_metrics_on_a_regression_are_refused(tmp_path, metric):
    """Finding: train.metrics=[accuracy] on adding trained a full epoch, then crashed;
    [perplexity] reported exp(MSE)."""
    with pytest.raises(SpecError, match=r"train.metrics\[0\]: metric '\w+' needs classes targets"):
        trainer_for(tmp_path, train={"metrics": [metric]})


def test_a_run_that_fails_mid_way_says_so_in_run_json(tmp_path):
    """Finding: a crash mid-run left run.json at "running"."""
    class Boom(Callback):
        def on_step(self, trainer, info):
            raise RuntimeError("boom")

    spec = resolve_spec({"data": ADDING, "model": {"hidden_size": 6}, "train": {"steps": 2, "batch_size": 4},
                         "output": {"dir": str(tmp_path)}})
    t = Trainer(spec, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        t.fit()
    info = json.loads((t.run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "boom" in info["reason"]


# ----------------------------------------------------------------------------- defaults


def test_every_default_lives_in_the_schema():
    """Finding: defaults restated in trainer.py and build.py; the resolved spec is typed."""
    spec = resolve_spec({"data": "adding"})
    assert isinstance(spec, ResolvedSpec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.train.batch_size = 3
    paths = {f.path for f in SCHEMA if f.type != "section" or f.nullable}
    for f in SCHEMA:
        section, _, key = f.path.rpartition(".")
        if not section:
            continue
        record = spec if section == "" else getattr(spec, section.split(".")[0])
        if section == "train.early_stopping" or record is None:  # null sections by default
            continue
        assert key in record, f.path
    # the dataclasses hold no default of their own: one place, the schema
    for cls in (ModelSpec, TrainSpec, EarlyStoppingSpec, OutputSpec):
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(cls)), cls
    assert paths  # the schema is not empty
    trainer_src = inspect.getsource(train_trainer) + inspect.getsource(train_build)
    assert ".get(\"batch_size\"" not in trainer_src and "tc.get(" not in trainer_src


def test_default_loss_and_metric_direction_come_from_one_place():
    """Finding: the default loss was defined twice; a metric without higher_is_better
    defaulted to opposite directions in spec.py and trainer.py."""
    from microgradnn.spec import default_loss
    from microgradnn.tasks import get_task

    assert default_loss("regression") == get_task("regression").default_loss == "mse"
    assert not hasattr(train_build, "DEFAULT_LOSS")

    class NoDirection:
        name = "nodir"

        def reset(self): ...
        def update(self, *a): ...
        def compute(self): return 0.0

    with pytest.raises(registry.RegistryError, match="higher_is_better"):
        registry.register("metrics", "nodir", NoDirection)


# ----------------------------------------------------------------------------- walking the registry


def _explicit_defaults(kind, obj):
    """Every option of a component given explicitly at its default (what a user may write)."""
    opts, _ = component_options(kind, obj)
    return {k: v.default for k, v in opts.items()
            if not v.required and isinstance(v.default, (bool, int, float, str)) and v.default is not None}


@pytest.mark.parametrize("kind", ["cells", "optimizers", "schedulers", "losses", "metrics"])
def test_every_registered_component_check_accepts_builds_and_steps(tmp_path, kind):
    """For every registered component of each kind, with each option its signature takes
    (given at its default): a spec check accepts builds and runs one step; one it refuses
    is a SpecError (one line, exit 2 at the command line)."""
    corpus = write_corpus(tmp_path)
    lm = charlm_data(corpus)
    ran = refused = 0
    for name in registry.names(kind):
        obj = registry.get(kind, name)
        options = _explicit_defaults(kind, obj) if kind != "metrics" else {}
        for data in (ADDING, lm):
            raw = {"data": data, "model": {"hidden_size": 6, "embedding_dim": 4}, "train": {"steps": 1, "batch_size": 4}}
            if kind == "cells":
                raw["model"]["cell"] = {"name": name, **options}
            elif kind == "optimizers":
                raw["optimizer"] = {"name": name, **options}
            elif kind == "schedulers":
                raw["scheduler"] = {"name": name, **options}
            elif kind == "losses":
                raw["loss"] = {"name": name, **options}
            else:
                raw["train"]["metrics"] = [name]
            raw["output"] = {"dir": str(tmp_path / "runs")}
            try:
                spec = resolve_spec(raw)
                trainer = Trainer(spec, dry_run=1)
            except SpecError as exc:
                assert len(str(exc).splitlines()) == 1, str(exc)
                refused += 1
                continue
            summary = trainer.fit()
            assert summary["status"] == "dry_run" and summary["step"] == 1, (kind, name, data)
            assert np.isfinite(trainer.validate().get("val_loss", 0.0)), (kind, name)
            ran += 1
    assert ran >= len(registry.names(kind))  # each fits at least one of the two tasks


def test_loaded_spec_is_frozen_and_round_trips(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("data: adding\nmodel: {cell: {name: rnn, nonlinearity: relu}}\ntrain: {metrics: []}\n")
    spec = load_spec(path)
    assert spec.model.cell.name == "rnn" and spec.model.cell.options["nonlinearity"] == "relu"
    assert spec["model"]["cell"] == {"name": "rnn", "nonlinearity": "relu"}
    out = tmp_path / "again.yaml"
    dump_spec(spec, out)
    assert load_spec(out) == spec


def test_an_unknown_cell_that_a_known_plugin_provides_names_the_package(monkeypatch):
    """Finding: an unknown cell that a known plugin provides suggested `rnn` instead of
    saying which package provides it."""
    real = registry._discovered_entries()
    without = {k: [e for e in v if e.dist != "mgnn-indrnn"] for k, v in real.items()}
    monkeypatch.setattr(registry, "_discovered_entries", lambda: without)
    with pytest.raises(SpecError, match="mgnn-indrnn.*pip install") as info:
        resolve_spec({"data": "adding", "model": {"cell": "indrnn"}})
    assert "did you mean" not in str(info.value)


def test_trainer_trains_your_own_module_on_your_own_data(tmp_path):
    """The Trainer trains a user's own mg.nn.Module on their own data from Python."""
    from microgradnn.data import adding

    class Tiny(mg.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = mg.nn.GRU(2, 8, batch_first=True)
            self.out = mg.nn.Linear(8, 1)

        def forward(self, x, state=None, lengths=None):
            _, h = self.rnn(x, state)
            return self.out(h[-1]), h

    mg.manual_seed(0)
    model = Tiny()
    data = adding(seq_len=6, train_size=64, val_size=16)
    trainer = Trainer.from_model(model, data, optimizer={"name": "adam", "lr": 0.01}, steps=30, batch_size=16,
                                 eval_every=10, run_dir=tmp_path / "mine")
    first = trainer.validate()["val_loss"]
    summary = trainer.fit()
    assert summary["status"] == "completed" and summary["step"] == 30
    assert summary["last_eval"]["val_loss"] < first  # it learned something
    assert (tmp_path / "mine" / "checkpoints" / "last.safetensors").is_file()
    with pytest.raises(SpecError, match="train.metrics"):
        Trainer.from_model(Tiny(), data, metrics=["accuracy"], steps=1)


def test_the_step_is_shared_by_training_validation_and_eval(tmp_path):
    """Finding: evaluate_model re-implemented the Trainer's forward/loss/count."""
    import microgradnn.train.inference as inference

    src = inspect.getsource(inference) + inspect.getsource(train_trainer)
    assert src.count("loss_fn(out.reshape") == 0  # only step.py flattens per-step outputs
    from microgradnn.train import step as step_module

    assert inspect.getsource(step_module).count("loss_fn(out.reshape") == 1


def test_finetune_load_base_and_a_spec_fine_tune_pick_the_same_checkpoint(tmp_path):
    """Finding: two "find the pretrained checkpoint" rules (the newest file by mtime in
    finetune/loading.py, the best entry of index.json in the trainer)."""
    from microgradnn import finetune as ft
    from microgradnn.runfolder import find_checkpoint
    from microgradnn.train.finetune_hook import load_base

    corpus = write_corpus(tmp_path)
    spec = resolve_spec({"data": charlm_data(corpus), "model": {"hidden_size": 6, "embedding_dim": 4},
                         "optimizer": {"name": "sgd", "lr": 5.0},  # so big that later evaluations get worse
                         "train": {"steps": 6, "batch_size": 4, "eval_every": 2, "keep_best": 1},
                         "output": {"dir": str(tmp_path / "runs")}})
    t = Trainer(spec)
    t.fit()
    best = find_checkpoint(t.run_dir, "base")
    assert best == find_checkpoint(t.run_dir, "best")
    ours = ft.load_base(t.run_dir)
    theirs = load_base(t.run_dir).state
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    picked = mg.load(best)["model"]
    assert all(np.array_equal(ours[k], picked[k]) for k in ours)


def test_a_new_task_is_added_in_one_place(tmp_path):
    """The seam for new tasks: register a Task (its targets, defaults and model builder);
    the model, the spec's checks and the step follow from it."""
    from microgradnn.data import adding
    from microgradnn.models import SequenceModel
    from microgradnn.tasks import _TASKS, Task, register_task

    built = []

    def build(model_spec, info):
        built.append(info["task"])
        return SequenceModel(info["output_size"], input_size=info["input_size"], hidden_size=model_spec.hidden_size,
                             task="regression")

    register_task(Task("toy_forecast", "values", per_step=False, default_loss="l1", build_model=build))
    try:
        data = adding(seq_len=5, train_size=32, val_size=8)
        data.task = "toy_forecast"  # the adding problem relabelled as the new task
        info = {"task": "toy_forecast", "output_size": 1, "input_size": 2}
        model = train_build.build_model({"hidden_size": 6}, info)  # the task's builder, not SequenceModel's
        assert built == ["toy_forecast"] and model.hidden_size == 6
        trainer = Trainer.from_model(model, data, steps=2, batch_size=8, dry_run=2)
        assert trainer.spec.loss.name == "l1" and trainer.fit()["status"] == "dry_run"
        with pytest.raises(SpecError, match="'toy_forecast' has values targets"):
            Trainer.from_model(model, data, loss="cross_entropy", steps=1)
    finally:
        _TASKS.pop("toy_forecast", None)
