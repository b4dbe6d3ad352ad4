"""Learning-rate schedulers against torch.optim.lr_scheduler (LinearWarmup, a microgradnn
extra, against its closed form): the lr of every param group after every step."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import microgradnn as mg
from microgradnn.nn import Parameter
from microgradnn.optim import lr_scheduler as mls

STEPS = 30
LRS = (0.1, 0.03)


def optimizers(kind="SGD"):
    """Our optimizer and torch's, each with two param groups (lr 0.1 and 0.03)."""
    mp = [Parameter(mg.zeros(2)), Parameter(mg.zeros(3))]
    tp = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    extra = {"momentum": 0.9} if kind == "SGD" else {}
    mopt = getattr(mg.optim, kind)([{"params": [mp[0]], "lr": LRS[0]}, {"params": [mp[1]], "lr": LRS[1]}], **extra)
    topt = getattr(torch.optim, kind)([{"params": [tp[0]], "lr": LRS[0]}, {"params": [tp[1]], "lr": LRS[1]}], **extra)
    return mopt, topt


def assert_lrs(msched, tsched, mopt, topt, where):
    ours = msched.get_last_lr()
    theirs = tsched.get_last_lr()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15, err_msg=where)
    assert [g["lr"] for g in mopt.param_groups] == ours


def run_side_by_side(make_ours, make_theirs, steps=STEPS, metrics=None):
    mopt, topt = optimizers()
    msched, tsched = make_ours(mopt), make_theirs(topt)
    assert_lrs(msched, tsched, mopt, topt, "after construction")
    history = []
    for step in range(steps):
        mopt.step()
        topt.step()
        if metrics is None:
            msched.step()
            tsched.step()
        else:
            msched.step(metrics[step])
            tsched.step(metrics[step])
        assert_lrs(msched, tsched, mopt, topt, f"after step {step}")
        history.append(msched.get_last_lr())
    return history


@pytest.mark.parametrize("step_size,gamma", [(7, 0.5), (1, 0.9), (10, 0.1)])
def test_step_lr(step_size, gamma):
    hist = run_side_by_side(lambda o: mls.StepLR(o, step_size, gamma=gamma),
                            lambda o: torch.optim.lr_scheduler.StepLR(o, step_size, gamma=gamma))
    assert hist[-1][0] == pytest.approx(LRS[0] * gamma ** (STEPS // step_size))


@pytest.mark.parametrize("T_max,eta_min", [(10, 0.0), (10, 0.01), (25, 0.001), (7, 0.05)])
def test_cosine_annealing_lr(T_max, eta_min):
    # 35 steps: past T_max, where the recursive form climbs back up
    hist = run_side_by_side(lambda o: mls.CosineAnnealingLR(o, T_max, eta_min=eta_min),
                            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max, eta_min=eta_min), steps=35)
    assert hist[T_max - 1][0] == pytest.approx(eta_min, abs=1e-12)


def test_cosine_annealing_composes_with_external_lr_changes():
    """The recursive form follows changes made to group["lr"] by someone else, as torch's."""
    mopt, topt = optimizers()
    ms, ts = mls.CosineAnnealingLR(mopt, 12), torch.optim.lr_scheduler.CosineAnnealingLR(topt, 12)
    for step in range(20):
        mopt.step()
        topt.step()
        if step == 5:
            for g in mopt.param_groups + topt.param_groups:
                g["lr"] *= 0.5
        ms.step()
        ts.step()
        assert_lrs(ms, ts, mopt, topt, f"step {step}")


METRICS = [1.0, 0.9, 0.9, 0.95, 0.91, 0.9, 0.9, 0.89999, 0.8, 0.85, 0.85, 0.85, 0.85, 0.7, 0.71, 0.72,
           0.72, 0.72, 0.72, 0.72, 0.6, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patience=2),
        dict(mode="max", patience=1, factor=0.5),
        dict(patience=1, threshold=0.05, threshold_mode="abs", cooldown=2),
        dict(patience=0, factor=0.5, min_lr=[0.02, 0.01]),
        dict(patience=1, factor=0.2, min_lr=0.005, eps=1e-3, mode="max", threshold_mode="abs"),
    ],
)
def test_reduce_lr_on_plateau(kwargs):
    hist = run_side_by_side(lambda o: mls.ReduceLROnPlateau(o, **kwargs),
                            lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, **kwargs), metrics=METRICS)
    if kwargs.get("mode", "min") == "min":
        assert hist[-1][0] < LRS[0]  # it did reduce


