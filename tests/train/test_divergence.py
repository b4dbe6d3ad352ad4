"""The divergence rule: a wide margin over the trivial baseline or over the first value."""

from __future__ import annotations

import math

import numpy as np

from microgradnn.train.divergence import divergence_reason, trivial_baseline


def test_baselines():
    assert trivial_baseline("lm", None, 65) == math.log(65)
    assert trivial_baseline("classification", "cross_entropy", 3) == math.log(3)
    y = np.random.default_rng(0).uniform(0, 2, size=(100, 1))
    assert np.isclose(trivial_baseline("regression", "mse", 1, y), np.mean(y ** 2))
    assert trivial_baseline("regression", "l1", 1, y) is None
    assert trivial_baseline("lm", "nll", 65) is None


def test_the_issue_case_and_ordinary_runs():
    # optimizer.lr=1e6 on the adding problem: val_loss 6.3e14 against a baseline near 1
    reason = divergence_reason(first=2.1e14, final=6.3e14, baseline=1.17)
    assert reason is not None and "more than 10×" in reason and "optimizer.lr" in reason and "\n" not in reason
    assert divergence_reason(first=1.2, final=1.17, baseline=1.17) is None      # learned nothing: not diverged
    assert divergence_reason(first=4.1, final=2.3, baseline=math.log(65)) is None  # learned
    assert divergence_reason(first=0.001, final=0.02, baseline=1.0) is None     # noisy, still far better than trivial
    assert divergence_reason(first=0.5, final=8.0, baseline=None) is not None    # 16x its start, no baseline known
    assert divergence_reason(first=None, final=float("inf"), baseline=None) is not None
    assert divergence_reason(first=None, final=None, baseline=1.0) is None
