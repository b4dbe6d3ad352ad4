"""The training loop: ``Trainer(spec).fit()``, and ``Trainer.resume(run_dir).fit()``.

What one optimizer step does (``_train_step``), in the order it happens::

    out, state = model(x, carried_state)      # forward (carried_state: truncated BPTT)
    loss = loss_fn(out, y)                    # a NaN/inf loss stops the run here
    loss.backward()                           # BPTT through the unrolled recurrence
    grad_norm = ||all gradients||             # logged; an inf/NaN norm also stops the run
    clip (by norm or by value)                # train.clip_grad_norm / clip_grad_value
    optimizer.step(); scheduler.step()        # then zero the gradients
    carried_state = state.detach()            # next batch continues each stream

Truncated BPTT, in one paragraph. A character language model reads a corpus as B long
parallel streams cut into windows of T characters (see :mod:`microgradnn.data.text`). With
``train.tbptt`` the final hidden state of window k becomes the initial state of window
k+1, so the network remembers across windows; but it is *detached* first, so backward
stops at the window boundary (the graph of window k is freed, and the cost of a step
stays proportional to T rather than growing with the whole stream).

Exact resume. A checkpoint holds everything that decides the rest of the run: weights,
optimizer moments, scheduler, the random generator's state (dropout), the data position
(epoch + index of the next batch: data order is a pure function of (batch_size, epoch,
seed), so skipping to batch k reproduces it), the carried hidden state, the best scores
and the early-stopping counters. A run stopped at any checkpoint and resumed ends with
bit-identical weights to one never stopped (tested in tests/train/).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..fileio import atomic_write
from ..tensor import get_rng_state, manual_seed, set_rng_state
from ..tensor import tensor as make_tensor
from ..autograd import no_grad
from ..checkpoint import load as mg_load
from ..checkpoint import save as mg_save
from ..optim.clip import clip_grad_norm_, clip_grad_value_
from ..spec import fill_task_defaults
from ..tensor import Tensor
from . import build, runs
from .build import BuildError, ModelInfo, TrainError
from .callbacks import CallbackList
from .finetune_hook import Base, effective_model_spec, load_base, prepare

__all__ = ["Trainer", "EarlyStopping", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "microgradnn.run-checkpoint"
CHECKPOINT_VERSION = 1


# ----------------------------------------------------------------------------- early stopping


class EarlyStopping:
    """Stop when the monitored value stops improving, or diverges.

    * improvement: better than the best so far by more than ``min_delta``
      (lower for mode "min", higher for "max");
    * ``patience``: evaluations in a row without improvement before stopping;
    * ``divergence_threshold``: stop at once when the value is worse than this
      (e.g. val_loss above 10: the run has blown up, waiting is pointless);
    * a NaN/inf value stops at once.

    ``state_dict``/``load_state_dict`` make it part of a checkpoint."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 5, min_delta: float = 0.0,
                 divergence_threshold: float | None = None) -> None:
        if mode not in ("min", "max"):
            raise BuildError(f"train.early_stopping.mode: must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = int(patience), abs(float(min_delta))
        self.divergence_threshold = divergence_threshold
        self.best: float | None = None
        self.bad_evals = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> str | None:
        """Record one evaluation; return why to stop, or None to go on."""
        if not math.isfinite(value):
            return f"{self.monitor} is {value}"
        if self.divergence_threshold is not None:
            worse = value > self.divergence_threshold if self.mode == "min" else value < self.divergence_threshold
            if worse:
                return (f"{self.monitor} = {value:.6g} is past the divergence threshold "
                        f"{self.divergence_threshold:g}")
        if self.improved(value):
            self.best, self.bad_evals = value, 0
            return None
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            return (f"no improvement of {self.monitor} (best {self.best:.6g}) in {self.bad_evals} evaluations "
                    f"(patience {self.patience}, min_delta {self.min_delta:g})")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evals = state.get("best"), int(state.get("bad_evals", 0))


# ----------------------------------------------------------------------------- helpers


def _get(d: Any, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, dict) else default


def _host(a: Any) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.array
    if not isinstance(a, np.ndarray) and hasattr(a, "get"):
        a = a.get()
    return np.asarray(a)


def _detach_state(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _state_to_arrays(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(np.array(_host(s), copy=True) for s in state)
    return np.array(_host(state), copy=True)


def _state_from_arrays(arrays: Any, device: str) -> Any:
    if arrays is None:
        return None
    if isinstance(arrays, (tuple, list)):
        return tuple(make_tensor(a, device=device) for a in arrays)
    return make_tensor(arrays, device=device)


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


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Train a :class:`~microgradnn.models.SequenceModel` from a resolved spec.

    Args:
        spec: the resolved spec dict (``microgradnn.spec.load_spec`` gives one).
        run_dir: where the run writes (None: ``output.dir/output.name``, with ``-2``,
            ``-3`` ... appended when that folder already holds a run).
        callbacks: objects with on_start/on_step/on_eval/on_checkpoint/on_end methods
            (see :mod:`microgradnn.train.callbacks`).
        dry_run: run this many batches only, write nothing (no run folder at all).

    After ``fit()``: ``model``, ``best`` (the best evaluations), ``history`` (every
    evaluation), ``summary``.
    """

    def __init__(self, spec: dict[str, Any], run_dir: str | os.PathLike | None = None,
                 callbacks: Iterable[Any] = (), *, dry_run: int | None = None, _resuming: bool = False,
                 _vocab: Any = None, parallel: Any = None) -> None:
        self.spec = copy.deepcopy(spec)
        # parallel: None (one process) or the process seam (train.data_parallel.MPIDataParallel);
        # only its writer (rank 0) writes the run folder and runs the callbacks (the display)
        self.parallel = parallel
        self._writer = parallel is None or parallel.is_writer
        self.callbacks = CallbackList(callbacks if self._writer else ())
        self.dry_run = None if dry_run is None else int(dry_run)
        if self.dry_run is not None and self.dry_run < 1:
            raise TrainError(f"--dry-run needs a positive number of batches, got {dry_run}")
        tc = self.spec.get("train") or {}
        self.tc = tc
        self.seed = int(tc.get("seed", 0) or 0)
        self.device = str(tc.get("device") or "cpu")
        self.batch_size = int(tc.get("batch_size", 32))
        self._resuming = _resuming

        # --- where the run lives ------------------------------------------------------
        if run_dir is None:
            out = self.spec.get("output") or {}
            base = Path(out.get("dir") or "runs") / str(out.get("name") or "run")
            run_dir = base if (_resuming or self.dry_run is not None) else runs.unique_run_dir(base)
        self.run_dir = Path(run_dir)

        # --- fine-tuning: the base first (it may fix the architecture and vocabulary) ---
        ft = self.spec.get("finetune")
        self.finetune_spec = ft if ft else None
        self.base: Base | None = None
        base_vocab = _vocab  # resume / evaluate: the run's own vocabulary
        if self.finetune_spec:
            src = self.finetune_spec.get("from")
            if not src:
                raise TrainError("finetune.from: give the pretrained model (a run folder, a checkpoint or a "
                                 "PyTorch state_dict)")
            self.base = load_base(src)
            # an absolute path in the run's spec.yaml: resume/eval work from any folder
            self.spec["finetune"] = dict(self.finetune_spec, **{"from": os.path.abspath(str(src))})
            self.finetune_spec = self.spec["finetune"]
            base_vocab = self.base.vocab
            self.spec["model"] = effective_model_spec(self.spec, self.base)

        # --- data ----------------------------------------------------------------------
        self.data = build.build_data(self.spec, vocab=base_vocab)
        self.task = self.data.task
        self.spec = fill_task_defaults(self.spec, self.task)
        self.info = ModelInfo.from_data(self.data)
        self.steps_per_epoch = int(self.data.num_train_batches(self.batch_size))
        if self.steps_per_epoch < 1:
            raise TrainError(f"data: the training split gives no batch of batch_size {self.batch_size}: "
                             "lower train.batch_size or give more data")
        self.tbptt = bool(tc.get("tbptt", False))
        if self.tbptt and not getattr(self.data, "streams", False):
            raise TrainError(f"train.tbptt: true needs a dataset whose batches continue each other (a character "
                             f"stream such as charlm/text); {self.data.name!r} gives independent sequences")
        steps, epochs = tc.get("steps"), tc.get("epochs")
        if steps is not None:
            self.total_steps = int(steps)
        else:
            self.total_steps = int(epochs if epochs is not None else 1) * self.steps_per_epoch
        if self.dry_run is not None:
            self.total_steps = min(self.total_steps, self.dry_run)

        # --- model (seeded: the same spec always starts from the same weights) ----------
        manual_seed(self.seed)
        self.model = build.build_model(self.spec.get("model") or {}, self.info)
        self.strategy = None
        self.finetune_report: dict[str, Any] | None = None
        if self.finetune_spec:
            self._setup_finetune()
        if bool(tc.get("track_grad_norms", False)) and hasattr(self.model.rnn, "track_grad_norms"):
            self.model.rnn.track_grad_norms = True
        self.model.to(self.device)
        if self.parallel is not None:
            self.parallel.agree(self.spec)  # every rank the same spec and code, or none starts
            self.parallel.broadcast_parameters(self.model)
        self.counts = build.count_parameters(self.model)

        # --- loss, optimizer, scheduler, metrics ----------------------------------------
        self.loss_fn = build.build_loss(self.spec.get("loss"), self.task)
        self.ignore_index = build.loss_ignore_index(self.loss_fn)
        self.optimizer = build.build_optimizer(self.spec.get("optimizer") or {"name": "adam"},
                                               [{"params": self.trainable_parameters()}])
        self.scheduler = build.build_scheduler(self.spec.get("scheduler"), self.optimizer, self.total_steps)
        self._plateau = build.is_plateau(self.scheduler)
        self.metrics = build.build_metrics(tc.get("metrics") or [], self.task)

        # --- what "best" means; early stopping --------------------------------------------
        es = tc.get("early_stopping")
        self.monitor = str(_get(es, "monitor", None) or "val_loss")
        self.has_val = int(self.data.num_val_batches(self.batch_size)) > 0
        if not self.has_val and self.monitor.startswith("val_"):
            if es:
                raise TrainError(f"train.early_stopping.monitor: {self.monitor!r} needs a validation split, and "
                                 f"this data has none at batch_size {self.batch_size}: monitor train_loss, or give "
                                 "the dataset a validation split")
            self.monitor = "train_loss"  # best-k checkpoints by the training loss, then
        self._check_monitor()
        self.mode = _get(es, "mode", None) or self._natural_mode(self.monitor)
        self.early_stopping = EarlyStopping(self.monitor, self.mode, _get(es, "patience", 5),
                                            _get(es, "min_delta", 0.0), _get(es, "divergence_threshold")) if es else None
        self.keep_best = int(tc.get("keep_best", 1) if tc.get("keep_best") is not None else 1)
        self.eval_every = tc.get("eval_every")
        self.checkpoint_every = tc.get("checkpoint_every")
        self.log_every = max(int(tc.get("log_every") or 10), 1)
        self.clip_norm = tc.get("clip_grad_norm")
        self.clip_value = tc.get("clip_grad_value")

        # --- progress --------------------------------------------------------------------
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.hidden: Any = None
        self.best: list[dict[str, Any]] = []  # the kept best checkpoints, best first
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, Any] | None = None
        self.status = "new"
        self.stop_reason: str | None = None
        self._stop_request: tuple[str, str] | None = None
        self._log_window: list[float] = []
        self._eval_window: list[float] = []
        self._items_window = 0
        self._time_window = 0.0
        self.elapsed = 0.0
        self._last_eval_step = -1
        self._last_saved_step = -1
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ construction helpers

    #: What ``resume`` may change: how long to go on and how often to look, never what
    #: is trained or how (that would not be the same run any more).
    RESUME_OVERRIDABLE = ("train.steps", "train.epochs", "train.eval_every", "train.checkpoint_every",
                          "train.log_every", "train.keep_best", "train.track_grad_norms", "train.early_stopping")

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, callbacks: Iterable[Any] = (),
               overrides: Iterable[str] = (), parallel: Any = None) -> "Trainer":
        """A trainer for the run in ``run_dir``, at its last checkpoint; ``fit()`` continues
        it exactly where it stopped. ``overrides`` (``train.steps=2000``) may extend the run
        or change its cadences (see :attr:`RESUME_OVERRIDABLE`); the run's spec.yaml is
        updated to match."""
        run_dir = runs.check_run_dir(run_dir)
        spec = runs.read_spec(run_dir)
        overrides = list(overrides)
        if overrides:
            spec = _resume_overrides(spec, overrides, cls.RESUME_OVERRIDABLE)
        ckpt_path = run_dir / runs.CKPT_DIR / runs.LAST
        if not ckpt_path.is_file():
            raise TrainError(f"{run_dir} has no checkpoint to resume from ({runs.CKPT_DIR}/{runs.LAST} is missing)")
        vocab_path = run_dir / runs.VOCAB_FILE
        vocab = runs.read_json(vocab_path) if vocab_path.is_file() else None  # even if the data changed since
        trainer = cls(spec, run_dir, callbacks, _resuming=True, _vocab=vocab, parallel=parallel)
        trainer.load_checkpoint(ckpt_path)
        if overrides and trainer._writer:
            runs.write_spec(run_dir / runs.SPEC_FILE, trainer.spec)
        return trainer

    def _setup_finetune(self) -> None:
        assert self.base is not None
        self.strategy, self.strategy_name, self.finetune_report = prepare(self.model, self.finetune_spec, self.base)

    def _check_monitor(self) -> None:
        allowed = ["val_loss", "train_loss"] + [f"val_{build.metric_key(m, '?')}" for m in self.metrics]
        if self.monitor not in allowed:
            raise TrainError(f"train.early_stopping.monitor: {self.monitor!r} is not computed by this run; "
                             f"choose one of {', '.join(allowed)} (add metrics with train.metrics)")

    def _natural_mode(self, monitor: str) -> str:
        """"min" for losses; a metric's own direction (accuracy: "max")."""
        for m in self.metrics:
            if f"val_{build.metric_key(m, '?')}" == monitor:
                return "max" if getattr(m, "higher_is_better", True) else "min"
        return "min"

    def trainable_parameters(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ control

    def request_stop(self, reason: str = "stop requested", status: str = "stopped") -> None:
        """Ask the run to stop after the current step (it saves a checkpoint first)."""
        if self._stop_request is None:
            self._stop_request = (status, reason)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ one step

    def _tensor(self, array: np.ndarray) -> Tensor:
        return make_tensor(array, device=self.device)

    def _forward(self, batch: Any, state: Any = None) -> tuple[Tensor, Any]:
        x = self._tensor(batch.x)
        lengths = batch.lengths if self.task != "lm" or not getattr(self.data, "streams", False) else None
        if lengths is not None:
            return self.model(x, state, lengths=lengths)
        return self.model(x, state)

    def _loss(self, out: Tensor, y: np.ndarray) -> Tensor:
        target = self._tensor(y)
        if out.ndim == 3:  # per-step predictions: (B, T, V) against (B, T)
            return self.loss_fn(out.reshape(-1, out.shape[-1]), target.reshape(-1))
        return self.loss_fn(out, target)

    def _count(self, y: np.ndarray) -> int:
        """How many targets the mean loss is over (the ignored ones not)."""
        if self.task == "regression":
            return int(y.size)
        if self.ignore_index is not None:
            return int((y != self.ignore_index).sum())
        return int(y.size)

    def _items(self, batch: Any) -> int:
        if self.task == "lm":
            return int(batch.x.shape[0] * batch.x.shape[1])
        return int(batch.x.shape[0])

    def _train_step(self, batch: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.model.train()
        state = self.hidden if self.tbptt else None
        out, new_state = self._forward(batch, state)
        loss = self._loss(out, batch.y)
        if self.strategy is not None and hasattr(self.strategy, "penalty"):
            extra = self.strategy.penalty(self.model)
            if extra is not None:
                loss = loss + extra
        value = float(loss.item())
        items = self._items(batch)
        count = None
        if self.parallel is not None:
            # one decision for every rank: the global loss and count, before backward
            count = self._count(batch.y)
            value, _ = self.parallel.reduce_step(value, count)
            items = self.parallel.global_items(items)
        info: dict[str, Any] = {"step": self.step + 1, "epoch": self.epoch, "batch": self.batch_in_epoch,
                                "loss": value, "lr": self.lr, "items": items}
        if not math.isfinite(value):
            info["nonfinite"] = f"the loss is {value}"
            return info
        params = self.trainable_parameters()
        if count != 0:  # a rank whose rows score nothing contributes zeros
            loss.backward()
        if self.parallel is not None:
            self.parallel.all_reduce_gradients(params)
        norm = _grad_norm(params)
        info["grad_norm"] = norm
        if not math.isfinite(norm):
            info["nonfinite"] = f"the gradient norm is {norm} (loss {value:.6g})"
            self.optimizer.zero_grad()
            return info
        if getattr(self.model.rnn, "track_grad_norms", False):
            norms = self.model.rnn.last_grad_norms
            if norms is not None:
                info["grad_norms"] = norms[-1] if not self.model.rnn.bidirectional else norms[-2]
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
            self.hidden = _detach_state(new_state)
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
        return evaluate_model(self.model, self.data, self.loss_fn, self.metrics, self.batch_size, self.device,
                              self.tbptt, self.ignore_index, self.task, parallel=self.parallel)

    def _evaluate(self) -> dict[str, Any]:
        results: dict[str, Any] = {"event": "eval", "step": self.step, "epoch": self.epoch}
        if self._eval_window:
            results["train_loss"] = float(np.mean(self._eval_window))
            self._eval_window = []
        results.update(self.validate())
        results["lr"] = self.lr
        self._last_eval_step = self.step
        self.last_eval = results
        self.history.append(results)
        if self._plateau and self.monitor in results:
            self.scheduler.step(results[self.monitor])
        self._append_metrics(results)
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
            "hidden": self._whole_hidden() if self.tbptt else None,
            "best": [dict(b) for b in self.best],
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping else None,
            "last_eval": {k: v for k, v in (self.last_eval or {}).items() if isinstance(v, (int, float, str))},
            "model_info": dict(self.info),
        }
        if self.strategy is not None:
            # Only what changed: the strategy's delta, plus any other trainable parameter
            # (a new head) it does not list, plus a reference to the base.
            delta = dict(self.strategy.delta_state_dict(self.model))
            own = self.model.state_dict()
            extra = {n: own[n] for n in state["trainable"] if n not in delta and n in own}
            state["finetune"] = {"delta": delta, "extra": extra, "base": self.finetune_report["base"],
                                 "strategy": self.strategy_name,
                                 "strategy_state": self.strategy.state_dict() if hasattr(self.strategy, "state_dict") else None}
        else:
            state["model"] = self.model.state_dict()
        return state

    def _whole_hidden(self) -> Any:
        """The carried state of every stream (ranks hold their rows of it: gathered)."""
        arrays = _state_to_arrays(self.hidden)
        return arrays if self.parallel is None else self.parallel.gather_state(arrays)

    def _ckpt_dir(self) -> Path:
        return self.run_dir / runs.CKPT_DIR

    def _save(self, path: Path, state: dict[str, Any], kind: str) -> None:
        if not self._writer:
            return
        mg_save(state, path)
        self.callbacks.on_checkpoint(self, str(path), kind)

    def save_checkpoint(self, best_score: float | None = None) -> Path:
        """Write ``last`` (and a best-k file when ``best_score`` ranks); update the index."""
        state = self._checkpoint_state()
        last = self._ckpt_dir() / runs.LAST
        if best_score is not None and self.keep_best > 0 and math.isfinite(best_score):
            ranked = self._rank(best_score)
            if ranked:
                name = f"best-step{self.step:08d}.safetensors"
                entry = {"file": name, "step": self.step, "epoch": self.epoch, "monitor": self.monitor,
                         "score": float(best_score)}
                new_best = sorted(self.best + [entry], key=self._sort_key)
                dropped = new_best[self.keep_best:]
                self.best = new_best[: self.keep_best]
                state["best"] = [dict(b) for b in self.best]
                self._save(self._ckpt_dir() / name, state, "best")
                for d in dropped if self._writer else ():
                    if d["file"] != name:
                        try:
                            (self._ckpt_dir() / d["file"]).unlink()
                        except FileNotFoundError:
                            pass
                if self.strategy is not None and self.best and self.best[0]["file"] == name and self._writer:
                    self._write_adapter(state)
        self._save(last, state, "last")
        self._last_saved_step = self.step
        if not self._writer:
            return last
        runs.write_json(self._ckpt_dir() / runs.INDEX_FILE, {
            "last": {"file": runs.LAST, "step": self.step, "epoch": self.epoch},
            "best": self.best, "monitor": self.monitor, "mode": self.mode,
        })
        return last

    def _sort_key(self, entry: dict[str, Any]) -> tuple:
        score = entry["score"]
        return (score if self.mode == "min" else -score, entry["step"])

    def _rank(self, score: float) -> bool:
        if len(self.best) < self.keep_best:
            return True
        worst = self.best[-1]["score"]
        return score < worst if self.mode == "min" else score > worst

    def _write_adapter(self, state: dict[str, Any]) -> None:
        """The fine-tune result on its own: only what changed, plus what it applies to."""
        ft = state["finetune"]
        mg_save({"format": "microgradnn.adapter", "version": 1, "base": ft["base"], "strategy": ft["strategy"],
                 "strategy_spec": self.finetune_spec.get("strategy"), "head": self.finetune_spec.get("head"),
                 "delta": ft["delta"], "extra": ft["extra"], "model_info": dict(self.info),
                 "step": self.step}, self.run_dir / runs.ADAPTER_FILE)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (see the module docstring)."""
        from ..checkpoint import CheckpointError

        try:
            state = mg_load(path, device=self.device if self.device != "cpu" else None)
        except CheckpointError as exc:
            raise TrainError(str(exc)) from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise TrainError(f"{path} is not a run checkpoint written by mgnn train")
        restore_weights(self.model, state, self.strategy)
        trainable = set(state.get("trainable") or [])
        if trainable:
            for n, p in self.model.named_parameters():
                p.requires_grad_(n in trainable)
        # Rebuild the optimizer over the same parameters, in the same groups, then load it.
        params = dict(self.model.named_parameters())
        groups = [{"params": [params[n] for n in names]} for names in state["param_groups"]]
        self.optimizer = build.build_optimizer(self.spec.get("optimizer") or {"name": "adam"}, groups[:1])
        for g in groups[1:]:
            self.optimizer.add_param_group(g)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler = build.build_scheduler(self.spec.get("scheduler"), self.optimizer, self.total_steps)
            if state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        prog = state["progress"]
        self.step, self.epoch, self.batch_in_epoch = int(prog["step"]), int(prog["epoch"]), int(prog["batch"])
        self.elapsed = float(prog.get("elapsed", 0.0))
        hidden = state.get("hidden") if self.tbptt else None
        if self.parallel is not None:  # this rank's rows, whatever the number of ranks that wrote it
            hidden = self.parallel.state_rows(hidden)
            self.parallel.broadcast_parameters(self.model)
        self.hidden = _state_from_arrays(hidden, self.device) if self.tbptt else None
        self.best = [dict(b) for b in state.get("best") or []]
        if self.early_stopping is not None and state.get("early_stopping"):
            self.early_stopping.load_state_dict(state["early_stopping"])
        self.last_eval = dict(state.get("last_eval") or {}) or None
        self._last_eval_step = int(self.last_eval["step"]) if self.last_eval and "step" in self.last_eval else -1
        self._last_saved_step = self.step
        set_rng_state(state["rng"])
        self.status = "resumed"
        self._truncate_metrics()

    # ------------------------------------------------------------------ files

    def _metrics_path(self) -> Path:
        return self.run_dir / runs.METRICS_FILE

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self.dry_run is not None or not self._writer:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        with open(self._metrics_path(), "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")

    def _truncate_metrics(self) -> None:
        """On resume: drop records written after the checkpoint (they will be written again)."""
        path = self._metrics_path()
        if not path.is_file() or not self._writer:
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") in ("end",):
                continue
            if int(rec.get("step", 0)) <= self.step:
                keep.append(line)
        atomic_write(path, "".join(k + "\n" for k in keep))

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._ckpt_dir().mkdir(exist_ok=True)
        runs.write_spec(self.run_dir / runs.SPEC_FILE, self.spec)
        vocab = getattr(self.data, "vocab", None)
        if vocab is not None:
            if hasattr(vocab, "save"):
                vocab.save(self.run_dir / runs.VOCAB_FILE)
            else:
                runs.write_json(self.run_dir / runs.VOCAB_FILE, {"kind": "char", "itos": list(vocab.itos)})
        self._write_run_json("running")

    def _write_run_json(self, status: str) -> None:
        from .. import __version__

        if not self._writer:
            return
        info = {
            "format": "microgradnn.run", "version": 1, "microgradnn": __version__, "status": status,
            "model_info": dict(self.info), "parameters": self.counts, "data": self.data.describe(),
            "step": self.step, "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "finetune": self.finetune_report,
            "processes": 1 if self.parallel is None else self.parallel.world_size,
        }
        if self.stop_reason:
            info["reason"] = self.stop_reason
        runs.write_json(self.run_dir / runs.RUN_FILE, json.loads(json.dumps(info, default=str)))

    # ------------------------------------------------------------------ the loop

    def fit(self, handle_sigint: bool = False) -> dict[str, Any]:
        """Train until the step/epoch budget is spent, early stopping fires, the loss goes
        NaN, or a stop is requested. Returns (and stores in ``summary``) a dict with
        ``status`` ("completed", "early_stopped", "diverged", "nan", "stopped",
        "interrupted", "dry_run"), ``reason``, ``step``, ``epoch``, ``best``, ``last_eval``.

        ``handle_sigint``: Ctrl-C asks the run to stop after the current step and save a
        checkpoint (a second Ctrl-C interrupts at once)."""
        writing = self.dry_run is None
        if writing and self._writer:
            if not self._resuming:
                if (self._ckpt_dir() / runs.LAST).exists():
                    raise TrainError(f"{self.run_dir} already holds a run: continue it with `mgnn resume "
                                     f"{self.run_dir}`, or choose another output.name")
                self._write_run_files()
            else:
                self._write_run_json("running")
        previous = None
        if handle_sigint and threading.current_thread() is threading.main_thread():
            def on_sigint(signum: int, frame: Any) -> None:
                if self._stop_request is not None and self._stop_request[0] == "interrupted":
                    raise KeyboardInterrupt
                self.request_stop("interrupted (Ctrl-C)", "interrupted")
            previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            return self._fit(writing)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _fit(self, writing: bool) -> dict[str, Any]:
        self.callbacks.on_start(self)
        started = time.perf_counter()
        elapsed0 = self.elapsed
        status, reason = "completed", None
        eval_every = int(self.eval_every) if self.eval_every else None
        ckpt_every = int(self.checkpoint_every) if self.checkpoint_every else None
        while self.step < self.total_steps and status == "completed":
            batches = self.data.train_batches(self.batch_size, epoch=self.epoch, seed=self.seed,
                                              start=self.batch_in_epoch)
            if self.parallel is not None:
                batches = self.parallel.shard(batches)  # this rank's rows of each global batch
            for batch in batches:
                info = self._train_step(batch)
                if "nonfinite" in info:
                    status = "nan"
                    kept = (f"the last good checkpoint (step {self._last_saved_step}) is kept in "
                            f"{self._ckpt_dir() / runs.LAST}") if writing and self._last_saved_step >= 0 else \
                        "no checkpoint had been written yet"
                    reason = (f"stopped at step {info['step']}: {info['nonfinite']}; {kept}. Try a lower "
                              f"optimizer.lr or train.clip_grad_norm")
                    self.callbacks.on_step(self, info)
                    break
                self.step += 1
                self.batch_in_epoch += 1
                self._log_window.append(info["loss"])
                self._eval_window.append(info["loss"])
                self._items_window += info["items"]
                self._time_window += info.get("seconds", 0.0)
                self.elapsed = elapsed0 + time.perf_counter() - started
                info["elapsed"] = self.elapsed
                self.callbacks.on_step(self, info)
                if self.step % self.log_every == 0:
                    self._log_train(info)
                end_of_epoch = self.batch_in_epoch >= self.steps_per_epoch
                if end_of_epoch:  # the position to resume from is the next epoch's start
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self.hidden = None  # each epoch starts the streams at new offsets
                last_step = self.step >= self.total_steps
                do_eval = (eval_every is not None and self.step % eval_every == 0) or \
                          (eval_every is None and end_of_epoch) or last_step
                if self.dry_run is not None:
                    do_eval = False
                if do_eval:
                    results = self._evaluate()
                    score = results.get(self.monitor)
                    if writing:
                        self.save_checkpoint(score if isinstance(score, float) else None)
                    if self.early_stopping is not None and isinstance(score, float):
                        why = self.early_stopping.update(score)
                        if why is not None:
                            diverged = "divergence" in why or not math.isfinite(score)
                            status, reason = ("diverged" if diverged else "early_stopped"), why
                            break
                elif writing and ckpt_every is not None and self.step % ckpt_every == 0:
                    self.save_checkpoint()
                if self.parallel is not None:  # a stop asked on any rank stops every rank here
                    if self.parallel.any_rank(self._stop_request is not None) and self._stop_request is None:
                        self.request_stop("stop requested on another rank")
                if self._stop_request is not None:
                    status, reason = self._stop_request
                    if writing and self._last_saved_step != self.step:
                        self.save_checkpoint()
                    break
                if last_step or end_of_epoch:
                    break
            else:
                # the iterator ran dry before steps_per_epoch (a dataset that gives fewer
                # batches than it announced): move on to the next epoch all the same
                if self.batch_in_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self.hidden = None
        if self.dry_run is not None and status == "completed":
            status = "dry_run"
        self.status, self.stop_reason = status, reason
        self.elapsed = elapsed0 + time.perf_counter() - started
        return self._finish(writing)

    def _log_train(self, info: dict[str, Any]) -> None:
        record = {"event": "train", "step": self.step, "epoch": self.epoch, "loss": float(np.mean(self._log_window)),
                  "lr": info["lr"], "grad_norm": info.get("grad_norm"),
                  "throughput": self._items_window / self._time_window if self._time_window > 0 else None,
                  "elapsed": self.elapsed}
        self._append_metrics(record)
        self._log_window, self._items_window, self._time_window = [], 0, 0.0

    def _finish(self, writing: bool) -> dict[str, Any]:
        if self.strategy is not None and self.finetune_report is not None and hasattr(self.strategy, "report"):
            # What the strategy reports beyond the counts, as trained (AdaLoRA: the final
            # rank of every adapted weight, after its budget was reallocated).
            extra = self.strategy.report(self.model)
            self.finetune_report.update({k: v for k, v in extra.items()
                                         if k not in ("strategy", "options", "trainable", "total", "share")})
        summary = {
            "status": self.status, "reason": self.stop_reason, "step": self.step, "epoch": self.epoch,
            "total_steps": self.total_steps, "elapsed": self.elapsed, "run_dir": None if not writing else str(self.run_dir),
            "best": [dict(b) for b in self.best], "last_eval": dict(self.last_eval or {}),
            "parameters": self.counts, "finetune": self.finetune_report, "monitor": self.monitor,
        }
        if writing:
            self._append_metrics({"event": "end", "step": self.step, "epoch": self.epoch, "status": self.status,
                                  "reason": self.stop_reason, "elapsed": self.elapsed})
            self._write_run_json(self.status)
        self.summary = summary
        self.callbacks.on_end(self, summary)
        return summary


def _resume_overrides(spec: dict[str, Any], overrides: list[str], allowed: tuple[str, ...]) -> dict[str, Any]:
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
    resolved = resolve_spec(apply_overrides(spec, overrides), name=(spec.get("output") or {}).get("name"))
    for section in ("model", "data", "loss", "finetune"):  # exactly as the run had them
        resolved[section] = spec.get(section)
    return resolved


def restore_weights(model: Any, state: dict[str, Any], strategy: Any) -> None:
    """Put a checkpoint's weights into ``model``: the full state dict, or (fine-tune runs)
    the strategy's delta plus the extra trainable parameters on top of the loaded base."""
    if state.get("finetune") is not None:
        ft = state["finetune"]
        if strategy is None:
            raise TrainError("this checkpoint holds a fine-tune delta but the run has no finetune section")
        strategy.load_delta(model, ft["delta"])
        if ft.get("extra"):
            model.load_state_dict(ft["extra"], strict=False)
        if ft.get("strategy_state") is not None and hasattr(strategy, "load_state_dict"):
            strategy.load_state_dict(ft["strategy_state"])
    else:
        model.load_state_dict(state["model"])


# ----------------------------------------------------------------------------- evaluation


def evaluate_model(model: Any, data: Any, loss_fn: Any, metrics: list, batch_size: int, device: str,
                   carry_state: bool, ignore_index: int | None, task: str,
                   segments: list[Iterable[Any]] | None = None, parallel: Any = None) -> dict[str, Any]:
    """Mean loss over every scored target, and each metric, over ``segments`` (lists of
    batches; default: the validation split). With ``carry_state`` the hidden state flows
    from batch to batch within a segment (a stream read in order), fresh at each segment.
    Keys: ``val_loss``, ``val_<metric>``, ``val_items``."""
    if segments is None:
        if not data.num_val_batches(batch_size):
            return {}
        segments = [data.val_batches(batch_size)]
    for m in metrics:
        m.reset()
    was_training = model.training
    model.eval()
    loss_sum, count, n_batches = 0.0, 0, 0
    streams = getattr(data, "streams", False)
    batches = ((i, b) for i, seg in enumerate(segments) for b in seg)
    segment, state = 0, None
    try:
        with no_grad():
            for i, batch in batches:
                if i != segment:
                    segment, state = i, None
                whole = batch
                if parallel is not None:  # this rank runs its rows; the outputs are gathered below
                    batch = parallel.shard_eval(batch)
                x = make_tensor(batch.x, device=device)
                lengths = batch.lengths if task != "lm" or not streams else None
                if lengths is not None:
                    out, new_state = model(x, state if carry_state else None, lengths=lengths)
                else:
                    out, new_state = model(x, state if carry_state else None)
                if carry_state:
                    state = new_state
                if parallel is not None:  # every rank scores the whole batch, as one process
                    out = make_tensor(parallel.gather_rows(_host(out)), device=device)
                    batch = whole
                y = batch.y
                target = make_tensor(y, device=device)
                if out.ndim == 3:
                    loss = loss_fn(out.reshape(-1, out.shape[-1]), target.reshape(-1))
                else:
                    loss = loss_fn(out, target)
                if task == "regression":
                    c = int(y.size)
                elif ignore_index is not None:
                    c = int((y != ignore_index).sum())
                else:
                    c = int(y.size)
                value = float(loss.item())
                if c == 0:
                    continue
                batch_sum = value * c
                loss_sum += batch_sum
                count += c
                n_batches += 1
                out_np = _host(out)
                for m in metrics:
                    m.update(out_np, y, batch_sum, c)
    finally:
        model.train(was_training)
    if not count:
        return {}
    results: dict[str, Any] = {"val_loss": loss_sum / count}
    for m in metrics:
        results[f"val_{build.metric_key(m, type(m).__name__.lower())}"] = float(m.compute())
    results["val_items"] = count
    return results
