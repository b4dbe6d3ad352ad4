"""Primitives: each a :class:`~microgradnn.autograd.Function` with forward and backward."""

from __future__ import annotations

from ..autograd import Function
from . import elementwise, linalg, nn, recurrent, reduce, shape

MODULES = (elementwise, linalg, nn, reduce, shape, recurrent)


def all_primitives() -> list[type[Function]]:
    """Every concrete primitive, for the test that checks each has a gradient rule."""
    found = []
    for module in MODULES:
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Function)
                and obj.__module__ == module.__name__
                and not obj.__name__.startswith("_")
            ):
                found.append(obj)
    return found
