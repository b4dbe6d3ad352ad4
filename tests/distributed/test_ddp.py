"""DistributedDataParallel on 2 ranks against one process on the whole batch.

Each script run trains the same model twice on every rank: once as one process would, on
the whole global batch, and once data-parallel on the rank's rows of it. The test compares
the weights (every rank, every case), so a gradient that is not averaged, a dropout mask
that differs from one process's, or a replica that drifts fails here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import run_mpi

EQUIVALENCE = """
import json, sys
import numpy as np
import microgradnn as mg
import microgradnn.distributed as dist
import microgradnn.nn.functional as F
from microgradnn.models import SequenceModel
from microgradnn.finetune import LoRA
from microgradnn.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
dtype = getattr(mg, sys.argv[1])
STEPS, T, V = 25, 7, 11

def build(task, lora, seed):
    mg.manual_seed(seed)
    model = SequenceModel(V if task == "lm" else 3, vocab_size=V, embedding_dim=6, hidden_size=8,
                          num_layers=2, dropout=0.3, cell="lstm" if task == "lm" else "gru", task=task)
    if lora:
        LoRA(targets=["rnn.weight_*"], r=2, alpha=4.0, dropout=0.2).apply(model)
    return model.to(dtype=dtype)

def data(task, B, step):
    rng = np.random.default_rng([7, step])
    x = mg.tensor(rng.integers(0, V, size=(B, T)), dtype=mg.int64)
    y = mg.tensor(rng.integers(0, V if task == "lm" else 3, size=(B, T) if task == "lm" else (B,)), dtype=mg.int64)
    return x, y

def loss_of(model, task, x, y):
    out, _ = model(x)
    return F.cross_entropy(out.reshape(-1, V), y.reshape(-1)) if task == "lm" else F.cross_entropy(out, y)

def train(task, lora, B, parallel):
    model = build(task, lora, seed=3)
    if parallel:
        with mg.no_grad():  # replicas start apart: DDP must copy rank 0's weights
            for p in model.parameters():
                p.array[...] += 0.01 * rank
        model = DDP(model, bucket_cap_mb=0.0005)  # tiny buckets: several all-reduces per step
    opt = mg.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.02)
    mg.manual_seed(11)  # the dropout stream, the same for both runs
    # rank r holds rows [start, stop) of the global batch: unequal when B is odd
    start = (B * rank) // world; stop = (B * (rank + 1)) // world
    for step in range(STEPS):
        x, y = data(task, B, step)
        opt.zero_grad()
        if parallel:
            with dist.batch_shard(B, start):
                loss = loss_of(model, task, x[start:stop], y[start:stop])
            # a mean over this rank's rows, weighted so that the average over ranks is the global mean
            (loss * ((stop - start) * world / B)).backward()
        else:
            loss_of(model, task, x, y).backward()
        opt.step()
    inner = model.module if parallel else model
    names = [n for b in model._buckets for n in b.names] if parallel else []
    return {n: p.detach().numpy().astype(np.float64).tolist() for n, p in inner.named_parameters()}, names

out = {}
for task in ("lm", "classification"):
    for lora in (False, True):
        for B in (6, 5):
            key = f"{task}-{'lora' if lora else 'plain'}-B{B}"
            ref, _ = train(task, lora, B, parallel=False)
            par, reduced = train(task, lora, B, parallel=True)
            out[key] = {"ref": ref, "par": par, "reduced": reduced}
open(f"out{rank}.json", "w").write(json.dumps(out))
"""


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-6), ("float32", 1e-4)])
def test_two_ranks_end_with_one_process_weights(tmp_path, dtype, rtol):
    run_mpi(EQUIVALENCE, tmp_path, args=[dtype], timeout=300)
    ranks = [json.loads((tmp_path / f"out{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == 8
    for key, case in ranks[0].items():
        ref, start_moved = case["ref"], False
        for out in ranks:
            par = out[key]["par"]
            assert par.keys() == ref.keys()
            for name in ref:
                a, b = np.array(ref[name]), np.array(par[name])
                scale = max(np.abs(a).max(), 1e-3)
                assert np.abs(a - b).max() <= rtol * scale, f"{key} {name}: {np.abs(a - b).max() / scale:.2e} relative"
        # rank 1's replica equals rank 0's exactly: one optimizer step on the same averaged gradient
        for name in ref:
            np.testing.assert_array_equal(ranks[0][key]["par"][name], ranks[1][key]["par"][name])
        reduced = case["reduced"]
        if "lora" in key:  # only the adapters travel
            assert reduced and all("parametrizations" in n and n.endswith(("lora_A", "lora_B")) or ".lora_" in n
                                   for n in reduced), reduced
        else:
            assert sorted(reduced) == sorted(ref)


OTHERS = """
import json
import numpy as np
import microgradnn as mg
import microgradnn.distributed as dist
from microgradnn.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group()
rank = dist.get_rank()
out = {}

