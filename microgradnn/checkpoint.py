"""Checkpoints: ``mg.save(obj, path)`` and ``mg.load(path)``, with no pickle anywhere.

``obj`` is a (nested) dict / list / tuple of arrays, Tensors, numbers, strings, bools and
``None`` — typically::

    mg.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "rng": mg.get_rng_state(), "step": 10}, "ckpt.safetensors")

The file is ONE safetensors file: every array is a safetensors tensor, named by its path
in ``obj`` (``model.rnn.weight_ih_l0``, ``optimizer.state.0.exp_avg``), and everything else
is JSON in the header's ``__metadata__`` (``format``, ``version``, ``structure``). The JSON
keeps what plain JSON would lose, with tagged objects:

* ``{"$tensor": name, "kind": "ndarray" | "Tensor" | "Parameter", ...}`` — an array;
* ``{"$np": "float32", "v": 1.5}`` — a numpy scalar (its type comes back too);
* ``{"$float": "inf"}`` — a non-finite float; ``{"$tuple": [...]}`` — a tuple;
* ``{"$dict": [[key, value], ...]}`` — a dict whose keys are not all plain strings
  (an optimizer's ``{0: {...}}`` state, say); the keys come back with their types.

Python ints of any size (the RNG state has 128-bit ones) and floats round-trip exactly.
Any safetensors reader can open the arrays; ``mg.load`` of a plain safetensors file (a
Hugging Face model, say) returns its ``{name: array}`` dict.

Saving is atomic: the bytes go to a temporary file in the same directory, which is flushed,
fsync'ed and then renamed over ``path``; a crash leaves the old checkpoint intact.

Every file is verified: ``save`` records a SHA-256 of what the file holds (each tensor's
name, dtype, shape and bytes, and the metadata) in the header's ``__metadata__["sha256"]``,
and ``load`` recomputes it; a flipped bit anywhere that matters is
:class:`ChecksumMismatchError`, never silently different numbers. Reading is bounded: the
8-byte header length and the header's offsets say how long the file must be, and nothing
beyond that is read (``/dev/zero``, a FIFO or a device is refused by kind before reading).

``mg.load`` also reads a PyTorch ``.pt`` / ``.pth`` file (``torch.load(...,
weights_only=True)``, tensors become numpy arrays) when PyTorch is installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import uuid
import zipfile
from collections import OrderedDict
from typing import Any, BinaryIO

import numpy as np

from .backend import to_host

__all__ = ["save", "load", "CheckpointError", "CheckpointNotFoundError", "ChecksumMismatchError"]

FORMAT = "microgradnn.checkpoint"
VERSION = 1

_SUPPORTED = {np.dtype(t) for t in (
    np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
    np.float16, np.float32, np.float64, np.complex64,
)}
_NP_SCALAR_KINDS = "biuf"
_CHUNK = 1 << 24  # bytes per write() call
#: safetensors' own limit on the JSON header; a longer claimed header is a corrupt file
_MAX_HEADER = 100_000_000
#: the safetensors dtypes numpy (and so mg.load) can hold
_NUMPY_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64", "C64"}


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read (truncated, corrupt, unsupported content)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """``mg.load`` was given a path where there is no file."""


class ChecksumMismatchError(CheckpointError):
    """The file's contents differ from what was written (its recorded SHA-256 disagrees)."""


def _digest(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """SHA-256 over what a checkpoint holds: the metadata (less the digest itself) and every
    tensor's name, dtype, shape and bytes, in name order. It is computed from the arrays,
    not the file's bytes, so it does not depend on how safetensors lays the header out."""
    h = hashlib.sha256()
    for key in sorted(metadata):
        if key != "sha256":
            h.update(json.dumps([key, metadata[key]]).encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.newbyteorder("<").str, list(a.shape)]).encode("utf-8"))
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8))
    return h.hexdigest()


# ----------------------------------------------------------------------------- encoding


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach") and hasattr(obj, "numpy")


def _is_cupy_array(obj: Any) -> bool:
    return type(obj).__module__.startswith("cupy") and hasattr(obj, "get")


