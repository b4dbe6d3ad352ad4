"""The training spec: loading, defaults, overrides and every class of bad spec.

A toy dataset, registered in-process, stands in for the built-in ones so these tests
exercise the spec alone (the datasets have their own tests)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import microgradnn as mg
from microgradnn import registry, spec
from microgradnn.finetune import Strategy
from microgradnn.spec import SpecError, dump_spec, load_spec, parse_override, resolve_spec


def toy(n: int = 100, seq_len: int = 8, val_fraction: float = 0.1, path: str | None = None,
        mode: str = "random") -> object:
    """A stand-in dataset factory: only its signature matters here."""
    raise AssertionError("the spec must never build the dataset")


def needs_size(size: int, scale: float = 1.0) -> object:
    raise AssertionError("never built")


def open_options(**options) -> object:
    raise AssertionError("never built")


class KeepAll(Strategy):
    """A plugin-style fine-tuning strategy (the contract: subclass Strategy, write _apply)."""

    def __init__(self, lr_scale: float = 1.0) -> None:
        super().__init__()

    def apply(self, model) -> None:
        pass


class ScaledCell(mg.nn.Module):
    """A plugin-style cell with its own options."""

    def __init__(self, input_size: int, hidden_size: int, alpha: float = 0.5, gated: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()


@pytest.fixture(autouse=True)
def components():
    added = [("datasets", "toy", toy), ("datasets", "needs_size", needs_size), ("datasets", "anything", open_options),
             ("cells", "scaled", ScaledCell), ("finetune", "keep_all", KeepAll)]
    for kind, name, obj in added:
        registry.register(kind, name, obj, replace=True)
    yield
    for kind, name, _ in added:
        registry.unregister(kind, name)


def write(tmp_path: Path, text: str, name: str = "myrun.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(excinfo) -> dict[str, str]:
    """{key path: the problem's full text}."""
    return {p.path: str(p) for p in excinfo.value.problems}


GOOD = """
    # a small, complete spec
    model:
      cell: {name: gru, bias: false}
      hidden_size: 32
      dropout: 0.1
    data: {name: toy, n: 50}
    optimizer: {name: adamw, lr: 3e-3, weight_decay: 0.01}
    scheduler: {name: step, step_size: 100}
    train:
      steps: 200
      metrics: [accuracy]
      early_stopping: {monitor: val_accuracy}
"""


# ----------------------------------------------------------------------------- good specs


def test_a_good_spec_resolves_with_every_default(tmp_path):
    resolved = load_spec(write(tmp_path, GOOD))
    assert list(resolved) == list(spec.SECTIONS)
    assert resolved["model"] == {"embedding_dim": 64, "cell": {"name": "gru", "bias": False}, "hidden_size": 32,
                                 "num_layers": 1, "dropout": 0.1, "bidirectional": False, "init_state": "zeros",
                                 # seq2seq / forecast keys (issue 15), at their defaults
                                 "attention": None, "decoder_cell": None, "decoder_layers": 1, "sampling_ratio": 0.0,
                                 "beam_size": 1, "length_penalty": 0.0, "max_len": None, "residual": True}
    assert resolved["data"] == {"name": "toy", "n": 50}
    assert resolved["optimizer"] == {"name": "adamw", "lr": 0.003, "weight_decay": 0.01}
    assert isinstance(resolved["optimizer"]["lr"], float)  # "3e-3" is a number, not YAML 1.1's string
    assert resolved["scheduler"] == {"name": "step", "step_size": 100}
    assert resolved["loss"] is None  # chosen from the task later
    train = resolved["train"]
    assert (train["steps"], train["epochs"], train["batch_size"], train["seed"]) == (200, None, 32, 0)
    assert train["early_stopping"] == {"monitor": "val_accuracy", "mode": "max", "patience": 5, "min_delta": 0.0,
                                       "divergence_threshold": None}
    assert resolved["finetune"] is None
    assert resolved["output"] == {"dir": "runs", "name": "myrun"}  # the file's stem


def test_minimal_spec_gets_defaults():
    resolved = resolve_spec({"data": "toy"})
    assert resolved["data"] == {"name": "toy"}
    assert resolved["model"]["cell"] == {"name": "lstm"}
    assert resolved["optimizer"] == {"name": "adam", "lr": 0.001}
    assert resolved["train"]["epochs"] == 1 and resolved["train"]["steps"] is None
    assert resolved["train"]["early_stopping"] is None
    assert resolved["output"]["name"] == "run"


def test_resolved_spec_round_trips_through_dump(tmp_path):
    resolved = load_spec(write(tmp_path, GOOD))
    out = tmp_path / "run" / "spec.yaml"
    text = dump_spec(resolved, out)
    assert out.read_text() == text and text.startswith("model:")
    assert not [p for p in out.parent.iterdir() if p.name != "spec.yaml"]  # no temp file left
    assert load_spec(out) == resolved


def test_plugin_component_options_come_from_its_signature():
    resolved = resolve_spec({"data": "toy", "model": {"cell": {"name": "scaled", "alpha": 1, "gated": False}}})
    assert resolved["model"]["cell"] == {"name": "scaled", "alpha": 1.0, "gated": False}
    assert isinstance(resolved["model"]["cell"]["alpha"], float)
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": "toy", "model": {"cell": {"name": "scaled", "alpah": 1, "device": "cuda"}}})
    found = problems_of(info)
    assert "did you mean 'alpha'" in found["model.cell.alpah"]
    assert "model.cell.device" in found  # supplied by the framework, not a spec option


def test_kwargs_component_accepts_any_option():
    assert resolve_spec({"data": {"name": "anything", "whatever": [1, 2]}})["data"] == {
        "name": "anything", "whatever": [1, 2]}


def test_early_stopping_true_means_defaults_and_mode_follows_the_monitor():
    stop = resolve_spec({"data": "toy", "train": {"early_stopping": True}})["train"]["early_stopping"]
    assert stop["monitor"] == "val_loss" and stop["mode"] == "min" and stop["patience"] == 5


# ----------------------------------------------------------------------------- bad specs


def test_unknown_keys_with_did_you_mean():
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": "toy", "modle": {}, "train": {"batch_sise": 4, "early_stopping": {"patiense": 2}}})
    found = problems_of(info)
    assert "unknown key" in found["modle"] and "did you mean 'model'" in found["modle"]
    assert "did you mean 'batch_size'" in found["train.batch_sise"]
    assert "did you mean 'patience'" in found["train.early_stopping.patiense"]
    assert "allowed: embedding_dim" not in found["modle"]  # top level lists the sections
    assert "allowed: model, data, loss" in found["modle"]


@pytest.mark.parametrize("path,value,allowed", [
    ("train.batch_size", "32", "an int >= 1"),
    ("train.batch_size", 32.0, "an int >= 1"),
    ("model.bidirectional", "yes please", "true or false"),
    ("model.hidden_size", True, "an int >= 1"),
    ("train.seed", None, "an int >= 0"),
    ("model.dropout", "0.1", "a float in [0, 1)"),
    ("train.metrics", {"accuracy": 1}, "a list of metric names"),
    ("model", [1, 2], "a mapping of embedding_dim"),
    ("output.name", 7, "null or a string"),
])
def test_wrong_types(path, value, allowed):
    section, _, key = path.partition(".")
    raw = {"data": "toy", section: {key: value} if key else value}
    with pytest.raises(SpecError) as info:
        resolve_spec(raw)
    text = problems_of(info)[path]
    assert "wrong type" in text and f"allowed: {allowed}" in text


@pytest.mark.parametrize("path,value,allowed", [
    ("train.batch_size", 0, "an int >= 1"),
    ("model.dropout", 1.0, "a float in [0, 1)"),
    ("train.clip_grad_norm", 0, "null or a float > 0"),
    ("train.early_stopping.patience", -1, "an int >= 0"),
    ("optimizer.lr", 0, "a number > 0"),
    ("optimizer.lr", -1e-3, "a number > 0"),
    ("optimizer.betas", [0.9, 1.0], "each a number in [0, 1)"),
    ("data.seq_len", 0, "a number >= 1"),
    ("data.val_fraction", 1.0, "a number in [0, 1)"),
])
def test_bad_ranges(path, value, allowed):
    raw = {"data": {"name": "toy"}, "optimizer": {"name": "adam"}, "train": {"early_stopping": {}}}
    *parents, key = path.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = value
    with pytest.raises(SpecError) as info:
        resolve_spec(raw)
    text = problems_of(info)[path]
    assert "out of range" in text and f"allowed: {allowed}" in text


def test_not_finite_and_bad_choice():
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": "toy", "train": {"clip_grad_norm": float("nan"), "device": "gpu"}})
    found = problems_of(info)
    assert "not a finite number" in found["train.clip_grad_norm"]
    assert "allowed: one of cpu, cuda" in found["train.device"] and "did you mean 'cpu'" in found["train.device"]


def test_unknown_components_with_did_you_mean():
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": "toyy", "model": {"cell": {"name": "lstn"}}, "optimizer": "adma",
                      "scheduler": {"name": "cosin"}, "loss": "cross_entropyy",
                      "train": {"metrics": ["accuracy", "perplexit"]}})
    found = problems_of(info)
    assert "unknown dataset" in found["data"] and "did you mean 'toy'" in found["data"]
    assert "unknown cell" in found["model.cell.name"] and "did you mean 'lstm'" in found["model.cell.name"]
    assert "did you mean 'adam'" in found["optimizer"]
    assert "did you mean 'cosine'" in found["scheduler.name"]
    assert "did you mean 'cross_entropy'" in found["loss"]
    assert "did you mean 'perplexity'" in found["train.metrics[1]"]
    assert "lstm" in found["model.cell.name"].partition("allowed:")[2]  # lists what exists


