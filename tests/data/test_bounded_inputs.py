"""Data paths that are not plain files, globs over symlink loops, values float32 can't hold."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from microgradnn.data.base import DataError, DataFileError
from microgradnn.data.tabular import csv
from microgradnn.data.text import charlm


def _corpus(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    (folder / "b.txt").write_text("pack my box with five dozen liquor jugs\n" * 20)


def test_recursive_glob_over_symlink_loops_finishes(tmp_path):
    root = tmp_path / "notes"
    _corpus(root / "sub")
    # three loops back up the tree: glob.glob("**") would walk 3^k paths until names grow
    # too long; the walk must not follow them at all
    for name in ("up", "again", "more"):
        os.symlink("..", root / "sub" / name)
    os.symlink(root, root / "self")
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from microgradnn.data.text import charlm
        data = charlm(paths={str(root / '**' / '*.txt')!r}, seq_len=8)
        print(data.source if hasattr(data, "source") else "", len(data.train_ids) + len(data.val_ids))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # each text file read once, not once per path through the loops
    expected = len((root / "sub" / "a.txt").read_text()) + len((root / "sub" / "b.txt").read_text()) + 2
    assert int(result.stdout.split()[-1]) == expected, result.stdout


def test_folder_walk_does_not_follow_symlink_loops(tmp_path):
    root = tmp_path / "notes"
    _corpus(root)
    os.symlink(root, root / "loop")
    data = charlm(paths=str(root), seq_len=8)
    expected = len((root / "a.txt").read_text()) + len((root / "b.txt").read_text()) + 2  # + the blank line
    assert len(data.train_ids) + len(data.val_ids) == expected


@pytest.mark.parametrize("kind", ["fifo", "device", "socket", "loop"])
def test_special_files_as_data_are_refused_by_kind(tmp_path, kind):
    path = tmp_path / "data.csv"
    expect = {"fifo": r"is a FIFO \(named pipe\)", "device": "is a character device", "socket": "is a socket",
              "loop": "can't be examined"}[kind]
    sock = None
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.symlink("/dev/zero", path)
    elif kind == "loop":
        os.symlink(path, path)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    try:
        for load in (lambda: csv(str(path)), lambda: charlm(paths=str(path), seq_len=8)):
            with pytest.raises(DataError, match=expect) as info:
                load()
            assert not isinstance(info.value, DataFileError)  # it exists: not "no such file"
            assert "no such file" not in str(info.value)
    finally:
        if sock is not None:
            sock.close()


def test_values_beyond_float32_are_refused_at_load(tmp_path):
    path = tmp_path / "r.csv"
    rows = ["seq,label"] + [f'"{i} {i + 1} {i + 2}",{i * 0.5}' for i in range(10)]
    rows[4] = '"1 2 3",1e39'
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 5.*1e\+39, which does not fit float32"):
        csv(str(path), sequence_column="seq", task="regression")
    rows[4] = '"1 -2e39 3",1.5'
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"-2e\+39, which does not fit float32"):
        csv(str(path), sequence_column="seq", task="regression")
    rows[4] = '"1 2 3",3.0e38'  # large but representable: accepted
    path.write_text("\n".join(rows) + "\n")
    data = csv(str(path), sequence_column="seq", task="regression", val_fraction=0.0)
    assert data is not None
