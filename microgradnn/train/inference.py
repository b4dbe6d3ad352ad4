"""Using a finished (or stopped) run: ``evaluate``, ``generate``, ``export``.

All three rebuild the model from the run folder alone: ``spec.yaml`` (the architecture),
``run.json`` / the checkpoint's ``model_info`` (task and sizes), ``vocab.json`` and the
best checkpoint (or ``last`` when no evaluation ranked one). A fine-tune run's checkpoint
holds only what changed, so its base is loaded first and the strategy applied on top.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry, runfolder
from ..autograd import no_grad
from ..backend import to_host
from ..spec import Component, ResolvedSpec
from ..tasks import get_task
from ..tensor import manual_seed
from ..tensor import tensor as make_tensor
from . import build, runs
from .checkpoints import CheckpointFallbackWarning, read_checkpoint, read_run_checkpoint, restore_weights
from .errors import TrainError
from .finetune_hook import load_base, prepare
from .step import Step, evaluate_batches

__all__ = ["load_run", "evaluate", "generate", "export", "LoadedRun", "translate", "forecast_report", "run_task", "CheckpointFallbackWarning"]


class LoadedRun:
    """A run's model (weights loaded, in eval mode) with its spec, vocabulary and facts."""

    def __init__(self, run_dir: Path, spec: dict[str, Any], model: Any, info: dict[str, Any], vocab: Any,
                 checkpoint: Path, step: int, strategy: Any = None) -> None:
        self.run_dir, self.spec, self.model, self.info = run_dir, spec, model, info
        self.vocab, self.checkpoint, self.step, self.strategy = vocab, checkpoint, step, strategy

    @property
    def task(self) -> str:
        return self.info["task"]


def _as_recorded(fn: Any) -> Any:
    """``fn(run_dir, ...)`` with the run's components resolved from the distributions its
    run.json recorded (:func:`~microgradnn.train.runs.recorded_components`): a plugin
    installed since can't take over one of its names, and one removed since is one line."""

    @functools.wraps(fn)
    def wrapper(run_dir: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        with registry.pinned(runs.recorded_components(runs.check_run_dir(run_dir))):
            return fn(run_dir, *args, **kwargs)

    return wrapper


def _vocab_object(d: Any) -> Any:
    if d is None:
        return None
    if isinstance(d, dict) and d.get("kind") == "seq2seq":  # a translation run: both vocabularies
        from ..data.seq2seq import PairVocab

        return PairVocab.from_dict(d)
    from ..data.vocab import Vocab

    return Vocab.from_dict(d)


def _stored_normalizer(run_dir: Path) -> Any:
    """A forecast run's normaliser, as fitted on its training steps and stored in run.json."""
    return (runs.read_json(run_dir / runs.RUN_FILE).get("data") or {}).get("normalizer")


@_as_recorded
def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str = "cpu") -> LoadedRun:
    """The model of a run folder, from its best (default) or last checkpoint, or a file."""
    run_dir = runs.check_run_dir(run_dir)
    spec = ResolvedSpec.from_mapping(runs.read_spec(run_dir))
    if checkpoint in runfolder.WHICH:  # damaged? the previous verified one, said out loud
        state, path, note = read_run_checkpoint(run_dir, checkpoint)
        if note is not None:
            warnings.warn(note, CheckpointFallbackWarning, stacklevel=2)
    else:
        path = runs.find_checkpoint(run_dir, checkpoint)
        state = read_checkpoint(path)
    info = dict(state.get("model_info") or {})
    if not info:
        info = dict(runs.read_json(run_dir / runs.RUN_FILE).get("model_info") or {})
    manual_seed(spec.train.seed)
    model = build.build_model(spec.model, info)
    strategy = None
    ft = state.get("finetune")
    if ft is not None:
        if spec.finetune is None:
            raise TrainError(f"{path} holds a fine-tune delta but {run_dir}/{runs.SPEC_FILE} has no finetune section")
        ft_spec = spec.finetune.replace(from_=ft.get("base") or spec.finetune.from_)  # the base it recorded
        strategy, _, _ = prepare(model, ft_spec, load_base(ft_spec.from_))
    restore_weights(model, state, strategy)
    model.to(device)
    model.eval()
    vocab_path = run_dir / runs.VOCAB_FILE
    vocab = _vocab_object(runs.read_json(vocab_path)) if vocab_path.is_file() else None
    step = int((state.get("progress") or {}).get("step", 0))
    return LoadedRun(run_dir, spec, model, info, vocab, path, step, strategy)