def test_component_options_unknown_wrong_type_missing():
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": {"name": "toy", "seq_lenn": 4, "mode": 3},
                      "optimizer": {"name": "sgd", "momentun": 0.9, "nesterov": "yes"},
                      "scheduler": "step", "model": {"cell": {"name": "rnn", "nonlinearity": 1}}})
    found = problems_of(info)
    assert "unknown option of dataset 'toy'" in found["data.seq_lenn"]
    assert "did you mean 'seq_len'" in found["data.seq_lenn"]
    assert "allowed: a string" in found["data.mode"]
    assert "did you mean 'momentum'" in found["optimizer.momentun"]
    assert "wrong type" in found["optimizer.nesterov"] and "true or false" in found["optimizer.nesterov"]
    assert "missing required option of scheduler 'step'" in found["scheduler.step_size"]
    assert "allowed: a string" in found["model.cell.nonlinearity"]
    assert "optimizer.params" not in found  # the optimizer's params are the framework's


def test_missing_required_option_of_a_plugin_dataset():
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": "needs_size"})
    assert "missing required option of dataset 'needs_size'" in problems_of(info)["data.size"]
    assert resolve_spec({"data": {"name": "needs_size", "size": 3}})["data"]["size"] == 3


def test_derived_scheduler_options_may_be_left_out():
    assert resolve_spec({"data": "toy", "scheduler": "cosine"})["scheduler"] == {"name": "cosine"}


