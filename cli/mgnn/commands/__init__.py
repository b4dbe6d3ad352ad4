"""The ``mgnn`` subcommands, one module each, all on :class:`.base.Command`.

A new subcommand is one more module with a Command subclass, listed in :data:`COMMANDS`.
"""

from __future__ import annotations

from .base import Command
from .check import Check
from .eval import Eval
from .export import Export
from .generate import Generate
from .plugins import Plugins
from .resume import Resume
from .train import Train
from .tutorial import Tutorial

#: Every subcommand, by name, in the order ``mgnn -h`` lists them.
COMMANDS: dict[str, Command] = {c.name: c for c in (Train(), Resume(), Eval(), Generate(), Check(), Plugins(),
                                                     Export(), Tutorial())}

__all__ = ["COMMANDS", "Command"]