def test_reduce_lr_on_plateau_accepts_a_tensor_metric_and_validates():
    mopt, _ = optimizers()
    sched = mls.ReduceLROnPlateau(mopt, patience=0)
    sched.step(mg.tensor(1.0))
    sched.step(mg.tensor(2.0))
    assert sched.get_last_lr()[0] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        mls.ReduceLROnPlateau(mopt, factor=1.5)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        mls.ReduceLROnPlateau(mopt, mode="lowest")
    with pytest.raises(ValueError, match="threshold_mode"):
        mls.ReduceLROnPlateau(mopt, threshold_mode="relative")
    with pytest.raises(ValueError, match="expected 2 values of min_lr"):
        mls.ReduceLROnPlateau(mopt, min_lr=[0.1])


def warmup_closed_form(base, t, warmup, total, decay, floor):
    if t < warmup:
        return base * t / warmup
    q = min(1.0, (t - warmup) / (total - warmup)) if total > warmup else 1.0
    shape = 1 - q if decay == "linear" else 0.5 * (1 + math.cos(math.pi * q))
    return floor + (base - floor) * shape


@pytest.mark.parametrize("decay", ["linear", "cosine"])
@pytest.mark.parametrize("warmup,total,min_lr", [(5, 25, 0.0), (10, 20, 0.001), (0, 15, [0.01, 0.0]), (3, 3, 0.0)])
def test_linear_warmup_closed_form(decay, warmup, total, min_lr):
    mopt, _ = optimizers("Adam")
    sched = mls.LinearWarmup(mopt, warmup_steps=warmup, total_steps=total, decay=decay, min_lr=min_lr)
    floors = min_lr if isinstance(min_lr, list) else [min_lr] * 2
    for t in range(STEPS + 1):
        if t:
            mopt.step()
            sched.step()
        expect = [warmup_closed_form(b, t, warmup, total, decay, f) for b, f in zip(LRS, floors)]
        np.testing.assert_allclose(sched.get_last_lr(), expect, rtol=1e-12, atol=1e-15, err_msg=f"t={t}")
        assert [g["lr"] for g in mopt.param_groups] == sched.get_last_lr()
    if warmup:
        assert sched.base_lrs == list(LRS)


def test_linear_warmup_shape_and_validation():
    mopt, _ = optimizers()
    sched = mls.LinearWarmup(mopt, warmup_steps=4, total_steps=12)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(14):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(0.1) and max(lrs) == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(lrs[:5], lrs[1:5]))  # rising
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # then falling
    assert lrs[12:] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="must not exceed total_steps"):
        mls.LinearWarmup(mopt, warmup_steps=10, total_steps=5)
    with pytest.raises(ValueError, match="decay must be 'linear' or 'cosine'"):
        mls.LinearWarmup(mopt, 1, 5, decay="exp")
    with pytest.raises(TypeError, match="warmup_steps must be an int"):
        mls.LinearWarmup(mopt, 1.5, 5)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: mls.StepLR(o, 4, gamma=0.5),
        lambda o: mls.CosineAnnealingLR(o, 9, eta_min=0.001),
        lambda o: mls.LinearWarmup(o, 5, 20, decay="cosine", min_lr=0.001),
        lambda o: mls.ReduceLROnPlateau(o, patience=1, cooldown=1),
    ],
    ids=["StepLR", "CosineAnnealingLR", "LinearWarmup", "ReduceLROnPlateau"],
)
def test_state_dict_round_trip_resumes_the_same_schedule(make, tmp_path):
    def drive(opt, sched, steps, start):
        out = []
        for i in range(start, start + steps):
            opt.step()
            if isinstance(sched, mls.ReduceLROnPlateau):
                sched.step(METRICS[i])
            else:
                sched.step()
            out.append(sched.get_last_lr())
        return out

    opt_a, _ = optimizers()
    sched_a = make(opt_a)
    drive(opt_a, sched_a, 12, 0)
    mg.save({"optimizer": opt_a.state_dict(), "scheduler": sched_a.state_dict()}, tmp_path / "s.safetensors")
    ck = mg.load(tmp_path / "s.safetensors")
    assert ck["scheduler"] == sched_a.state_dict()

    opt_b, _ = optimizers()
    sched_b = make(opt_b)  # PyTorch's order: scheduler first, then load both
    opt_b.load_state_dict(ck["optimizer"])
    sched_b.load_state_dict(ck["scheduler"])
    assert sched_b.get_last_lr() == sched_a.get_last_lr()
    assert drive(opt_a, sched_a, 15, 12) == drive(opt_b, sched_b, 15, 12)


