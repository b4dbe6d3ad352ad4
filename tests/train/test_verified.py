"""The verified fallback: a damaged checkpoint is refused by name and the next one used."""

from __future__ import annotations

import numpy as np
import pytest

import microgradnn as mg
from microgradnn.checkpoint import CheckpointError
from microgradnn.train.verified import fallback_note, load_first_verified


def test_falls_back_past_damaged_and_missing_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = [tmp_path / f"c{i}.safetensors" for i in range(3)]
    for i, p in enumerate(paths):
        mg.save({"step": i, "w": rng.standard_normal(8)}, p)
    data = bytearray(paths[0].read_bytes())
    data[-2] ^= 1
    paths[0].write_bytes(bytes(data))
    state, used, refused = load_first_verified([tmp_path / "missing.safetensors"] + paths)
    assert used == paths[1] and state["step"] == 1
    assert len(refused) == 1 and "c0.safetensors" in refused[0] and "SHA-256" in refused[0]
    note = fallback_note(refused, used, state["step"])
    assert "c0.safetensors" in note and note.endswith("using c1.safetensors (step 1) instead") and "\n" not in note
    state, used, _ = load_first_verified(paths, accept=lambda s: None if s["step"] == 2 else "not step 2")
    assert used == paths[2]


def test_none_usable_raises_the_first_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_first_verified([bad])
