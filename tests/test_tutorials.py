"""Every tutorial chapter's code runs against the current API, and every exercise check
accepts the reference solution and rejects the untouched exercise stub."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]-*.md"))
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _checker():
    spec = importlib.util.spec_from_file_location("tutorial_check", TUTORIALS / "check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_eleven_chapters():
    numbers = [int(p.name[:2]) for p in CHAPTERS]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) == 11


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_runs(chapter, tmp_path, monkeypatch):
    """Run the chapter's python blocks in order, in one namespace, in a scratch folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"tutorial_{chapter.stem.replace('-', '_')}"}
    blocks = _BLOCK.findall(chapter.read_text(encoding="utf-8"))
    assert blocks, f"{chapter.name} has no python code"
    for k, code in enumerate(blocks):
        try:
            exec(compile(code, f"{chapter.name}[block {k + 1}]", "exec"), namespace)
        except Exception as error:  # name the chapter and block, not just the line
            raise AssertionError(f"{chapter.name}, code block {k + 1} failed: {error!r}") from error


@pytest.mark.parametrize("number", [int(p.name[:2]) for p in CHAPTERS])
def test_exercise_check_accepts_solution_and_rejects_stub(number):
    checker = _checker()
    if number not in checker.CHECKS:
        pytest.fail(f"chapter {number} has no exercise check in tutorials/check.py")
    passed, message = checker.run(number, solution=True)
    assert passed, message
    passed, message = checker.run(number, solution=False)
    assert not passed and "not done yet" in message, message
