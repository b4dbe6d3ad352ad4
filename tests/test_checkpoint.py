"""Checkpoints: ``mg.save`` / ``mg.load``.

* resuming from a checkpoint (model + optimizer + scheduler + RNG state) continues training
  bit for bit as if it had never stopped;
* every kind of value comes back with its type (ints of any size, numpy scalars, tuples,
  non-string dict keys, inf/nan, Parameters, shared arrays);
* a truncated, corrupt or foreign file gives a CheckpointError that says what is wrong;
* a save that fails half-way leaves the previous file as it was and no temporary behind;
* a PyTorch ``.pt`` state_dict loads (when torch is installed) and gives torch's outputs.
"""

from __future__ import annotations

import builtins
import json
import os
import sys

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import checkpoint
from microgradnn.checkpoint import CheckpointError, CheckpointNotFoundError
from microgradnn.nn import Parameter

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test dependency here
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: the .pt tests need it as the oracle")

VOCAB, EMB, HIDDEN, BATCH, SEQ = 13, 6, 8, 4, 7


# ----------------------------------------------------------------------------- a small char-LM


class TinyLM(mg.nn.Module):
    """Embedding -> 2-layer LSTM (dropout between layers) -> Dropout -> Linear: every kind of
    state a real run has, and dropout so that the RNG state matters."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = mg.nn.Embedding(VOCAB, EMB)
        self.rnn = mg.nn.LSTM(EMB, HIDDEN, num_layers=2, dropout=0.25, batch_first=True)
        self.drop = mg.nn.Dropout(0.2)
        self.head = mg.nn.Linear(HIDDEN, VOCAB)

    def forward(self, x):
        out, _ = self.rnn(self.embedding(x))
        return self.head(self.drop(out))


def build(seed):
    """Model, optimizer and scheduler, initialised from ``seed``."""
    mg.manual_seed(seed)
    model = TinyLM().double()
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.startswith("head")]},
        {"params": list(model.head.parameters()), "lr": 0.02, "weight_decay": 0.0},
    ]
    opt = mg.optim.AdamW(groups, lr=0.01, weight_decay=0.05, amsgrad=True)
    sched = mg.optim.lr_scheduler.LinearWarmup(opt, warmup_steps=3, total_steps=12, decay="cosine", min_lr=1e-4)
    return model, opt, sched


def train(model, opt, sched, steps):
    """``steps`` steps on batches drawn from mg's own generator (so the RNG state matters
    for the data as well as for dropout); returns each step's loss."""
    losses = []
    model.train()
    for _ in range(steps):
        x = mg.randint(0, VOCAB, (BATCH, SEQ))
        y = mg.randint(0, VOCAB, (BATCH, SEQ))
        opt.zero_grad()
        logits = model(x)
        loss = mg.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
    return losses


def snapshot(model, opt, sched, step):
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": mg.get_rng_state(),
        "step": step,
        "config": {"name": "tiny", "vocab": VOCAB, "layers": [EMB, HIDDEN], "dropout": 0.25, "note": "ünïcode ✓"},
    }


