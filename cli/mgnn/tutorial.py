"""``mgnn tutorial``: list the tutorial chapters, or render one in the terminal.

Chapters are the numbered Markdown files of the project's ``tutorials/`` folder
(``01-chain-rule.md``, ...). The folder is found, in order: ``--dir``, the
``MGNN_TUTORIALS`` environment variable, ``./tutorials`` (a checkout you are standing in),
the checkout this package was installed from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from .errors import EXIT_OK, UsageError

_CHAPTER = re.compile(r"^(\d+)[-_ ]?(.*)\.md$")


def candidates(explicit: str | None = None) -> list[Path]:
    if explicit:
        return [Path(explicit)]
    found = []
    env = os.environ.get("MGNN_TUTORIALS")
    if env:
        found.append(Path(env))
    found.append(Path.cwd() / "tutorials")
    found.append(Path(__file__).resolve().parents[2] / "tutorials")  # cli/mgnn/ -> the checkout
    return found


def find_dir(explicit: str | None = None) -> Path:
    looked = candidates(explicit)
    for d in looked:
        if d.is_dir() and chapters(d):
            return d
    if explicit:
        raise UsageError(f"mgnn tutorial: {explicit!r} is not a folder of numbered chapters (01-....md)")
    raise UsageError("mgnn tutorial: no tutorials found (looked in " + ", ".join(str(d) for d in looked)
                     + "); point to them with --dir or MGNN_TUTORIALS")


def chapters(folder: Path) -> list[tuple[int, str, Path]]:
    """(number, title, path) of every numbered chapter, in order."""
    out = []
    for p in sorted(folder.glob("*.md")):
        m = _CHAPTER.match(p.name)
        if not m:
            continue
        out.append((int(m.group(1)), _title(p) or m.group(2).replace("-", " "), p))
    return sorted(out)


def _title(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("# "):
                    return re.sub(r"^\d+[.)]\s*", "", line[2:].strip())  # "# 1. Title" -> "Title"
    except OSError:
        return ""
    return ""


def run(args: Any, console: Console) -> int:
    folder = find_dir(args.dir)
    chs = chapters(folder)
    if args.chapter is None:
        t = Table(title=f"tutorials ({folder})", box=box.SIMPLE_HEAD, title_style="bold", title_justify="left")
        t.add_column("#", justify="right", style="bold")
        t.add_column("chapter")
        t.add_column("file", style="dim")
        for n, title, p in chs:
            t.add_row(str(n), title, p.name)
        console.print(t)
        console.print("read one with: mgnn tutorial N")
        return EXIT_OK
    chosen = _pick(args.chapter, chs)
    text = chosen[2].read_text(encoding="utf-8")
    md = Markdown(text, code_theme="monokai", hyperlinks=False)
    if args.pager:
        with console.pager(styles=True):
            console.print(md)
    else:
        console.print(md)
    nxt = [c for c in chs if c[0] > chosen[0]]
    if nxt:
        console.print(f"\nnext: mgnn tutorial {nxt[0][0]}  ({nxt[0][1]})", style="dim")
    return EXIT_OK


def _pick(key: str, chs: list[tuple[int, str, Path]]) -> tuple[int, str, Path]:
    if key.isdigit():
        for c in chs:
            if c[0] == int(key):
                return c
        raise UsageError(f"mgnn tutorial: no chapter {key}; chapters are "
                         + ", ".join(str(c[0]) for c in chs))
    hits = [c for c in chs if key.lower() in c[2].name.lower() or key.lower() in c[1].lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise UsageError(f"mgnn tutorial: no chapter matches {key!r}; list them with: mgnn tutorial")
    raise UsageError(f"mgnn tutorial: {key!r} matches chapters " + ", ".join(str(c[0]) for c in hits)
                     + "; give its number")
