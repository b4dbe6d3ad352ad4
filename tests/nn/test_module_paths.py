"""``mg.nn.modules.<sub>.<Class>``: PyTorch's class paths, each the very class ``mg.nn`` exports."""

import importlib

import pytest
import torch.nn.modules

import microgradnn as mg

SUBMODULES = ["rnn", "linear", "sparse", "dropout", "normalization", "activation", "loss", "container", "flatten",
              "module"]


@pytest.mark.parametrize("sub", SUBMODULES)
def test_class_paths_are_torchs_and_alias_ours(sub):
    ours = importlib.import_module(f"microgradnn.nn.modules.{sub}")
    theirs = importlib.import_module(f"torch.nn.modules.{sub}")
    assert ours.__all__
    for name in ours.__all__:
        assert hasattr(theirs, name), f"torch.nn.modules.{sub} has no {name}"
        real = getattr(mg.nn, name, None) or getattr(mg.nn.rnn, name)  # RNNBase/RNNCellBase live in nn.rnn
        assert getattr(ours, name) is real
        assert getattr(mg.nn.modules, name) is getattr(ours, name)
    if sub == "rnn":
        from microgradnn.nn.modules.rnn import LSTM
        assert LSTM is mg.nn.LSTM