def _path_str(path: list[str]) -> str:
    return ".".join(path) if path else "<root>"


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._by_id: dict[int, str] = {}
        self._keep: list[Any] = []  # keeps ids stable while encoding

    def encode(self, obj: Any, path: list[str]) -> Any:
        from .tensor import Tensor

        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.generic):  # before int/float: np.float64 is a float subclass
            return self._scalar(obj, path)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            obj = float(obj)
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if isinstance(obj, Tensor):
            from .nn.module import Parameter

            node = self._array(obj, to_host(obj.array), path)
            node["kind"] = "Parameter" if isinstance(obj, Parameter) else "Tensor"
            node["requires_grad"] = bool(obj.requires_grad)
            return node
        if isinstance(obj, np.ndarray):
            return self._array(obj, obj, path)
        if _is_cupy_array(obj):
            return self._array(obj, obj.get(), path)
        if _is_torch_tensor(obj):
            return self._array(obj, obj.detach().cpu().numpy(), path)
        if isinstance(obj, dict):
            keys = list(obj.keys())
            if all(isinstance(k, str) and not k.startswith("$") for k in keys):
                return {k: self.encode(v, path + [k]) for k, v in obj.items()}
            return {"$dict": [[self._key(k, path), self.encode(v, path + [str(k)])] for k, v in obj.items()]}
        if isinstance(obj, list):
            return [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"$tuple": [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)]}
        if callable(getattr(obj, "state_dict", None)):  # a Module or an optimizer (duck-typed: no nn import here)
            raise TypeError(
                f"mg.save: can't save a whole {type(obj).__qualname__} object at {_path_str(path)!r} (loading it would "
                f"need pickle): save its state_dict() instead, mg.save(obj.state_dict(), f), and restore it with "
                f"load_state_dict(mg.load(f))"
            )
        raise TypeError(
            f"mg.save: can't save {type(obj).__module__}.{type(obj).__qualname__} at {_path_str(path)!r}: a "
            "checkpoint holds arrays, Tensors, numbers, strings, bools, None and dicts/lists/tuples of them"
        )

    def _key(self, key: Any, path: list[str]) -> Any:
        if key is None or isinstance(key, (bool, str, int, float, tuple, np.generic)):
            return self.encode(key, path)
        raise TypeError(f"mg.save: can't save a dict key of type {type(key).__name__} at {_path_str(path)!r}: "
                        "keys must be strings, numbers, bools, None or tuples of them")

    def _scalar(self, obj: np.generic, path: list[str]) -> Any:
        dtype = obj.dtype
        if dtype.kind not in _NP_SCALAR_KINDS or dtype.itemsize > 8:
            # e.g. complex or long double: keep it exact as a 0-d array
            node = self._array(obj, np.asarray(obj), path)
            node["kind"] = "scalar"
            return node
        if dtype.kind == "b":
            value: Any = bool(obj)
        elif dtype.kind in "iu":
            value = int(obj)
        else:
            value = float(obj)  # exact for float16/32/64
            if not math.isfinite(value):
                value = {"$float": repr(value)}
        return {"$np": dtype.name, "v": value}

    def _array(self, original: Any, array: np.ndarray, path: list[str]) -> dict[str, Any]:
        name = self._by_id.get(id(original))
        if name is None:
            dtype = array.dtype
            if dtype.byteorder not in ("=", "|"):
                array = array.astype(dtype.newbyteorder("="))
            if array.dtype not in _SUPPORTED:
                raise TypeError(f"mg.save: can't save an array of dtype {array.dtype} at {_path_str(path)!r}: "
                                f"supported dtypes are {', '.join(sorted(str(d) for d in _SUPPORTED))}")
            base = _path_str(path)
            name, n = base, 1
            while name in self.arrays:
                name, n = f"{base}#{n}", n + 1
            self.arrays[name] = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            self._by_id[id(original)] = name
            self._keep.append(original)
        return {"$tensor": name, "kind": "ndarray"}


