"""A run folder resolves its components the same way later: resume, eval, generate and
export take each component from the distribution run.json recorded, whatever has been
installed or removed since; a recorded distribution that is gone is one clear error.

The plugins are fake installed distributions (a module and a .dist-info folder put on
sys.path, as tests/fixtures/misbehaving_plugin is): mgnn-pin-a provides the optimizer
``pinopt``; mgnn-impostor claims ``pinopt`` and the built-in ``adam`` with objects that
refuse to be used."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import microgradnn as mg
from microgradnn import registry
from microgradnn.train import Trainer, TrainError, evaluate, export, generate, load_run
from tests.train._util import base_spec, charlm_data, pin_plugins, weights, with_, write_corpus, write_fake_dist

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def plugins(tmp_path):
    """Install (put on sys.path) or remove the two fake plugins; undone after the test."""
    a, impostor = pin_plugins(tmp_path / "site")
    folders = {"a": str(a), "impostor": str(impostor)}

    def installed(*which: str) -> None:
        for path in folders.values():
            while path in sys.path:
                sys.path.remove(path)
        for w in which:
            sys.path.insert(0, folders[w])
        registry.cache_clear()

    yield installed
    installed()


@pytest.fixture()
def spec(tmp_path):
    data = charlm_data(write_corpus(tmp_path))
    return with_(base_spec(tmp_path / "runs", data, steps=6, eval_every=3), optimizer={"name": "pinopt", "lr": 0.1})


def _train(spec, run_dir, steps: int = 6):
    trainer = Trainer(with_(spec, train__steps=steps), run_dir)
    assert trainer.fit()["status"] == "completed"
    return trainer


def test_resolve_with_a_dist_takes_that_distribution_or_says_it_is_gone(plugins):
    plugins("a", "impostor")
    with pytest.raises(registry.RegistryError, match="registered by"):  # two plugins, no built-in: a clash
        registry.resolve("optimizers", "pinopt")
    assert registry.resolve("optimizers", "pinopt", "mgnn-pin-a").dist == "mgnn-pin-a"
    assert registry.resolve("optimizers", "pinopt", "MGNN_Pin.A").dist == "mgnn-pin-a"  # PEP 503 spelling
    with registry.pinned({"optimizers": {"pinopt": "mgnn-impostor"}}):
        assert registry.get_entry("optimizers", "pinopt").dist == "mgnn-impostor"
        assert registry.get_entry("optimizers", "mgnn-pin-a:pinopt").dist == "mgnn-pin-a"  # spelt out: as asked
        with registry.pinned({"optimizers": {"pinopt": "mgnn-pin-a"}}):  # the inner pins replace the outer
            assert registry.get("optimizers", "pinopt").ORIGIN == "mgnn-pin-a"
        assert registry.get_entry("optimizers", "pinopt").dist == "mgnn-impostor"
    with pytest.raises(registry.RegistryError, match="registered by"):  # the block is over
        registry.resolve("optimizers", "pinopt")
    with registry.pinned({"optimizers": {"adam": "microgradnn"}}):
        assert registry.get("optimizers", "adam") is mg.optim.Adam
    with pytest.raises(registry.NotProvidedError) as gone:
        registry.resolve("optimizers", "pinopt", "mgnn-gone")
    assert gone.value.installed is None and "'mgnn-gone' is not installed" in str(gone.value)
    assert "mgnn-pin-a:pinopt" in str(gone.value)  # who provides it now
    with pytest.raises(registry.NotProvidedError) as without:
        registry.resolve("optimizers", "adam", "mgnn-pin-a")
    assert without.value.installed == "0.1" and "'mgnn-pin-a' 0.1 does not provide it" in str(without.value)


def test_a_run_keeps_its_plugin_component_when_a_clashing_plugin_is_installed_since(plugins, spec, tmp_path):
    plugins("a")
    run = tmp_path / "runs" / "pinned"
    _train(spec, run, steps=3)
    record = json.loads((run / "run.json").read_text())["components"]
    assert record["optimizers"]["pinopt"] == {"dist": "mgnn-pin-a", "version": "0.1"}

    plugins("a", "impostor")  # a second plugin now claims "pinopt": the bare name is ambiguous
    trainer = Trainer.resume(run, overrides=["train.steps=6"])
    assert trainer.optimizer.ORIGIN == "mgnn-pin-a"
    assert trainer.fit()["status"] == "completed"
    record = json.loads((run / "run.json").read_text())["components"]
    assert record["optimizers"]["pinopt"]["dist"] == "mgnn-pin-a"  # the resumed run records the same

    # and it ends where a run that never saw the impostor ends
    plugins("a")
    straight = _train(spec, tmp_path / "runs" / "straight")
    plugins("a", "impostor")
    got, want = weights(load_run(run, "last").model), weights(straight.model)
    assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in want)
    assert evaluate(run)["loss"] > 0
    assert len(generate(run, "def ", length=5, seed=1)) == 5
    assert export(run).is_file()


def test_a_run_whose_plugin_was_removed_says_so_in_one_line(plugins, spec, tmp_path):
    plugins("a")
    run = tmp_path / "runs" / "orphan"
    _train(spec, run, steps=3)
    plugins("impostor")  # mgnn-pin-a is gone; another distribution offers a "pinopt"
    calls = {"resume": lambda: Trainer.resume(run, overrides=["train.steps=6"]), "eval": lambda: evaluate(run),
             "generate": lambda: generate(run, length=3), "load_run": lambda: load_run(run),
             "export": lambda: export(run)}
    for what, call in calls.items():
        with pytest.raises(TrainError) as exc:
            call()
        message = str(exc.value)
        assert "\n" not in message, (what, message)
        for fragment in (str(run / "run.json"), "components.optimizers.pinopt", "'mgnn-pin-a' 0.1",
                         "is not installed", "mgnn-impostor:pinopt", "pip install 'mgnn-pin-a==0.1'"):
            assert fragment in message, (what, fragment, message)
    plugins()  # nobody provides it at all: the same message, without the other provider
    with pytest.raises(TrainError, match=r"components\.optimizers\.pinopt was provided by distribution 'mgnn-pin-a'"):
        evaluate(run)
    # a later mgnn-pin-a that dropped "pinopt": installed, but no longer providing it
    later = write_fake_dist(tmp_path / "later", "mgnn-pin-a", "0.2", "mgnn_pin_a_later", "", {"losses": {}})
    sys.path.insert(0, str(later))
    try:
        registry.cache_clear()
        with pytest.raises(TrainError) as exc:
            Trainer.resume(run, overrides=["train.steps=6"])
        assert "'mgnn-pin-a' 0.2 does not provide it" in str(exc.value), str(exc.value)
        assert "pip install 'mgnn-pin-a==0.1'" in str(exc.value), str(exc.value)
    finally:
        sys.path.remove(str(later))
        registry.cache_clear()


def test_a_recorded_built_in_stays_the_built_in(plugins, spec, tmp_path):
    # (the built-in also wins over a plugin without the record: this guards that the pins keep it so)
    run = tmp_path / "runs" / "builtin"
    _train(with_(spec, optimizer={"name": "adam", "lr": 0.01}), run, steps=3)
    assert json.loads((run / "run.json").read_text())["components"]["optimizers"]["adam"]["dist"] == "microgradnn"
    plugins("impostor")  # claims "adam" with an object that refuses to be used
    trainer = Trainer.resume(run, overrides=["train.steps=6"])
    assert type(trainer.optimizer) is mg.optim.Adam
    assert trainer.fit()["status"] == "completed"


def test_a_damaged_components_record_is_one_line_naming_run_json(spec, tmp_path):
    run = tmp_path / "runs" / "damaged"
    _train(with_(spec, optimizer={"name": "adam", "lr": 0.01}), run, steps=3)
    info = json.loads((run / "run.json").read_text())
    for bad, words in (([], '"components" must be'), ({"gadgets": {}}, "components.gadgets"),
                       ({"optimizers": {"adam": "microgradnn"}}, "components.optimizers.adam")):
        (run / "run.json").write_text(json.dumps(dict(info, components=bad)))
        with pytest.raises(TrainError) as exc:
            evaluate(run)
        assert str(run / "run.json") in str(exc.value) and words in str(exc.value), str(exc.value)


def test_one_short_name_from_two_distributions_in_one_run_resolves_each_as_spelt(plugins, tmp_path):
    # the encoder is the built-in "lstm", the decoder the plugin's "mgnn-pin-a:lstm" (a GRU):
    # the record is keyed by the spelling, so the plugin's entry can't capture the bare name
    from microgradnn.spec import load_spec

    plugins("a")
    rows = (ROOT / "examples" / "data" / "number_words_en_fr.tsv").read_text().splitlines()[:80]
    (tmp_path / "pairs.tsv").write_text("\n".join(rows) + "\n")
    spec = load_spec(ROOT / "examples" / "number_words_attention.yaml",
                     [f"data.path={tmp_path / 'pairs.tsv'}", "model.decoder_cell=mgnn-pin-a:lstm", "train.steps=2",
                      "train.epochs=null", "model.hidden_size=8", "model.embedding_dim=8", f"output.dir={tmp_path}"])
    run = tmp_path / "s2s"
    Trainer(spec, run).fit()
    cells = json.loads((run / "run.json").read_text())["components"]["cells"]
    assert cells == {"lstm": {"dist": "microgradnn", "version": mg.__version__},
                     "mgnn-pin-a:lstm": {"dist": "mgnn-pin-a", "version": "0.1"}}
    model = load_run(run, "last").model
    assert type(model.encoder) is mg.nn.LSTM  # the built-in, not the plugin's cell the record also names
    assert model.decoder[0].ORIGIN == "mgnn-pin-a"
    trainer = Trainer.resume(run, overrides=["train.steps=3"])  # and so does a resume
    assert type(trainer.model.encoder) is mg.nn.LSTM and trainer.model.decoder[0].ORIGIN == "mgnn-pin-a"
