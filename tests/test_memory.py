"""The memory estimate: exact parameter counts, the right key to lower, refusals in a blink."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from microgradnn.memory import (MemoryLimitError, ModelSizes, available_memory, check_fits, estimate_memory,
                                key_to_lower)
from microgradnn.models import SequenceModel


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("tokens", [True, False])
def test_parameter_count_equals_the_built_model(cell, tokens):
    rng = np.random.default_rng(hash((cell, tokens)) % 2**32)
    for _ in range(3):
        h, layers, out = int(rng.integers(2, 17)), int(rng.integers(1, 4)), int(rng.integers(2, 9))
        bidirectional = bool(rng.integers(0, 2)) and not tokens
        task = "lm" if tokens else "classification"
        kwargs = dict(vocab_size=int(rng.integers(3, 30)), embedding_dim=int(rng.integers(2, 9))) if tokens else \
            dict(input_size=int(rng.integers(1, 6)))
        model = SequenceModel(out, cell=cell, hidden_size=h, num_layers=layers, bidirectional=bidirectional,
                              task=task, **kwargs)
        actual = sum(p.numel() for p in model.parameters())
        sizes = ModelSizes(hidden_size=h, output_size=out, batch_size=4, seq_len=5, cell=cell, num_layers=layers,
                           bidirectional=bidirectional, task=task, **kwargs)
        assert estimate_memory(sizes).parameters == actual


def test_lstm_with_projection_count_equals_torch():
    torch = pytest.importorskip("torch")
    lstm = torch.nn.LSTM(7, 12, num_layers=2, proj_size=5)
    head = torch.nn.Linear(5, 3)
    expected = sum(p.numel() for p in lstm.parameters()) + sum(p.numel() for p in head.parameters())
    sizes = ModelSizes(hidden_size=12, output_size=3, batch_size=1, seq_len=1, input_size=7, num_layers=2,
                       proj_size=5, task="regression")
    assert estimate_memory(sizes).parameters == expected


@pytest.mark.parametrize("change, key", [
    ({"hidden_size": 1_000_000_000}, "model.hidden_size"),
    ({"num_layers": 1_000_000_000}, "model.num_layers"),
    ({"batch_size": 1_000_000_000}, "train.batch_size"),
    ({"seq_len": 1_000_000_000}, "data.seq_len"),
    ({"embedding_dim": 1_000_000_000}, "model.embedding_dim"),
    ({"train_size": 10**12}, "data.train_size"),
])
def test_huge_sizes_are_refused_at_once_naming_the_key(change, key):
    base = dict(hidden_size=64, output_size=50, batch_size=32, seq_len=64, vocab_size=50, embedding_dim=32)
    estimate = estimate_memory(ModelSizes(**{**base, **change}))
    start = time.perf_counter()
    with pytest.raises(MemoryLimitError) as info:
        check_fits(estimate, available=8 << 30)
    assert time.perf_counter() - start < 0.5
    message = str(info.value)
    assert message.endswith(f"lower {key}") and "\n" not in message and "8 GiB is available" in message, message
    assert key_to_lower(estimate) == key


def test_small_model_fits_and_the_estimate_is_a_lower_bound():
    sizes = ModelSizes(hidden_size=32, output_size=20, batch_size=8, seq_len=16, vocab_size=20, embedding_dim=8)
    e = estimate_memory(sizes)
    check_fits(e, available=1 << 30)  # no error
    # weights alone, at float32: the estimate holds at least that, and at most a small multiple
    model = SequenceModel(20, vocab_size=20, embedding_dim=8, hidden_size=32)
    weights = sum(p.numel() for p in model.parameters()) * 4
    assert weights * 4 == e.parameter_bytes  # weight + grad + two Adam moments
    assert e.activation_bytes >= 8 * 16 * (32 * 2 + 20) * 4  # at least h, c and the logits per step


def test_available_memory_sees_an_address_space_cap():
    code = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from microgradnn.memory import available_memory
        print(available_memory())
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 0 < int(result.stdout) < 3 << 30
    assert available_memory() is None or available_memory() > 0