# ----------------------------------------------------------------------------- decoding


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], backend: Any, path: str) -> None:
        self.arrays = arrays
        self.backend = backend
        self.path = path
        self._made: dict[tuple[str, str], Any] = {}

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            raise CheckpointError(f"mg.load: {self.path}: unexpected {type(node).__name__} in the structure")
        if "$tensor" in node:
            return self._array(node)
        if "$np" in node:
            value = node["v"]
            if isinstance(value, dict):
                value = self.decode(value)
            return np.dtype(node["$np"]).type(value)
        if "$float" in node:
            return float(node["$float"])
        if "$tuple" in node:
            return tuple(self.decode(v) for v in node["$tuple"])
        if "$dict" in node:
            return {self._hashable(self.decode(k)): self.decode(v) for k, v in node["$dict"]}
        return {k: self.decode(v) for k, v in node.items()}

    @staticmethod
    def _hashable(key: Any) -> Any:
        return tuple(key) if isinstance(key, list) else key

    def _array(self, node: dict[str, Any]) -> Any:
        name, kind = node["$tensor"], node.get("kind", "ndarray")
        memo = (name, kind)
        if memo in self._made:  # the same object saved twice comes back as one object
            return self._made[memo]
        try:
            array = self.arrays[name]
        except KeyError:
            raise CheckpointError(f"mg.load: {self.path} is corrupt: its structure names a tensor {name!r} "
                                  "that the file does not hold") from None
        if kind == "scalar":
            out = array.reshape(()).copy()[()]
        else:
            if self.backend is not None and self.backend.name != "cpu":
                array = self.backend.xp.asarray(array)
            if kind in ("Tensor", "Parameter"):
                from .backend import get_backend
                from .tensor import Tensor

                backend = self.backend or get_backend("cpu")
                out = Tensor(array, backend, requires_grad=bool(node.get("requires_grad", False)))
                if kind == "Parameter":
                    from .nn.module import Parameter

                    out = Parameter(out, requires_grad=out.requires_grad)
            else:
                out = array
        self._made[memo] = out
        return out


# ----------------------------------------------------------------------------- save


def _write_all(f: Any, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        f.write(view[start : start + _CHUNK])


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories can't be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(obj: Any, f: "str | os.PathLike[str] | BinaryIO") -> None:
    """Write ``obj`` (nested dicts/lists/tuples of arrays, Tensors, numbers, strings, bools,
    None) to ``f`` as one safetensors file: a path (written atomically) or, as ``torch.save``,
    an open binary file (written at its position; the caller owns closing it)."""
    if hasattr(f, "write"):
        _write_all(f, _encode(obj))
        return
    path = os.fspath(f)
    data = _encode(obj)
    _atomic_write(path, data, os.path.dirname(os.path.abspath(path)))


def _encode(obj: Any) -> bytes:
    import safetensors.numpy

    encoder = _Encoder()
    root = encoder.encode(obj, [])
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "structure": json.dumps(root, allow_nan=False, ensure_ascii=False, separators=(",", ":")),
    }
    metadata["sha256"] = _digest(encoder.arrays, metadata)
    return safetensors.numpy.save(encoder.arrays, metadata=metadata)