# gradient accumulation: two micro-batches under no_sync + one synced = one reduction of the sum
mg.manual_seed(0)
model = DDP(mg.nn.Sequential(mg.nn.Linear(4, 5), mg.nn.Tanh(), mg.nn.Linear(5, 2)).double())
rng = np.random.default_rng(50 + rank)
xs = [mg.tensor(rng.standard_normal((3, 4))) for _ in range(3)]
with model.no_sync():
    for x in xs[:2]:
        model(x).pow(2).sum().backward()
local_before_sync = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
model(xs[2]).pow(2).sum().backward()
out["accumulated"] = {n: p.grad.numpy().tolist() for n, p in model.named_parameters()}
out["names"] = [n for n, _ in model.named_parameters()]
out["state_dict_keys"] = list(model.state_dict().keys())
out["inputs"] = [x.numpy().tolist() for x in xs]
out["weights"] = {n: p.detach().numpy().tolist() for n, p in model.named_parameters()}

# an unused parameter: an error naming it at the next forward, or find_unused_parameters
class TwoHeads(mg.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = mg.nn.Linear(3, 2)
        self.b = mg.nn.Linear(3, 2)
    def forward(self, x, use_b):
        return self.b(x) if use_b else self.a(x)

mg.manual_seed(1)
strict = DDP(TwoHeads().double())
x = mg.tensor(rng.standard_normal((2, 3)))
strict(x, False).sum().backward()
try:
    strict(x, False)
    out["unused_error"] = None
except RuntimeError as e:
    out["unused_error"] = str(e)

mg.manual_seed(1)
lenient = DDP(TwoHeads().double(), find_unused_parameters=True)
lenient(x, rank == 1).sum().backward()   # rank 0 uses head a, rank 1 head b
out["lenient"] = {n: p.grad.numpy().tolist() for n, p in lenient.named_parameters()}

# a head no rank uses keeps grad None (as in one process, where the optimizer then skips it)
mg.manual_seed(1)
neither = DDP(TwoHeads().double(), find_unused_parameters=True)
neither(x, False).sum().backward()
out["never_used"] = [n for n, p in neither.named_parameters() if p.grad is None]
out["x"] = x.numpy().tolist()
open(f"out{rank}.json", "w").write(json.dumps(out))
"""


def test_no_sync_unused_parameters_and_state_dict_keys(tmp_path):
    run_mpi(OTHERS, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"out{r}.json").read_text()) for r in (0, 1))
    assert r0["names"] == ["module.0.weight", "module.0.bias", "module.2.weight", "module.2.bias"]
    assert r0["state_dict_keys"] == r0["names"]
    # reference: the average over ranks of each rank's summed gradient over its 3 micro-batches
    import microgradnn as mg

    expected = None
    for r in (r0, r1):
        model = mg.nn.Sequential(mg.nn.Linear(4, 5), mg.nn.Tanh(), mg.nn.Linear(5, 2)).double()
        model.load_state_dict({k[len("module."):]: mg.tensor(np.array(v)) for k, v in r0["weights"].items()})
        for x in r["inputs"]:
            model(mg.tensor(np.array(x))).pow(2).sum().backward()
        grads = {"module." + n: p.grad.numpy() / 2 for n, p in model.named_parameters()}
        expected = grads if expected is None else {n: expected[n] + grads[n] for n in grads}
    for r in (r0, r1):
        for n, g in expected.items():
            np.testing.assert_allclose(r["accumulated"][n], g, rtol=1e-12)
    assert "b.weight" in r0["unused_error"] and "find_unused_parameters=True" in r0["unused_error"]
    # head a: rank 0's gradient / 2 (rank 1 contributes zeros); head b: rank 1's / 2
    x0, x1 = np.array(r0["x"]), np.array(r1["x"])
    assert not np.allclose(x0, x1)
    for r in (r0, r1):
        np.testing.assert_allclose(r["lenient"]["module.a.weight"], np.tile(x0.sum(0), (2, 1)) / 2, rtol=1e-12)
        np.testing.assert_allclose(r["lenient"]["module.b.weight"], np.tile(x1.sum(0), (2, 1)) / 2, rtol=1e-12)
        np.testing.assert_allclose(r["lenient"]["module.a.bias"], [1.0, 1.0], rtol=1e-12)
        assert r["never_used"] == ["module.b.weight", "module.b.bias"]
