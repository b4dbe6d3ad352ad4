"""How the Trainer runs across processes: the seam a data-parallel strategy fills.

The Trainer asks its ``parallel`` object at these points, and never assumes:

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

    # What N ranks also need to end as one process (train.data_parallel.MPIDataParallel
    # fills them; alone each is the identity):

    def agree(self, spec: Any) -> None:
        """Refuse to start unless every process trains the same spec with the same code."""

    def broadcast_parameters(self, model: Any) -> None:
        """Make every process's weights rank 0's."""

    def reduce_step(self, loss: float, count: int) -> tuple[float, int]:
        """The global mean loss and count of this step, before backward."""
        return loss, count

    def global_items(self, items: int) -> int:
        return items

    def any_rank(self, flag: bool) -> bool:
        """True everywhere when true on any process (a stop asked on one)."""
        return flag

    def gather_state(self, state: Any) -> Any:
        """The carried state of every stream, from each process's rows."""
        return state

    def state_rows(self, state: Any) -> Any:
        """This process's rows of a whole-batch carried state."""
        return state
