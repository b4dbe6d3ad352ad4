"""The Trainer: run folder, exact resume, NaN stop, early stopping, tbptt, best-k, callbacks."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import registry
from microgradnn.nn import Recurrent
from microgradnn.train import BuildError, Callback, Trainer, TrainError, evaluate, generate
from microgradnn.train.parallel import SingleProcess

from ._util import assert_bit_identical, base_spec, charlm_data, weights, with_, write_corpus


@pytest.fixture()
def corpus(tmp_path):
    return write_corpus(tmp_path, chars=1400)


@pytest.fixture()
def lm_spec(tmp_path, corpus):
    return base_spec(tmp_path / "runs", charlm_data(corpus))


def records(run_dir, event=None):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    return [r for r in recs if event is None or r["event"] == event]


class StopAt(Callback):
    """Asks for a stop at one step, from ``on_step`` (before the step's vote on stopping)
    or ``on_step_end`` (after it)."""

    def __init__(self, step, hook="on_step"):
        self.step, self.hook = step, hook

    def _ask(self, trainer, info, hook):
        if hook == self.hook and info["step"] == self.step:
            trainer.request_stop(f"test stop at {self.step}")

    def on_step(self, trainer, info):
        self._ask(trainer, info, "on_step")

    def on_step_end(self, trainer, info):
        self._ask(trainer, info, "on_step_end")


class Recorder(Callback):
    def __init__(self):
        self.events = []
        self.infos = []

    def on_start(self, trainer):
        self.events.append("start")

    def on_step(self, trainer, info):
        self.events.append("step")
        self.infos.append(info)

    def on_eval(self, trainer, results):
        self.events.append("eval")

    def on_checkpoint(self, trainer, path, kind):
        self.events.append(f"ckpt:{kind}")

    def on_end(self, trainer, summary):
        self.events.append("end")


# ----------------------------------------------------------------------------- run folder


def test_fit_writes_the_run_folder(lm_spec):
    trainer = Trainer(with_(lm_spec, train__eval_every=6))
    summary = trainer.fit()
    run = trainer.run_dir
    assert summary["status"] == "completed" and summary["step"] == 12
    for name in ("spec.yaml", "run.json", "vocab.json", "metrics.jsonl", "checkpoints/last.safetensors",
                 "checkpoints/index.json"):
        assert (run / name).is_file(), name
    evals = records(run, "eval")
    assert [r["step"] for r in evals] == [6, 12]
    assert all(r["val_loss"] > 0 and r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"])) for r in evals)
    assert [r["step"] for r in records(run, "train")] == [5, 10]
    assert records(run)[-1]["event"] == "end"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["model_info"]["task"] == "lm"
    import yaml

    assert yaml.safe_load((run / "spec.yaml").read_text())["train"]["eval_every"] == 6
    # a second run of the same spec gets its own folder instead of overwriting this one
    second = Trainer(with_(lm_spec, train__steps=2))
    assert second.run_dir != run and second.run_dir.name == "run-2"


def test_explicit_run_dir_holding_a_run_is_refused(lm_spec, tmp_path):
    Trainer(with_(lm_spec, train__steps=2), run_dir=tmp_path / "r").fit()
    with pytest.raises(TrainError, match="already holds a run"):
        Trainer(with_(lm_spec, train__steps=2), run_dir=tmp_path / "r").fit()


def test_dry_run_writes_nothing(lm_spec, tmp_path):
    summary = Trainer(lm_spec, dry_run=3).fit()
    assert summary["status"] == "dry_run" and summary["step"] == 3
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- exact resume


def _resume_case(spec, stop_step, tmp_path):
    full = Trainer(spec, run_dir=tmp_path / "full")
    full.fit()
    stopped = Trainer(spec, run_dir=tmp_path / "stopped", callbacks=[StopAt(stop_step)])
    summary = stopped.fit()
    assert summary["status"] == "stopped" and summary["step"] == stop_step
    assert json.loads((tmp_path / "stopped" / "run.json").read_text())["status"] == "stopped"
    resumed = Trainer.resume(tmp_path / "stopped")
    assert resumed.step == stop_step
    summary = resumed.fit()
    assert summary["status"] == "completed" and summary["step"] == full.step
    assert_bit_identical(weights(full.model), weights(resumed.model))
    # optimizer moments too, and the evaluation history (metrics.jsonl holds each eval once)
    sa, sb = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for key, value in sa[i].items():
            assert np.array_equal(np.asarray(value), np.asarray(sb[i][key])), key
    ea = [(r["step"], r["val_loss"]) for r in records(tmp_path / "full", "eval")]
    eb = [(r["step"], r["val_loss"]) for r in records(tmp_path / "stopped", "eval")]
    assert ea == eb


@pytest.mark.parametrize("stop_step", [5, 16])
def test_stop_and_resume_is_bit_identical_lm(tmp_path, corpus, stop_step):
    """Dropout (RNG), truncated BPTT (carried state), cosine schedule, clipping, two epochs
    (stop 16 is exactly the epoch boundary: 1400 chars -> 14 batches of 4x12... per epoch)."""
    spec = base_spec(tmp_path / "runs", charlm_data(corpus), steps=None, epochs=2, eval_every=4, tbptt=True,
                     clip_grad_norm=0.5, keep_best=2)
    spec = with_(spec, model__num_layers=2, model__dropout=0.3, scheduler={"name": "cosine"})
    _resume_case(spec, stop_step, tmp_path)


def test_stop_and_resume_is_bit_identical_classification(tmp_path):
    data = {"name": "parity", "seq_len": 8, "min_len": 3, "train_size": 40, "val_size": 12, "seed": 1}
    spec = base_spec(tmp_path / "runs", data, steps=None, epochs=3, batch_size=8, eval_every=None)
    spec = with_(spec, model__cell="gru", model__bidirectional=True, model__num_layers=2, model__dropout=0.2,
                 optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9})
    _resume_case(spec, 7, tmp_path)


def test_resume_of_a_finished_run_does_nothing(lm_spec, tmp_path):
    t = Trainer(lm_spec, run_dir=tmp_path / "r")
    t.fit()
    before = weights(t.model)
    again = Trainer.resume(tmp_path / "r")
    assert again.fit()["step"] == 12
    assert_bit_identical(before, weights(again.model))


def test_resume_errors_are_clear(tmp_path):
    with pytest.raises(TrainError, match="does not exist"):
        Trainer.resume(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match="not a run folder"):
        Trainer.resume(tmp_path / "empty")


# ----------------------------------------------------------------------------- NaN / inf


class NaNAfter(mg.nn.Module):
    """A loss that turns NaN on its 5th call (a stand-in for a run that blows up)."""

    calls = 0

    def __init__(self, after: int = 4):
        super().__init__()
        self.after = after

    def forward(self, output, target):
        NaNAfter.calls += 1
        loss = mg.nn.functional.cross_entropy(output, target)
        return loss * float("nan") if NaNAfter.calls > self.after else loss


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(lm_spec):
    registry.register("losses", "test_nan_after", NaNAfter, replace=True)
    NaNAfter.calls = 0
    try:
        trainer = Trainer(with_(lm_spec, loss={"name": "test_nan_after", "after": 4}, train__checkpoint_every=2))
        summary = trainer.fit()
    finally:
        registry.unregister("losses", "test_nan_after")
    assert summary["status"] == "nan" and summary["step"] == 4
    assert "step 5" in summary["reason"] and "nan" in summary["reason"].lower()
    assert "step 4" in summary["reason"]  # the checkpoint that is kept
    state = mg.load(trainer.run_dir / "checkpoints" / "last.safetensors")
    assert state["progress"]["step"] == 4
    assert all(np.isfinite(v).all() for v in state["model"].values())
    assert_bit_identical(state["model"], weights(trainer.model))  # no update from the NaN step


# ----------------------------------------------------------------------------- early stopping


def test_early_stopping_patience(lm_spec):
    # lr 0: the validation loss never improves after the first evaluation
    spec = with_(lm_spec, optimizer={"name": "sgd", "lr": 0.0},
                 train__early_stopping={"monitor": "val_loss", "mode": "min", "patience": 2, "min_delta": 0.0,
                                        "divergence_threshold": None},
                 train__eval_every=2, train__steps=20)
    summary = Trainer(spec).fit()
    assert summary["status"] == "early_stopped" and summary["step"] == 6
    assert "patience 2" in summary["reason"]


def test_early_stopping_min_delta_and_monitor_mode(lm_spec):
    es = {"monitor": "val_perplexity", "mode": "min", "patience": 1, "min_delta": 1e9, "divergence_threshold": None}
    summary = Trainer(with_(lm_spec, train__early_stopping=es, train__eval_every=2)).fit()
    assert summary["status"] == "early_stopped" and summary["step"] == 4  # nothing beats best - 1e9


def test_divergence_threshold_stops_at_once(lm_spec):
    es = {"monitor": "val_loss", "mode": "min", "patience": 5, "min_delta": 0.0, "divergence_threshold": 0.5}
    summary = Trainer(with_(lm_spec, train__early_stopping=es, train__eval_every=3)).fit()
    assert summary["status"] == "diverged" and summary["step"] == 3
    assert "divergence threshold" in summary["reason"]


def test_unknown_monitor_is_a_clear_error(lm_spec):
    es = {"monitor": "val_acc", "mode": "max", "patience": 5, "min_delta": 0.0, "divergence_threshold": None}
    with pytest.raises(TrainError, match="val_acc.*val_loss.*val_perplexity"):
        Trainer(with_(lm_spec, train__early_stopping=es))


class _CtrlCJustAfterAVote(SingleProcess):
    """One process standing in for a rank of several: Ctrl-C lands just after the third
    step's vote on stopping, which said "go on" (as it would have on the other ranks)."""

    def __init__(self):
        self.votes = []

    def any_rank(self, flag):
        self.votes.append(flag)
        if len(self.votes) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before this returns
        return flag


def test_a_ctrl_c_after_the_vote_stops_the_run_at_the_next_vote(lm_spec):
    """A Ctrl-C is taken only where the processes vote on stopping: had this rank stopped
    at step 3 (the vote had said go on) it would have entered the stop's checkpoint while
    the others entered step 4's gradient reduction, and both waited for ever (a two-rank
    Ctrl-C hung that way in CI)."""
    seam = _CtrlCJustAfterAVote()
    trainer = Trainer(with_(lm_spec, train__steps=50), parallel=seam)
    before = signal.getsignal(signal.SIGINT)  # (SIG_IGN where the suite runs in the background)
    summary = trainer.fit(handle_sigint=True)
    assert seam.votes == [False, False, False, True]
    assert summary["status"] == "interrupted" and summary["step"] == 4
    index = json.loads((trainer.run_dir / "checkpoints" / "index.json").read_text())
    assert index["last"]["step"] == 4  # the stop's checkpoint
    assert signal.getsignal(signal.SIGINT) is before  # the handler put back


class _TwoVoters(SingleProcess):
    """A stand-in for one of two processes that records its votes on stopping."""

    world_size = 2

    def __init__(self):
        self.votes = []

    def any_rank(self, flag):
        self.votes.append(flag)
        return flag


def test_a_stop_asked_after_the_vote_on_one_of_several_processes_waits_for_the_next_vote(lm_spec):
    """A callback's stop in on_step_end comes after the step's vote: one of several
    processes stopping there alone would leave the others in the next step's collectives,
    so it is taken at the next vote (every process then stops at the same step)."""
    seam = _TwoVoters()
    summary = Trainer(with_(lm_spec, train__steps=50), callbacks=[StopAt(3, "on_step_end")], parallel=seam).fit()
    assert seam.votes == [False, False, False, True]
    assert summary["status"] == "stopped" and summary["step"] == 4
    assert summary["reason"] == "test stop at 3"


def test_a_stop_asked_in_on_step_end_alone_stops_at_that_step(lm_spec):
    summary = Trainer(with_(lm_spec, train__steps=50), callbacks=[StopAt(3, "on_step_end")]).fit()
    assert summary["status"] == "stopped" and summary["step"] == 3


# ----------------------------------------------------------------------------- tbptt


class StateSpy:
    """Wraps model.forward to record the state each training forward receives and returns."""

    def __init__(self, model):
        self.calls = []
        self.forward = model.forward
        model.forward = self

    def __call__(self, x, state=None, **kw):
        out, new = self.forward(x, state, **kw)
        if mg.is_grad_enabled():  # training steps only (evaluation runs under no_grad)
            self.calls.append((state, new))
        return out, new


def test_tbptt_carries_the_detached_state_across_batches(lm_spec):
    trainer = Trainer(with_(lm_spec, train__tbptt=True, train__steps=None, train__epochs=2))
    spy = StateSpy(trainer.model)
    trainer.fit()
    per_epoch = trainer.steps_per_epoch
    assert len(spy.calls) == 2 * per_epoch
    for k, (state_in, _) in enumerate(spy.calls):
        if k % per_epoch == 0:
            assert state_in is None  # each epoch starts its streams afresh
            continue
        prev_out = spy.calls[k - 1][1]
        for a, b in zip(state_in, prev_out):  # (h, c) of the LSTM
            assert not a.requires_grad  # detached: backward stops at the window boundary
            assert np.array_equal(a.numpy(), b.detach().numpy())


def test_without_tbptt_every_batch_starts_from_zero(lm_spec):
    trainer = Trainer(lm_spec)
    spy = StateSpy(trainer.model)
    trainer.fit()
    assert spy.calls and all(s is None for s, _ in spy.calls)


def test_tbptt_needs_a_streaming_dataset(tmp_path):
    # the copy task is per-step prediction ("lm") over independent sequences: nothing to carry
    data = {"name": "copy", "length": 2, "delay": 2, "train_size": 16, "val_size": 4}
    with pytest.raises(TrainError, match="tbptt"):
        Trainer(base_spec(tmp_path, data, tbptt=True))


# ----------------------------------------------------------------------------- best k


def test_keep_best_k_checkpoints(lm_spec):
    trainer = Trainer(with_(lm_spec, train__keep_best=2, train__eval_every=2, train__steps=12))
    trainer.fit()
    ckpts = trainer.run_dir / "checkpoints"
    evals = records(trainer.run_dir, "eval")
    assert len(evals) == 6
    expected = sorted(evals, key=lambda r: (r["val_loss"], r["step"]))[:2]
    index = json.loads((ckpts / "index.json").read_text())
    assert [b["step"] for b in index["best"]] == [r["step"] for r in expected]
    assert [b["score"] for b in index["best"]] == pytest.approx([r["val_loss"] for r in expected])
    files = sorted(p.name for p in ckpts.glob("best-*.safetensors"))
    assert files == sorted(b["file"] for b in index["best"])
    # the best checkpoint really holds the model that scored best
    assert evaluate(trainer.run_dir)["loss"] == pytest.approx(expected[0]["val_loss"], rel=1e-6)


def test_keep_best_zero_keeps_only_last(lm_spec):
    trainer = Trainer(with_(lm_spec, train__keep_best=0, train__eval_every=4))
    trainer.fit()
    assert [p.name for p in (trainer.run_dir / "checkpoints").glob("*.safetensors")] == ["last.safetensors"]


# ----------------------------------------------------------------------------- step details


def test_callbacks_see_every_event_in_order(lm_spec):
    rec = Recorder()
    Trainer(with_(lm_spec, train__eval_every=6, train__keep_best=1), callbacks=[rec]).fit()
    assert rec.events[0] == "start" and rec.events[-1] == "end"
    assert rec.events.count("step") == 12 and rec.events.count("eval") == 2
    assert rec.events.index("eval") == rec.events.index("step") + 6  # after the 6th step
    assert "ckpt:best" in rec.events and "ckpt:last" in rec.events
    info = rec.infos[0]
    assert info["step"] == 1 and info["items"] == 4 * 12 and info["grad_norm"] > 0 and info["lr"] == 0.01


def test_grad_norms_per_time_step_reach_callbacks(lm_spec):
    rec = Recorder()
    Trainer(with_(lm_spec, train__track_grad_norms=True, train__steps=3), callbacks=[rec]).fit()
    norms = rec.infos[-1]["grad_norms"]
    assert norms.shape == (12,) and np.all(norms > 0)
    # off by default
    rec2 = Recorder()
    Trainer(with_(lm_spec, train__steps=1), callbacks=[rec2], dry_run=1).fit()
    assert "grad_norms" not in rec2.infos[0]


def test_clip_grad_value_bounds_each_update(lm_spec):
    """SGD with lr 1 and gradients clamped to [-c, c]: no weight moves by more than c."""
    spec = with_(lm_spec, optimizer={"name": "sgd", "lr": 1.0}, train__clip_grad_value=1e-3, train__steps=1)
    trainer = Trainer(spec, dry_run=1)
    before = weights(trainer.model)
    trainer.fit()
    after = weights(trainer.model)
    moved = max(np.abs(after[k] - before[k]).max() for k in before)
    assert 0 < moved <= 1e-3 + 1e-6  # + float32 rounding of w - 1e-3


def test_clip_grad_norm_bounds_the_update_norm(lm_spec):
    spec = with_(lm_spec, optimizer={"name": "sgd", "lr": 1.0}, train__clip_grad_norm=1e-2, train__steps=1)
    trainer = Trainer(spec, dry_run=1)
    before = weights(trainer.model)
    trainer.fit()
    after = weights(trainer.model)
    total = math.sqrt(sum(float(((after[k] - before[k]).astype(np.float64) ** 2).sum()) for k in before))
    assert total == pytest.approx(1e-2, rel=1e-3)  # the raw gradient norm is far above 1e-2


def test_bad_component_option_names_the_section(lm_spec):
    with pytest.raises(BuildError, match=r"^optimizer: adam\(lr=-1.0\)"):
        Trainer(with_(lm_spec, optimizer={"name": "adam", "lr": -1.0}))


def test_plugin_cell_runs_through_the_generic_runner(lm_spec):
    class TinyCell(mg.nn.Module):
        """h' = tanh(W [x; h]): a minimal cell following the runner convention."""

        def __init__(self, input_size, hidden_size, bias=True):
            super().__init__()
            self.hidden_size = hidden_size
            self.lin = mg.nn.Linear(input_size + hidden_size, hidden_size, bias=bias)

        def step(self, x, h):
            h = self.lin(mg.cat([x, h], dim=1)).tanh()
            return h, h

    registry.register("cells", "test_tiny", TinyCell, replace=True)
    try:
        trainer = Trainer(with_(lm_spec, model__cell={"name": "test_tiny"}, model__num_layers=2))
        summary = trainer.fit()
    finally:
        registry.unregister("cells", "test_tiny")
    assert isinstance(trainer.model.rnn, Recurrent)
    assert summary["status"] == "completed" and math.isfinite(summary["last_eval"]["val_loss"])


# ----------------------------------------------------------------------------- using a run


def test_evaluate_and_generate(lm_spec, tmp_path):
    trainer = Trainer(with_(lm_spec, train__steps=8, train__eval_every=8), run_dir=tmp_path / "r")
    summary = trainer.fit()
    result = evaluate(tmp_path / "r")
    assert result["loss"] == pytest.approx(summary["last_eval"]["val_loss"], rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["split"] == "val" and result["step"] == 8
    # another file, read whole with the run's vocabulary
    other = write_corpus(tmp_path, chars=600, name="other.txt", offset=5000)
    whole = evaluate(tmp_path / "r", data=str(other))
    assert whole["split"] == "all" and whole["items"] > 0 and math.isfinite(whole["loss"])
    a = generate(tmp_path / "r", "def ", length=20, temperature=0.8, top_k=5, seed=3)
    b = generate(tmp_path / "r", "def ", length=20, temperature=0.8, top_k=5, seed=3)
    assert a == b and len(a) == 20
    greedy = generate(tmp_path / "r", "def ", length=10, temperature=0.0)
    assert greedy == generate(tmp_path / "r", "def ", length=10, temperature=0.0, seed=99)


def test_generate_refuses_a_classifier(tmp_path):
    data = {"name": "parity", "seq_len": 6, "train_size": 16, "val_size": 8}
    Trainer(base_spec(tmp_path, data, steps=2), run_dir=tmp_path / "c").fit()
    with pytest.raises(TrainError, match="language-model"):
        generate(tmp_path / "c", "01", 5)
    result = evaluate(tmp_path / "c")
    assert 0.0 <= result["accuracy"] <= 1.0 and "perplexity" not in result


def test_without_a_validation_split_best_is_by_train_loss(tmp_path, corpus):
    spec = base_spec(tmp_path / "runs", {**charlm_data(corpus), "val_fraction": 0.0}, eval_every=4)
    trainer = Trainer(spec)
    assert trainer.monitor == "train_loss"
    trainer.fit()
    index = json.loads((trainer.run_dir / "checkpoints" / "index.json").read_text())
    assert index["best"] and index["best"][0]["monitor"] == "train_loss"
    es = {"monitor": "val_loss", "mode": "min", "patience": 2, "min_delta": 0.0, "divergence_threshold": None}
    with pytest.raises(TrainError, match="needs a validation split"):
        Trainer(with_(spec, train__early_stopping=es))


@pytest.mark.cuda
def test_cuda_run_resumes_exactly_and_evaluates_on_the_cpu(tmp_path, corpus):
    if not mg.cuda_is_available():
        pytest.skip("no CUDA GPU with CuPy here: the trainer's device=cuda path is checked where there is one")
    # no dropout: the CUDA generator's state is not part of a checkpoint (the CPU one is)
    spec = base_spec(tmp_path / "runs", charlm_data(corpus), steps=10, eval_every=5, tbptt=True, device="cuda",
                     clip_grad_norm=1.0)
    full = Trainer(spec, run_dir=tmp_path / "full")
    full.fit()
    stopped = Trainer(spec, run_dir=tmp_path / "stopped", callbacks=[StopAt(3)])
    stopped.fit()
    resumed = Trainer.resume(tmp_path / "stopped")
    summary = resumed.fit()
    a, b = weights(full.model), weights(resumed.model)
    # The CUDA embedding backward sums repeated tokens' gradients with atomicAdd, whose
    # order (so the float rounding) varies from run to run: two *uninterrupted* GPU runs
    # already differ in embedding.weight by about 1e-9 (measured on an H100), and that
    # can leak into the other weights. So: equal to float32 rounding, not bit-identical.
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    on_cpu = evaluate(tmp_path / "full", checkpoint="last")
    assert on_cpu["loss"] == pytest.approx(summary["last_eval"]["val_loss"], rel=1e-4)