def params_of(model):
    return {name: p.array.copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("k,m", [(5, 6), (1, 3)])
def test_resume_is_bit_identical(k, m, tmp_path):
    # the run that never stops
    model_a, opt_a, sched_a = build(seed=0)
    mg.manual_seed(123)
    losses_a = train(model_a, opt_a, sched_a, k + m)
    rng_after_a = mg.get_rng_state()

    # the same run, stopped after k steps and saved
    model_b, opt_b, sched_b = build(seed=0)
    mg.manual_seed(123)
    losses_b = train(model_b, opt_b, sched_b, k)
    path = tmp_path / "ckpt.safetensors"
    mg.save(snapshot(model_b, opt_b, sched_b, k), path)
    del model_b, opt_b, sched_b

    # a fresh process would start from other weights and another RNG state
    model_c, opt_c, sched_c = build(seed=99)
    mg.manual_seed(7)
    mg.randn(5)
    ck = mg.load(path)
    assert ck["step"] == k and ck["config"]["note"] == "ünïcode ✓"
    model_c.load_state_dict(ck["model"])
    opt_c.load_state_dict(ck["optimizer"])
    sched_c.load_state_dict(ck["scheduler"])
    mg.set_rng_state(ck["rng"])
    losses_c = train(model_c, opt_c, sched_c, m)

    assert losses_b + losses_c == losses_a  # exact float equality, every step
    final_a, final_c = params_of(model_a), params_of(model_c)
    assert final_a.keys() == final_c.keys()
    for name in final_a:
        np.testing.assert_array_equal(final_c[name], final_a[name], err_msg=name)
        assert final_c[name].dtype == final_a[name].dtype == np.float64
    sd_a, sd_c = opt_a.state_dict(), opt_c.state_dict()
    assert sd_a["param_groups"] == sd_c["param_groups"]
    for i, state in sd_a["state"].items():
        for key, value in state.items():
            np.testing.assert_array_equal(sd_c["state"][i][key], value, err_msg=f"state {i} {key}")
    assert sched_c.state_dict() == sched_a.state_dict()
    assert mg.get_rng_state() == rng_after_a  # the generator is where the uninterrupted run left it


def test_round_trip_preserves_values_and_types(tmp_path):
    shared = np.arange(6, dtype=np.float32).reshape(2, 3)
    obj = {
        "int": 3,
        "huge": 2**127 + 12345,  # PCG64's state holds 128-bit ints
        "neg": -(2**70),
        "float": 0.1 + 0.2,  # not representable in a short decimal: must come back exactly
        "tiny": 5e-324,
        "inf": float("inf"),
        "ninf": float("-inf"),
        "nan": float("nan"),
        "bool": True,
        "none": None,
        "str": "a \"quoted\" \\ string\nwith lines",
        "dollar": {"$tensor": "not an array", "$float": 1},  # keys that look like our tags
        "list": [1, 2.5, "x", [None, False]],
        "tuple": (1, (2, 3), "t"),
        "int_keys": {0: "a", 1: {"b": 2}, -3: "c"},
        "mixed_keys": {1: "int", "1": "str", 2.5: "float", (1, 2): "tuple", None: "none", True: "bool"},
        "np_scalars": [np.float32(1.5), np.float64(-2.25), np.int64(-7), np.uint8(200), np.bool_(True),
                       np.float16(0.333), np.float32("nan")],
        "arrays": {
            "f64": np.random.default_rng(0).normal(size=(3, 4)),
            "f32": np.random.default_rng(1).normal(size=5).astype(np.float32),
            "f16": np.array([1.0, -0.5, 65504.0], dtype=np.float16),
            "i64": np.array([[1, -2], [3, 2**62]], dtype=np.int64),
            "i8": np.array([-128, 127], dtype=np.int8),
            "u8": np.array([0, 255], dtype=np.uint8),
            "bool": np.array([True, False, True]),
            "scalar": np.array(3.25),
            "empty": np.zeros((0, 4), dtype=np.float32),
            "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
            "strided": np.arange(20.0)[::3],
            "bigendian": np.arange(4, dtype=">f8"),
        },
        "shared_a": shared,
        "shared_b": shared,  # the same object twice: stored once, one object again on load
        "tensor": mg.tensor([[1.0, 2.0]], dtype=mg.float64),
        "param": Parameter(mg.tensor([0.5, -0.5])),
    }
    path = tmp_path / "values.ckpt"
    mg.save(obj, path)
    out = mg.load(path)
    assert out.keys() == obj.keys()
    for key in ("int", "huge", "neg", "float", "tiny", "inf", "ninf", "bool", "none", "str", "dollar", "list",
                "tuple", "int_keys", "mixed_keys"):
        assert out[key] == obj[key], key
        assert type(out[key]) is type(obj[key]), key
    assert math_isnan(out["nan"])
    assert list(out["mixed_keys"]) == list(obj["mixed_keys"])  # order and key types
    assert [type(k) for k in out["mixed_keys"]] == [type(k) for k in obj["mixed_keys"]]
    for got, want in zip(out["np_scalars"], obj["np_scalars"]):
        assert type(got) is type(want)
        np.testing.assert_array_equal(got, want)
    for name, want in obj["arrays"].items():
        got = out["arrays"][name]
        assert isinstance(got, np.ndarray), name
        assert got.shape == want.shape and got.dtype == want.dtype.newbyteorder("="), name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.flags.writeable, name
    assert out["shared_a"] is out["shared_b"]
    assert isinstance(out["tensor"], mg.Tensor) and not isinstance(out["tensor"], Parameter)
    np.testing.assert_array_equal(out["tensor"].numpy(), [[1.0, 2.0]])
    assert out["tensor"].dtype == np.float64
    assert isinstance(out["param"], Parameter) and out["param"].requires_grad


def math_isnan(x):
    return isinstance(x, float) and x != x


def test_arrays_are_real_safetensors_tensors(tmp_path):
    """Any safetensors reader sees the arrays, named by their path in the saved object; the
    rest is JSON in the header's metadata."""
    import safetensors.numpy

    model, opt, sched = build(seed=0)
    train(model, opt, sched, 2)
    path = tmp_path / "ck.safetensors"
    mg.save(snapshot(model, opt, sched, 2), path)
    raw = safetensors.numpy.load_file(str(path))
    assert "model.rnn.weight_ih_l0" in raw and "optimizer.state.0.exp_avg" in raw
    np.testing.assert_array_equal(raw["model.head.weight"], model.head.weight.array)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    meta = header["__metadata__"]
    assert meta["format"] == "microgradnn.checkpoint" and meta["version"] == "1"
    assert json.loads(meta["structure"])["step"] == 2


def test_plain_safetensors_file_loads_as_a_dict(tmp_path):
    import safetensors.numpy

    arrays = {"w": np.ones((2, 2), np.float32), "b": np.arange(3, dtype=np.int64)}
    safetensors.numpy.save_file(arrays, str(tmp_path / "plain.safetensors"))
    out = mg.load(tmp_path / "plain.safetensors")
    assert out.keys() == arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(out[k], arrays[k])


def test_save_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match=r"can't save builtins.object at 'a.b.1'"):
        mg.save({"a": {"b": [1, object()]}}, tmp_path / "x")
    with pytest.raises(TypeError, match=r"dtype object at 'arr'"):
        mg.save({"arr": np.array([1, "x"], dtype=object)}, tmp_path / "x")
    with pytest.raises(TypeError, match="dict key of type frozenset"):
        mg.save({frozenset([1]): 1}, tmp_path / "x")
    with pytest.raises(CheckpointError, match="does not exist"):
        mg.save({"a": 1}, tmp_path / "no" / "such" / "dir" / "x")
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- damaged files


