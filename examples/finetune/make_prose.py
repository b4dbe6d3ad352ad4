"""Build examples/finetune/data/prose.txt: English prose from Python's own documentation.

    python examples/finetune/make_prose.py [--out examples/finetune/data/prose.txt]

The fine-tuning examples move a language model pretrained on Python *code* (the standard
library's ``.py`` files) to a different text domain: English *prose*. Python ships its
reference manual's topics as plain text for ``help()`` (the module ``pydoc_data.topics``,
about 465,000 characters in CPython 3.11), so the prose is on every machine, offline.

Only the prose is kept. The topics are reStructuredText rendered as plain text, so

* an indented block (a code example, a grammar rule, a table) is dropped,
* a heading's underline (``*****``, ``=====``, ``-----``) is dropped,
* what is left, paragraphs of English at the left margin, is written with one blank
  line between paragraphs, the topics in sorted order (so the file is reproducible).

The shipped file was made with CPython 3.11.7 (247,519 characters, 248 KB). Another Python
version gives slightly different text; the examples work with either.

Note that ``pydoc_data/topics.py`` is itself a standard-library file, but the pretraining
spec reads only the first 2,000,000 characters of the sorted stdlib files (``__future__.py``
to ``difflib.py`` in CPython 3.11), which stop 6 million characters before
``pydoc_data/``: the prose is text the pretrained model has never seen. (It has seen
English, in docstrings and comments.)
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

_UNDERLINE = re.compile(r"^([*=\-~^\"'`#+.])\1{2,}\s*$")


def prose_paragraphs(text: str) -> list[str]:
    """The paragraphs of one topic that are prose: unindented, not a heading underline."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line[:1].isspace() or _UNDERLINE.match(line):
            if current:
                paragraphs.append("\n".join(current))
                current = []
            continue
        current.append(line.rstrip())
    if current:
        paragraphs.append("\n".join(current))
    # A paragraph introducing a dropped example ends with ':' -- keep it, it is still prose.
    # A one-word "paragraph" is a leftover heading ("Note", "See also"): drop it.
    return [p for p in paragraphs if len(p.split()) > 2]


def build() -> str:
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        out.extend(prose_paragraphs(topics[key]))
    return "\n\n".join(out) + "\n"


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=here / "data" / "prose.txt")
    args = parser.parse_args()
    text = build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=args.out.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:  # atomic: no half file on a crash
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a data file is for everyone to read
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(text):,} characters, {text.count(chr(10) + chr(10)) + 1:,} paragraphs")


if __name__ == "__main__":
    main()