# ----------------------------------------------------------------------------- evaluate


def _data_spec(spec: ResolvedSpec, data: Any, options: dict[str, Any] | None = None) -> Component:
    """The run's data component with ``data`` applied (a path replaces the dataset's
    ``paths``/``path`` option; a dict changes options), then ``options``."""
    name, opts = spec.data.name, spec.data.kwargs()
    if isinstance(data, dict):
        options = {**data, **(options or {})}
        data = None
    if options:
        if "name" in options:
            raise TrainError("--data: the dataset itself can't change (the model was trained on it); "
                             "change its options only")
        opts.update(options)
    if data is None:
        return Component.of({"name": name, **opts})
    path = os.fspath(data)
    if not os.path.exists(path):
        raise TrainError(f"--data: {path!r} does not exist")
    factory = registry.get("datasets", name)
    if "paths" in opts or build.accepts(factory, "paths"):
        opts["paths"] = path
        opts.pop("corpus", None)
    elif "path" in opts or build.accepts(factory, "path"):
        opts["path"] = path
    else:
        raise TrainError(f"--data: dataset {name!r} reads no files (it has no path option); "
                         "give dataset options instead, e.g. --data seed=7")
    return Component.of({"name": name, **opts})


@_as_recorded
def evaluate(run_dir: str | os.PathLike, data: Any = None, *, options: dict[str, Any] | None = None,
             split: str | None = None, checkpoint: str = "best", batch_size: int | None = None,
             device: str = "cpu") -> dict[str, Any]:
    """Loss (and perplexity for a language model, accuracy for a classifier, plus the
    run's ``train.metrics``) of a run's model.

    ``data``: None (the run's own validation split), a file/folder path (evaluated
    whole: train and validation splits of it), or a dict of dataset options to change;
    ``options``: dataset options to change as well (``{"seq_len": 256}``).
    ``split``: "val", "train" or "all" (default "val", or "all" when ``data`` is given).
    Returns plain keys: ``loss``, ``perplexity``/``accuracy``/..., ``items``, ``split``,
    ``checkpoint``, ``step``."""
    run = load_run(run_dir, checkpoint, device)
    data_spec = _data_spec(run.spec, data, options)
    split = split or ("all" if data is not None else "val")
    if split not in ("val", "train", "all"):
        raise TrainError(f"split must be 'val', 'train' or 'all', got {split!r}")
    if run.task == "forecast" and _stored_normalizer(run.run_dir) is not None:
        data_spec = Component.of({"name": data_spec.name, **data_spec.kwargs(),
                                  "normalizer": _stored_normalizer(run.run_dir)})
    dm = build.build_data(data_spec, vocab=run.vocab.to_dict() if run.vocab is not None else None)
    if dm.task != run.task or int(dm.output_size) != int(run.info["output_size"]):
        raise TrainError(f"the data ({dm.task}, output size {dm.output_size}) does not fit the model "
                         f"({run.task}, output size {run.info['output_size']})")
    tc = run.spec.train
    bs = int(batch_size or tc.batch_size)
    segments = []
    if split in ("train", "all"):
        segments.append(dm.train_batches(bs, epoch=0, seed=tc.seed))
    if split in ("val", "all"):
        if not dm.num_val_batches(bs) and split == "val":
            raise TrainError("this data has no validation split: evaluate with split='train' or 'all' "
                             "(mgnn eval --split all)")
        segments.append(dm.val_batches(bs))
    loss_fn = build.build_loss(run.spec.loss, dm.task)
    metrics = build.build_metrics(list(tc.metrics), dm.task)
    streams = bool(getattr(dm, "streams", False))
    step = Step(run.model, loss_fn, get_task(dm.task), device, streams, build.loss_ignore_index(loss_fn))
    raw = evaluate_batches(step, segments, metrics, carry_state=tc.tbptt and streams)
    if not raw:
        raise TrainError("no batch to evaluate (the split is empty at this batch size)")
    out: dict[str, Any] = {k[len("val_"):]: v for k, v in raw.items()}
    out.update(_task_scores(run, dm, split, bs))
    out.update(split=split, checkpoint=str(run.checkpoint), step=run.step, task=dm.task)
    return out