def test_required_sections_and_names():
    with pytest.raises(SpecError) as info:
        resolve_spec({"model": {}, "finetune": {"strategy": "keep_all"}, "scheduler": {"step_size": 3}})
    found = problems_of(info)
    assert "required" in found["data"] and "required" in found["finetune.from"]
    assert "required" in found["scheduler.name"] and "step" in found["scheduler.name"]


def test_epochs_and_steps_both_given():
    with pytest.raises(SpecError, match=r"train: give train.epochs or train.steps, not both"):
        resolve_spec({"data": "toy", "train": {"epochs": 2, "steps": 10}})


def test_monitor_must_be_recorded():
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": "toy", "train": {"early_stopping": {"monitor": "val_accuracy"}}})
    assert "add accuracy to train.metrics" in problems_of(info)["train.early_stopping.monitor"]


def test_finetune_from_a_missing_run(tmp_path):
    with pytest.raises(SpecError, match=r"finetune.from: no such file or folder"):
        resolve_spec({"data": "toy", "finetune": {"from": str(tmp_path / "nope")}})
    run = tmp_path / "run"
    run.mkdir()
    ft = resolve_spec({"data": "toy", "finetune": {"from": str(run), "strategy": "keep_all", "head": "new"}})
    assert ft["finetune"] == {"from": str(run), "strategy": {"name": "keep_all"}, "head": "new"}
    with pytest.raises(SpecError, match=r"finetune.strategy.lr_scal: unknown option.*did you mean 'lr_scale'"):
        resolve_spec({"data": "toy", "finetune": {"from": str(run), "strategy": {"name": "keep_all", "lr_scal": 2}}})