def _atomic_write(path: str, data: bytes, directory: str) -> None:
    if not os.path.isdir(directory):
        raise CheckpointError(f"mg.save: can't write {path}: directory {directory} does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise CheckpointError(f"mg.save: can't write {path}: can't create a file in {directory} "
                              f"({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # whatever stopped us (a full disk, an exception, Ctrl-C), the file at ``path`` is
        # still the previous checkpoint, and the half-written temporary goes
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(f"mg.save: can't write {path} ({exc.strerror or exc}); any previous file there "
                                  "is unchanged") from exc
        raise
    _fsync_dir(directory)


# ----------------------------------------------------------------------------- load


# torch.save's legacy (pre-1.6) format opens with a pickled magic number
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def load(f: "str | os.PathLike[str] | BinaryIO", device: Any = None) -> Any:
    """Read a checkpoint written by :func:`save` (or a plain safetensors file, or a PyTorch
    ``.pt``/``.pth`` file) from a path or, as ``torch.load``, an open binary file. Arrays
    come back as numpy arrays — CuPy arrays, and Tensors on the GPU, with ``device="cuda"``.
    Raises :class:`CheckpointError` for a truncated or corrupt file and
    :class:`CheckpointNotFoundError` when there is none."""
    backend = None
    if device is not None:
        from .backend import get_backend

        backend = get_backend(device)
    if hasattr(f, "read"):  # an open binary file: read it as a file at a path is read
        path = str(getattr(f, "name", "<file object>"))
        source = f if _seekable(f) else io.BytesIO(f.read())
        if isinstance(source, io.BytesIO) and not isinstance(source.getvalue(), bytes):
            raise CheckpointError(f"mg.load: {path} is open in text mode: open it with 'rb'")
        try:
            base = source.tell()
            kind, data = _read_checkpoint(source, path)
            source.seek(base)  # (torch.load reads it again from there)
        except OSError as exc:
            raise CheckpointError(f"mg.load: can't read {path}: {exc.strerror or exc}") from None
        except TypeError:
            raise CheckpointError(f"mg.load: {path} is open in text mode: open it with 'rb'") from None
        return _load_kind(kind, path, data, backend, source)
    path = os.fspath(f)
    from .fileio import NotARegularFileError, open_regular_file

    try:
        handle = open_regular_file(path)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"mg.load: no checkpoint at {path}: the file does not exist") from None
    except NotARegularFileError as exc:
        raise CheckpointError(f"mg.load: {path} {exc.strerror}: a checkpoint is a file") from None
    except OSError as exc:
        raise CheckpointError(f"mg.load: can't read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            kind, data = _read_checkpoint(handle, path)
        except OSError as exc:
            raise CheckpointError(f"mg.load: can't read {path}: {exc.strerror or exc}") from None
    return _load_kind(kind, path, data, backend, None)


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _load_kind(kind: str, path: str, data: bytes, backend: Any, source: Any) -> Any:
    """What :func:`load` does once it knows the file's kind; ``source`` is the open file
    object to hand torch.load (None: it reads ``path``)."""
    if kind == "torch":
        return _load_torch(path, backend, source)
    if kind == "pickle":
        raise CheckpointError(f"mg.load: {path} is a Python pickle, not a checkpoint: mg.load never unpickles "
                              "(loading a pickle can run arbitrary code)")
    if kind == "zip":
        raise CheckpointError(f"mg.load: {path} is a zip archive but not a PyTorch checkpoint (it has no data.pkl "
                              "entry), or a PyTorch checkpoint cut short")
    if kind == "empty":
        raise CheckpointError(f"mg.load: {path} is empty (a checkpoint whose writing was cut off?)")
    if kind == "unknown":
        raise CheckpointError(f"mg.load: {path} is truncated or corrupt, or not a checkpoint: it is neither a "
                              "safetensors file (what mg.save writes) nor a PyTorch file")
    return _load_safetensors(path, data, backend)


def _read_checkpoint(f: Any, path: str) -> tuple[str, bytes]:
    """(kind, bytes) of an open checkpoint file, reading no more than its format allows.

    kind is "safetensors" (bytes: the whole file), "torch", "zip", "pickle", "empty" or
    "unknown" (bytes: the first 16 only). A safetensors file is 8 bytes of header length,
    the JSON header, then the tensor data whose extent the header's offsets give; every
    length is checked against the file's size before anything that long is read."""
    base = f.tell()  # a file object may hold the checkpoint from its current position on
    size = f.seek(0, os.SEEK_END) - base
    f.seek(base)
    head = f.read(16)
    if not head:
        return "empty", head
    if head[:4] == b"PK\x03\x04":
        # torch.save's zip format (PyTorch >= 1.6) holds an ``<archive>/data.pkl`` entry;
        # zipfile reads only the central directory at the end to list the entries
        try:
            f.seek(base)
            names = zipfile.ZipFile(f).namelist()
        except (zipfile.BadZipFile, ValueError, EOFError):
            return "zip", head
        return ("torch" if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names) else "zip"), head
    if len(head) < 9 or head[8:9] != b"{":  # (a safetensors header length may start with 0x80 too)
        if head.startswith(_TORCH_LEGACY_MAGIC[:16]) and size >= len(_TORCH_LEGACY_MAGIC):
            return "torch", head
        if head[:1] == b"\x80":
            return "pickle", head
        return "unknown", head
    n = int.from_bytes(head[:8], "little")
    if n > _MAX_HEADER or 8 + n > size:
        raise CheckpointError(f"mg.load: {path} is truncated (or not a checkpoint): its header claims {n} bytes but "
                              f"the file has only {size} bytes in all" + (" (and safetensors headers are at most "
                                                              f"{_MAX_HEADER:,})" if n > _MAX_HEADER else ""))
    f.seek(base)
    prefix = f.read(8 + n)
    try:
        header = json.loads(prefix[8:])
    except (ValueError, RecursionError) as exc:
        detail = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise CheckpointError(f"mg.load: {path} is corrupt: its header is not valid JSON ({detail})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"mg.load: {path} is corrupt: its header is not a JSON object")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, (start, stop) = entry["dtype"], entry["data_offsets"]
            start, stop = int(start), int(stop)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"mg.load: {path} is corrupt: its header entry for {name!r} lacks a dtype and "
                                  "two data offsets") from None
        if dtype not in _NUMPY_DTYPES:
            raise CheckpointError(f"mg.load: {path}: tensor {name!r} has dtype {dtype}, which mg.load does not "
                                  f"support (numpy has no {dtype}); supported: {', '.join(sorted(_NUMPY_DTYPES))} "
                                  "— convert the file, e.g. to F32, first")
        end = max(end, stop)
    expected = 8 + n + end
    if expected > size:
        raise CheckpointError(f"mg.load: {path} is truncated: its header says the file is {expected} bytes long but "
                              f"it has only {size} (was its writing cut off, or its copy incomplete?)")
    if expected < size:
        raise CheckpointError(f"mg.load: {path} is corrupt: its header says the file is {expected} bytes long but "
                              f"it has {size}")
    data = prefix + f.read(end)
    if len(data) != expected:
        raise CheckpointError(f"mg.load: {path} changed while it was read ({len(data)} of {expected} bytes)")
    return "safetensors", data


