"""One function per ``mgnn`` command: ``cmd_<name>(args) -> exit status``.

Each is a thin layer over the library (:mod:`microgradnn.train`, :mod:`microgradnn.spec`,
:mod:`microgradnn.registry`); errors propagate to :func:`mgnn.app.main`, which turns a
user's mistake into one clear line.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from . import parallel
from .app import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError

# What a spec override key may look like (so `mgnn train spec.yaml typo` is caught here,
# with a hint, instead of as a confusing "no '='" far away).


def _console() -> Console:
    return Console(highlight=False)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _is_override(arg: str) -> bool:
    return arg.startswith("~") or ("=" in arg and not os.path.exists(arg))


def _spec_and_overrides(args: Any) -> tuple[str, list[str]]:
    """The spec file and the overrides among the positional arguments, in any order
    (``mgnn train train.steps=5 spec.yaml`` works too)."""
    words = [args.spec] + list(args.overrides)
    files = [w for w in words if not _is_override(w)]
    if len(files) != 1:
        if not files:
            raise UsageError(f"mgnn {args.command}: give the spec file (a YAML file) besides the key=value overrides")
        raise UsageError(f"mgnn {args.command}: give one spec file, then key=value overrides; got "
                         + ", ".join(repr(f) for f in files)
                         + (" (an override needs '=': key=value)" if any("." in f and not os.path.exists(f)
                                                                         for f in files) else ""))
    return files[0], [w for w in words if w is not files[0]]


def _exit_for(summary: dict[str, Any], quiet: bool = False) -> int:
    status = summary["status"]
    if quiet:  # a rank other than 0 under mpiexec: rank 0 says it
        return {"nan": EXIT_FAILED, "diverged": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}.get(status, EXIT_OK)
    if status == "nan":
        _err(f"mgnn: the loss became non-finite: {summary['reason']}")
        return EXIT_FAILED
    if status == "diverged":
        _err(f"mgnn: the run diverged: {summary['reason']}")
        return EXIT_FAILED
    if status == "interrupted":
        where = summary.get("run_dir")
        if where:
            _err(f"mgnn: interrupted at step {summary['step']}; checkpoint saved. Continue with: mgnn resume {where}")
        return EXIT_INTERRUPTED
    return EXIT_OK


# ----------------------------------------------------------------------------- train / resume


def cmd_train(args: Any) -> int:
    from microgradnn.spec import dump_spec, load_spec
    from microgradnn.train import Trainer

    from .display import TrainDisplay

    spec_file, overrides = _spec_and_overrides(args)
    if args.grad_norms:
        overrides.append("train.track_grad_norms=true")
    spec = load_spec(spec_file, overrides)  # a bad spec fails here, before any process starts
    nproc = parallel.check_nproc(args.nproc)
    if nproc > 1 and not parallel.under_mpi() and not args.print_config:
        return parallel.launch(nproc, args.argv)
    if args.print_config:
        text = dump_spec(spec)
        console = _console()
        if console.is_terminal:
            console.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
        else:
            sys.stdout.write(text)
        return EXIT_OK
    group = parallel.process_group()  # under mpiexec: this rank's seat; else None
    quiet = group is not None and not group.is_writer  # ranks other than 0 show nothing
    console = _console()
    display = TrainDisplay(console, live=False if args.plain else None,
                           grad_norms=bool(spec["train"].get("track_grad_norms")))
    with console.status("loading data and building the model...") if console.is_terminal and not quiet else _null():
        trainer = Trainer(spec, run_dir=args.run_dir, callbacks=[] if quiet else [display], dry_run=args.dry_run,
                          parallel=group)
    try:
        summary = trainer.fit(handle_sigint=True)
    finally:
        display.close()
    return _exit_for(summary, quiet)


def cmd_resume(args: Any) -> int:
    from microgradnn.train import Trainer

    from .display import TrainDisplay

    words = [args.run_dir] + list(args.overrides)
    dirs = [w for w in words if not _is_override(w)]
    if len(dirs) != 1:
        raise UsageError("mgnn resume: give one run folder, then train.* overrides; got "
                         + (", ".join(repr(d) for d in dirs) or "none"))
    run_dir = dirs[0]
    overrides = [w for w in words if w is not run_dir]
    nproc = parallel.check_nproc(args.nproc)
    if nproc > 1 and not parallel.under_mpi():
        return parallel.launch(nproc, args.argv)
    group = parallel.process_group()
    quiet = group is not None and not group.is_writer
    if args.grad_norms:
        overrides.append("train.track_grad_norms=true")
    console = _console()
    display = TrainDisplay(console, live=False if args.plain else None, grad_norms=args.grad_norms, resumed=True)
    with console.status("restoring the run...") if console.is_terminal and not quiet else _null():
        trainer = Trainer.resume(run_dir, callbacks=[] if quiet else [display], overrides=overrides, parallel=group)
    if trainer.step >= trainer.total_steps:
        if not quiet:
                console.print(f"{run_dir} already ran all {trainer.total_steps:,} steps; extend it with "
                          "train.steps=N or train.epochs=N")
        return EXIT_OK
    display.grad_norms = display.grad_norms or bool(trainer.tc.get("track_grad_norms"))
    try:
        summary = trainer.fit(handle_sigint=True)
    finally:
        display.close()
    return _exit_for(summary, quiet)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# ----------------------------------------------------------------------------- eval / generate / export


def _parse_data_args(items: list[str] | None) -> tuple[str | None, dict[str, Any]]:
    import yaml

    path, options = None, {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if eq and key and not os.path.exists(item) and key.replace("_", "").isalnum():
            try:
                options[key] = yaml.safe_load(value) if value.strip() else value
            except yaml.YAMLError as exc:
                raise UsageError(f"--data {item}: bad value ({exc.problem if hasattr(exc, 'problem') else exc})") from None
        else:
            if path is not None:
                raise UsageError("--data: give at most one file or folder")
            path = item
    return path, options


def cmd_eval(args: Any) -> int:
    from microgradnn.train import evaluate

    from .display import fmt

    path, options = _parse_data_args(args.data)
    result = evaluate(args.run_dir, data=path, options=options, split=args.split, checkpoint=args.checkpoint,
                      batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    t = Table(title=f"eval {args.run_dir}", box=box.ROUNDED, show_header=False, title_style="bold")
    t.add_column(style="bold cyan")
    t.add_column()
    for k, v in result.items():
        if k in ("checkpoint", "split", "step", "task", "items"):
            continue
        t.add_row(k, fmt(v))
    t.add_row("items", f"{result['items']:,} {'tokens' if result['task'] == 'lm' else 'targets'}")
    t.add_row("data", (f"{path}, " if path else "") + f"split {result['split']}")
    t.add_row("checkpoint", f"{result['checkpoint']} (step {result['step']})")
    _console().print(t)
    return EXIT_OK


def cmd_generate(args: Any) -> int:
    from microgradnn.train import generate

    console = _console()
    prompt = args.prompt.replace("\\n", "\n").replace("\\t", "\t")  # --prompt "def f():\\n"
    out = sys.stdout
    started = [False]

    def stream(piece: str) -> None:
        if not started[0]:
            started[0] = True
            if console.is_terminal:
                console.print(prompt, style="bold", end="")
            else:
                out.write(prompt)
        out.write(piece)
        out.flush()

    text = generate(args.run_dir, prompt, length=args.length, temperature=args.temperature, top_k=args.top_k,
                    seed=args.seed, checkpoint=args.checkpoint, stream=stream)
    if not started[0]:  # length 0
        out.write(prompt)
    out.write("\n")
    out.flush()
    return EXIT_OK if text is not None else EXIT_FAILED


def cmd_export(args: Any) -> int:
    from microgradnn.train import export

    path = export(args.run_dir, out=args.out, checkpoint=args.checkpoint)
    size = Path(path).stat().st_size
    _console().print(f"wrote {path} ({size / 1024:.1f} KiB): a standalone checkpoint (usable as finetune.from)")
    return EXIT_OK


# ----------------------------------------------------------------------------- check


def cmd_check(args: Any) -> int:
    from microgradnn.spec import dump_spec, load_spec

    spec_file, overrides = _spec_and_overrides(args)
    spec = load_spec(spec_file, overrides)
    console = _console()
    text = dump_spec(spec)
    console.print(f"[bold green]spec OK[/]: {spec_file}" + (f" with {len(overrides)} override(s)"
                                                           if overrides else ""))
    if console.is_terminal:
        console.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    else:
        sys.stdout.write(text)
    if args.no_data:
        return EXIT_OK
    from microgradnn.train import Trainer

    from .display import describe_model

    with console.status("loading data and building the model...") if console.is_terminal else _null():
        trainer = Trainer(spec)  # builds everything (data, model, optimizer...); fit() is what writes
    example = _example_input(trainer)
    say = lambda text, **kw: console.print(text, soft_wrap=True, **kw)  # noqa: E731 - long lines stay whole
    say("")
    say(f"[bold]data[/]: {trainer.data!r}")
    say(f"[bold]model[/]: {describe_model(trainer)}")
    try:
        say(trainer.model.summary(*example[0], **example[1]), markup=False)
    except Exception:  # a plugin cell that can't run on the example: the table without shapes
        say(trainer.model.summary(), markup=False)
    if trainer.finetune_report:
        r = trainer.finetune_report
        say(f"[bold]fine-tune[/]: {r['strategy']} from {r['base']}: {r['trainable']:,} of "
            f"{r['total']:,} parameters train ({100 * r['share']:.2f}%)")
    say(f"[bold]training[/]: {trainer.total_steps:,} steps of batch {trainer.batch_size} "
        f"({trainer.steps_per_epoch:,} batches per epoch); run folder {trainer.run_dir}")
    return EXIT_OK


def _example_input(trainer: Any) -> tuple[tuple, dict]:
    from microgradnn import tensor

    batch = next(iter(trainer.data.train_batches(min(trainer.batch_size, 2), epoch=0, seed=0)))
    x = tensor(batch.x[:2])
    if batch.lengths is not None and not getattr(trainer.data, "streams", False):
        return (x,), {"lengths": batch.lengths[:2]}
    return (x,), {}


# ----------------------------------------------------------------------------- plugins


def cmd_plugins(args: Any) -> int:
    from microgradnn import registry

    if args.action == "check":
        if not args.name:
            raise UsageError("mgnn plugins check: name the cell to check, e.g. mgnn plugins check indrnn")
        from .contract import check_cell

        return check_cell(args.name, _console())
    if args.name:
        raise UsageError(f"mgnn plugins: unexpected argument {args.name!r} (did you mean: mgnn plugins check "
                         f"{args.name}?)")
    kinds = registry.KINDS
    if args.kind:
        if args.kind not in kinds:
            raise UsageError(f"--kind: unknown kind {args.kind!r}; kinds are {', '.join(kinds)}")
        kinds = (args.kind,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failures are shown in the table instead
        registry.load_all()
        entries = {k: registry.entries(k) for k in kinds}
        failures = registry.failures()
    console = _console()
    for kind in kinds:
        t = Table(title=f"{kind} (entry-point group microgradnn.{kind})", box=box.SIMPLE_HEAD, title_justify="left",
                  title_style="bold")
        t.add_column("name", style="bold")
        t.add_column("distribution")
        t.add_column("version")
        t.add_column("object")
        t.add_column("status")
        for e in entries[kind]:
            status = e.status if e.status != "failed" else f"[red]failed[/]: {e.error}"
            if e.clash:
                status += f" [yellow](also claimed by {', '.join(e.clash)}: use {e.qualified_name})[/]"
            t.add_row(e.name, e.dist, e.version, e.value, status)
        console.print(t)
    if failures:
        console.print(f"[bold red]{len(failures)} plugin(s) failed to load[/] (everything else works):")
        for f in failures:
            console.print(f"  - {f}", markup=False)
    else:
        console.print("no plugin failed to load")
    return EXIT_OK


# ----------------------------------------------------------------------------- tutorial


def cmd_tutorial(args: Any) -> int:
    from .tutorial import run

    return run(args, _console())
