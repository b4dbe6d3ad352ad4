"""mg.utils.data: datasets, samplers, default_collate and the DataLoader (with workers),
judged against torch.utils.data where the behaviour is deterministic."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import microgradnn as mg
import microgradnn.data  # noqa: F401  (mg.data, the spec datasets)
from microgradnn.utils.data import (
    BatchSampler, ConcatDataset, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler, Subset,
    SubsetRandomSampler, TensorDataset, WeightedRandomSampler, default_collate, get_worker_info, random_split,
)


def _data(n: int = 23, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.integers(0, 5, size=n)


def _batches(loader) -> list:
    return [tuple(t.numpy() for t in batch) for batch in loader]


@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (4, False), (4, True), (23, False), (30, True)])
def test_sequential_loader_matches_torch(batch_size, drop_last):
    x, y = _data()
    ours = _batches(DataLoader(TensorDataset(mg.tensor(x), mg.tensor(y)), batch_size=batch_size, drop_last=drop_last))
    theirs = _batches(tud.DataLoader(tud.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=batch_size,
                                     drop_last=drop_last))
    assert len(ours) == len(theirs) == len(DataLoader(range(23), batch_size=batch_size, drop_last=drop_last))
    for (a, b), (c, d) in zip(ours, theirs):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_shuffle_is_a_permutation_and_repeats_with_a_seed():
    x, y = _data()
    ds = TensorDataset(mg.tensor(x), mg.tensor(y))

    def epoch(seed):
        loader = DataLoader(ds, batch_size=5, shuffle=True, generator=np.random.default_rng(seed))
        return np.concatenate([b[1].numpy() for b in loader]), [b[0].shape[0] for b in loader]

    order, sizes = epoch(3)
    assert sizes == [5, 5, 5, 5, 3]
    assert sorted(order.tolist()) == sorted(y.tolist())
    np.testing.assert_array_equal(order, epoch(3)[0])
    assert not np.array_equal(order, epoch(4)[0])
    assert not np.array_equal(order, y)
    # without a generator the global seed decides, as torch.manual_seed does
    mg.manual_seed(11)
    a = [b.tolist() for b in DataLoader(range(20), batch_size=20, shuffle=True)]
    mg.manual_seed(11)
    b = [b.tolist() for b in DataLoader(range(20), batch_size=20, shuffle=True)]
    assert a == b and a[0] != list(range(20))


def test_same_generator_advances_between_epochs():
    loader = DataLoader(range(30), batch_size=30, shuffle=True, generator=np.random.default_rng(0))
    first, second = next(iter(loader)).tolist(), next(iter(loader)).tolist()
    assert sorted(first) == sorted(second) == list(range(30)) and first != second


def test_default_collate_matches_torch_types():
    Point = collections.namedtuple("Point", "a b")
    samples = [
        {"x": np.float32([i, i + 1]), "n": i, "f": i / 2, "s": f"s{i}", "p": Point(i, (i, 2.0)), "ok": i % 2 == 0}
        for i in range(3)
    ]
    ours, theirs = default_collate(samples), tud.default_collate(samples)
    assert set(ours) == set(theirs)
    for key in ("x", "n", "f", "ok"):
        assert str(ours[key].dtype) == str(theirs[key].dtype).replace("torch.", ""), key
        np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy())
    assert ours["s"] == theirs["s"]
    assert isinstance(ours["p"], Point) and isinstance(ours["p"].b, list)  # a tuple becomes a list, as torch
    np.testing.assert_array_equal(ours["p"].b[1].numpy(), theirs["p"].b[1].numpy())
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [1]])


def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    g = np.random.default_rng(0)
    perm = list(RandomSampler(range(10), generator=g))
    assert sorted(perm) == list(range(10)) and perm != list(range(10))
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50, generator=g))
    assert len(drawn) == 50 and set(drawn) <= {0, 1, 2}
    assert len(list(RandomSampler(range(4), num_samples=10, generator=g))) == 10
    assert sorted(SubsetRandomSampler([7, 3, 9], generator=g)) == [3, 7, 9]
    weights = [0.0, 1.0, 0.0, 3.0]
    picks = np.array(list(WeightedRandomSampler(weights, 4000, generator=g)))
    assert set(picks.tolist()) == {1, 3}
    assert abs((picks == 3).mean() - 0.75) < 0.03
    assert sorted(WeightedRandomSampler(weights, 2, replacement=False, generator=g)) == [1, 3]
    assert list(BatchSampler(range(7), 3, False)) == list(tud.BatchSampler(range(7), 3, False))
    assert list(BatchSampler(range(7), 3, True)) == list(tud.BatchSampler(range(7), 3, True))
    assert len(BatchSampler(range(7), 3, False)) == 3 and len(BatchSampler(range(7), 3, True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="num_samples"):
        RandomSampler(range(3), num_samples=0)


def test_loader_argument_errors_are_torchs():
    ds = range(5)
    cases = [
        (dict(sampler=[0, 1], shuffle=True), "mutually exclusive with shuffle"),
        (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
        (dict(batch_size=None, drop_last=True), "batch_size=None"),
        (dict(num_workers=-1), "num_workers option should be non-negative"),
        (dict(prefetch_factor=2), "prefetch_factor"),
        (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            DataLoader(ds, **kwargs)
        with pytest.raises(ValueError, match=message):
            tud.DataLoader(ds, **kwargs)


def test_sampler_batch_sampler_and_no_batching():
    assert [b.tolist() for b in DataLoader(range(10), sampler=[9, 1, 4], batch_size=2)] == [[9, 1], [4]]
    assert [b.tolist() for b in DataLoader(range(10), batch_sampler=[[3, 2], [0]])] == [[3, 2], [0]]
    items = list(DataLoader([np.float32([1, 2]), np.float32([3, 4])], batch_size=None))
    assert all(isinstance(t, mg.Tensor) and t.shape == (2,) for t in items)
    ours = [b.tolist() for b in DataLoader(range(10), batch_size=3, collate_fn=lambda b: mg.tensor(b) * 2)]
    assert ours == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]


def test_subset_concat_random_split():
    ds = TensorDataset(mg.arange(10))
    sub = Subset(ds, [4, 2])
    assert [sub[i][0].item() for i in range(2)] == [4, 2]
    both = ConcatDataset([sub, ds])
    assert len(both) == 12 and both[2][0].item() == 0 and both[-1][0].item() == 9
    assert len(sub + ds) == 12
    parts = random_split(ds, [3, 7], generator=np.random.default_rng(0))
    got = sorted(p[0].item() for part in parts for p in part)
    assert [len(p) for p in parts] == [3, 7] and got == list(range(10))
    again = random_split(ds, [3, 7], generator=np.random.default_rng(0))
    assert parts[0].indices == again[0].indices
    fractions = random_split(range(10), [0.25, 0.75], generator=np.random.default_rng(1))
    assert [len(p) for p in fractions] == [len(p) for p in tud.random_split(range(10), [0.25, 0.75])]
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [3, 3])


class _Squares(Dataset):
    def __len__(self):
        return 37

    def __getitem__(self, i):
        return {"x": np.full((2,), i, dtype=np.float32), "pid": os.getpid(), "i": i}


@pytest.mark.parametrize("num_workers", [1, 3])
def test_workers_keep_the_order_and_run_elsewhere(num_workers):
    serial = list(DataLoader(_Squares(), batch_size=4, shuffle=True, generator=np.random.default_rng(5)))
    loader = DataLoader(_Squares(), batch_size=4, shuffle=True, num_workers=num_workers,
                        generator=np.random.default_rng(5))
    parallel = list(loader)
    assert len(parallel) == len(serial) == 10
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a["x"].numpy(), b["x"].numpy())
        np.testing.assert_array_equal(a["i"].numpy(), b["i"].numpy())
    pids = {int(p) for b in parallel for p in b["pid"].tolist()}
    assert os.getpid() not in pids and len(pids) == num_workers
    import multiprocessing
    assert not [p for p in multiprocessing.active_children() if p.pid in pids]  # workers were stopped


class _Broken(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise KeyError(f"no item {i}")
        return i


def test_worker_error_reaches_the_main_process_and_workers_stop():
    import multiprocessing
    before = set(p.pid for p in multiprocessing.active_children())
    with pytest.raises(KeyError, match="Caught KeyError in DataLoader worker process"):
        list(DataLoader(_Broken(), batch_size=2, num_workers=2))
    assert set(p.pid for p in multiprocessing.active_children()) <= before
    it = iter(DataLoader(range(100), batch_size=2, num_workers=2))
    next(it)
    workers = list(it._workers)
    del it  # an abandoned iterator stops its workers
    assert not any(w.is_alive() for w in workers)


class _Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


def test_iterable_dataset_with_and_without_workers():
    assert [b.tolist() for b in DataLoader(_Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(_Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    got = [b.tolist() for b in DataLoader(_Stream(11), batch_size=2, num_workers=2)]
    want = [b.tolist() for b in tud.DataLoader(_TorchStream(11), batch_size=2, num_workers=2)]
    assert got == want
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(_Stream(3), shuffle=True)


class _TorchStream(tud.IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = tud.get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


def test_worker_init_fn_and_seeds_differ_per_worker():
    seeds = list(DataLoader(_SeedReport(), batch_size=1, num_workers=2, worker_init_fn=_init,
                            generator=np.random.default_rng(0)))
    ids = [int(b[0]) for b in seeds]  # each batch: [ids (1,), seeds (1,), init flags (1,)]
    assert ids == [0, 1, 0, 1]
    assert int(seeds[0][1]) != int(seeds[1][1])
    assert all(int(b[2]) == 1 for b in seeds)  # worker_init_fn ran in the worker


_INIT_RAN = 0


def _init(worker_id):
    global _INIT_RAN
    _INIT_RAN = 1


class _SeedReport(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        info = get_worker_info()
        return [info.id, info.seed % 1000003, _INIT_RAN]


def test_spec_datasets_hand_their_splits_to_a_loader():
    data = mg.data.parity(seq_len=9, min_len=3, train_size=40, val_size=10)
    train = data.as_dataset("train")
    assert len(train) == 40
    x0, y0 = train[0]
    want = data.train.batch(np.array([0]))
    np.testing.assert_array_equal(x0.numpy(), want.x[0, : want.lengths[0]])
    batches = list(DataLoader(train, batch_size=16, collate_fn=train.collate))
    x, y, lengths = batches[0]
    ref = data.train.batch(np.arange(16))
    np.testing.assert_array_equal(x.numpy(), ref.x)
    np.testing.assert_array_equal(y.numpy(), ref.y)
    np.testing.assert_array_equal(lengths.numpy(), ref.lengths)
    assert sum(b[0].shape[0] for b in batches) == 40
    val = mg.data.charlm(corpus="stdlib", seq_len=16, max_chars=3000).as_dataset("val")
    xs, ys = val[0]
    assert xs.shape == ys.shape == (16,) and np.array_equal(xs.numpy()[1:], ys.numpy()[:-1])
    with pytest.raises(ValueError, match="split must be one of"):
        data.as_dataset("test")


class _GeneratorLike:
    """The protocol mg.Generator (part A of issue 13) offers every ``generator=`` argument."""

    def __init__(self, seed):
        self._gen = np.random.default_rng(seed)

    def _numpy_like(self, backend):
        return self._gen


def test_an_mg_generator_drives_the_order():
    make = getattr(mg, "Generator", None)
    gen = (lambda s: make().manual_seed(s)) if make is not None else _GeneratorLike
    orders = [[b.tolist() for b in DataLoader(range(12), batch_size=12, shuffle=True, generator=gen(s))] for s in (1, 1, 2)]
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0][0]) == list(range(12))
    with pytest.raises(TypeError, match="generator must be"):
        list(DataLoader(range(3), shuffle=True, generator=42))


class _Dies(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 3:
            os._exit(3)  # a worker killed mid-epoch (as by the OOM killer)
        return i


def test_a_dead_worker_is_reported_not_waited_for():
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(DataLoader(_Dies(), batch_size=1, num_workers=2))