@pytest.fixture
def good_checkpoint(tmp_path):
    model, opt, sched = build(seed=0)
    train(model, opt, sched, 2)
    path = tmp_path / "good.safetensors"
    mg.save(snapshot(model, opt, sched, 2), path)
    return path


def test_truncated_file_gives_a_clear_error(good_checkpoint, tmp_path):
    data = good_checkpoint.read_bytes()
    n = int.from_bytes(data[:8], "little")
    cuts = sorted({0, 1, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, (8 + n + len(data)) // 2, len(data) - 1})
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            mg.load(bad)
        message = str(info.value)
        assert str(bad) in message, cut
        assert ("truncated" in message or "empty" in message), (cut, message)
        if cut > 8 + n:  # cut inside the tensor data: the error says how much is missing
            assert f"the file is {len(data)} bytes long but it has only {cut}" in message, message
        # the error is ours, raised from our code, not an exception leaking out of a parser
        exc = info.value
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__), cut


def test_corrupt_files_give_clear_errors(good_checkpoint, tmp_path):
    data = good_checkpoint.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])

    def with_header(h, digest=False):
        # crafted metadata, as in a file written before checkpoints carried a SHA-256 (the
        # decoder's own checks are what is tested); with digest=True the digest stays and
        # must catch the edit
        if not digest:
            h = {**h, "__metadata__": {k: v for k, v in h["__metadata__"].items() if k != "sha256"}}
        text = json.dumps(h).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        return len(text).to_bytes(8, "little") + text + data[8 + n :]

    cases = {
        "garbled_header": data[:8] + b"{" + b"\xff" * (n - 1) + data[8 + n :],
        "structure_not_json": with_header({**header, "__metadata__": {**header["__metadata__"], "structure": "{"}}),
        "missing_tensor": with_header({**header, "__metadata__": {
            **header["__metadata__"], "structure": json.dumps({"w": {"$tensor": "nope", "kind": "ndarray"}})}}),
        "newer_version": with_header({**header, "__metadata__": {**header["__metadata__"], "version": "99"}}),
        "edited_structure": with_header({**header, "__metadata__": {
            **header["__metadata__"], "structure": json.dumps({"w": {"$tensor": "nope", "kind": "ndarray"}})}},
            digest=True),
    }
    expect = {"garbled_header": "not valid JSON|corrupt", "structure_not_json": "structure is missing or not valid",
              "missing_tensor": "names a tensor 'nope'", "newer_version": "newer microgradnn",
              "edited_structure": "do not match the SHA-256 recorded"}
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(blob)
        with pytest.raises(CheckpointError, match=expect[name]):
            mg.load(bad)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"hello, this is a text file\n" * 3, "truncated or corrupt, or not a checkpoint"),
        (b'{"model": {"weight": [1, 2, 3]}}', "neither a safetensors file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(64)), "not a checkpoint"),
        (b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", "is a Python pickle, not a checkpoint"),
        (b"abcdefgh{ not really a header", "truncated \\(or not a checkpoint\\)"),
        (b"", "is empty"),
    ],
    ids=["text", "json", "png", "pickle", "fake-header", "empty"],
)
def test_non_checkpoint_files_give_clear_errors(content, match, tmp_path):
    path = tmp_path / "thing.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        mg.load(path)


