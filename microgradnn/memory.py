"""How much memory a spec's model will need, estimated before anything is allocated.

``model.hidden_size=1000000000`` must be refused in a millisecond with one line, not after
30 s and 4 GB with a ``MemoryError``. :func:`estimate_memory` is a pure function of the
sizes a spec resolves to; :func:`check_fits` compares it with :func:`available_memory` and
raises :class:`MemoryLimitError` naming what is needed, what there is, and which spec key
to lower (the one whose halving saves the most).

The estimate is a *lower bound* of what training really uses (it counts the big arrays
only), so a refusal is never a false alarm:

* parameters: for a recurrent layer of G gate blocks (LSTM 4, GRU 3, RNN 1),
  ``G·H·(input + H) + 2·G·H`` weights and biases per direction (PyTorch's layout), plus
  the embedding ``V·E`` and the head ``(H·directions)·out + out``; each held as the
  weight, its gradient, and the optimizer's moments (Adam: two more);
* activations kept for backward (BPTT over the whole window): per layer, direction and
  step the input projection and the gates (G·H each), the cell and hidden state (2·H);
  the embedded input ``E``; for a language model the logits and their gradient at every
  step (``2·out``);
* data: ``train_size`` examples of ``seq_len × features`` values, when the dataset makes
  them in memory (synthetic tasks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

__all__ = ["MemoryEstimate", "MemoryLimitError", "ModelSizes", "estimate_memory", "available_memory",
           "check_fits", "format_bytes"]

#: gate blocks per cell; a plugin cell's layout is unknown: count it as one block (lower bound)
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "rnn_tanh": 1, "rnn_relu": 1}

#: the spec key behind each size, for the message
KEYS = {"hidden_size": "model.hidden_size", "num_layers": "model.num_layers",
        "embedding_dim": "model.embedding_dim", "batch_size": "train.batch_size", "seq_len": "data.seq_len",
        "train_size": "data.train_size", "vocab_size": "the vocabulary (data.max_chars or min_freq)"}


class MemoryLimitError(MemoryError):
    """The model (or data) the spec describes can't fit in this machine's memory."""


@dataclass(frozen=True)
class ModelSizes:
    """The sizes that decide memory; every field is a plain number from the resolved spec."""

    hidden_size: int
    output_size: int
    batch_size: int
    seq_len: int
    cell: str = "lstm"
    num_layers: int = 1
    bidirectional: bool = False
    vocab_size: int | None = None      # token inputs: an embedding of vocab_size × embedding_dim
    embedding_dim: int = 64
    input_size: int | None = None      # float inputs: features per step
    proj_size: int = 0
    task: str = "lm"
    train_size: int = 0                # examples a dataset makes in memory (0: not counted)
    optimizer_slots: int = 2           # per-parameter state of the optimizer (Adam: 2, SGD: 0-1)
    dtype_bytes: int = 4               # float32


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int                    # how many
    parameter_bytes: int               # weights + gradients + optimizer state
    activation_bytes: int
    data_bytes: int
    sizes: ModelSizes = field(repr=False)

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes + self.data_bytes


def _parameter_count(s: ModelSizes) -> int:
    gates = GATES.get(s.cell, 1)
    directions = 2 if s.bidirectional else 1
    out_h = s.proj_size or s.hidden_size
    first_input = s.embedding_dim if s.vocab_size is not None else (s.input_size or 1)

    def layer(layer_input: int) -> int:
        per_direction = gates * s.hidden_size * (layer_input + out_h) + 2 * gates * s.hidden_size
        if s.proj_size:
            per_direction += s.proj_size * s.hidden_size
        return per_direction * directions

    # the first layer reads the input, every later one the layer below (closed form: a
    # billion layers must cost no more to count than one)
    count = layer(first_input) + (s.num_layers - 1) * layer(out_h * directions) if s.num_layers > 0 else 0
    if s.vocab_size is not None:
        count += s.vocab_size * s.embedding_dim
    count += out_h * directions * s.output_size + s.output_size
    return count


def _activation_count(s: ModelSizes) -> int:
    gates = GATES.get(s.cell, 1)
    directions = 2 if s.bidirectional else 1
    steps = s.batch_size * s.seq_len
    per_step = s.num_layers * directions * (2 * gates + 2) * s.hidden_size
    if s.vocab_size is not None:
        per_step += s.embedding_dim
    if s.task == "lm":
        per_step += 2 * s.output_size
    return steps * per_step


def estimate_memory(sizes: ModelSizes) -> MemoryEstimate:
    """Bytes the model, its training state and its data need at least (see the module
    docstring for what is counted). Pure: no allocation, no system calls; Python ints, so
    absurd sizes give absurd numbers, never overflow."""
    n = _parameter_count(sizes)
    b = sizes.dtype_bytes
    features = sizes.input_size or 1
    return MemoryEstimate(
        parameters=n,
        parameter_bytes=n * b * (2 + sizes.optimizer_slots),
        activation_bytes=_activation_count(sizes) * b,
        data_bytes=sizes.train_size * sizes.seq_len * (features + 1) * b,
        sizes=sizes,
    )


def _halvable(s: ModelSizes) -> list[str]:
    names = ["hidden_size", "batch_size", "seq_len", "num_layers"]
    if s.vocab_size is not None:
        names += ["embedding_dim", "vocab_size"]
    if s.train_size:
        names.append("train_size")
    return names


#: ordinary values of each size: the one furthest beyond its ordinary value is the likely culprit
TYPICAL = {"hidden_size": 128, "num_layers": 1, "embedding_dim": 64, "batch_size": 32, "seq_len": 128,
           "train_size": 10_000, "vocab_size": 256}


def key_to_lower(estimate: MemoryEstimate) -> str:
    """The spec key a user should lower: among the sizes whose halving would save at least a
    quarter of the memory, the one furthest beyond its ordinary value (``num_layers=10⁹``
    is the mistake, even though halving a 64-wide hidden size saves as much)."""
    s = estimate.sizes
    candidates = []
    for name in _halvable(s):
        value = getattr(s, name)
        if not value or value <= 1:
            continue
        smaller = estimate_memory(replace(s, **{name: max(1, value // 2)})).total
        saved = estimate.total - smaller
        candidates.append((saved * 4 >= estimate.total, value / TYPICAL[name], saved, name))
    if not candidates:
        return KEYS["hidden_size"]
    return KEYS[max(candidates)[3]]


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate, as the system tells it: the least of the
    memory the kernel reports available (``/proc/meminfo`` MemAvailable), the cgroup's
    limit less its use (containers), and the address-space limit (``ulimit -v``,
    ``resource.setrlimit(RLIMIT_AS)``) less what is mapped. None where none is known."""
    limits: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cg_max, cg_used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if cg_max is not None and cg_used is not None:
        limits.append(max(0, cg_max - cg_used))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            mapped = 0
            try:
                with open("/proc/self/statm", encoding="ascii") as f:
                    mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError, IndexError):
                pass
            limits.append(max(0, soft - mapped))
    except (ImportError, ValueError, OSError):
        pass
    if not limits and hasattr(os, "sysconf"):
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(limits) if limits else None


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1e6 else f"{value:.2e} {unit}"
    return f"{n} bytes"


def check_fits(estimate: MemoryEstimate, available: int | None = None) -> None:
    """Raise :class:`MemoryLimitError` (one line) when ``estimate`` exceeds ``available``
    (default: :func:`available_memory`; unknown availability refuses nothing)."""
    if available is None:
        available = available_memory()
    if available is None or estimate.total <= available:
        return
    e = estimate
    raise MemoryLimitError(
        f"this model needs at least {format_bytes(e.total)} of memory ({e.parameters:,} parameters: "
        f"{format_bytes(e.parameter_bytes)} with gradients and optimizer state; activations for "
        f"{e.sizes.batch_size} × {e.sizes.seq_len} steps: {format_bytes(e.activation_bytes)}"
        + (f"; data: {format_bytes(e.data_bytes)}" if e.data_bytes else "")
        + f"), but only {format_bytes(available)} is available: lower {key_to_lower(e)}")
