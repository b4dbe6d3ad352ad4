"""Build examples/data/stdlib_lines.csv: real labelled lines from the Python standard library.

    python examples/make_stdlib_lines.py [--per-class 3000] [--out examples/data/stdlib_lines.csv]

Every line of the standard library's own ``.py`` files (the test suite left out) is one of

* ``code``      a line of Python (it may end in a ``# comment``),
* ``comment``   a line that holds only a ``# comment``,
* ``docstring`` a line inside a module, class or function docstring,

and Python itself says which: the ``tokenize`` module finds comments, the ``ast`` module
finds docstrings. The labels are therefore exact, not guessed. To make the task about the
*text* rather than the punctuation, each line is stripped of its indentation, comment
lines lose their ``#`` and docstring lines their quotes. A model then has to tell prose
from code, and a comment's terse style from a docstring's.

The sample is balanced (``--per-class`` lines of each label, 10..80 characters, no
duplicates), drawn with a fixed seed from the files in sorted order, so the same Python
version gives the same file. The shipped file was made with CPython 3.11.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import random
import sys
import tokenize
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from microgradnn.data import stdlib_files  # noqa: E402  (the same file list as corpus: stdlib)

LABELS = ("code", "comment", "docstring")


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers (1-based) covered by the docstrings of the module, classes and functions."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def label_lines(source: str) -> list[tuple[str, str]]:
    """(text, label) for each labelled line of one file."""
    tree = ast.parse(source)
    docs = docstring_lines(tree)
    comment_only: set[int] = set()
    in_strings: set[int] = set()  # lines inside other multi-line strings: neither code nor prose
    code: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        row = tok.start[0]
        if tok.type == tokenize.COMMENT:
            if tok.line[: tok.start[1]].strip() == "":
                comment_only.add(row)
        elif tok.type == tokenize.STRING and tok.end[0] > row:
            in_strings.update(range(row + 1, tok.end[0] + 1))
            code.add(row)
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENDMARKER, tokenize.ENCODING):
            code.add(row)
    out = []
    for number, line in enumerate(source.splitlines(), 1):
        text = line.strip()
        if number in docs:
            for quote in ('"""', "'''"):
                for prefix in ("", "r", "R", "u", "b"):
                    if text.startswith(prefix + quote):
                        text = text[len(prefix) + 3:]
                if text.endswith(quote):
                    text = text[:-3]
            out.append((text.strip(), "docstring"))
        elif number in comment_only:
            out.append((text.lstrip("#").strip(), "comment"))
        elif number in code and number not in in_strings:
            out.append((text, "code"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=3000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "data" / "stdlib_lines.csv"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pools: dict[str, list[str]] = {k: [] for k in LABELS}
    seen: set[str] = set()
    for path in stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
            lines = label_lines(source)
        except (SyntaxError, UnicodeDecodeError, tokenize.TokenError, ValueError):
            continue  # a few files are deliberately not valid Python 3 (lib2to3 fixtures)
        for text, label in lines:
            if 10 <= len(text) <= 80 and text not in seen:
                seen.add(text)
                pools[label].append(text)
    rng = random.Random(args.seed)
    rows = []
    for label in LABELS:
        pool = pools[label]
        if len(pool) < args.per_class:
            raise SystemExit(f"only {len(pool)} {label} lines, fewer than --per-class {args.per_class}")
        rows += [(text, label) for text in rng.sample(pool, args.per_class)]
    rng.shuffle(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    sizes = ", ".join(f"{k}: {len(v)}" for k, v in pools.items())
    print(f"wrote {len(rows)} rows to {out} ({out.stat().st_size / 1024:.0f} KiB); lines available: {sizes}")


if __name__ == "__main__":
    main()
