"""The example specs: each validates, its data builds with the spec's own options, and the
shipped CSV is what examples/make_stdlib_lines.py makes (labels from tokenize and ast)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import microgradnn.data as D

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SPECS = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def test_required_examples_exist() -> None:
    for name in ("char_lstm_stdlib.yaml", "adding_problem.yaml", "stdlib_lines.yaml"):
        assert name in SPECS
        head = (EXAMPLES / name).read_text().splitlines()[:12]
        text = " ".join(head)
        assert "Reaches" in text and "2 CPU cores" in text, f"{name}: the top comment must say what it reaches and how long"
        assert "TIME" not in text and "RESULT" not in text, f"{name}: placeholder left in the top comment"


@pytest.mark.parametrize("name", SPECS)
def test_spec_validates_and_its_data_builds(name: str, monkeypatch) -> None:
    spec_mod = pytest.importorskip("microgradnn.spec", reason="the spec module (microgradnn/spec.py) is not in this tree")
    from microgradnn import registry

    text = (EXAMPLES / name).read_text()
    for plugin in ("mgnn-indrnn", "mgnn-reverse"):
        if f"plugins/{plugin}" in text and not _installed(plugin):
            pytest.skip(f"{name} needs the example plugin {plugin} (pip install -e plugins/{plugin})")
    monkeypatch.chdir(ROOT)  # example paths are relative to the repository root
    spec = spec_mod.load_spec(str(EXAMPLES / name))
    options = dict(spec["data"])
    factory = registry.get("datasets", options.pop("name"))
    if factory is D.charlm:
        options["max_chars"] = min(options.get("max_chars") or 10**9, 200_000)  # keep the test fast
    dm = factory(**options)
    batch = next(dm.train_batches(spec["train"]["batch_size"], epoch=0, seed=spec["train"]["seed"]))
    assert batch.x.shape[0] == spec["train"]["batch_size"]
    assert dm.num_val_batches(spec["train"]["batch_size"]) > 0


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def _maker():
    path = EXAMPLES / "make_stdlib_lines.py"
    spec = importlib.util.spec_from_file_location("make_stdlib_lines", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_stdlib_lines", module)
    spec.loader.exec_module(module)
    return module


def test_line_labels_from_tokenize_and_ast() -> None:
    source = '''"""Module docstring,
second line."""
import os  # trailing comment keeps it code

# a whole-line comment
def f(x):
    """Return x."""
    s = """not a
    docstring"""
    return x
'''
    got = _maker().label_lines(source)
    assert got == [
        ("Module docstring,", "docstring"), ("second line.", "docstring"),
        ("import os  # trailing comment keeps it code", "code"),
        ("a whole-line comment", "comment"),
        ("def f(x):", "code"), ("Return x.", "docstring"),
        ('s = """not a', "code"),
        ("return x", "code"),
    ]


def test_shipped_csv() -> None:
    path = EXAMPLES / "data" / "stdlib_lines.csv"
    assert path.stat().st_size < 1_000_000
    dm = D.csv(str(path), val_fraction=0.0)
    assert dm.class_names == ["code", "comment", "docstring"]
    counts = np.bincount(np.concatenate([b.y for b in dm.train_batches(1000)]))
    assert counts.tolist() == [3000, 3000, 3000]
