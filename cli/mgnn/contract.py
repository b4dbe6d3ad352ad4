"""``mgnn plugins check NAME``: does a cell plugin keep the contract the runner relies on?

A recurrent cell is usable everywhere (multi-layer, bidirectional, variable lengths,
truncated BPTT, every spec) if it follows the runner convention of
:class:`microgradnn.nn.Recurrent`::

    cell = Cell(input_size, hidden_size, **options)      # a Module
    h_t, new_state = cell.step(x_t, state)                # or cell(x_t, state)
    state = cell.init_state(batch, device, dtype)         # optional; else zeros (B, hidden)

The checks, in order (each says what went wrong, so a plugin author knows what to fix):

1. it loads from the registry and builds as ``Cell(3, 5)``;
2. state shapes: the initial state is a tensor or tuple of tensors (B, n); a step returns
   h_t (B, output_size) and a new state with the same structure and shapes;
3. gradients: float64 BPTT over a short sequence matches central finite differences for
   the input and every parameter (``mg.gradcheck``);
4. stacked: 2 layers, bidirectional, batch-first, variable lengths: output and h_n shapes,
   zero outputs at padded steps, every parameter gets a finite gradient;
5. in a model: a SequenceModel language model built with it runs forward and backward.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from .app import EXIT_FAILED, EXIT_OK

INPUT, HIDDEN, BATCH, STEPS = 3, 5, 2, 4


class CheckFailed(Exception):
    pass


def _shapes(state: Any) -> list[tuple]:
    parts = state if isinstance(state, tuple) else (state,)
    return [tuple(p.shape) for p in parts]


def _initial_state(cell: Any, batch: int, dtype: Any = None) -> Any:
    import microgradnn as mg

    if hasattr(cell, "init_state"):
        return cell.init_state(batch, None, dtype)
    return mg.zeros(batch, cell.hidden_size, dtype=dtype)


def check_cell(name: str, console: Console) -> int:
    import microgradnn as mg
    from microgradnn import registry

    results: list[tuple[str, bool, str]] = []
    cls: Any = None

    def run(title: str, fn: Callable[[], str]) -> bool:
        try:
            detail = fn()
            results.append((title, True, detail))
            return True
        except Exception as exc:  # noqa: BLE001 - every failure is a finding to report
            msg = str(exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {msg[0] if msg else ''}"
            if not isinstance(exc, (CheckFailed, registry.RegistryError)):
                tb = traceback.extract_tb(exc.__traceback__)
                if tb:
                    last = tb[-1]
                    detail += f"  (at {last.filename}:{last.lineno})"
            results.append((title, False, detail))
            return False

    entry = registry.get_entry("cells", name)  # an unknown name is a user error (did-you-mean), not a finding

    def load() -> str:
        nonlocal cls
        cls = registry.get("cells", name)
        return f"{entry.value} from {entry.dist} {entry.version}".strip()

    def builds() -> str:
        cell = cls(INPUT, HIDDEN)
        if not isinstance(cell, mg.nn.Module):
            raise CheckFailed(f"Cell(input_size, hidden_size) gave a {type(cell).__name__}, not a Module")
        n = sum(p.numel() for p in cell.parameters())
        if n == 0:
            raise CheckFailed("the cell has no parameters")
        if not hasattr(cell, "step") and not callable(cell):
            raise CheckFailed("the cell has neither step(x, state) nor __call__(x, state)")
        return f"{type(cell).__name__}({INPUT}, {HIDDEN}): {n} parameters"

    def state_shapes() -> str:
        cell = cls(INPUT, HIDDEN)
        step = cell.step if hasattr(cell, "step") else cell
        state = _initial_state(cell, BATCH)
        parts = state if isinstance(state, tuple) else (state,)
        for p in parts:
            if not isinstance(p, mg.Tensor) or p.ndim != 2 or p.shape[0] != BATCH:
                raise CheckFailed(f"the initial state must be (batch, n) tensors; got {_shapes(state)} for batch {BATCH}")
        x = mg.randn(BATCH, INPUT)
        out = step(x, state)
        if not isinstance(out, tuple) or len(out) != 2:
            raise CheckFailed("a step must return (h_t, new_state)")
        h, new = out
        width = getattr(cell, "output_size", HIDDEN)
        if tuple(h.shape) != (BATCH, width):
            raise CheckFailed(f"h_t has shape {tuple(h.shape)}, expected ({BATCH}, {width}) "
                              "(set output_size on the cell if it is not hidden_size)")
        if isinstance(new, tuple) != isinstance(state, tuple) or _shapes(new) != _shapes(state):
            raise CheckFailed(f"the new state has shapes {_shapes(new)}, the state it came from {_shapes(state)}")
        return f"state {_shapes(state)}, h_t {tuple(h.shape)}"

    def gradients() -> str:
        layer = mg.nn.Recurrent(cls, INPUT, HIDDEN).double()
        x = mg.tensor(np.random.default_rng(0).uniform(-1, 1, (3, BATCH, INPUT)), dtype=mg.float64,
                      requires_grad=True)
        params = [p for p in layer.parameters() if p.requires_grad]
        # deterministic cells only: dropout etc. would make finite differences meaningless
        layer.eval()
        mg.gradcheck(lambda inp, *ps: layer(inp)[0], x, *params, atol=1e-5, rtol=1e-3)
        return f"float64 BPTT over 3 steps matches finite differences for the input and {len(params)} parameters"

    def stacked() -> str:
        layer = mg.nn.Recurrent(cls, INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True)
        x = mg.randn(BATCH, STEPS, INPUT)
        lengths = [STEPS, 2]
        out, h_n = layer(x, lengths=lengths)
        width = getattr(layer.cells[0], "output_size", HIDDEN)
        if tuple(out.shape) != (BATCH, STEPS, 2 * width):
            raise CheckFailed(f"output shape {tuple(out.shape)}, expected {(BATCH, STEPS, 2 * width)}")
        for s in _shapes(h_n):
            if s[:2] != (4, BATCH):
                raise CheckFailed(f"h_n shape {s}, expected (num_layers*2, batch, n) = (4, {BATCH}, n)")
        if np.abs(out.detach().numpy()[1, 2:]).max() != 0:
            raise CheckFailed("outputs at padded steps (past a sequence's length) are not zero")
        (out.sum() + sum((p.sum() for p in (h_n if isinstance(h_n, tuple) else (h_n,))), mg.tensor(0.0))).backward()
        missing = [n for n, p in layer.named_parameters() if p.grad is None]
        if missing:
            raise CheckFailed(f"no gradient reached {', '.join(missing[:4])}")
        bad = [n for n, p in layer.named_parameters() if not np.isfinite(p.grad.numpy()).all()]
        if bad:
            raise CheckFailed(f"non-finite gradients in {', '.join(bad[:4])}")
        return f"2 layers x 2 directions, lengths {lengths}: output {tuple(out.shape)}, h_n {_shapes(h_n)}"

    def in_model() -> str:
        from microgradnn.models import SequenceModel

        model = SequenceModel(7, vocab_size=7, embedding_dim=4, cell=cls, hidden_size=HIDDEN, num_layers=2)
        x = mg.tensor(np.random.default_rng(1).integers(0, 7, (BATCH, STEPS)))
        out, state = model(x)
        loss = mg.cross_entropy(out.reshape(-1, 7), x.reshape(-1))
        loss.backward()
        out2, _ = model(x, state=tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach())
        return f"language model forward/backward ok (loss {float(loss.item()):.3f}); state carries to the next chunk"

    console.print(f"[bold]contract check of cell plugin {name!r}[/]")
    ok = run("loads from the registry", load)
    ok = ok and run("builds as Cell(input_size, hidden_size)", builds)
    if ok:
        run("state shapes", state_shapes)
        run("float64 gradient check", gradients)
        run("multi-layer, bidirectional, variable lengths", stacked)
        run("inside a SequenceModel", in_model)
    t = Table(box=box.SIMPLE_HEAD)
    t.add_column("check", no_wrap=True)
    t.add_column("result", no_wrap=True)
    t.add_column("detail", overflow="fold")
    for title, passed, detail in results:
        t.add_row(title, "[green]pass[/]" if passed else "[red]FAIL[/]", detail)
    console.print(t)
    failed = [r for r in results if not r[1]]
    if failed or not ok:
        console.print(f"[red]{name}: {len(failed)} check(s) failed[/]")
        return EXIT_FAILED
    console.print(f"[green]{name} keeps the cell contract[/]: it works multi-layer, bidirectional and in any spec")
    return EXIT_OK
