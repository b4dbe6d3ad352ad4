"""charlm / text: reading files and the stdlib corpus, the split, the stream layout that
truncated BPTT relies on, determinism, and the error messages."""

from __future__ import annotations

import sysconfig

import numpy as np
import pytest

from microgradnn.data import CharLMData, DataError, DataFileError, Vocab, charlm, stdlib_files, text


def _corpus(tmp_path, n: int = 5000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    body = "".join(rng.choice(list("abcdefgh ij\n"), n))
    (tmp_path / "a.txt").write_text(body[: n // 2])
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.txt").write_text(body[n // 2:])
    return body


def test_reads_folder_sorted_recursively_skipping_hidden_and_binary(tmp_path) -> None:
    body = _corpus(tmp_path)
    (tmp_path / ".hidden").write_text("SECRET")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02ZZZ")
    dm = charlm(paths=str(tmp_path), seq_len=16, val_fraction=0.0)
    joined = body[:2500] + "\n\n" + body[2500:]  # files joined by a blank line
    assert dm.vocab.decode(dm.train_ids) == joined
    assert "S" not in dm.vocab and "Z" not in dm.vocab


def test_files_and_glob_patterns(tmp_path) -> None:
    _corpus(tmp_path)
    (tmp_path / "c.md").write_text("markdown here")
    a = charlm(paths=[str(tmp_path / "**" / "*.txt")], seq_len=8, val_fraction=0.0)
    b = charlm(paths=[str(tmp_path / "a.txt"), str(tmp_path / "sub" / "b.txt")], seq_len=8, val_fraction=0.0)
    assert np.array_equal(a.train_ids, b.train_ids)
    assert "m" not in a.vocab.stoi


def test_split_sizes(tmp_path) -> None:
    _corpus(tmp_path, n=10_000)
    dm = charlm(paths=str(tmp_path), seq_len=32, val_fraction=0.2)
    total = 10_002  # plus the blank line between the two files
    assert dm.val_ids.size == round(total * 0.2) and dm.train_ids.size + dm.val_ids.size == total
    full = charlm(paths=str(tmp_path), seq_len=32, val_fraction=0.0)
    assert np.array_equal(np.concatenate([dm.train_ids, dm.val_ids]), full.train_ids)  # val is the end
    assert dm.num_val_batches(4) > 0 and full.num_val_batches(4) == 0 and list(full.val_batches(4)) == []


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batches_shapes_shift_and_stream_continuity(tmp_path, batch_size: int) -> None:
    _corpus(tmp_path, n=6000)
    T = 20
    dm = charlm(paths=str(tmp_path), seq_len=T, val_fraction=0.1)
    assert dm.task == "lm" and dm.streams and dm.output_size == len(dm.vocab)
    batches = list(dm.train_batches(batch_size, epoch=2, seed=7))
    assert len(batches) == dm.num_train_batches(batch_size) > 1
    for b in batches:
        assert b.x.shape == b.y.shape == (batch_size, T)
        assert b.x.dtype == b.y.dtype == np.int64 and b.lengths is None
        assert np.array_equal(b.y[:, :-1], b.x[:, 1:])  # targets = inputs shifted by one
    # Row r across consecutive batches is one contiguous stretch of the training text:
    # exactly what carrying the hidden state from batch k to batch k+1 assumes.
    ids = dm.train_ids
    for r in range(batch_size):
        stream = np.concatenate([b.x[r] for b in batches] + [batches[-1].y[r, -1:]])
        start = np.flatnonzero(ids[: ids.size - stream.size + 1] == stream[0])
        assert any(np.array_equal(ids[s: s + stream.size], stream) for s in start)
        for k in range(len(batches) - 1):
            assert batches[k + 1].x[r, 0] == batches[k].y[r, -1]
    # Streams are disjoint and in order: row r + 1 starts where row r's span ends.
    length = (ids.size - T) // batch_size
    first = [b for b in batches][0]
    offset = int(np.flatnonzero([np.array_equal(ids[o: o + T], first.x[0]) for o in range(T)])[0])
    for r in range(batch_size):
        assert np.array_equal(first.x[r], ids[offset + r * length: offset + r * length + T])


def test_deterministic_given_batch_size_epoch_seed(tmp_path) -> None:
    _corpus(tmp_path, n=4000)
    dm = charlm(paths=str(tmp_path), seq_len=16)
    again = charlm(paths=str(tmp_path), seq_len=16)

    def xs(d: CharLMData, epoch: int, seed: int) -> list:
        return [b.x for b in d.train_batches(4, epoch=epoch, seed=seed)]

    assert all(np.array_equal(p, q) for p, q in zip(xs(dm, 1, 3), xs(again, 1, 3)))
    firsts = {xs(dm, e, 0)[0].tobytes() for e in range(8)}
    assert len(firsts) > 1  # the stream offset moves from epoch to epoch
    assert {len(xs(dm, e, s)) for e in range(4) for s in range(3)} == {dm.num_train_batches(4)}


def test_start_skips_exactly(tmp_path) -> None:
    _corpus(tmp_path, n=4000)
    dm = charlm(paths=str(tmp_path), seq_len=16)
    full = list(dm.train_batches(4, epoch=1, seed=2))
    tail = list(dm.train_batches(4, epoch=1, seed=2, start=3))
    assert len(tail) == len(full) - 3
    assert all(np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) for a, b in zip(full[3:], tail))


def test_val_batches_fixed_and_short_val_still_gives_a_batch(tmp_path) -> None:
    _corpus(tmp_path, n=4000)
    dm = charlm(paths=str(tmp_path), seq_len=16, val_fraction=0.1)
    a, b = list(dm.val_batches(8)), list(dm.val_batches(8))
    assert len(a) == dm.num_val_batches(8) > 0
    assert all(np.array_equal(p.x, q.x) for p, q in zip(a, b))
    for v in a:
        assert np.array_equal(v.y[:, :-1], v.x[:, 1:])
    # A validation text shorter than one window still yields one (shorter) batch.
    small = charlm(paths=str(tmp_path), seq_len=1000, val_fraction=0.1)
    (v,) = list(small.val_batches(8))
    assert v.x.shape == (1, small.val_ids.size - 1) and np.array_equal(v.y[0], small.val_ids[1:])
    # A batch size larger than the text allows: fewer rows, never zero batches.
    wide = list(dm.val_batches(1000))
    assert len(wide) >= 1 and wide[0].x.shape[0] == (dm.val_ids.size - 1) // 16


def test_vocab_reuse(tmp_path) -> None:
    (tmp_path / "t.txt").write_text("abcabcabc" * 50)
    vocab = Vocab.build("abcd")
    dm = charlm(paths=str(tmp_path), seq_len=8, vocab=vocab.to_dict())
    assert dm.vocab == vocab
    (tmp_path / "u.txt").write_text("abz" * 200)
    dm2 = charlm(paths=str(tmp_path / "u.txt"), seq_len=8, vocab=vocab)
    assert dm2.train_ids[2] == vocab.unk_id  # 'z' is unknown to the reused vocabulary
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert charlm(paths=str(tmp_path / "t.txt"), seq_len=8, vocab=str(path)).vocab == vocab


def test_stdlib_corpus() -> None:
    files = stdlib_files()
    root = sysconfig.get_paths()["stdlib"]
    rel = [f.relative_to(root).as_posix() for f in files]
    assert rel == sorted(rel) and len(rel) > 100
    assert not any(p.startswith(("site-packages/", "test/")) or "/tests/" in p for p in rel)
    dm = charlm(corpus="stdlib", seq_len=64, max_chars=50_000)
    assert dm.train_ids.size + dm.val_ids.size == 50_000
    start = files[0].read_text(encoding="utf-8")[:200]
    assert dm.vocab.decode(dm.train_ids[:200]) == start
    b = next(dm.train_batches(8, epoch=0, seed=0))
    assert b.x.shape == (8, 64)


def test_text_alias(tmp_path) -> None:
    _corpus(tmp_path)
    dm = text(paths=str(tmp_path), seq_len=8)
    assert dm.name == "text" and np.array_equal(dm.train_ids, charlm(paths=str(tmp_path), seq_len=8).train_ids)
    with pytest.raises(DataError, match="text: paths is required"):
        text(paths=None)


def test_errors(tmp_path) -> None:
    missing = tmp_path / "nope" / "corpus.txt"
    with pytest.raises(DataFileError, match="no such file or folder: .*corpus.txt"):
        charlm(paths=str(missing))
    with pytest.raises(DataFileError, match=r"no text files match the pattern .*\*\.zzz"):
        charlm(paths=str(tmp_path / "*.zzz"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="corpus is empty"):
        charlm(paths=str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match="exactly one of paths"):
        charlm()
    with pytest.raises(DataError, match="exactly one of paths"):
        charlm(paths="x", corpus="stdlib")
    with pytest.raises(DataError, match="unknown corpus 'shakespeare'"):
        charlm(corpus="shakespeare")
    with pytest.raises(DataError, match="seq_len must be an int >= 1, got 0"):
        charlm(corpus="stdlib", seq_len=0)
    with pytest.raises(DataError, match="val_fraction must be a number in"):
        charlm(corpus="stdlib", val_fraction=1.5)
    (tmp_path / "small.txt").write_text("x" * 300)
    dm = charlm(paths=str(tmp_path / "small.txt"), seq_len=16)
    with pytest.raises(DataError, match="too short for one batch of batch_size=64 x seq_len=16"):
        next(dm.train_batches(64))
    with pytest.raises(DataError, match="batch_size must be a positive int"):
        dm.num_train_batches(0)
    with pytest.raises(DataError, match="seed must be a non-negative int"):
        next(dm.train_batches(2, seed=-1))
