"""The strategies that only choose what trains: ``full``, ``freeze`` and ``bitfit``.

None of them adds a parameter, so there is nothing to merge: the trained weights already
are the model's weights.
"""

from __future__ import annotations

import fnmatch

from ..nn.module import Module
from .base import FinetuneError, Strategy, _as_list, match_globs

__all__ = ["Full", "Freeze", "BitFit"]

#: Freeze's default: the lowest layers, which hold the most generic features (character
#: shapes, common n-grams) and need the least change for a new domain.
DEFAULT_FREEZE = ("embedding.*", "rnn.weight_*_l0")


class Full(Strategy):
    """Everything trains: the baseline every cheaper strategy is compared with."""

    name = "full"

    def __init__(self) -> None:
        super().__init__()
        self._options: dict = {}

    def _apply(self, model: Module) -> None:
        for p in model.parameters():
            self._trainable(p)


class Freeze(Strategy):
    """Freeze the parameters matched by ``targets`` (name globs), train the rest.

    Args:
        targets: globs over parameter names, e.g. ``["embedding.*", "rnn.weight_*_l0"]``.
            None means those two, whichever exist in the model; a glob you give must match.
        unfreeze: a schedule ``{step: [globs]}``: after optimizer step ``step`` the matched
            parameters start training ("gradual unfreezing", Howard & Ruder 2018). The
            trainer's optimizer must hold every parameter (a parameter with no gradient is
            skipped), so the newly unfrozen ones are updated from then on.
    """

    name = "freeze"

    def __init__(self, targets: list[str] | None = None, unfreeze: dict[int, list[str]] | None = None) -> None:
        super().__init__()
        self._options = {"targets": targets, "unfreeze": unfreeze}
        self.targets = None if targets is None else _as_list(targets, "targets", self.name)
        self.schedule: list[tuple[int, list[str]]] = []
        if unfreeze is not None:
            if not isinstance(unfreeze, dict):
                raise FinetuneError(f"freeze: unfreeze must be a mapping {{step: [globs]}}, got {unfreeze!r}")
            for step, globs in unfreeze.items():
                try:
                    at = int(step)
                except (TypeError, ValueError):
                    at = -1
                if at < 0 or isinstance(step, bool) or (isinstance(step, float) and step != at):
                    raise FinetuneError(f"freeze: unfreeze.{step}: the step must be a non-negative integer, got {step!r}")
                self.schedule.append((at, _as_list(globs, f"unfreeze.{step}", self.name)))
            self.schedule.sort(key=lambda item: item[0])
        self._done: set[int] = set()
        self._names: list[str] = []

    def _apply(self, model: Module) -> None:
        names = [n for n, _ in model.named_parameters()]
        if self.targets is None:
            present = [g for g in DEFAULT_FREEZE if match_globs_soft(names, g)]
            if not present:
                raise FinetuneError(f"freeze: the default targets {list(DEFAULT_FREEZE)} match no parameter; "
                                    f"give targets (globs over: {', '.join(names)})")
            frozen = match_globs(names, present, option="targets", owner=self.name)
        else:
            frozen = match_globs(names, self.targets, option="targets", owner=self.name)
        for at, globs in self.schedule:  # validate the schedule now, not at step 10,000
            match_globs(names, globs, option=f"unfreeze.{at}", owner=self.name)
        params = dict(model.named_parameters())
        for name, p in params.items():
            self._trainable(p, name not in frozen)
        self._names = names
        self._done = set()
        self.frozen = frozen

    def on_step(self, step: int) -> None:
        """Unfreeze every scheduled group whose step has come (``>=``, so a resumed run
        that re-applies the strategy catches up at its first step)."""
        if self.model is None:
            return
        params = None
        for at, globs in self.schedule:
            if at <= step and at not in self._done:
                params = params or dict(self.model.named_parameters())
                for name in match_globs(self._names, globs, option=f"unfreeze.{at}", owner=self.name):
                    if name in params:
                        self._trainable(params[name])
                self._done.add(at)


def match_globs_soft(names: list[str], pattern: str) -> bool:
    """Whether ``pattern`` matches any name (no error: for optional defaults)."""
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


class BitFit(Strategy):
    """Train only the biases (Ben Zaken et al. 2022): a few hundred numbers per layer.

    ``train_head=True`` also trains the whole ``head`` (a head made by
    :func:`~microgradnn.finetune.replace_head` trains anyway)."""

    name = "bitfit"

    def __init__(self, train_head: bool = False) -> None:
        super().__init__()
        if not isinstance(train_head, bool):
            raise FinetuneError(f"bitfit: train_head must be true or false, got {train_head!r}")
        self._options = {"train_head": train_head}
        self.train_head = train_head

    def _apply(self, model: Module) -> None:
        named = list(model.named_parameters())
        biases = [n for n, _ in named if n.rsplit(".", 1)[-1].startswith("bias")]
        if not biases:
            raise FinetuneError("bitfit: the model has no bias parameters to train "
                                f"(its parameters: {', '.join(n for n, _ in named)})")
        head = match_globs([n for n, _ in named], ["head.*"], option="train_head", owner=self.name) if self.train_head else []
        for name, p in named:
            self._trainable(p, name in biases or name in head)
