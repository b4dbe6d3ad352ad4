"""The single-process pieces of data parallelism: sharded random draws, the post-accumulate
hook DDP stands on, and DistributedSampler against PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler as TorchDistributedSampler

import microgradnn as mg
from microgradnn.tensor import batch_shard, rand_rows
from microgradnn.utils.data import DistributedSampler


@pytest.mark.parametrize("shape,dim", [((6, 3), 0), ((4, 6, 2), 1), ((6,), 0)])
def test_a_shard_draws_its_rows_of_the_global_draw(shape, dim):
    mg.manual_seed(5)
    whole = rand_rows(shape, dim).numpy()
    after_whole = mg.rand(3).numpy()
    rows = shape[dim]
    for start, stop in ((0, 2), (2, 5), (5, rows)):
        mg.manual_seed(5)
        local = list(shape)
        local[dim] = stop - start
        with batch_shard(rows, start):
            part = rand_rows(local, dim).numpy()
        np.testing.assert_array_equal(part, np.take(whole, range(start, stop), axis=dim))
        # the stream moved on exactly as one process's did
        np.testing.assert_array_equal(mg.rand(3).numpy(), after_whole)


def test_dropout_under_a_shard_is_the_rows_of_one_process_dropout():
    x = mg.randn(8, 5, 3)
    mg.manual_seed(9)
    whole = mg.nn.functional.dropout(x, 0.4).numpy()
    mg.manual_seed(9)
    with batch_shard(8, 3):
        part = mg.nn.functional.dropout(x[3:6], 0.4).numpy()
    np.testing.assert_array_equal(part, whole[3:6])
    assert (whole == 0).any()


def test_batch_shard_refuses_rows_outside_the_batch():
    with batch_shard(4, 3):
        with pytest.raises(ValueError, match="outside the global batch of 4"):
            rand_rows((2, 3), 0)
    with pytest.raises(ValueError, match="start must be in"):
        batch_shard(4, 5)


def test_post_accumulate_grad_hook_sees_the_accumulated_grad():
    p = mg.nn.Parameter(mg.randn(3))
    seen = []
    remove = p.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (p * 2).sum().backward()
    (p * p).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * np.ones(3))
    np.testing.assert_allclose(seen[1], 2 + 2 * p.detach().numpy(), rtol=1e-6)
    remove()
    p.sum().backward()
    assert len(seen) == 2
    tp = torch.nn.Parameter(torch.tensor(p.detach().numpy()))
    tseen = []
    tp.register_post_accumulate_grad_hook(lambda t: tseen.append(t.grad.numpy().copy()))
    (tp * 2).sum().backward()
    np.testing.assert_array_equal(tseen[0], seen[0])
    with pytest.raises(RuntimeError, match="non-leaf"):
        (p * 2).register_post_accumulate_grad_hook(lambda t: None)


@pytest.mark.parametrize("n", [1, 3, 10, 11])
@pytest.mark.parametrize("replicas", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_splits_as_torch(n, replicas, drop_last):
    data = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(data, replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = TorchDistributedSampler(data, replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_distributed_sampler_shuffles_disjointly_and_per_epoch():
    data = list(range(23))
    shards = [DistributedSampler(data, 3, r, seed=4, drop_last=True) for r in range(3)]
    first = [list(s) for s in shards]
    assert sorted(i for s in first for i in s) == sorted(set(i for s in first for i in s))
    assert all(len(s) == 7 for s in first)
    for s in shards:
        s.set_epoch(1)
    second = [list(s) for s in shards]
    assert second != first
    again = DistributedSampler(data, 3, 0, seed=4, drop_last=True)
    assert list(again) == first[0]
    with pytest.raises(ValueError, match="Invalid rank 3"):
        DistributedSampler(data, 3, 3)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(data)
