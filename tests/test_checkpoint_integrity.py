"""Checkpoints that nothing can silently corrupt, and reads that are bounded whatever the file.

* every byte of a saved checkpoint flipped in turn: load either refuses it with one line or
  returns exactly what was saved — never different numbers;
* /dev/zero, FIFOs, sockets, folders: refused by kind before anything is read;
* an 8 GiB sparse file, a header claiming gigabytes: refused at once under a 1 GiB address
  space cap (resource.setrlimit in a child process);
* BF16 tensors named as unsupported; torch's advice to disable its safe loader never repeated;
* metadata nested 200,000 deep: a clean error, not a RecursionError.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import microgradnn as mg
from microgradnn.checkpoint import CheckpointError, ChecksumMismatchError


def _state(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"model": {"w": rng.standard_normal((5, 7)).astype(np.float32),
                      "b": rng.standard_normal(7).astype(np.float64)},
            "step": int(rng.integers(1, 10**6)), "lr": float(rng.random()), "name": "run", "ids": (1, 2)}


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


def test_every_flipped_byte_is_caught_or_harmless(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    state = _state(1)
    mg.save(state, path)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert _equal(mg.load(path), state)
    bad = tmp_path / "bad.safetensors"
    outcomes = {"refused": 0, "identical": 0}
    rng = np.random.default_rng(0)
    for pos in range(len(data)):  # every byte: the length, the header, the tensor data
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(flipped))
        try:
            loaded = mg.load(bad)
        except CheckpointError as exc:
            message = str(exc)
            assert "\n" not in message and str(bad) in message, (pos, message)
            outcomes["refused"] += 1
            continue
        # only bytes that carry no content may change without notice (header padding spaces
        # turned into other whitespace, say)
        assert _equal(loaded, state), f"byte {pos} (header ends at {8 + n}) changed the content silently"
        outcomes["identical"] += 1
    assert outcomes["refused"] > len(data) * 0.9, outcomes


def test_flip_in_tensor_data_is_a_checksum_mismatch(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    mg.save(_state(2), path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes: safetensors itself can't notice
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="SHA-256"):
        mg.load(path)


def test_file_without_digest_still_loads(tmp_path):
    """Checkpoints written before digests existed load as before (unverified)."""
    path = tmp_path / "old.safetensors"
    state = _state(3)
    mg.save(state, path)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    del header["__metadata__"]["sha256"]
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n :])
    assert _equal(mg.load(path), state)


def test_devices_fifos_sockets_and_folders_are_refused_by_kind(tmp_path):
    with pytest.raises(CheckpointError, match="is a character device"):
        mg.load("/dev/zero")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=r"is a FIFO \(named pipe\)"):
        mg.load(fifo)  # no writer: a blocking open would hang here
    sock_path = tmp_path / "s.safetensors"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        with pytest.raises(CheckpointError, match="is a socket"):
            mg.load(sock_path)
    finally:
        sock.close()
    with pytest.raises(CheckpointError, match="is a folder"):
        mg.load(tmp_path)
    link = tmp_path / "link.safetensors"
    os.symlink("/dev/zero", link)
    with pytest.raises(CheckpointError, match="is a character device"):
        mg.load(link)


_CAPPED = textwrap.dedent("""
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB of address space
    import microgradnn as mg
    from microgradnn.checkpoint import CheckpointError
    for path in sys.argv[1:]:
        start = time.perf_counter()
        try:
            mg.load(path)
            print("LOADED", path)
        except CheckpointError as exc:
            print("REFUSED", round(time.perf_counter() - start, 3), exc)
""")


def test_huge_and_endless_files_are_refused_at_once_under_a_memory_cap(tmp_path):
    sparse = tmp_path / "last.safetensors"
    with open(sparse, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB of zeros, no disk used
    claims = tmp_path / "claims.safetensors"  # a header length of 4 GiB
    claims.write_bytes((4 << 30).to_bytes(8, "little") + b"{" + b" " * 64)
    padded = tmp_path / "padded.safetensors"  # a real checkpoint with 8 GiB of zeros after it
    mg.save(_state(4), padded)
    with open(padded, "r+b") as f:
        f.truncate(8 << 30)
    result = subprocess.run([sys.executable, "-c", _CAPPED, str(sparse), str(claims), str(padded), "/dev/zero"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("REFUSED") for line in lines), result.stdout
    assert all(float(line.split()[1]) < 5.0 for line in lines), result.stdout
    assert "truncated (or not a checkpoint)" in lines[1] and "8589934592" in lines[2], result.stdout


def _with_tensor_dtype(path, dtype: str) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32")
    header[name]["dtype"] = dtype  # F32 -> BF16 halves the element size: fix the shape up
    header[name]["shape"] = [int(np.prod(header[name]["shape"])) * 2]
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n :])


def test_bf16_is_named_as_unsupported(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "bf16.safetensors"
    save_file({"w": torch.randn(3, 4).to(torch.bfloat16)}, str(path))
    with pytest.raises(CheckpointError, match="dtype BF16, which mg.load does not support") as info:
        mg.load(path)
    assert "KeyError" not in str(info.value)


def test_refused_torch_payload_gives_no_advice_to_disable_the_safe_loader(tmp_path):
    import torch

    path = tmp_path / "evil.pt"
    torch.save({"f": os.system}, path)
    with pytest.raises(CheckpointError) as info:
        mg.load(path)
    message = str(info.value)
    assert "weights_only" not in message and "will likely succeed" not in message, message
    assert "posix.system" in message and "\n" not in message, message


def test_metadata_nested_200000_deep_is_a_clean_error(tmp_path):
    path = tmp_path / "deep.safetensors"
    deep = "[" * 200_000 + "]" * 200_000
    meta = {"format": "microgradnn.checkpoint", "version": "1", "structure": deep}
    header = json.dumps({"__metadata__": meta}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="nested too deep"):
        mg.load(path)
    header = b'{"__metadata__": {}, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="nested too deep"):
        mg.load(path)


def test_metadata_of_wrong_types_is_a_clean_error(tmp_path):
    path = tmp_path / "types.safetensors"
    for structure in ({"$np": "nonsense", "v": 1}, {"$tuple": 5}, {"$dict": [[1]]}, {"$tensor": 3},
                      {"$float": []}, {"$np": "float32"}):
        meta = {"format": "microgradnn.checkpoint", "version": "1", "structure": json.dumps(structure)}
        header = json.dumps({"__metadata__": meta}).encode()
        path.write_bytes(len(header).to_bytes(8, "little") + header)
        with pytest.raises(CheckpointError, match="corrupt"):
            mg.load(path)
    header = json.dumps({"__metadata__": {"format": 3}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="not a mapping of strings"):
        mg.load(path)


def test_fileio_refuses_by_kind_and_bounds_reads(tmp_path):
    from microgradnn.fileio import NotARegularFileError, not_a_file_reason, open_regular_file, read_bounded

    assert not_a_file_reason("/dev/null") == "is a character device, not a regular file"
    assert not_a_file_reason(tmp_path / "missing") == "does not exist"
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    assert "can't be examined" in not_a_file_reason(loop)
    with pytest.raises(NotARegularFileError):
        open_regular_file("/dev/zero")
    small = tmp_path / "small.txt"
    small.write_bytes(b"x" * 100)
    assert read_bounded(small, 100) == b"x" * 100
    with pytest.raises(ValueError, match="more than"):
        read_bounded(small, 99)
    assert stat.S_ISREG(os.stat(small).st_mode)
