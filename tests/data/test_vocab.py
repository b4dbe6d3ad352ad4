"""Vocab: ids, specials, encode/decode round trips, JSON storage, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from microgradnn.data import PAD, UNK, DataError, DataFileError, Vocab


def test_build_sorted_with_specials() -> None:
    v = Vocab.build(["hello", "world"], pad=True, unk=True)
    assert v.itos == [PAD, UNK, "d", "e", "h", "l", "o", "r", "w"]
    assert v.pad_id == 0 and v.unk_id == 1 and len(v) == 9
    assert v.stoi["h"] == 4
    v2 = Vocab.build("abc", pad=False, unk=True)
    assert v2.pad_id is None and v2.unk_id == 0 and v2.itos == [UNK, "a", "b", "c"]


def test_encode_decode_roundtrip_and_unk() -> None:
    v = Vocab.build("the quick brown fox", pad=True)
    ids = v.encode("the fox")
    assert ids == [v.stoi[c] for c in "the fox"]
    assert v.decode(ids) == "the fox"
    assert v.encode("thé") == [v.stoi["t"], v.stoi["h"], v.unk_id]
    assert v.decode(v.encode("thé")) == "th\ufffd"
    assert v.decode([0, 0] + ids, skip_special=True) == "the fox"
    assert v.decode([0, 1], skip_special=False) == PAD + UNK


def test_encode_array_matches_dict_lookup_on_random_unicode() -> None:
    rng = np.random.default_rng(0)
    alphabet = list("abcxyz \n\t") + ["é", "λ", "中", "😀", "\u0000"]
    train = "".join(rng.choice(alphabet[:-3], 500))
    v = Vocab.build(train)
    text = "".join(rng.choice(alphabet, 2000))
    expected = [v.stoi.get(c, v.unk_id) for c in text]  # the obvious, independent way
    got = v.encode_array(text)
    assert got.dtype == np.int64 and got.tolist() == expected


def test_min_freq() -> None:
    v = Vocab.build("aaabbc", min_freq=2)
    assert v.itos == [UNK, "a", "b"]
    assert v.encode("c") == [v.unk_id]


def test_no_unk_raises_naming_the_character() -> None:
    v = Vocab("ab", unk=False)
    with pytest.raises(DataError, match=r"'z' \(U\+007A\)"):
        v.encode("abz")


def test_decode_out_of_range() -> None:
    with pytest.raises(DataError, match="out of range"):
        Vocab("ab").decode([5])


def test_dict_and_json_roundtrip(tmp_path) -> None:
    v = Vocab.build("microgradnn 😀", pad=True)
    d = v.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Vocab.from_dict(d) == v
    path = tmp_path / "vocab.json"
    v.save(path)
    assert Vocab.load(path) == v
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file
    with pytest.raises(DataFileError, match="missing.json"):
        Vocab.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(DataError, match="not valid JSON"):
        Vocab.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="dict like Vocab.to_dict"):
        Vocab.from_dict([1, 2])


def test_bad_entries() -> None:
    with pytest.raises(DataError, match="single characters"):
        Vocab(["ab"])
    with pytest.raises(DataError, match="duplicate"):
        Vocab(["a", "a"])