def test_scheduler_state_dict_matches_torch_keys():
    mopt, topt = optimizers()
    ours = mls.CosineAnnealingLR(mopt, 10).state_dict()
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(topt, 10).state_dict()
    for key in ("T_max", "eta_min", "base_lrs", "last_epoch", "_step_count", "_last_lr"):
        assert ours[key] == theirs[key], key


def test_scheduler_needs_an_optimizer_and_initial_lr():
    with pytest.raises(TypeError, match="is not an Optimizer"):
        mls.StepLR(object(), 3)
    mopt, _ = optimizers()
    with pytest.raises(KeyError, match="initial_lr"):
        mls.StepLR(mopt, 3, last_epoch=5)
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        mls.StepLR(mopt, 0)


def test_closed_form_epoch_argument_matches_torch():
    mopt, topt = optimizers()
    ms, ts = mls.StepLR(mopt, 3, gamma=0.5), torch.optim.lr_scheduler.StepLR(topt, 3, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topt.step()
        ts.step(7)
    ms.step(7)
    assert ms.get_last_lr() == pytest.approx(ts.get_last_lr())


# ----------------------------------------------------------------------------- LinearWarmup vs torch


def torch_warmup_lambdas(warmup, total, decay, floors):
    """LinearWarmup as torch LambdaLR multipliers of each group's base lr (one per group,
    since the floor is an absolute lr)."""

    def make(base, floor):
        def factor(t):
            if t < warmup:
                return t / warmup
            q = min(1.0, (t - warmup) / (total - warmup)) if total > warmup else 1.0
            shape = 1 - q if decay == "linear" else 0.5 * (1 + math.cos(math.pi * q))
            return (floor + (base - floor) * shape) / base

        return factor

    return [make(base, floor) for base, floor in zip(LRS, floors)]


@pytest.mark.parametrize("decay", ["linear", "cosine"])
@pytest.mark.parametrize("warmup,total,min_lr", [(5, 20, 0.0), (8, 25, [0.002, 0.001]), (0, 10, 0.0005)])
def test_linear_warmup_matches_torch_lambda_lr(decay, warmup, total, min_lr):
    floors = min_lr if isinstance(min_lr, list) else [min_lr] * 2
    run_side_by_side(
        lambda o: mls.LinearWarmup(o, warmup_steps=warmup, total_steps=total, decay=decay, min_lr=min_lr),
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, torch_warmup_lambdas(warmup, total, decay, floors)),
    )


def test_linear_warmup_cosine_equals_torch_warmup_then_cosine_annealing():
    """Warmup then cosine decay is also torch's LinearLR + CosineAnnealingLR chained with
    SequentialLR (but for torch's LinearLR, which can't start from exactly 0)."""
    warmup, total = 5, 25
    mopt, topt = optimizers()
    ours = mls.LinearWarmup(mopt, warmup_steps=warmup, total_steps=total, decay="cosine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.optim.lr_scheduler.SequentialLR(
            topt,
            [torch.optim.lr_scheduler.LinearLR(topt, start_factor=1e-12, end_factor=1.0, total_iters=warmup),
             torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=total - warmup)],
            milestones=[warmup],
        )
    for step in range(total + 1):
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"step {step}")
        mopt.step()
        topt.step()
        ours.step()
        theirs.step()


# ----------------------------------------------------------------------------- schedules drive training


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(4, 3))
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 4))
    return w0, x, y


