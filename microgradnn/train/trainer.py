"""The Trainer: ``Trainer(spec).fit()``, ``Trainer.resume(run_dir).fit()``, and
``Trainer.from_model(model, data, ...)`` for your own Module on your own data.

It is built in parts, each with one job:

* setup (:meth:`Trainer.__init__` from a resolved spec, or :meth:`Trainer.from_model`):
  data, model, loss, optimizer, scheduler, metrics, through :mod:`.build`;
* the step (:class:`~microgradnn.train.step.Step`): forward, loss, count, written once
  and used by training, validation and ``mgnn eval``;
* the checkpoint policy (:mod:`.checkpoints`, :mod:`microgradnn.runfolder`) and the one
  writer of the run folder (:class:`~microgradnn.train.runs.RunFolder`);
* callbacks on one hook list (:mod:`.callbacks`): early stopping, checkpoint cadence,
  the non-finite stop, the metrics log, the display, yours;
* the process seam (:mod:`.parallel`): where batches are drawn, where gradients are
  ready, how validation sums are reduced, who writes.

What one optimizer step does (:meth:`Trainer.train_step`), in order::

    out, state = model(x, carried_state)      # the Step: forward, loss, count
    loss.backward()                           # BPTT through the unrolled recurrence
    on_after_backward                         # gradients ready (all-reduce goes here)
    grad_norm = ||all gradients||             # logged; an inf/NaN norm stops the run
    clip (by norm or by value)                # train.clip_grad_norm / clip_grad_value
    optimizer.step(); scheduler.step()        # then zero the gradients
    carried_state = state.detach()            # next batch continues each stream

Truncated BPTT, in one paragraph. A character language model reads a corpus as B long
parallel streams cut into windows of T characters (see :mod:`microgradnn.data.text`). With
``train.tbptt`` the final hidden state of window k becomes the initial state of window
k+1, so the network remembers across windows; but it is *detached* first, so backward
stops at the window boundary (the graph of window k is freed, and the cost of a step
stays proportional to T rather than growing with the whole stream).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .. import registry
from ..optim.clip import clip_grad_norm_, clip_grad_value_
from ..spec import Component, ResolvedSpec, fill_task_defaults
from ..tasks import get_task
from ..tensor import Tensor, get_rng_state, manual_seed, set_rng_state
from . import build, runs
from .build import ModelInfo
from .callbacks import CallbackList, CheckpointCadence, EarlyStopping, MetricsLog, NonFiniteStop
from ..memory import ModelSizes, check_fits, estimate_memory
from ..runlock import RunLockedError, is_being_written, lock_run_dir, locked_error
from .divergence import divergence_reason, trivial_baseline
from .checkpoints import (CHECKPOINT_FORMAT, CheckpointFallbackWarning, CHECKPOINT_VERSION, BestK, read_checkpoint, read_run_checkpoint,
                          restore_weights,
                          state_from_arrays, state_to_arrays)
from .errors import TrainError
from .finetune_hook import Base, effective_model_spec, load_base, prepare
from .parallel import SingleProcess
from .step import Step, evaluate_batches

__all__ = ["Trainer", "EarlyStopping", "CHECKPOINT_FORMAT", "evaluate_model"]


def _detach_state(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _grad_norm(params: list) -> float:
    """The L2 norm of all gradients together (what clip_grad_norm_ clips)."""
    total = 0.0
    for p in params:
        g = p.grad
        if g is None:
            continue
        g = g.array if isinstance(g, Tensor) else g
        xp = p._backend.xp
        total += float(xp.sum(g.astype(xp.float64) ** 2))
    return math.sqrt(total) if math.isfinite(total) else float("inf") if not math.isnan(total) else float("nan")


class Trainer:
    """Train a model from a resolved spec (or your own, see :meth:`from_model`).

    Args:
        spec: a :class:`~microgradnn.spec.ResolvedSpec` (``microgradnn.spec.load_spec``
            gives one), or a resolved spec dict (completed from the schema, not
            validated again).
        run_dir: where the run writes (None: ``output.dir/output.name``, with ``-2``,
            ``-3`` ... appended when that folder already holds a run).
        callbacks: objects with some of the hooks of :mod:`microgradnn.train.callbacks`.
        dry_run: run this many batches only, write nothing (no run folder at all).
        parallel: the process seam (:class:`~microgradnn.train.parallel.SingleProcess`).

    After ``fit()``: ``model``, ``best`` (the best evaluations), ``history`` (every
    evaluation), ``summary``.
    """

    #: the base name of a fresh run folder, claimed (mkdir) when fit() starts writing;
    #: None when the folder is given (or the trainer came from from_model/resume)
    _fresh_base: Path | None = None

    #: {kind: {name: dist}}: the distributions a resumed run's components came from (its
    #: run.json's record), which its names resolve to (``registry.pinned``); empty for a new run
    _pins: Mapping[str, Mapping[str, str]] = {}

    #: What ``resume`` may change: how long to go on and how often to look, never what
    #: is trained or how (that would not be the same run any more).
    RESUME_OVERRIDABLE = ("train.steps", "train.epochs", "train.eval_every", "train.checkpoint_every",
                          "train.log_every", "train.keep_best", "train.track_grad_norms", "train.early_stopping",
                          "train.threads")

    def __init__(self, spec: ResolvedSpec | Mapping[str, Any], run_dir: str | os.PathLike | None = None,
                 callbacks: Iterable[Any] = (), *, dry_run: int | None = None, parallel: Any = None,
                 _resuming: bool = False, _vocab: Any = None) -> None:
        spec = spec if isinstance(spec, ResolvedSpec) else ResolvedSpec.from_mapping(spec)
        self.dry_run = None if dry_run is None else int(dry_run)
        if self.dry_run is not None and self.dry_run < 1:
            raise TrainError(f"--dry-run needs a positive number of batches, got {dry_run}")
        self.parallel = parallel or SingleProcess()
        self._resuming = _resuming
        tc = spec.train
        # an unnamed run gets a fresh folder, claimed (mkdir) when fit() starts writing
        self._fresh_base: Path | None = None
        if run_dir is None:
            base = Path(spec.output.dir) / spec.output.name
            run_dir = base if (_resuming or self.dry_run is not None) else runs.unique_run_dir(base)
            self._fresh_base = None if (_resuming or self.dry_run is not None) else base
        self.run_dir = Path(run_dir)
        self.folder = runs.RunFolder(self.run_dir, writer=self.dry_run is None and self.parallel.is_writer)

        # --- fine-tuning: the base first (it fixes the architecture and vocabulary) -----
        self.base: Base | None = None
        base_vocab = _vocab  # resume / evaluate: the run's own vocabulary
        if spec.finetune is not None:
            if not spec.finetune.from_:
                raise TrainError("finetune.from: give the pretrained model (a run folder, a checkpoint or a "
                                 "PyTorch state_dict)")
            self.base = load_base(spec.finetune.from_)
            # an absolute path in the run's spec.yaml: resume/eval work from any folder
            spec = spec.replace(finetune=spec.finetune.replace(from_=os.path.abspath(str(spec.finetune.from_))),
                                model=effective_model_spec(spec, self.base))
            base_vocab = self.base.vocab

        # --- data; what depends on its task ---------------------------------------------
        # what can be told before the data exists (sizes, train_size): refused before allocating
        check_fits(estimate_memory(model_sizes(spec, {"output_size": 1, "task": "regression", "input_size": 1}, None)))
        self.data = build.build_data(spec.data, vocab=base_vocab)
        self.spec = fill_task_defaults(spec, self.data.task)
        self._setup_run_shape()

        # --- model (seeded: the same spec always starts from the same weights) ----------
        check_fits(estimate_memory(model_sizes(self.spec, self.info, self.data)))  # before allocating any of it
        manual_seed(tc.seed)
        model = build.build_model(self.spec.model, self.info)
        self.strategy = None
        self.strategy_name: str | None = None
        self.finetune_report: dict[str, Any] | None = None
        if self.spec.finetune is not None:
            self.strategy, self.strategy_name, self.finetune_report = prepare(model, self.spec.finetune, self.base)
        self._setup_training(model, build.build_loss(self.spec.loss, self.task), list(tc.metrics), callbacks)

    # ------------------------------------------------------------------ setup, in parts

    def _setup_run_shape(self) -> None:
        """Task, sizes, steps: what the data and ``train`` section decide together."""
        tc = self.spec.train
        self.tc = tc
        self.task = self.data.task
        self.task_info = get_task(self.task)
        self.seed, self.device, self.batch_size = tc.seed, tc.device, tc.batch_size
        self.info = ModelInfo.from_data(self.data)
        self.steps_per_epoch = int(self.data.num_train_batches(self.batch_size))
        if self.steps_per_epoch < 1:
            raise TrainError(f"data: the training split gives no batch of batch_size {self.batch_size}: "
                             "lower train.batch_size or give more data")
        self.tbptt = tc.tbptt
        if self.tbptt and not getattr(self.data, "streams", False):
            raise TrainError(f"train.tbptt: true needs a dataset whose batches continue each other (a character "
                             f"stream such as charlm/text); {self.data.name!r} gives independent sequences")
        self.total_steps = tc.steps if tc.steps is not None else tc.epochs * self.steps_per_epoch
        if self.dry_run is not None:
            self.total_steps = min(self.total_steps, self.dry_run)

    def _setup_training(self, model: Any, loss_fn: Any, metric_names: list[str], callbacks: Iterable[Any]) -> None:
        """Model on its device, the step, optimizer, scheduler, metrics, monitor, callbacks."""
        tc = self.spec.train
        if tc.track_grad_norms and hasattr(getattr(model, "rnn", None), "track_grad_norms"):
            model.rnn.track_grad_norms = True
        model.to(self.device)
        self.parallel.agree(self.spec.to_dict() if hasattr(self.spec, "to_dict") else self.spec)
        self.parallel.broadcast_parameters(model)  # every rank the same spec and code, rank 0's weights
        self.model = model
        self.counts = build.count_parameters(model)
        self.loss_fn = loss_fn
        self.ignore_index = build.loss_ignore_index(loss_fn)
        self.step_fn = Step(model, loss_fn, self.task_info, self.device, bool(getattr(self.data, "streams", False)),
                            self.ignore_index)
        self.optimizer = build.build_optimizer(self.spec.optimizer, [{"params": self.trainable_parameters()}])
        self.scheduler = build.build_scheduler(self.spec.scheduler, self.optimizer, self.total_steps)
        self._plateau = build.is_plateau(self.scheduler)
        self.metrics = build.build_metrics(metric_names, self.task)

        # what "best" means; early stopping
        es = tc.early_stopping
        self.monitor = es.monitor if es is not None else "val_loss"
        self.has_val = int(self.data.num_val_batches(self.batch_size)) > 0
        if not self.has_val and self.monitor.startswith("val_"):
            if es is not None:
                raise TrainError(f"train.early_stopping.monitor: {self.monitor!r} needs a validation split, and "
                                 f"this data has none at batch_size {self.batch_size}: monitor train_loss, or give "
                                 "the dataset a validation split")
            self.monitor = "train_loss"  # best-k checkpoints by the training loss, then
        self._check_monitor()
        self.mode = (es.mode if es is not None and es.mode is not None else self._natural_mode(self.monitor))
        self.early_stopping = EarlyStopping(self.monitor, self.mode, es.patience, es.min_delta,
                                            es.divergence_threshold) if es is not None else None
        self.keep_best = tc.keep_best
        self.best_k = BestK(self.keep_best, self.monitor, self.mode)
        self.eval_every = tc.eval_every
        self.checkpoint_every = tc.checkpoint_every
        self.log_every = tc.log_every
        self.clip_norm, self.clip_value = tc.clip_grad_norm, tc.clip_grad_value

        # one hook list: yours first (they see a step before it is judged), then ours
        self.callbacks = CallbackList(callbacks)
        self._log_callback = MetricsLog(self.log_every)
        for cb in (NonFiniteStop(), self._log_callback, self.early_stopping,
                   CheckpointCadence(self.checkpoint_every)):
            if cb is not None:
                self.callbacks.append(cb)

        # progress
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.hidden: Any = None
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, Any] | None = None
        self.status = "new"
        self.stop_reason: str | None = None
        self.stop_request: tuple[str, str] | None = None
        # Set by the Ctrl-C handler, which may run between any two bytecodes; the loop
        # turns it into a stop only where every process agrees on stopping
        # (_agree_on_stopping).
        self._ctrl_c = False
        # A stop one of several processes asks after this step's vote (a callback's
        # on_step_end): it waits for the next vote, as a Ctrl-C does.
        self._after_vote = False
        self._deferred_stop: tuple[str, str] | None = None
        self._eval_window: list[float] = []
        self._metrics_state: dict[str, Any] | None = None
        self._first_val: float | None = None
        self.elapsed = 0.0
        self.last_saved_step = -1
        self.summary: dict[str, Any] = {}
        self._spec_changed = False

    @classmethod
    def from_model(cls, model: Any, data: Any, *, loss: Any = None, optimizer: Any = None, metrics: Iterable[str] = (),
                   run_dir: str | os.PathLike | None = None, callbacks: Iterable[Any] = (),
                   dry_run: int | None = None, **train: Any) -> "Trainer":
        """A Trainer for your own ``mg.nn.Module`` on your own data.

        ``model(x, state)`` (or ``model(x, state, lengths=...)``) must return ``(output,
        state)`` as a :class:`~microgradnn.models.SequenceModel` does; ``data`` is a
        DataModule (:mod:`microgradnn.data`, e.g. ``adding()`` from there, or your own);
        ``loss`` and ``optimizer`` are spec components (``"mse"``, ``{"name": "sgd",
        "lr": 0.1}``; default: the task's loss, Adam); ``train`` takes ``train.*`` keys
        (``steps=200, batch_size=16``). The run folder is written as for a spec run,
        except that ``resume`` needs the model built again (so it works from Python:
        ``Trainer.from_model(...)`` then ``load_checkpoint``)."""
        from ..spec import resolve_spec

        raw: dict[str, Any] = {"data": {"name": "<in-process>"}, "train": dict(train)}
        if optimizer is not None:
            raw["optimizer"] = optimizer
        if loss is not None:
            raw["loss"] = loss
        if metrics:
            raw["train"]["metrics"] = list(metrics)
        if run_dir is not None:
            raw["output"] = {"dir": str(Path(run_dir).parent), "name": Path(run_dir).name}
        # validate everything but the data, which is given as an object
        checked = resolve_spec({**raw, "data": "adding"}, name="run")
        spec = checked.replace(data=Component.of(str(getattr(data, "name", "data"))))
        self = cls.__new__(cls)
        self.dry_run = None if dry_run is None else int(dry_run)
        self.parallel = SingleProcess()
        self._resuming = False
        self.run_dir = Path(run_dir) if run_dir is not None else runs.unique_run_dir(
            Path(spec.output.dir) / spec.output.name)
        self.folder = runs.RunFolder(self.run_dir, writer=self.dry_run is None)
        self.base = None
        self.data = data
        self.spec = fill_task_defaults(spec, data.task)
        self._setup_run_shape()
        self.strategy, self.strategy_name, self.finetune_report = None, None, None
        self._setup_training(model, build.build_loss(self.spec.loss, self.task), list(self.spec.train.metrics),
                             callbacks)
        return self

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, callbacks: Iterable[Any] = (),
               overrides: Iterable[str] = (), parallel: Any = None) -> "Trainer":
        """A trainer for the run in ``run_dir``, at its last checkpoint; ``fit()`` continues
        it exactly where it stopped. ``overrides`` (``train.steps=2000``) may extend the run
        or change its cadences (see :attr:`RESUME_OVERRIDABLE`); the run's spec.yaml is
        updated to match when ``fit()`` trains on (a resume that has nothing left to do
        leaves the run as it was)."""
        # Only the writing process locks (rank 0 of a multi-process run); the others read.
        writer = parallel is None or parallel.is_writer
        if writer and Path(run_dir).is_dir() and is_being_written(run_dir):  # say "locked", not "half-written"
            raise locked_error(run_dir)
        run_dir = runs.check_run_dir(run_dir)
        lock = lock_run_dir(run_dir) if writer else None  # before reading anything: no other writer may change it
        try:
            return cls._restore_run(run_dir, lock, callbacks, overrides, parallel)
        except BaseException:
            if lock is not None:  # a resume that failed leaves the folder free for the next try
                lock.release()
            raise

    @classmethod
    def _restore_run(cls, run_dir: Path, lock: Any, callbacks: Iterable[Any], overrides: Iterable[str],
                     parallel: Any) -> "Trainer":
        """:meth:`resume` once the folder is locked (``lock``: None on a reading process)."""
        spec = runs.read_spec(run_dir)
        pins = runs.recorded_components(run_dir)  # each name from the distribution that provided it
        with registry.pinned(pins):
            overrides = list(overrides)
            if overrides:
                spec = _resume_overrides(spec, overrides, cls.RESUME_OVERRIDABLE)
            ckpt_path = run_dir / runs.CKPT_DIR / runs.LAST
            if not ckpt_path.is_file():
                raise TrainError(f"{run_dir} has no checkpoint to resume from ({runs.CKPT_DIR}/{runs.LAST} is missing)")
            vocab_path = run_dir / runs.VOCAB_FILE
            vocab = runs.read_json(vocab_path) if vocab_path.is_file() else None  # even if the data changed since
            trainer = cls(spec, run_dir, callbacks, _resuming=True, _vocab=vocab, parallel=parallel)
            trainer._pins = pins
            trainer.folder = runs.RunFolder(trainer.run_dir, writer=trainer.folder.writer, lock=lock)
            state, used, note = read_run_checkpoint(run_dir, "last", trainer.device)
            if note is not None:  # last is damaged: continue from the previous verified checkpoint
                warnings.warn(note, CheckpointFallbackWarning, stacklevel=2)
            trainer._restore(state, used)
        trainer._spec_changed = bool(overrides)
        return trainer

    def _check_monitor(self) -> None:
        allowed = ["val_loss", "train_loss"] + [f"val_{m.name}" for m in self.metrics]
        if self.monitor not in allowed:
            raise TrainError(f"train.early_stopping.monitor: {self.monitor!r} is not computed by this run; "
                             f"choose one of {', '.join(allowed)} (add metrics with train.metrics)")

    def _natural_mode(self, monitor: str) -> str:
        """"min" for losses; a metric's own direction (accuracy: "max")."""
        for m in self.metrics:
            if f"val_{m.name}" == monitor:
                return "max" if m.higher_is_better else "min"
        return "min"

    def trainable_parameters(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ control

    def request_stop(self, reason: str = "stop requested", status: str = "stopped") -> None:
        """Ask the run to stop after the current step (it saves a checkpoint first,
        unless the status is "nan": the last good one is kept).

        On one of several processes, a stop asked after the step's vote on stopping (in
        ``on_step_end``) is taken at the next step's vote: stopping alone would leave the
        others waiting in a collective."""
        if self._after_vote and self.parallel.world_size > 1:
            if self._deferred_stop is None:
                self._deferred_stop = (status, reason)
            return
        if self.stop_request is None:
            self.stop_request = (status, reason)

    @property
    def best(self) -> list[dict[str, Any]]:
        """The kept best checkpoints, best first."""
        return self.best_k.entries

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ one step

    def train_batches(self) -> Iterator[Any]:
        """The one place training batches are drawn: the rest of this epoch, in the order
        a pure function of (batch_size, epoch, seed) gives, this process's share of each."""
        return self.parallel.shard(self.data.train_batches(self.batch_size, epoch=self.epoch, seed=self.seed,
                                                           start=self.batch_in_epoch))

    def train_step(self, batch: Any) -> dict[str, Any]:
        """One optimizer step on ``batch`` (see the module docstring); returns its info."""
        t0 = time.perf_counter()
        self.model.train()
        result = self.step_fn(batch, self.hidden if self.tbptt else None)
        loss = result.loss
        if self.strategy is not None:
            extra = self.strategy.penalty(self.model)
            if extra is not None:
                loss = loss + extra
        # one decision for every process: the global loss and count, before backward
        value, _ = self.parallel.reduce_step(float(loss.item()), result.count)
        info: dict[str, Any] = {"step": self.step + 1, "epoch": self.epoch, "batch": self.batch_in_epoch,
                                "loss": value, "lr": self.lr,
                                "items": self.parallel.global_items(self.step_fn.items(batch))}
        if not math.isfinite(value):
            info["nonfinite"] = f"the loss is {value}"
            return info
        if result.count:  # a process whose rows score nothing contributes zeros
            loss.backward()
        params = self.trainable_parameters()
        self.parallel.all_reduce_gradients(params)
        self.callbacks.on_after_backward(self)
        norm = _grad_norm(params)
        info["grad_norm"] = norm
        if not math.isfinite(norm):
            info["nonfinite"] = f"the gradient norm is {norm} (loss {value:.6g})"
            self.optimizer.zero_grad()
            return info
        rnn = getattr(self.model, "rnn", None)
        if getattr(rnn, "track_grad_norms", False) and rnn.last_grad_norms is not None:
            norms = rnn.last_grad_norms
            info["grad_norms"] = norms[-1] if not rnn.bidirectional else norms[-2]
        if self.clip_norm is not None:
            clip_grad_norm_(params, float(self.clip_norm))
        if self.clip_value is not None:
            clip_grad_value_(params, float(self.clip_value))
        self.optimizer.step()
        if self.scheduler is not None and not self._plateau:
            self.scheduler.step()
        if self.strategy is not None:
            self.strategy.on_step(self.step + 1)
            self._sync_param_groups()
        self.optimizer.zero_grad()
        if self.tbptt:
            self.hidden = _detach_state(result.state)
        info["seconds"] = time.perf_counter() - t0
        return info

    def _sync_param_groups(self) -> None:
        """A strategy that unfreezes parameters on a schedule: give them to the optimizer."""
        known = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        fresh = [p for p in self.trainable_parameters() if id(p) not in known]
        if fresh:
            self.optimizer.add_param_group({"params": fresh})

    # ------------------------------------------------------------------ evaluation

    def validate(self) -> dict[str, Any]:
        """Loss and metrics over the validation split (empty dict without one)."""
        if not self.data.num_val_batches(self.batch_size):
            return {}
        several = self.parallel.world_size > 1
        return evaluate_batches(self.step_fn, [self.data.val_batches(self.batch_size)], self.metrics, self.tbptt,
                                parallel=self.parallel if several else None)

    def evaluate(self) -> dict[str, Any]:
        """Validate, record and announce the results (``on_eval``)."""
        results: dict[str, Any] = {"event": "eval", "step": self.step, "epoch": self.epoch}
        if self._eval_window:
            results["train_loss"] = float(np.mean(self._eval_window))
            self._eval_window = []
        results.update(self.validate())
        results["lr"] = self.lr
        if self._first_val is None and isinstance(results.get("val_loss"), float):
            self._first_val = results["val_loss"]
        self.last_eval = results
        self.history.append(results)
        if self._plateau and self.monitor in results:
            self.scheduler.step(results[self.monitor])
        self.folder.append_metrics(results)
        self.callbacks.on_eval(self, results)
        return results

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_state(self) -> dict[str, Any]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": None,
            "finetune": None,
            "optimizer": self.optimizer.state_dict(),
            "param_groups": [[names[id(p)] for p in g["params"]] for g in self.optimizer.param_groups],
            "trainable": [n for n, p in self.model.named_parameters() if p.requires_grad],
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": get_rng_state(),
            "progress": {"step": self.step, "epoch": self.epoch, "batch": self.batch_in_epoch,
                         "total_steps": self.total_steps, "elapsed": self.elapsed},
            "hidden": self.parallel.gather_state(state_to_arrays(self.hidden)) if self.tbptt else None,
            "best": [dict(b) for b in self.best],
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping else None,
            "last_eval": {k: v for k, v in (self.last_eval or {}).items() if isinstance(v, (int, float, str))},
            "model_info": dict(self.info),
            "metrics_log": self.folder.metrics_state(),
            "windows": {"eval": list(self._eval_window), "log": self._log_callback.state_dict()},
            "first_val_loss": self._first_val,
        }
        if self.strategy is not None:
            # Only what changed: the strategy's delta, plus any other trainable parameter
            # (a new head) it does not list, plus a reference to the base.
            delta = dict(self.strategy.delta_state_dict(self.model))
            own = self.model.state_dict()
            extra = {n: own[n] for n in state["trainable"] if n not in delta and n in own}
            state["finetune"] = {"delta": delta, "extra": extra, "base": self.finetune_report["base"],
                                 "strategy": self.strategy_name, "strategy_state": self.strategy.state_dict()}
        else:
            state["model"] = self.model.state_dict()
        return state

    def save_checkpoint(self, best_score: float | None = None) -> Path:
        """Write ``last`` (and a best-k file when ``best_score`` ranks); update the index."""
        state = self._checkpoint_state()
        if self.best_k.ranks(best_score):
            entry, dropped = self.best_k.add(self.step, self.epoch, best_score)
            state["best"] = [dict(b) for b in self.best]
            self._announce(self.folder.save_checkpoint(entry["file"], state), "best")
            for d in dropped:
                self.folder.remove_checkpoint(d["file"])
            if self.strategy is not None and self.best_k.is_best(entry):
                self._write_adapter(state)
        last = self.folder.save_checkpoint(runs.LAST, state)
        self._announce(last, "last")
        self.last_saved_step = self.step
        self.folder.write_index({"last": {"file": runs.LAST, "step": self.step, "epoch": self.epoch},
                                 "best": self.best, "monitor": self.monitor, "mode": self.mode})
        return last

    def _announce(self, path: Path, kind: str) -> None:
        if self.folder.writer:
            self.callbacks.on_checkpoint(self, str(path), kind)

    def _write_adapter(self, state: dict[str, Any]) -> None:
        """The fine-tune result on its own: only what changed, plus what it applies to."""
        ft = state["finetune"]
        self.folder.write_adapter({
            "format": "microgradnn.adapter", "version": 1, "base": ft["base"], "strategy": ft["strategy"],
            "strategy_spec": self.spec.finetune.strategy.to_dict(), "head": self.spec.finetune.head,
            "delta": ft["delta"], "extra": ft["extra"], "model_info": dict(self.info), "step": self.step})

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (see :mod:`.checkpoints`)."""
        self._restore(read_checkpoint(path, self.device), Path(path))

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        try:
            self._restore_state(state)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            # a checkpoint that verifies but whose contents have the wrong shape: crafted,
            # or written by something else
            raise TrainError(f"{path}: its training state is malformed ({type(exc).__name__}: {exc})") from None

    def _restore_state(self, state: dict[str, Any]) -> None:
        restore_weights(self.model, state, self.strategy)
        trainable = set(state.get("trainable") or [])
        if trainable:
            for n, p in self.model.named_parameters():
                p.requires_grad_(n in trainable)
        # Rebuild the optimizer over the same parameters, in the same groups, then load it.
        params = dict(self.model.named_parameters())
        groups = [{"params": [params[n] for n in names]} for names in state["param_groups"]]
        self.optimizer = build.build_optimizer(self.spec.optimizer, groups[:1])
        for g in groups[1:]:
            self.optimizer.add_param_group(g)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler = build.build_scheduler(self.spec.scheduler, self.optimizer, self.total_steps)
            if state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        prog = state["progress"]
        self.step, self.epoch, self.batch_in_epoch = int(prog["step"]), int(prog["epoch"]), int(prog["batch"])
        self.elapsed = float(prog.get("elapsed", 0.0))
        # this process's rows, whatever the number of processes that wrote the checkpoint
        hidden = self.parallel.state_rows(state.get("hidden")) if self.tbptt else None
        self.hidden = state_from_arrays(hidden, self.device) if self.tbptt else None
        self.parallel.broadcast_parameters(self.model)
        self.best_k = BestK(self.keep_best, self.monitor, self.mode, state.get("best"))
        if self.early_stopping is not None and state.get("early_stopping"):
            self.early_stopping.load_state_dict(state["early_stopping"])
        self.last_eval = dict(state.get("last_eval") or {}) or None
        self.last_saved_step = self.step
        set_rng_state(state["rng"])
        windows = state.get("windows") or {}  # the running means, so logs after a resume equal a straight run's
        self._eval_window = [float(v) for v in windows.get("eval") or []]
        if windows.get("log") is not None:
            self._log_callback.load_state_dict(windows["log"])
        self._metrics_state = state.get("metrics_log")
        self._first_val = state.get("first_val_loss")
        self.status = "resumed"

    # ------------------------------------------------------------------ the run folder

    def _write_run_json(self, status: str) -> None:
        from .. import __version__

        info = {
            "format": "microgradnn.run", "version": 1, "microgradnn": __version__, "status": status,
            "model_info": dict(self.info), "parameters": self.counts, "data": self.data.describe(),
            "step": self.step, "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "finetune": self.finetune_report, "processes": self.parallel.world_size,
        }
        if self.stop_reason:
            info["reason"] = self.stop_reason
        info["components"] = self._component_sources()
        self.folder.write_status(info)

    def _component_sources(self) -> dict[str, Any]:
        """Which distribution (and version) provided each named component of this run:
        with a plugin installed later that claims one of the names, the record says what
        this run was trained with."""
        m, spec = self.spec.model, self.spec
        named = [("cells", m.cell.name), ("datasets", spec.data.name), ("optimizers", spec.optimizer.name)]
        named += [("cells", m.decoder_cell.name)] if m.decoder_cell is not None else []
        named += [("attention", m.attention.name)] if m.attention is not None else []
        named += [("losses", spec.loss.name)] if spec.loss is not None else []
        named += [("schedulers", spec.scheduler.name)] if spec.scheduler is not None else []
        named += [("finetune", spec.finetune.strategy.name)] if spec.finetune is not None else []
        named += [("metrics", name) for name in spec.train.metrics]
        out: dict[str, Any] = {}
        for kind, name in named:
            try:
                e = registry.get_entry(kind, name)  # (in fit: under the resumed run's pins)
            except Exception:  # noqa: BLE001 - a record, never a reason to fail the run
                continue
            out.setdefault(kind, {})[name] = {"dist": e.dist, "version": e.version}  # as the spec spells it
        return out

    def _open_run_folder(self) -> None:
        if not self.folder.writer:
            return
        if self._fresh_base is not None and not self._resuming:
            # the name is claimed with mkdir: two runs started at once get two folders
            path, lock = runs.claim_fresh_dir(self._fresh_base)
            self.run_dir = path
            self.folder = runs.RunFolder(path, writer=True, lock=lock)
            self._fresh_base = None
        self.folder.lock()
        if self._resuming:
            self.folder.restore_metrics(self._metrics_state, self.step)
            if self._spec_changed:
                self.folder.write_spec(self.spec)
        else:
            if self.folder.has_run():
                raise TrainError(f"{self.run_dir} already holds a run: continue it with `mgnn resume "
                                 f"{self.run_dir}`, or choose another output.name")
            self.folder.create(self.spec, getattr(self.data, "vocab", None))
        self._write_run_json("running")

    # ------------------------------------------------------------------ the loop

    def fit(self, handle_sigint: bool = False) -> dict[str, Any]:
        """Train until the step/epoch budget is spent, early stopping fires, the loss goes
        NaN, or a stop is requested. Returns (and stores in ``summary``) a dict with
        ``status`` ("completed", "early_stopped", "diverged", "nan", "stopped",
        "interrupted", "dry_run"), ``reason``, ``step``, ``epoch``, ``best``, ``last_eval``.
        An error mid-run leaves ``run.json`` at status "failed" (with the reason).

        ``handle_sigint``: Ctrl-C asks the run to stop after the current step and save a
        checkpoint (a second Ctrl-C interrupts at once)."""
        with registry.pinned(self._pins):  # a resumed run: its components as run.json recorded them
            return self._fit_in_folder(handle_sigint)

    def _fit_in_folder(self, handle_sigint: bool) -> dict[str, Any]:
        try:
            self._open_run_folder()
        except BaseException:
            self.folder.release()
            raise
        previous = None
        if handle_sigint and threading.current_thread() is threading.main_thread():
            def on_sigint(signum: int, frame: Any) -> None:
                if self._ctrl_c:
                    raise KeyboardInterrupt
                self._ctrl_c = True  # taken at the end of this step, never in the middle of it
            self._ctrl_c = False
            previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            return self._fit()
        except BaseException as exc:
            if not isinstance(exc, RunLockedError):  # (another process's run: not ours to mark)
                self.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.stop_reason = f"{type(exc).__name__}: {exc}"
                try:
                    self._write_run_json(self.status)
                except (OSError, runs.RunFileError):  # a disk that refuses even that; readers see no lock holder
                    pass
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self.folder.release()

    def _evaluation_due(self, end_of_epoch: bool) -> bool:
        if self.dry_run is not None:
            return False
        if self.step >= self.total_steps:
            return True
        return (self.step % self.eval_every == 0) if self.eval_every is not None else end_of_epoch

    def _fit(self) -> dict[str, Any]:
        self._after_vote, self._deferred_stop = False, None
        self.callbacks.on_start(self)
        started = time.perf_counter()
        elapsed0 = self.elapsed
        while self.step < self.total_steps and self.stop_request is None:
            drawn = 0
            for batch in self.train_batches():
                self._after_vote = False
                drawn += 1
                info = self.train_step(batch)
                end_of_epoch = False
                if "nonfinite" not in info:
                    self.step += 1
                    self.batch_in_epoch += 1
                    self._eval_window.append(info["loss"])
                    self.elapsed = elapsed0 + time.perf_counter() - started
                    info["elapsed"] = self.elapsed
                    end_of_epoch = self.batch_in_epoch >= self.steps_per_epoch
                    if end_of_epoch:  # the position to resume from is the next epoch's start
                        self.epoch += 1
                        self.batch_in_epoch = 0
                        self.hidden = None  # each epoch starts the streams at new offsets
                self.callbacks.on_step(self, info)
                if "nonfinite" not in info and self._evaluation_due(end_of_epoch):
                    self.evaluate()
                self._agree_on_stopping()
                self.callbacks.on_step_end(self, info)
                if self.stop_request is not None or self.step >= self.total_steps or end_of_epoch:
                    break
            if not drawn:
                raise TrainError(f"data: {self.data.name!r} gave no training batch for epoch {self.epoch} "
                                 f"(it announced {self.steps_per_epoch})")
            if self.batch_in_epoch and self.stop_request is None and self.step < self.total_steps \
                    and self.batch_in_epoch < self.steps_per_epoch:
                # the iterator ran dry before steps_per_epoch (a dataset that gives fewer
                # batches than it announced): move on to the next epoch all the same
                self.epoch += 1
                self.batch_in_epoch = 0
                self.hidden = None
        status, reason = self.stop_request if self.stop_request is not None else ("completed", None)
        if self.dry_run is not None and status == "completed":
            status = "dry_run"
        self.status, self.stop_reason = status, reason
        self.elapsed = elapsed0 + time.perf_counter() - started
        return self._finish()

    def _agree_on_stopping(self) -> None:
        """A stop asked on any process (a callback, a Ctrl-C) stops every one at this step,
        before on_step_end writes the stop's checkpoint (a collective).

        The Ctrl-C flag is read once, before the vote: a Ctrl-C that lands after the read
        waits for the next step's vote. Turning it into a stop anywhere else would let one
        process stop (and enter the checkpoint's collectives) while the others, which
        voted to go on, enter the next step's: both would wait for ever."""
        interrupted, deferred = self._ctrl_c, self._deferred_stop
        if self.parallel.any_rank(interrupted or deferred is not None or self.stop_request is not None):
            if deferred is not None:
                self.request_stop(deferred[1], deferred[0])
            if interrupted:
                self.request_stop("interrupted (Ctrl-C)", "interrupted")
            self.request_stop("stop requested on another rank")  # (kept only when nothing here asked)
        self._after_vote = True

    def _judge_divergence(self) -> None:
        """A run that ends far above a do-nothing model, or far above its start, diverged."""
        if self.status not in ("completed", "early_stopped") or not self.last_eval:
            return
        final = self.last_eval.get("val_loss")
        if not isinstance(final, float):
            return
        val = getattr(getattr(self.data, "val", None), "ys", None)
        loss_name = self.spec.loss.name if self.spec.loss is not None else None
        baseline = trivial_baseline(self.task, loss_name, int(self.info["output_size"]), val)
        lr = self.spec.optimizer.options.get("lr")
        hint = (f"try a lower optimizer.lr (now {lr:g})" if isinstance(lr, (int, float)) else "try a lower optimizer.lr") \
            + ("" if self.clip_norm else ", or set train.clip_grad_norm")
        reason = divergence_reason(self._first_val, final, baseline, hint)
        if reason is not None:
            self.status, self.stop_reason = "diverged", reason

    def _finish(self) -> dict[str, Any]:
        self._judge_divergence()
        if self.strategy is not None and self.finetune_report is not None:
            # What the strategy reports beyond the counts, as trained (AdaLoRA: the final
            # rank of every adapted weight, after its budget was reallocated).
            extra = self.strategy.report(self.model)
            self.finetune_report.update({k: v for k, v in extra.items()
                                         if k not in ("strategy", "options", "trainable", "total", "share")})
        writing = self.folder.writer
        summary = {
            "status": self.status, "reason": self.stop_reason, "step": self.step, "epoch": self.epoch,
            "total_steps": self.total_steps, "elapsed": self.elapsed,
            "run_dir": str(self.run_dir) if writing else None,
            "best": [dict(b) for b in self.best], "last_eval": dict(self.last_eval or {}),
            "parameters": self.counts, "finetune": self.finetune_report, "monitor": self.monitor,
        }
        self.folder.append_metrics({"event": "end", "step": self.step, "epoch": self.epoch, "status": self.status,
                                    "reason": self.stop_reason, "elapsed": self.elapsed})
        self._write_run_json(self.status)
        self.summary = summary
        self.callbacks.on_end(self, summary)
        return summary


def model_sizes(spec: ResolvedSpec, info: Mapping[str, Any], data: Any) -> ModelSizes:
    """The sizes :func:`microgradnn.memory.estimate_memory` needs, from the resolved spec
    and the data's facts."""
    m, tc = spec.model, spec.train
    seq_len = getattr(data, "seq_len", None) or spec.data.options.get("seq_len") or 1
    train_size = spec.data.options.get("train_size") or 0
    optimizer = spec.optimizer.name
    return ModelSizes(hidden_size=m.hidden_size, output_size=int(info["output_size"]), batch_size=tc.batch_size,
                      seq_len=int(seq_len), cell=m.cell.name, num_layers=m.num_layers, bidirectional=m.bidirectional,
                      vocab_size=info.get("vocab_size"), embedding_dim=m.embedding_dim,
                      input_size=info.get("input_size"), task=str(info["task"]),
                      proj_size=int(m.cell.options.get("proj_size") or 0),
                      train_size=int(train_size) if isinstance(train_size, int) else 0,
                      optimizer_slots=2 if optimizer in ("adam", "adamw") else 1)


def _resume_overrides(spec: dict[str, Any], overrides: list[str], allowed: tuple[str, ...]) -> ResolvedSpec:
    """The run's spec with resume-time overrides applied and validated."""
    from ..spec import Problem, SpecError, apply_overrides, parse_override, resolve_spec

    problems = []
    for text in overrides:
        key, _, _ = parse_override(text)
        if not any(key == a or key.startswith(a + ".") for a in allowed):
            problems.append(Problem(key, "can't be changed when resuming (the run would not be the same run)",
                                    allowed=", ".join(allowed), origin=text))
    if problems:
        raise SpecError(problems)
    as_run = {k: v for k, v in spec.items() if k != "finetune"}  # its base may have moved since: not re-checked
    resolved = resolve_spec(apply_overrides(as_run, overrides), name=(spec.get("output") or {}).get("name"))
    kept = ResolvedSpec.from_mapping(spec)
    # exactly as the run had them
    return resolved.replace(model=kept.model, data=kept.data, loss=kept.loss, finetune=kept.finetune)


def evaluate_model(model: Any, data: Any, loss_fn: Any, metrics: list, batch_size: int, device: str,
                   carry_state: bool, ignore_index: int | None, task: str,
                   segments: list[Iterable[Any]] | None = None) -> dict[str, Any]:
    """Mean loss over every scored target, and each metric (the Step's evaluation, for a
    model and data given directly). Keys: ``val_loss``, ``val_<metric>``, ``val_items``."""
    if segments is None:
        if not data.num_val_batches(batch_size):
            return {}
        segments = [data.val_batches(batch_size)]
    step = Step(model, loss_fn, get_task(task), device, bool(getattr(data, "streams", False)), ignore_index)
    return evaluate_batches(step, segments, metrics, carry_state)

