"""How the Trainer runs across processes: the seam a data-parallel strategy fills.

The Trainer asks its ``parallel`` object at exactly four points, and never assumes:

* :meth:`SingleProcess.shard` — where batches are drawn (``Trainer.train_batches``):
  each global batch becomes this process's share;
* :meth:`SingleProcess.all_reduce_gradients` — where gradients are ready (after
  backward, before their norm, clipping and the optimizer step);
* :meth:`SingleProcess.reduce_sums` — validation totals (``loss_sum``, ``count``)
  summed over processes before the mean;
* :attr:`SingleProcess.is_writer` — whether this process writes the run folder
  (:class:`~microgradnn.train.runs.RunFolder` writes nothing otherwise).

:class:`SingleProcess` (the default) does nothing at each: one process, all data.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

__all__ = ["SingleProcess"]


class SingleProcess:
    """One process: the whole batch, gradients as they are, sums as they are."""

    rank = 0
    world_size = 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def shard(self, batches: Iterable[Any]) -> Iterator[Any]:
        return iter(batches)

    def all_reduce_gradients(self, params: list) -> None:
        return None

    def reduce_sums(self, totals: dict[str, float]) -> dict[str, float]:
        return totals
