"""The errors a user can fix, raised by the training floor (the CLI prints each as one line)."""

from __future__ import annotations

__all__ = ["TrainError", "BuildError"]


class TrainError(RuntimeError):
    """A training / evaluation problem the user can fix (bad run folder, bad option...).

    The CLI prints its message as one line, without a traceback."""


class BuildError(TrainError):
    """A spec section could not be turned into an object (the component rejected an option)."""