def _load_safetensors(path: str, data: bytes, backend: Any) -> Any:
    import safetensors.numpy

    n = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + n]).get("__metadata__") or {}  # (checked by _read_checkpoint)
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"mg.load: {path} is corrupt: its __metadata__ is not a mapping of strings")
    try:
        raw = safetensors.numpy.load(data)
    except Exception as exc:  # SafetensorError and friends
        raise CheckpointError(f"mg.load: {path} is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    arrays = {name: np.array(a, copy=True) for name, a in raw.items()}  # writable and aligned
    recorded = metadata.get("sha256")
    if recorded is not None and _digest(arrays, metadata) != recorded:
        raise ChecksumMismatchError(f"mg.load: {path} is corrupt: its contents do not match the SHA-256 recorded "
                                    "when it was written (a flipped bit, a damaged copy or an edit)")

    if metadata.get("format") != FORMAT:  # a plain safetensors file: its tensors by name
        if backend is not None and backend.name != "cpu":
            return {k: backend.xp.asarray(v) for k, v in arrays.items()}
        return arrays
    try:
        version = int(metadata.get("version", "1"))
    except ValueError:
        raise CheckpointError(f"mg.load: {path} is corrupt: bad format version {metadata.get('version')!r}") from None
    if version > VERSION:
        raise CheckpointError(f"mg.load: {path} was written by a newer microgradnn (checkpoint format {version}, "
                              f"this one reads up to {VERSION}): upgrade microgradnn")
    try:
        structure = json.loads(metadata["structure"])
    except (KeyError, ValueError, RecursionError) as exc:
        detail = "nested too deep" if isinstance(exc, RecursionError) else exc
        raise CheckpointError(f"mg.load: {path} is corrupt: its structure is missing or not valid JSON ({detail})") from None
    try:
        return _Decoder(arrays, backend, path).decode(structure)
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"mg.load: {path} is corrupt: its structure is nested too deep") from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise CheckpointError(f"mg.load: {path} is corrupt: malformed structure ({type(exc).__name__}: {exc})") from None


def _load_torch(path: str, backend: Any, source: Any = None) -> Any:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"mg.load: {path} is a PyTorch file; reading it needs PyTorch, which is not installed: "
            "pip install torch (or convert the file to safetensors where PyTorch is installed)"
        ) from None
    try:
        obj = torch.load(path if source is None else source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"mg.load: can't read PyTorch file {path} (truncated, corrupt, or holding more than "
                              f"tensors and plain data): {_torch_reason(exc)}") from None
    return _from_torch(obj, torch, backend)


def _torch_reason(exc: Exception) -> str:
    """torch.load's error without its advice to turn the safe loader off ("Re-running
    torch.load with weights_only set to False will likely succeed"): mg.load never does."""
    paragraphs = [p.strip() for p in str(exc).split("\n\n") if p.strip()]
    kept = [p for p in paragraphs if "weights_only" not in p and "documentation" not in p
            and "safe_globals" not in p]
    return f"{type(exc).__name__}: " + (" ".join(" ".join(kept).split()) or "the file is not a plain tensor file")


def _from_torch(obj: Any, torch: Any, backend: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: widen exactly
            t = t.float()
        array = t.numpy().copy()
        if backend is not None and backend.name != "cpu":
            array = backend.xp.asarray(array)
        return array
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _from_torch(v, torch, backend)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _from_torch(v, torch, backend) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_torch(v, torch, backend) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_from_torch(v, torch, backend) for v in obj)
    return obj
