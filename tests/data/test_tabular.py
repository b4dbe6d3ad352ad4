"""csv / jsonl: text and number-sequence columns, labels, splits, padded batches, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from microgradnn.data import DataError, DataFileError, csv, jsonl


def _write_csv(path, rows, header=("text", "label"), delimiter=",") -> None:
    import csv as stdcsv

    with open(path, "w", newline="") as f:
        w = stdcsv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


def _text_rows(n: int = 60, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ["spam", "ham", "eggs"][i % 3]
        word = "".join(rng.choice(list("abcdefg"), rng.integers(1, 12)))
        rows.append((f"{label[0]} {word}", label))
    return rows


def test_csv_text_classification(tmp_path) -> None:
    rows = _text_rows()
    _write_csv(tmp_path / "d.csv", rows)
    dm = csv(str(tmp_path / "d.csv"), text_column="text", label_column="label", val_fraction=0.25, seed=1)
    assert dm.task == "classification" and dm.class_names == ["eggs", "ham", "spam"] and dm.output_size == 3
    assert dm.vocab.pad_id == 0 and dm.input_size is None and not dm.streams
    assert len(dm.train) == 45 and len(dm.val) == 15
    by_text = dict(rows)
    seen = []
    for b in dm.train_batches(8, epoch=0, seed=0):
        assert b.x.dtype == np.int64 and b.y.dtype == np.int64 and b.lengths.dtype == np.int64
        assert b.x.shape == (len(b.y), int(b.lengths.max()))
        for x, y, n in zip(b.x, b.y, b.lengths):
            assert np.all(x[n:] == 0) and np.all(x[:n] != 0)  # padded with id 0 after the real length
            s = dm.vocab.decode(x)
            assert by_text[s] == dm.class_names[y]
            seen.append(s)
    val = [dm.vocab.decode(x) for b in dm.val_batches(4) for x in b.x]
    assert sorted(seen + val) == sorted(t for t, _ in rows)  # every row exactly once, train and val disjoint


def test_split_depends_on_data_seed_not_training_seed(tmp_path) -> None:
    _write_csv(tmp_path / "d.csv", _text_rows())
    a = csv(str(tmp_path / "d.csv"), seed=0)
    b = csv(str(tmp_path / "d.csv"), seed=0)
    c = csv(str(tmp_path / "d.csv"), seed=1)
    val = lambda dm: sorted(dm.vocab.decode(x) for v in dm.val_batches(100) for x in v.x)  # noqa: E731
    assert val(a) == val(b) != val(c)


@pytest.mark.parametrize("bucket", [False, True])
def test_epoch_order_deterministic_and_complete(tmp_path, bucket: bool) -> None:
    _write_csv(tmp_path / "d.csv", _text_rows(100))
    dm = csv(str(tmp_path / "d.csv"), val_fraction=0.0, bucket=bucket)

    def epoch(e: int, s: int = 0) -> list:
        return [dm.vocab.decode(x) for b in dm.train_batches(7, epoch=e, seed=s) for x in b.x]

    assert epoch(1) == epoch(1)
    assert epoch(1) != epoch(2) and sorted(epoch(1)) == sorted(epoch(2))
    assert len(list(dm.train_batches(7, epoch=3))) == dm.num_train_batches(7) == 15
    full = list(dm.train_batches(7, epoch=4, seed=1))
    tail = list(dm.train_batches(7, epoch=4, seed=1, start=5))
    assert all(np.array_equal(p.x, q.x) for p, q in zip(full[5:], tail)) and len(tail) == 10
    if bucket:  # batches of similar length: much less padding than random batches
        pad = sum(int((b.x == 0).sum()) for b in full)
        dm.bucket = False
        assert pad < sum(int((b.x == 0).sum()) for b in dm.train_batches(7, epoch=4, seed=1))


def test_numeric_labels_sorted_numerically_and_classes_option(tmp_path) -> None:
    _write_csv(tmp_path / "d.csv", [("a", "10"), ("b", "2"), ("c", "1"), ("d", "2")])
    dm = csv(str(tmp_path / "d.csv"), val_fraction=0.0)
    assert dm.class_names == ["1", "2", "10"]
    dm = csv(str(tmp_path / "d.csv"), val_fraction=0.0, classes=["10", "2", "1", "99"])
    assert dm.class_names == ["10", "2", "1", "99"] and dm.output_size == 4
    with pytest.raises(DataError, match=r"label\(s\) \['10'\] not among the classes \['1', '2'\]"):
        csv(str(tmp_path / "d.csv"), val_fraction=0.0, classes=[1, 2])


def test_number_sequences_and_regression(tmp_path) -> None:
    rows = [("0.5 1 2", "1.5"), ("3,4", "-2"), ("[1, 2, 3, 4]", "0.25")]
    _write_csv(tmp_path / "r.csv", rows, header=("seq", "y"))
    dm = csv(str(tmp_path / "r.csv"), sequence_column="seq", label_column="y", task="regression", val_fraction=0.0)
    assert dm.input_size == 1 and dm.vocab is None and dm.output_size == 1
    (b,) = list(dm.val_batches(1)) or [None]  # no val rows
    batches = list(dm.train_batches(3))
    (b,) = batches
    assert b.x.dtype == np.float32 and b.x.shape == (3, 4, 1) and b.y.dtype == np.float32 and b.y.shape == (3, 1)
    got = {tuple(x[:n, 0].tolist()): float(y[0]) for x, y, n in zip(b.x, b.y, b.lengths)}
    assert got == {(0.5, 1.0, 2.0): 1.5, (3.0, 4.0): -2.0, (1.0, 2.0, 3.0, 4.0): 0.25}
    # Several features per step ("a,b; c,d") and several targets (a list of columns).
    _write_csv(tmp_path / "m.csv", [("1,2; 3,4; 5,6", "1", "2"), ("7,8; 9,10", "3", "4")], header=("seq", "y1", "y2"))
    dm = csv(str(tmp_path / "m.csv"), sequence_column="seq", label_column=["y1", "y2"], task="regression",
             val_fraction=0.0)
    b = next(dm.train_batches(2, seed=0))
    assert dm.input_size == 2 and dm.output_size == 2 and b.x.shape == (2, 3, 2) and b.y.shape == (2, 2)


def test_jsonl_lists_and_val_path(tmp_path) -> None:
    train = [{"x": [[0.1, 1], [0.2, 0]], "y": "up"}, {"x": [[0.3, 1]], "y": "down"}, {"x": [[1, 1]] * 3, "y": "up"}]
    val = [{"x": [[0.5, 0.5]], "y": "down", "extra": 1}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in train) + "\n\n")
    (tmp_path / "v.jsonl").write_text(json.dumps(val[0]) + "\n")
    dm = jsonl(str(tmp_path / "t.jsonl"), sequence_column="x", label_column="y", val_path=str(tmp_path / "v.jsonl"))
    assert dm.class_names == ["down", "up"] and dm.input_size == 2 and len(dm.train) == 3 and len(dm.val) == 1
    (v,) = list(dm.val_batches(8))
    assert v.x.shape == (1, 1, 2) and v.y.tolist() == [0] and v.lengths.tolist() == [1]
    # regression with a list label = several targets
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps({"text": "ab" * (i + 1), "t": [i, -i]}) for i in range(5)))
    dm = jsonl(str(tmp_path / "r.jsonl"), label_column="t", task="regression", val_fraction=0.2)
    assert dm.output_size == 2 and dm.vocab is not None and len(dm.val) == 1


def test_text_options(tmp_path) -> None:
    _write_csv(tmp_path / "d.tsv", [("HeLLo World", "a"), ("Bye", "b")], delimiter="\t")
    dm = csv(str(tmp_path / "d.tsv"), val_fraction=0.0, lowercase=True, max_len=5)
    texts = sorted(dm.vocab.decode(x) for b in dm.train_batches(2) for x in b.x)
    assert texts == ["bye", "hello"]


def test_errors(tmp_path) -> None:
    with pytest.raises(DataFileError, match=r"data file '.*missing\.csv' not found"):
        csv(str(tmp_path / "missing.csv"))
    _write_csv(tmp_path / "d.csv", _text_rows(10))
    with pytest.raises(DataError, match=r"label_column='labl' is not a column of .*d\.csv.*did you mean 'label'.*"
                                        r"columns are: 'text', 'label'"):
        csv(str(tmp_path / "d.csv"), label_column="labl")
    with pytest.raises(DataError, match="text_column='txt'.*columns are: 'text', 'label'"):
        csv(str(tmp_path / "d.csv"), text_column="txt")
    _write_csv(tmp_path / "n.csv", [("a", "x")], header=("body", "label"))
    with pytest.raises(DataError, match="say which column holds the input.*'body', 'label'"):
        csv(str(tmp_path / "n.csv"))
    _write_csv(tmp_path / "e.csv", [("a", "x"), ("", "y")])
    with pytest.raises(DataError, match=r"line 3: column 'text' is empty"):
        csv(str(tmp_path / "e.csv"))
    _write_csv(tmp_path / "one.csv", [("a", "x"), ("b", "x")])
    with pytest.raises(DataError, match="single class"):
        csv(str(tmp_path / "one.csv"), val_fraction=0.0)
    _write_csv(tmp_path / "s.csv", [("1 2 zebra", "1")], header=("seq", "y"))
    with pytest.raises(DataError, match="line 2, column 'seq': expected a sequence of numbers"):
        csv(str(tmp_path / "s.csv"), sequence_column="seq", label_column="y", task="regression")
    _write_csv(tmp_path / "w.csv", [("1,2;3,4", "1"), ("1 2 3", "2")], header=("seq", "y"))
    with pytest.raises(DataError, match=r"same number of features per step, found \[1, 2\]"):
        csv(str(tmp_path / "w.csv"), sequence_column="seq", label_column="y", task="regression", val_fraction=0)
    _write_csv(tmp_path / "rl.csv", [("ab", "high")], header=("text", "y"))
    with pytest.raises(DataError, match="regression label must be a number, got 'high'"):
        csv(str(tmp_path / "rl.csv"), label_column="y", task="regression")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        jsonl(str(tmp_path / "bad.jsonl"))
    (tmp_path / "k.jsonl").write_text('{"text": "a", "label": 1}\n{"label": 0}\n')
    with pytest.raises(DataError, match="line 2 has no 'text'; its keys are: 'label'"):
        jsonl(str(tmp_path / "k.jsonl"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        csv(str(tmp_path / "empty.csv"))
    with pytest.raises(DataError, match="task must be 'classification' or 'regression'"):
        csv(str(tmp_path / "d.csv"), task="lm")
    with pytest.raises(DataError, match="not both"):
        csv(str(tmp_path / "d.csv"), text_column="text", sequence_column="text")
    with pytest.raises(DataError, match="folder, not a file"):
        csv(str(tmp_path))