def test_zip_that_is_not_torch(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="zip archive but not a PyTorch checkpoint"):
        mg.load(tmp_path / "a.zip")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        mg.load(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError):  # also an OSError subclass, as open() would raise
        mg.load(tmp_path / "nothing.safetensors")
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        mg.load(tmp_path)


# ----------------------------------------------------------------------------- atomic writes


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_interrupted_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    old = {"w": np.arange(1000.0), "step": 1}
    mg.save(old, path)
    before = path.read_bytes()

    real_write = checkpoint._write_all

    def half_then_crash(f, data):
        real_write(f, data[: len(data) // 2])  # half the bytes reach the disk...
        raise KeyboardInterrupt  # ...then the user presses Ctrl-C

    monkeypatch.setattr(checkpoint, "_write_all", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        mg.save({"w": np.ones(5000), "step": 2}, path)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    out = mg.load(path)
    assert out["step"] == 1
    np.testing.assert_array_equal(out["w"], old["w"])

    def disk_full(f, data):
        real_write(f, data[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_all", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*unchanged"):
        mg.save({"w": np.ones(5000), "step": 3}, path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_failed_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    mg.save({"step": 1}, path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        assert os.path.dirname(os.fspath(src)) == os.path.dirname(os.fspath(dst))  # same folder: rename is atomic
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="Input/output error"):
        mg.save({"step": 2}, path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_save_writes_to_a_temp_file_then_renames(tmp_path, monkeypatch):
    """The target path is never opened for writing: the bytes go to a temporary in the same
    folder, which is fsync'ed and renamed over the target."""
    path = tmp_path / "ckpt.safetensors"
    seen = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: (seen.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(checkpoint.os, "replace",
                        lambda src, dst: (seen.append(("replace", os.path.basename(src), os.path.basename(dst))),
                                          real_replace(src, dst))[1])
    mg.save({"a": np.ones(3)}, path)
    assert seen[0] == "fsync"
    replace = [s for s in seen if isinstance(s, tuple)]
    assert len(replace) == 1 and replace[0][2] == "ckpt.safetensors" and replace[0][1].endswith(".tmp")
    assert replace[0][1].startswith(".ckpt.safetensors.")
    assert _leftovers(tmp_path) == []
    # overwriting an existing checkpoint works the same way
    mg.save({"a": np.zeros(3)}, path)
    np.testing.assert_array_equal(mg.load(path)["a"], np.zeros(3))


def test_no_pickle_anywhere(tmp_path, monkeypatch):
    """Saving and loading never touch pickle (a .pt file goes through torch.load with
    weights_only=True, tested below)."""
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    model, opt, sched = build(seed=0)
    train(model, opt, sched, 1)  # (numba's kernel cache uses pickle: compile before the ban)
    state = snapshot(model, opt, sched, 1)
    for name in ("dump", "dumps", "load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    mg.save(state, tmp_path / "c.safetensors")
    out = mg.load(tmp_path / "c.safetensors")
    monkeypatch.undo()
    assert out["step"] == 1 and out["rng"] == state["rng"]


# ----------------------------------------------------------------------------- PyTorch files


@needs_torch
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_lstm_state_dict_gives_the_same_outputs(bidirectional, tmp_path):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True, bidirectional=bidirectional, dtype=torch.float64)
    torch.save(ref.state_dict(), tmp_path / "lstm.pt")
    sd = mg.load(tmp_path / "lstm.pt")
    assert list(sd) == list(ref.state_dict())
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in sd.values())

    ours = mg.nn.LSTM(5, 7, num_layers=2, batch_first=True, bidirectional=bidirectional, dtype=mg.float64)
    ours.load_state_dict(sd)
    x = np.random.default_rng(0).normal(size=(3, 6, 5))
    h0 = np.random.default_rng(1).normal(size=(2 * (1 + bidirectional), 3, 7))
    c0 = np.random.default_rng(2).normal(size=h0.shape)
    out, (h, c) = ours(mg.tensor(x), (mg.tensor(h0), mg.tensor(c0)))
    with torch.no_grad():
        tout, (th, tc) = ref(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    for a, b, name in [(out, tout, "output"), (h, th, "h_n"), (c, tc, "c_n")]:
        np.testing.assert_allclose(a.detach().numpy(), b.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@needs_torch
def test_torch_optimizer_state_dict_and_nested_objects(tmp_path):
    """A torch checkpoint with a model, an optimizer state (int keys, 0-d step tensors),
    plain numbers and strings loads as arrays + plain data, and the optimizer state goes
    into mg's Adam."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2, dtype=torch.float64)
    opt = torch.optim.Adam(lin.parameters(), lr=0.01)
    lin(torch.randn(4, 3, dtype=torch.float64)).sum().backward()
    opt.step()
    torch.save({"model": lin.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "name": "lin",
                "bf16": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "all.pth")
    ck = mg.load(tmp_path / "all.pth")
    assert ck["epoch"] == 3 and ck["name"] == "lin"
    assert ck["bf16"].dtype == np.float32  # numpy has no bfloat16: widened exactly
    assert set(ck["optimizer"]["state"]) == {0, 1}
    ours = mg.nn.Linear(3, 2).double()
    ours.load_state_dict(ck["model"])
    mopt = mg.optim.Adam(ours.parameters(), lr=0.01)
    mopt.load_state_dict(ck["optimizer"])
    assert mopt.state_dict()["state"][0]["step"] == 1
    np.testing.assert_array_equal(mopt.state[ours.weight]["exp_avg"], opt.state[lin.weight]["exp_avg"].numpy())


@needs_torch
def test_torch_file_with_arbitrary_objects_is_refused(tmp_path):
    """torch.load(weights_only=True) refuses pickled classes; mg.load says so, cleanly."""
    torch.save({"fn": _NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="can't read PyTorch file"):
        mg.load(tmp_path / "evil.pt")


class _NotAllowed:
    pass


@needs_torch
def test_truncated_torch_file(tmp_path):
    torch.save({"w": torch.ones(100)}, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        mg.load(tmp_path / "cut.pt")


@needs_torch
def test_legacy_torch_format(tmp_path):
    torch.save({"w": torch.arange(3.0)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(mg.load(tmp_path / "old.pt")["w"], [0.0, 1.0, 2.0])


def test_torch_missing_gives_a_clear_error(tmp_path, monkeypatch):
    """Without PyTorch, a .pt file gets an error naming the fix instead of an ImportError."""
    # a minimal file torch.save would write: the sniffing needs only its first bytes
    path = tmp_path / "model.pt"
    if torch is not None:
        torch.save({"w": torch.ones(2)}, path)
    else:  # pragma: no cover
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 26 + b"model/data.pkl")
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(CheckpointError, match=r"is a PyTorch file; reading it needs PyTorch, which is not installed"):
        mg.load(path)
    # mg's own checkpoints never need torch
    mg.save({"w": np.ones(2)}, tmp_path / "own.safetensors")
    np.testing.assert_array_equal(mg.load(tmp_path / "own.safetensors")["w"], np.ones(2))


def test_cuda_tensors_round_trip(tmp_path):
    if not mg.cuda_is_available():
        pytest.skip("no CUDA device (CuPy and a GPU): GPU checkpoints are tested only where there is one")
    import cupy

    t = mg.tensor(np.arange(6.0).reshape(2, 3), device="cuda")
    p = Parameter(mg.tensor(np.ones(3, np.float32), device="cuda"))
    opt = mg.optim.Adam([p], lr=0.1)
    p.grad = mg.tensor(np.full(3, 0.5, np.float32), device="cuda")
    opt.step()
    mg.save({"t": t, "p": p, "raw": cupy.arange(4), "optimizer": opt.state_dict()}, tmp_path / "gpu.safetensors")
    on_cpu = mg.load(tmp_path / "gpu.safetensors")
    assert isinstance(on_cpu["raw"], np.ndarray) and str(on_cpu["t"].device).startswith("cpu")
    np.testing.assert_array_equal(on_cpu["t"].numpy(), np.arange(6.0).reshape(2, 3))
    on_gpu = mg.load(tmp_path / "gpu.safetensors", device="cuda")
    assert isinstance(on_gpu["raw"], cupy.ndarray) and str(on_gpu["p"].device).startswith("cuda")
    assert isinstance(on_gpu["p"], Parameter)
    # a GPU optimizer state resumes on the CPU, and the other way round
    q = Parameter(mg.tensor(on_cpu["p"].detach().numpy()))
    cpu_opt = mg.optim.Adam([q], lr=0.1)
    cpu_opt.load_state_dict(on_cpu["optimizer"])
    q.grad = mg.tensor(np.full(3, 0.5, np.float32))
    cpu_opt.step()
    p.grad = mg.tensor(np.full(3, 0.5, np.float32), device="cuda")
    opt.step()
    np.testing.assert_allclose(q.detach().numpy(), p.detach().cpu().numpy(), rtol=1e-6)
