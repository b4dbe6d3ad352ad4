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
from rich.syntax import Syntax
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
    nxt = [c for c in chs if c[0] > chosen[0]]
    footer = f"\nnext: mgnn tutorial {nxt[0][0]}  ({nxt[0][1]})" if nxt else ""
    if args.pager:
        with console.pager(styles=_pager_shows_styles()):
            render(text, console)
            console.print(footer, style="dim")
    else:
        render(text, console)
        console.print(footer, style="dim")
    return EXIT_OK


def _pager_shows_styles() -> bool:
    """Whether the pager will show colours rather than raw escape codes: ``less`` does
    with ``-R`` (set in ``LESS`` here when the user has not set ``LESS`` at all), other
    pagers (``more``, ``cat``, ...) get plain text."""
    command = os.environ.get("MANPAGER") or os.environ.get("PAGER") or "less"
    if not os.path.basename(command.split()[0] if command.split() else "").startswith("less"):
        return False
    if "LESS" not in os.environ:
        os.environ["LESS"] = "-R"  # the command may change its own environment; the library never does
    return "R" in os.environ["LESS"] or "-r" in os.environ["LESS"]


_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def render(text: str, console: Console) -> None:
    """A chapter in the terminal: prose through rich's Markdown, code blocks whole.

    Code is printed at its own width and never wrapped (``soft_wrap``), so a line a
    reader copies is the line in the file, even in an 80-column terminal."""
    pos = 0
    for m in _FENCE.finditer(text):
        if text[pos:m.start()].strip():
            console.print(Markdown(text[pos:m.start()], hyperlinks=False))
        code = m.group(2).rstrip("\n")
        width = max((len(line) for line in code.splitlines()), default=1)
        console.print(Syntax(code, m.group(1) or "text", theme="monokai", background_color="default",
                             word_wrap=False, code_width=width), soft_wrap=True)
        pos = m.end()
    if text[pos:].strip():
        console.print(Markdown(text[pos:], hyperlinks=False))


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
