"""The threading policy (backend/threads.py): explicit, reversible, and never a side effect."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from microgradnn.backend import threads


def _numpy_blas_threads() -> int:
    pools = [p for p in threadpool_info() if p["user_api"] == "blas" and "numpy" in p["filepath"]]
    assert pools, "numpy's BLAS was not found by threadpoolctl"
    return pools[0]["num_threads"]


@pytest.mark.parametrize("cpus,expected", [(1, 1), (2, 1), (3, 2), (4, 3), (16, 8), (64, 8)])
def test_default_leaves_a_core_free_and_is_capped(cpus, expected):
    assert threads.default_threads(cpus) == expected


def test_apply_and_restore():
    before = _numpy_blas_threads()
    target = 1 if before != 1 else 2
    policy = threads.apply_threads(target)
    try:
        assert _numpy_blas_threads() == target and policy.threads == target
    finally:
        policy.restore()
    assert _numpy_blas_threads() == before
    with threads.limit_threads(target) as inner:
        assert _numpy_blas_threads() == target and inner.threads == target
    assert _numpy_blas_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="threads must be a positive int"):
        threads.apply_threads(bad)


def test_library_use_changes_no_thread_pool():
    # a fresh process: import, train a step of an LSTM (numba drivers, BLAS) and sample;
    # the BLAS pools must still have the size they started with
    code = """
import json
from threadpoolctl import threadpool_info
import numpy as np
before = {p['filepath']: p['num_threads'] for p in threadpool_info()}
import microgradnn as mg
from microgradnn.nn.sampling import RecurrentSampler
from microgradnn.models import SequenceModel
m = SequenceModel(7, vocab_size=7, hidden_size=8)
out, _ = m(mg.tensor(np.array([[1, 2, 3]])))
out.sum().backward()
RecurrentSampler.from_model(m).step(2)
after = {p['filepath']: p['num_threads'] for p in threadpool_info() if p['filepath'] in before}
print(json.dumps([before, after]))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    import json

    before, after = json.loads(res.stdout.strip().splitlines()[-1])
    assert before and before == after


def test_spec_has_train_threads():
    from microgradnn.spec import SpecError, load_spec

    spec = load_spec("examples/char_lstm_stdlib.yaml", ["train.threads=2"])
    assert spec.train.threads == 2
    assert load_spec("examples/char_lstm_stdlib.yaml", []).train.threads is None
    with pytest.raises(SpecError, match="train.threads"):
        load_spec("examples/char_lstm_stdlib.yaml", ["train.threads=0"])
