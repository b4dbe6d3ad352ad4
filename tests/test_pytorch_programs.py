"""PyTorch programs that run on microgradnn with the import line as the only change.

Each file in tests/pytorch_programs/ literally starts with ``import microgradnn as torch``.
The test runs that text as it is, then the same text with the first line replaced by
``import torch`` (real PyTorch), and compares the training losses step by step: the
programs set their initial weights from numpy, so both libraries start from the same
weights and, doing the same arithmetic, follow the same path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PROGRAMS = Path(__file__).parent / "pytorch_programs"
OURS = "import microgradnn as torch\n"


def _run(name: str, with_torch: bool, **globals_: object) -> dict:
    text = (PROGRAMS / name).read_text()
    assert text.startswith(OURS), f"{name} must start with {OURS!r}"
    if with_torch:
        text = "import torch\n" + text[len(OURS):]  # the only change
    namespace: dict = {"__name__": "__main__", **globals_}
    exec(compile(text, str(PROGRAMS / name), "exec"), namespace)
    return namespace


def _compare(name: str, atol: float, **globals_: object) -> tuple:
    ours = _run(name, False, **globals_)
    theirs = _run(name, True, **globals_)
    a, b = np.array(ours["losses"]), np.array(theirs["losses"])
    assert a.shape == b.shape and a.size > 10
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)
    assert np.ptp(a) > 0.01  # the losses move: the programs train
    return ours, theirs


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
def test_word_language_model_manual_sgd(rnn_type):
    """``p.data.add_(p.grad, alpha=-lr)`` after clip_grad_norm_, truncated BPTT with
    repackage_hidden: pytorch/examples' word_language_model loop."""
    ours, _ = _compare("word_language_model.py", atol=2e-5, RNN_TYPE=rnn_type)
    assert len(ours["losses"]) == 3 * 13


def test_lstm_classifier_with_a_dataloader():
    ours, theirs = _compare("lstm_classifier.py", atol=1e-5)
    assert ours["accuracy"] == theirs["accuracy"]
    assert ours["losses"][-2] < ours["losses"][0]


def test_packed_sequence_classifier():
    ours, _ = _compare("packed_classifier.py", atol=1e-5)
    assert np.mean(ours["losses"][-8:]) < np.mean(ours["losses"][:8])
