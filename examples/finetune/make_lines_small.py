"""Build the small labelled set of the classification fine-tune from examples/data/stdlib_lines.csv.

    python examples/finetune/make_lines_small.py [--train-per-class 100] [--val-per-class 500]

``examples/data/stdlib_lines.csv`` (made by ``examples/make_stdlib_lines.py``) holds 9,000
lines of the standard library labelled ``code``, ``comment`` or ``docstring`` by Python's
own ``tokenize`` and ``ast`` modules. Labels are what is expensive in real work, so the
comparison in README.md trains on a *small* labelled set:

* ``data/lines_train.csv``: the first ``--train-per-class`` lines of each label (300 rows),
* ``data/lines_val.csv``: the next ``--val-per-class`` lines of each label (1,500 rows),
  a validation set five times larger than the training set, so that its accuracy is
  measured to about +-1.2% (one standard error) rather than guessed.

The source file is already shuffled with a fixed seed, so "first" is a random sample and
the result is the same on every machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "data" / "stdlib_lines.csv"


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write ``text,label`` rows atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=500)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out-dir", type=Path, default=HERE / "data")
    args = parser.parse_args()
    with open(args.source, newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    train, val = [], []
    taken: dict[str, int] = {}
    for text, label in rows:  # file order: already a seeded shuffle
        k = taken.get(label, 0)
        if k < args.train_per_class:
            train.append((text, label))
        elif k < args.train_per_class + args.val_per_class:
            val.append((text, label))
        taken[label] = k + 1
    short = {lab: n for lab, n in taken.items() if n < args.train_per_class + args.val_per_class}
    if short:
        raise SystemExit(f"{args.source} has too few lines of {short} for the sizes asked")
    write_csv(args.out_dir / "lines_train.csv", train)
    write_csv(args.out_dir / "lines_val.csv", val)
    print(f"wrote {len(train)} training and {len(val)} validation rows to {args.out_dir}")


if __name__ == "__main__":
    main()
