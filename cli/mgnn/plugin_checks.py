"""``mgnn plugins check NAME``: does a component keep the contract the framework relies on?

Every kind is checked: first as the registry checks it when it loads an entry (its
contract in :mod:`microgradnn.contracts`), then by building it and using it the way a
run does (:func:`check_component`). A cell gets the deepest check, below.

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

from .errors import EXIT_FAILED, EXIT_OK, UsageError

INPUT, HIDDEN, BATCH, STEPS = 3, 5, 2, 4


class CheckFailed(Exception):
    pass


class Skipped(Exception):
    """A check that can't run here, and why (a dataset that needs files to read)."""


def _shapes(state: Any) -> list[tuple]:
    parts = state if isinstance(state, tuple) else (state,)
    return [tuple(p.shape) for p in parts]


def _initial_state(cell: Any, batch: int, dtype: Any = None) -> Any:
    import microgradnn as mg

    if hasattr(cell, "init_state"):
        return cell.init_state(batch, None, dtype)  # None: the default device and dtype, as in PyTorch
    return mg.zeros(batch, cell.hidden_size, dtype=dtype)


class _Results:
    """The checks run so far: (title, passed, detail), each failure a finding to report."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, bool, str]] = []

    def run(self, title: str, fn: Callable[[], str]) -> bool:
        from microgradnn import registry

        try:
            detail = fn()
            self.rows.append((title, True, detail))
            return True
        except Skipped as exc:
            self.rows.append((title, None, str(exc)))
            return True
        except Exception as exc:  # noqa: BLE001 - every failure is a finding to report
            msg = str(exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {msg[0] if msg else ''}"
            if not isinstance(exc, (CheckFailed, registry.RegistryError)):
                tb = traceback.extract_tb(exc.__traceback__)
                if tb:
                    last = tb[-1]
                    detail += f"  (at {last.filename}:{last.lineno})"
            self.rows.append((title, False, detail))
            return False

    def show(self, console: Console, name: str, what: str, ok: bool) -> int:
        t = Table(box=box.SIMPLE_HEAD)
        t.add_column("check", no_wrap=True)
        t.add_column("result", no_wrap=True)
        t.add_column("detail", overflow="fold")
        for title, passed, detail in self.rows:
            t.add_row(title, "[yellow]skip[/]" if passed is None else "[green]pass[/]" if passed else "[red]FAIL[/]",
                      detail)
        console.print(t)
        failed = [r for r in self.rows if r[1] is False]
        if failed or not ok:
            console.print(f"[red]{name}: {len(failed)} check(s) failed[/]")
            return EXIT_FAILED
        skipped = sum(1 for r in self.rows if r[1] is None)
        console.print(f"[green]{name} keeps the {what} contract[/]"
                      + (f" ({skipped} check skipped: see above)" if skipped else ""))
        return EXIT_OK


def kinds_providing(name: str) -> list[str]:
    from microgradnn import registry

    short = name.partition(":")[2] or name
    return [k for k in registry.KINDS if short in registry.names(k)]


def check_plugin(name: str, kind: str | None, console: Console) -> int:
    """``mgnn plugins check NAME [--kind KIND]``: the checks for whatever NAME is."""
    from microgradnn import registry

    kinds = [kind] if kind else kinds_providing(name)
    if not kinds:
        every = sorted({n for k in registry.KINDS for n in registry.names(k)})
        close = registry.suggest(name, every)
        raise UsageError(f"mgnn plugins check: no component is registered as {name!r}"
                         + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
                         + " (list them with: mgnn plugins)")
    if len(kinds) > 1:
        raise UsageError(f"mgnn plugins check: {name!r} is a {' and a '.join(registry.singular(k) for k in kinds)}; "
                         f"pick one with --kind ({', '.join(kinds)})")
    if kinds[0] == "cells":
        return check_cell(name, console)
    return check_component(kinds[0], name, console)


def check_component(kind: str, name: str, console: Console) -> int:
    """Load ``name`` of ``kind`` (the registry verifies its contract), build it with its
    defaults and use it once the way a run does."""
    from microgradnn import registry

    results = _Results()
    entry = registry.get_entry(kind, name)
    noun = registry.singular(kind)
    found: dict[str, Any] = {}

    def load() -> str:
        found["obj"] = registry.get(kind, name)
        return f"{entry.value} from {entry.dist} {entry.version}".strip()

    console.print(f"[bold]contract check of {noun} {name!r}[/]")
    ok = results.run(f"loads from the registry (the {noun} contract)", load)
    if ok:
        results.run("builds and works as a run uses it", lambda: _EXERCISE[kind](found["obj"]))
    return results.show(console, name, noun, ok)


def _targets_for(obj: Any, batch: int = 4, classes: int = 3, steps: int = 5) -> tuple[Any, Any]:
    """A random (output, target) pair of the kind ``obj`` declares it takes (``targets``,
    ``per_step``: see :mod:`microgradnn.tasks`)."""
    import microgradnn as mg
    from microgradnn.tasks import VALUES, targets_of

    rng = np.random.default_rng(0)
    lead = (batch, steps) if getattr(obj, "per_step", False) else (batch,)
    if targets_of(obj) == VALUES:  # probabilities fit every float loss (BCE too)
        out = mg.tensor(rng.uniform(0.05, 0.95, (*lead, classes)), requires_grad=True)
        return out, mg.tensor(rng.uniform(0, 1, (*lead, classes)))
    out = mg.tensor(rng.standard_normal((*lead, classes)), requires_grad=True)
    return out, mg.tensor(rng.integers(0, classes, lead))


def _required_placeholders(obj: Any, skip: int) -> dict[str, Any]:
    """Values for the options a component requires (a spec must give them): 2 for an
    int, 0.5 for a float, what the signature says when it says more."""
    import inspect

    out = {}
    for i, p in enumerate(inspect.signature(obj).parameters.values()):
        if i < skip or p.default is not inspect.Parameter.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = 0.5 if "float" in str(p.annotation) else 2
    return out


def _exercise_loss(obj: Any) -> str:
    loss_fn = obj() if isinstance(obj, type) else obj
    out, target = _targets_for(obj)
    loss = loss_fn(out, target)
    if loss.ndim != 0 or not np.isfinite(float(loss.item())):
        raise CheckFailed(f"loss(output, target) must be a finite 0-d tensor, got shape {tuple(loss.shape)}")
    loss.backward()
    if out.grad is None:
        raise CheckFailed("no gradient reached the output")
    return f"loss {float(loss.item()):.4f}, gradient {tuple(out.grad.shape)}"


def _exercise_optimizer(obj: Any) -> str:
    import microgradnn as mg

    p = mg.nn.Parameter(mg.tensor(np.ones(3)))
    opt = obj([p])
    (p * mg.tensor(np.arange(3.0))).sum().backward()
    before = p.detach().numpy().copy()
    opt.step()
    opt.zero_grad()
    if np.array_equal(before, p.detach().numpy()):
        raise CheckFailed("a step with a nonzero gradient left the parameter unchanged")
    again = obj([p])
    again.load_state_dict(opt.state_dict())
    return "a step changes the parameter; state_dict round-trips"


def _exercise_scheduler(obj: Any) -> str:
    import inspect

    import microgradnn as mg
    from microgradnn.spec import DERIVED_OPTIONS

    p = mg.nn.Parameter(mg.tensor(np.ones(3)))
    opt = mg.optim.SGD([p], lr=0.1)
    params = inspect.signature(obj).parameters
    derived = {**_required_placeholders(obj, 1),
               **{k: 10 for k in DERIVED_OPTIONS["schedulers"] if k in params
                  and params[k].default is inspect.Parameter.empty}}
    sched = obj(opt, **derived)
    lrs = []
    for _ in range(3):
        opt.step()
        step_params = list(inspect.signature(sched.step).parameters)
        sched.step(1.0) if step_params and step_params[0] in ("metrics", "metric", "value") else sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    if not all(np.isfinite(lrs)):
        raise CheckFailed(f"non-finite learning rates {lrs}")
    obj(mg.optim.SGD([p], lr=0.1), **derived).load_state_dict(sched.state_dict())
    return f"lr over 3 steps: {', '.join(f'{x:.4g}' for x in lrs)}; state_dict round-trips"


def _exercise_strategy(obj: Any) -> str:
    import microgradnn as mg
    from microgradnn.contracts import StrategyLike
    from microgradnn.models import SequenceModel

    def model() -> Any:
        mg.manual_seed(0)
        return SequenceModel(7, vocab_size=7, embedding_dim=4, hidden_size=HIDDEN, num_layers=1)

    strategy = obj()
    if not isinstance(strategy, StrategyLike):
        raise CheckFailed("the built strategy lacks methods of StrategyLike (microgradnn.contracts)")
    m = model()
    strategy.apply(m)
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    if trainable == 0:
        raise CheckFailed("apply(model) left nothing trainable")
    strategy.penalty(m)
    strategy.report(m)
    delta = strategy.delta_state_dict(m)
    obj().load_delta(model(), delta)
    return f"{trainable} trainable parameters after apply; the delta ({len(delta)} tensors) loads onto a fresh base"


def _exercise_dataset(obj: Any) -> str:
    from microgradnn.contracts import DataModuleLike
    from microgradnn.data import DataError

    try:
        dm = obj()
    except (DataError, TypeError) as exc:  # it reads files (or needs options) a check can't invent
        raise Skipped(f"not built: it needs options to read its data ({exc}); the factory passed the contract "
                      "check, and `mgnn check SPEC` builds it with a spec's options") from None
    if not isinstance(dm, DataModuleLike):
        raise CheckFailed(f"the factory returned a {type(dm).__name__}, not a DataModule (DataModuleLike)")
    batch = next(iter(dm.train_batches(2, epoch=0, seed=0)))
    return f"task {dm.task}, output size {dm.output_size}; a batch x {tuple(batch.x.shape)}, y {tuple(batch.y.shape)}"


def _exercise_metric(obj: Any) -> str:
    from microgradnn.backend import to_host

    metric = obj() if isinstance(obj, type) else obj
    metric.reset()
    out, target = _targets_for(obj)
    metric.update(to_host(out), to_host(target), 1.0, 4)
    value = float(metric.compute())
    return f"{metric.name} = {value:.4g} ({'higher' if metric.higher_is_better else 'lower'} is better)"


_EXERCISE: dict[str, Callable[[Any], str]] = {
    "losses": _exercise_loss, "optimizers": _exercise_optimizer, "schedulers": _exercise_scheduler,
    "finetune": _exercise_strategy, "datasets": _exercise_dataset, "metrics": _exercise_metric,
}


def check_cell(name: str, console: Console) -> int:
    import microgradnn as mg
    from microgradnn import registry

    checks = _Results()
    run = checks.run
    cls: Any = None

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
    return checks.show(console, name, "cell", ok)