def _task_scores(run: LoadedRun, dm: Any, split: str, batch_size: int) -> dict[str, Any]:
    """What a task scores beyond loss and metrics, on the validation split: BLEU, chrF and
    exact match of decoded translations; MAE/RMSE/MASE of forecasts, and the seasonal-naive
    baseline's, in the series' units."""
    if run.task not in ("seq2seq", "forecast") or split != "val" or getattr(dm, "val", None) is None:
        return {}
    m = run.spec.model
    if run.task == "seq2seq":
        from .seq2seq_task import evaluate as score

        return score(run.model, dm, batch_size, beam_size=m.beam_size, max_len=m.max_len, alpha=m.length_penalty)
    if run.task == "forecast":
        from .forecast_task import evaluate as score

        return score(run.model, dm, batch_size)
    return {}


# ----------------------------------------------------------------------------- seq2seq and forecast runs


@_as_recorded
def translate(run_dir: str | os.PathLike, sources: list[str], *, checkpoint: str = "best",
              beam_size: int | None = None, max_len: int | None = None, attention: bool = False) -> list[dict[str, Any]]:
    """Translations of ``sources`` by a seq2seq run (decoding options default to the
    spec's ``model.beam_size`` / ``max_len`` / ``length_penalty``); with ``attention``,
    each item also holds its (T, S) attention weights."""
    from .seq2seq_task import translate as run_translate

    run = load_run(run_dir, checkpoint)
    if run.task != "seq2seq":
        raise TrainError(f"--source needs a seq2seq (translation) run; {run.run_dir} is a {run.task} run")
    m = run.spec.model
    return run_translate(run.model, run.vocab.source, run.vocab.target, sources,
                         beam_size=beam_size or m.beam_size, max_len=max_len or m.max_len or 100,
                         alpha=m.length_penalty, attention=attention)


@_as_recorded
def forecast_report(run_dir: str | os.PathLike, png: str | os.PathLike | None = None, *,
                    checkpoint: str = "best") -> dict[str, Any]:
    """A forecast run's forecast of its last validation window beside the truth and the
    seasonal-naive forecast (a table: ``rows``), and, with ``png``, that picture."""
    from .forecast_task import forecast_rows, write_plot

    run = load_run(run_dir, checkpoint)
    if run.task != "forecast":
        raise TrainError(f"{run.run_dir} is a {run.task} run, not a forecast")
    options = {"normalizer": _stored_normalizer(run.run_dir)} if _stored_normalizer(run.run_dir) else {}
    dm = build.build_data(Component.of({"name": run.spec.data.name, **run.spec.data.kwargs(), **options}))
    if dm.val is None:
        raise TrainError(f"{run.run_dir}: the data has no validation steps to forecast (data.val_fraction is 0)")
    table = forecast_rows(run.model, dm)
    if png is not None:
        table["png"] = str(write_plot(table, dm, png))
    return table


def run_task(run_dir: str | os.PathLike) -> str:
    """The task of a run folder (from run.json), without loading its model."""
    run_dir = runs.check_run_dir(run_dir)
    return str((runs.read_json(run_dir / runs.RUN_FILE).get("model_info") or {}).get("task", "lm"))


# ----------------------------------------------------------------------------- generate


def _sample(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator,
            banned: list[int]) -> int:
    """One token id from the last step's logits: greedy at temperature 0, else softmax
    sampling of logits / temperature over the top_k most likely tokens."""
    logits = logits.astype(np.float64).copy()
    for b in banned:
        logits[b] = -np.inf
    if temperature <= 0:
        return int(np.argmax(logits))
    logits /= temperature
    if top_k is not None and 0 < top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits[logits < cutoff] = -np.inf
    logits -= logits.max()
    p = np.exp(logits)
    p /= p.sum()
    return int(rng.choice(p.size, p=p))


