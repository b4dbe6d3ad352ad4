"""``mgnn tutorial [N]``: list the tutorials, or read chapter N in the terminal."""

from __future__ import annotations

from typing import Any

from .base import Command, console


class Tutorial(Command):
    name = "tutorial"
    usage = "[N]"
    summary = "list the tutorials / read chapter N in the terminal"
    description = "List the tutorial chapters, or read chapter N in the terminal."

    def add_arguments(self, p: Any) -> None:
        p.add_argument("chapter", nargs="?", help="chapter number (or a part of its name)")
        p.add_argument("--dir", help="the tutorials folder (default: the project's tutorials/)")
        p.add_argument("--pager", action="store_true", help="page the chapter")

    def run(self, args: Any) -> int:
        from ..tutorial import run

        return run(args, console())