def test_a_plugin_claiming_a_built_in_name_does_not_shadow_it_in_a_spec():
    # a second claimant of the built-in "adam": the built-in wins (issue 11)
    registry.register("optimizers", "adam", mg.optim.SGD, dist="other-dist")
    try:
        assert resolve_spec({"data": "toy"})["optimizer"]["name"] == "adam"
        assert registry.get("optimizers", "adam") is mg.optim.Adam
        picked = resolve_spec({"data": "toy", "optimizer": {"name": "other-dist:adam", "momentum": 0.9}})
        assert picked["optimizer"] == {"name": "other-dist:adam", "momentum": 0.9}
    finally:
        registry.unregister("optimizers", "adam")


def test_many_problems_are_reported_together(tmp_path):
    path = write(tmp_path, """
        model:
          hiden_size: 256
          cell: lstn
        data: {name: toy, seq_lenn: 4}
        optimizer: {name: adam, lr: -1}
        train:
          batch_size: "big"
        outptu: {}
    """)
    with pytest.raises(SpecError) as info:
        load_spec(path, ["train.seed=-3"])
    found = problems_of(info)
    assert set(found) == {"model.hiden_size", "model.cell", "data.seq_lenn", "optimizer.lr", "train.batch_size",
                          "outptu", "train.seed"}
    message = str(info.value)
    assert message.startswith(f"{path}: 7 problems in the spec:")
    assert "model.hiden_size: unknown key" in message and "(line 3)" in message  # where in the file
    assert "from override 'train.seed=-3'" in found["train.seed"]


def test_top_level_must_be_a_mapping_and_empty_needs_data(tmp_path):
    with pytest.raises(SpecError, match="a spec is a mapping of sections"):
        load_spec(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(SpecError, match="data: required"):
        load_spec(write(tmp_path, "# nothing yet\n", "empty.yaml"))


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- YAML safety


def test_python_tags_are_rejected_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"""
        data: toy
        model: !!python/object/apply:os.system ["touch {marker}"]
    """)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert "YAML tag !!python/object/apply:os.system is not allowed" in text and "line 3" in text
    assert not marker.exists()
    with pytest.raises(SpecError, match="is not allowed"):
        load_spec(write(tmp_path, "data: !!python/name:os.system\n", "b.yaml"))
    with pytest.raises(SpecError, match="is not allowed"):
        resolve_spec({"data": "toy"}, ["model=!!python/object:os.getcwd {}"])


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, """
        data: toy
        model:
          hidden_size: 32
         num_layers: 2
    """)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    problem = info.value.problems[0]
    assert problem.message.startswith("YAML syntax error") and "column" in problem.message
    assert problem.line == 5 and str(path) in str(info.value)


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, """
        data: toy
        optimizer:
          lr: 0.1
          lr: 0.2
    """)
    with pytest.raises(SpecError, match=r"key 'lr' is given twice \(first on line 4\)"):
        load_spec(path)


def test_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 7):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    with pytest.raises(SpecError, match="too many aliases"):
        spec.read_yaml(bomb)


# ----------------------------------------------------------------------------- overrides


def test_overrides_are_typed_and_nested(tmp_path):
    resolved = load_spec(write(tmp_path, GOOD), [
        "optimizer.lr=1e-2", "train.batch_size=64", "model.cell.bias=true", "train.metrics=[accuracy, f1]",
        "scheduler=null", "data.n=7", "output.name=other"])
    assert resolved["optimizer"]["lr"] == 0.01 and resolved["train"]["batch_size"] == 64
    assert resolved["model"]["cell"] == {"name": "gru", "bias": True}
    assert resolved["train"]["metrics"] == ["accuracy", "f1"]
    assert resolved["scheduler"] is None and resolved["data"]["n"] == 7
    assert resolved["output"]["name"] == "other"


def test_override_into_a_shorthand_or_absent_section():
    resolved = resolve_spec({"data": "toy", "model": {"cell": "rnn"}},
                            ["model.cell.nonlinearity=relu", "scheduler.name=step", "scheduler.step_size=5",
                             "train.early_stopping.patience=2"])
    assert resolved["model"]["cell"] == {"name": "rnn", "nonlinearity": "relu"}
    assert resolved["scheduler"] == {"name": "step", "step_size": 5}
    assert resolved["train"]["early_stopping"]["patience"] == 2


