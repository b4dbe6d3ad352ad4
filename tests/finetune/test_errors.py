"""User mistakes get clear errors: globs that match nothing (with did-you-mean and the
available names), options out of range, layers a strategy can't handle, deltas that
don't fit, strategies applied twice."""

from __future__ import annotations

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import finetune as ft
from microgradnn import nn
from microgradnn.models import SequenceModel

from ._util import make_lm


@pytest.mark.parametrize("strategy, pattern", [
    (lambda: ft.LoRA(targets=["rnn.wieght_*"]), r"targets: 'rnn.wieght_\*' matches no parameter"),
    (lambda: ft.Freeze(targets=["embedding"]), r"did you mean .*'embedding.\*'"),
    (lambda: ft.Freeze(targets=["rnn.*_l9"]), r"'rnn.\*_l9' matches no parameter"),
    (lambda: ft.Freeze(unfreeze={3: ["embeding.*"]}), r"unfreeze.3: 'embeding.\*' matches no parameter.*did you mean"),
    (lambda: ft.IA3(modules=["rnnn"]), r"modules: 'rnnn' matches no module \(did you mean 'rnn'\?\)"),
    (lambda: ft.Adapter(after=["lstm"]), r"after: 'lstm' matches no module"),
    (lambda: ft.Prefix(modules=["encoder"]), r"'encoder' matches no module"),
    (lambda: ft.AdaLoRA(targets=["head.wieght"]), r"did you mean 'head.weight'"),
])
def test_a_glob_that_matches_nothing_lists_the_names(strategy, pattern):
    model = make_lm()
    with pytest.raises(ft.FinetuneError, match=pattern) as info:
        strategy().apply(model)
    message = str(info.value)
    assert "rnn.weight_ih_l0" in message or "'rnn'" in message or "rnn," in message  # the names that exist
    assert all(p.requires_grad for p in model.parameters())  # nothing half-applied
    assert not any("parametrizations" in n for n, _ in model.named_modules())


def test_every_bad_glob_is_reported_at_once():
    with pytest.raises(ft.FinetuneError) as info:
        ft.LoRA(targets=["a.*", "rnn.weight_ih_l0", "b.*"]).apply(make_lm())
    assert "'a.*'" in str(info.value) and "'b.*'" in str(info.value)


@pytest.mark.parametrize("make, pattern", [
    (lambda: ft.LoRA(r=0), "r must be a positive int"),
    (lambda: ft.LoRA(alpha=-1), "alpha must be a positive number"),
    (lambda: ft.LoRA(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (lambda: ft.LoRA(targets=[3]), "targets must be a glob or a list of globs"),
    (lambda: ft.AdaLoRA(init_r=4, target_r=5), r"target_r must be an int in 0..init_r \(4\)"),
    (lambda: ft.AdaLoRA(total_steps=10, tinit=5, tfinal=5), "must be less than total_steps"),
    (lambda: ft.AdaLoRA(beta1=1.0), r"beta1 must be in \[0, 1\)"),
    (lambda: ft.Freeze(unfreeze={"soon": ["embedding.*"]}), "unfreeze.soon: the step must be a non-negative integer"),
    (lambda: ft.Freeze(unfreeze=["embedding.*"]), "unfreeze must be a mapping"),
    (lambda: ft.BitFit(train_head="yes"), "train_head must be true or false"),
    (lambda: ft.Adapter(bottleneck=0), "bottleneck must be a positive int"),
    (lambda: ft.Adapter(activation="swish"), r"activation must be one of \['gelu', 'relu', 'tanh'\]"),
    (lambda: ft.Adapter(after=[], before=[]), "at least one module"),
    (lambda: ft.Prompt(n_tokens=0), "n_tokens must be a positive int"),
    (lambda: ft.Prompt(init="zeros"), "init must be 'vocab' or 'random'"),
])
def test_bad_options(make, pattern):
    with pytest.raises(ft.FinetuneError, match=pattern):
        make()


def test_strategy_specific_model_errors():
    with pytest.raises(ft.FinetuneError, match="only non-matrix parameters"):
        ft.LoRA(targets=["rnn.bias_*"]).apply(make_lm())
    with pytest.raises(ft.FinetuneError, match="'embedding' is a Embedding; IA3 scales"):
        ft.IA3(modules=["embedding"]).apply(make_lm())
    with pytest.raises(ft.FinetuneError, match="not a recurrent sequence layer"):
        ft.Prefix(modules=["head"]).apply(make_lm())
    mg.manual_seed(0)
    clf = SequenceModel(2, vocab_size=5, embedding_dim=3, hidden_size=4, task="classification")
    with pytest.raises(ft.FinetuneError, match=r"no effect on a classification model.*before: \['head'\]"):
        ft.Adapter().apply(clf)
    ft.Adapter(after=[], before=["head"]).apply(clf)  # the right place works
    with pytest.raises(ft.FinetuneError, match="can't place an adapter"):
        ft.Adapter(after=["drop"]).apply(make_lm())
    with pytest.raises(ft.FinetuneError, match="init='vocab' needs token inputs"):
        ft.Prompt().apply(SequenceModel(2, input_size=3, hidden_size=4, task="classification"))

    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4)
            self.head = nn.Linear(4, 2, bias=False)

    with pytest.raises(ft.FinetuneError, match="has no 'prompt' slot"):
        ft.Prompt().apply(Bare())
    with pytest.raises(ft.FinetuneError, match="no bias parameters"):
        ft.BitFit().apply(nn.Sequential(nn.Linear(2, 2, bias=False)))
    with pytest.raises(ft.FinetuneError, match="apply\\(model\\) first"):
        ft.LoRA().trainable_summary()


def test_applying_twice_is_an_error():
    model = make_lm()
    ft.LoRA().apply(model)
    with pytest.raises(ft.FinetuneError, match="already being fine-tuned with 'lora'"):
        ft.IA3().apply(model)


def test_load_delta_that_does_not_fit():
    model = make_lm()
    strategy = ft.LoRA(r=2)
    strategy.apply(model)
    delta = strategy.delta_state_dict(model)

    wrong_rank = dict(delta)
    with pytest.raises(ft.FinetuneError, match=r"shape mismatch for .*lora_A: the delta has shape \(2, 6\), the model \(3, 6\)"):
        ft.LoRA(r=3).load_delta(make_lm(), wrong_rank)
    partial = dict(list(delta.items())[1:])
    with pytest.raises(ft.FinetuneError, match="keys the strategy adds but the delta lacks: rnn.parametrizations.weight_ih_l0.0.lora_A"):
        ft.LoRA(r=2).load_delta(make_lm(), partial)
    extra = dict(delta, **{"rnn.foo": np.zeros(2)})
    with pytest.raises(ft.FinetuneError, match="keys the model doesn't have: rnn.foo"):
        ft.LoRA(r=2).load_delta(make_lm(), extra)