@pytest.mark.parametrize(
    "opt_name,opt_kwargs,make",
    [
        ("SGD", dict(lr=0.1, momentum=0.9), lambda m, o: m.StepLR(o, 5, gamma=0.5)),
        ("Adam", dict(lr=0.05), lambda m, o: m.CosineAnnealingLR(o, 12, eta_min=0.001)),
        ("RMSprop", dict(lr=0.01, momentum=0.5), lambda m, o: m.ReduceLROnPlateau(o, patience=1, factor=0.5)),
        ("AdamW", dict(lr=0.05), None),
    ],
    ids=["SGD+StepLR", "Adam+Cosine", "RMSprop+Plateau", "AdamW+LinearWarmup"],
)
def test_scheduled_training_follows_torch(opt_name, opt_kwargs, make):
    """25 steps of an optimizer under a schedule: the weights follow torch's (the lr the
    schedule sets is the one the next step uses)."""
    w0, x, y = _problem()
    mw = Parameter(mg.tensor(w0))
    tw = torch.tensor(w0, requires_grad=True)
    mopt = getattr(mg.optim, opt_name)([mw], **opt_kwargs)
    topt = getattr(torch.optim, opt_name)([tw], **opt_kwargs)
    if make is None:
        ms = mls.LinearWarmup(mopt, warmup_steps=4, total_steps=20, decay="linear", min_lr=0.001)
        ts = torch.optim.lr_scheduler.LambdaLR(
            topt, lambda t: t / 4 if t < 4 else (0.001 + (0.05 - 0.001) * (1 - min(1.0, (t - 4) / 16))) / 0.05)
    else:
        ms, ts = make(mls, mopt), make(torch.optim.lr_scheduler, topt)
    mx, my, tx, ty = mg.tensor(x), mg.tensor(y), torch.tensor(x), torch.tensor(y)
    for step in range(25):
        mopt.zero_grad()
        loss = ((mx @ mw.T - my) ** 2).mean()
        loss.backward()
        mopt.step()
        topt.zero_grad()
        tloss = ((tx @ tw.T - ty) ** 2).mean()
        tloss.backward()
        topt.step()
        if isinstance(ms, mls.ReduceLROnPlateau):
            ms.step(float(loss) + (0.5 if step % 3 else 0.0))  # a noisy metric, so that it plateaus
            ts.step(tloss.item() + (0.5 if step % 3 else 0.0))
        else:
            ms.step()
            ts.step()
        np.testing.assert_allclose(ms.get_last_lr(), ts.get_last_lr(), rtol=1e-12, err_msg=f"lr after step {step}")
        np.testing.assert_allclose(mw.detach().numpy(), tw.detach().numpy(), atol=1e-9, err_msg=f"step {step}")
    assert ms.get_last_lr() != [opt_kwargs["lr"]]  # the schedule did change the lr


def test_reduce_lr_on_plateau_state_dict_matches_torch_keys():
    mopt, topt = optimizers()
    ours = mls.ReduceLROnPlateau(mopt, patience=1, cooldown=2, min_lr=[0.01, 0.001])
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=1, cooldown=2, min_lr=[0.01, 0.001])
    for metric in METRICS[:12]:
        ours.step(metric)
        theirs.step(metric)
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    for key in ("factor", "min_lrs", "patience", "cooldown", "cooldown_counter", "mode", "threshold",
                "threshold_mode", "best", "num_bad_epochs", "mode_worse", "eps", "last_epoch", "_last_lr"):
        assert sd_ours[key] == sd_theirs[key], key


@pytest.mark.parametrize(
    "make",
    [lambda m, o: m.CosineAnnealingLR(o, 10, eta_min=0.01, last_epoch=4), lambda m, o: m.StepLR(o, 3, 0.5, last_epoch=4)],
    ids=["CosineAnnealingLR", "StepLR"],
)
def test_constructed_with_last_epoch_matches_torch(make):
    """Resuming the old way (last_epoch=N, initial_lr already in the groups) gives torch's lrs."""
    mopt, topt = optimizers()
    for group in mopt.param_groups + topt.param_groups:
        group["initial_lr"] = group["lr"]
    ms, ts = make(mls, mopt), make(torch.optim.lr_scheduler, topt)
    for step in range(20):
        assert_lrs(ms, ts, mopt, topt, f"step {step}")
        mopt.step()
        topt.step()
        ms.step()
        ts.step()