def test_delete_override_goes_back_to_the_default(tmp_path):
    resolved = load_spec(write(tmp_path, GOOD), ["~model.hidden_size", "~optimizer", "~train.early_stopping"])
    assert resolved["model"]["hidden_size"] == 128
    assert resolved["optimizer"] == {"name": "adam", "lr": 0.001}
    assert resolved["train"]["early_stopping"] is None
    assert resolve_spec({"data": "toy"}, ["~train.seed"])["train"]["seed"] == 0  # absent: nothing to do


def test_steps_override_replaces_the_files_epochs():
    resolved = resolve_spec({"data": "toy", "train": {"epochs": 5}}, ["train.steps=3"])
    assert (resolved["train"]["steps"], resolved["train"]["epochs"]) == (3, None)
    with pytest.raises(SpecError, match="not both"):  # both on the command line: ambiguous
        resolve_spec({"data": "toy"}, ["train.steps=3", "train.epochs=2"])


@pytest.mark.parametrize("override,match", [
    ("train.batch_size", "no '='"),
    ("=3", "not a key path"),
    ("train..seed=3", "not a key path"),
    ("train.seed=", "no value after '='"),
    ("optimizer.lr=[1, 2", "bad override value: YAML syntax error"),
    ("~train.seed=3", "takes no value"),
    ("~trian.seed", "no such key to delete"),
])
def test_malformed_overrides(override, match):
    with pytest.raises(SpecError, match=match) as info:
        resolve_spec({"data": "toy"}, [override])
    assert "allowed: key=value" in str(info.value) or "did you mean 'train'" in str(info.value)


def test_override_values_are_validated_like_the_file():
    with pytest.raises(SpecError) as info:
        resolve_spec({"data": "toy", "model": {"hidden_size": 8}},
                     ["train.batch_sise=4", "optimizer.lr=fast", "model.hidden_size.x=1"])
    found = problems_of(info)
    assert "did you mean 'batch_size'" in found["train.batch_sise"]
    assert "from override 'train.batch_sise=4'" in found["train.batch_sise"]
    assert "allowed: a float" in found["optimizer.lr"]
    assert "can't set model.hidden_size.x, model.hidden_size holds no keys" in found["model.hidden_size"]


def test_parse_override():
    assert parse_override("optimizer.lr=3e-3") == ("optimizer.lr", 0.003, False)
    assert parse_override(" ~train.seed ") == ("train.seed", None, True)
    assert parse_override("output.name='1e3'") == ("output.name", "1e3", False)
    assert parse_override("model.cell={name: gru, bias: false}") == (
        "model.cell", {"name": "gru", "bias": False}, False)
    assert spec.apply_overrides({"a": 1}, ["b.c=2"]) == {"a": 1, "b": {"c": 2}}


# ----------------------------------------------------------------------------- task defaults, schema


def test_fill_task_defaults():
    resolved = resolve_spec({"data": "toy"})
    assert spec.fill_task_defaults(resolved, "regression")["loss"] == {"name": "mse"}
    assert spec.fill_task_defaults(resolved, "lm")["loss"] == {"name": "cross_entropy"}
    assert resolved["loss"] is None  # not modified in place
    with pytest.raises(SpecError, match="train.tbptt: only for language models"):
        spec.fill_task_defaults(resolve_spec({"data": "toy", "train": {"tbptt": True}}), "classification")
    with pytest.raises(SpecError, match="model.bidirectional"):
        spec.fill_task_defaults(resolve_spec({"data": "toy", "model": {"bidirectional": True}}), "lm")


def test_schema_table_covers_every_key():
    rows = spec.schema_rows()
    assert [r["key"] for r in rows] == [f.path for f in spec.SCHEMA]
    by_key = {r["key"]: r for r in rows}
    assert by_key["train.batch_size"]["default"] == "32"
    assert by_key["data"]["default"] == "(required)"
    assert by_key["optimizer"]["default"] == "{name: adam, lr: 0.001}"
    assert by_key["model.dropout"]["allowed"] == "a float in [0, 1)"
    assert all(r["doc"] for r in rows)
    table = spec.format_schema()
    assert "  batch_size" in table and "early_stopping" in table
    # every default in the table is itself valid
    resolve_spec({"data": "toy", "train": {"early_stopping": True}})