@_as_recorded
def generate(run_dir: str | os.PathLike, prompt: str = "\n", length: int = 200, temperature: float = 1.0,
             top_k: int | None = None, *, seed: int | None = 0, checkpoint: str = "best",
             device: str = "cpu", stream: Any = None) -> str:
    """Sample ``length`` characters from a language-model run, continuing ``prompt``.

    The prompt is read once (its final hidden state primes the model), then each new
    character is fed back in. ``temperature`` < 1 is more conservative, > 1 wilder, 0
    greedy; ``top_k`` samples only among the k likeliest. ``seed`` makes it repeatable
    (None: different each time). ``stream``: called with each new piece of text.
    Returns the generated text (without the prompt)."""
    if not isinstance(length, int) or length < 0:
        raise TrainError(f"length must be a non-negative int, got {length!r}")
    if temperature < 0:
        raise TrainError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise TrainError(f"top_k must be a positive int, got {top_k}")
    run = load_run(run_dir, checkpoint, device)
    if run.task != "lm":
        raise TrainError(f"generate needs a language-model run; {run.run_dir} is a {run.task} run "
                         "(use mgnn eval for it)")
    if run.vocab is None:
        raise TrainError(f"{run.run_dir} has no {runs.VOCAB_FILE}: can't turn text into ids")
    vocab = run.vocab
    if not prompt:
        prompt = "\n" if "\n" in vocab.stoi else vocab.itos[-1]
    unknown = sorted({c for c in prompt if c not in vocab.stoi})
    if unknown and getattr(vocab, "unk_id", None) is None:
        raise TrainError(f"the prompt has characters the model never saw: {''.join(unknown)!r}")
    ids = vocab.encode(prompt)
    banned = [i for i in (getattr(vocab, "pad_id", None), getattr(vocab, "unk_id", None)) if i is not None]
    if len(banned) >= len(vocab):
        banned = []
    rng = np.random.default_rng(seed)
    pieces = []
    model = run.model
    with no_grad():
        out, state = model(make_tensor(np.asarray([ids], dtype=np.int64), device=device))
        logits = np.asarray(to_host(out))[0, -1]
        # A prompt-tuned model prepends its learned vectors to every input; they belong
        # before the text once, not before each new character fed back with the state.
        prompt_param = model._parameters.get("prompt")
        model._parameters["prompt"] = None
        sampler = _step_sampler(run, state)
        try:
            for _ in range(length):
                nxt = _sample(logits, float(temperature), top_k, rng, banned)
                piece = vocab.decode([nxt])
                pieces.append(piece)
                if stream is not None:
                    stream(piece)
                if sampler is not None:  # one compiled step per token, no graph, no sequence call
                    logits = sampler.step(nxt)
                    continue
                out, state = model(make_tensor(np.asarray([[nxt]], dtype=np.int64), device=device), state)
                logits = np.asarray(to_host(out))[0, -1]
        finally:
            model._parameters["prompt"] = prompt_param
    return "".join(pieces)


def _step_sampler(run: LoadedRun, state: Any) -> Any:
    """A :class:`~microgradnn.nn.sampling.RecurrentSampler` continuing from ``state``, for
    the plain embedding -> RNN/LSTM/GRU -> head model; None for anything else (a plugin
    cell, or a fine-tune strategy that may change the forward), which then steps through
    the model's own forward."""
    from ..models import SequenceModel
    from ..nn.rnn import RNNBase
    from ..nn.sampling import RecurrentSampler

    model = run.model
    if (type(model) is not SequenceModel or run.strategy is not None or model.embedding is None
            or not isinstance(model.rnn, RNNBase) or model.rnn.bidirectional):
        return None
    sampler = RecurrentSampler(model.rnn, model.embedding, model.head)
    sampler.reset(state)
    return sampler


# ----------------------------------------------------------------------------- export


@_as_recorded
def export(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, checkpoint: str = "best") -> Path:
    """A standalone checkpoint of a run's model: for a fine-tune run the strategy's update
    is merged into plain weights (LoRA, IA3 ...; a strategy that can't be merged says so).
    The file (default ``RUN_DIR/export.safetensors``) holds ``model`` (a state_dict),
    ``model_spec``, ``model_info`` and ``vocab``: it can be a ``finetune.from`` itself."""
    run = load_run(run_dir, checkpoint)
    model = run.model
    if run.strategy is not None:
        try:
            model = run.strategy.merge(model)
        except ValueError as exc:  # FinetuneError: this strategy can't be folded
            raise TrainError(f"export: {exc}") from None
    path = Path(out) if out is not None else run.run_dir / runs.EXPORT_FILE
    if path.parent and not path.parent.exists():
        raise TrainError(f"export: folder {path.parent} does not exist")
    model_spec = run.spec.model.to_dict()
    if getattr(getattr(model, "rnn", None), "init_state", None) == "learned":
        model_spec["init_state"] = "learned"  # prefix tuning leaves learned initial states
    info = dict(run.info)
    info["task"] = getattr(model, "task", info["task"])
    info["output_size"] = int(getattr(model, "output_size", info["output_size"]))
    runs.save_file({"format": "microgradnn.export", "version": 1, "model": model.state_dict(), "model_spec": model_spec,
             "model_info": info, "vocab": run.vocab.to_dict() if run.vocab is not None else None,
             "source": str(run.checkpoint), "step": run.step}, path)
    return path
