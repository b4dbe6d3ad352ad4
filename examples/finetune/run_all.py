"""Run every fine-tuning example through the ``mgnn`` command line and collect one table.

    python examples/finetune/run_all.py                 (from the repository root; ~13 min on 2 cores)
    python examples/finetune/run_all.py --quick         (a few steps each, into runs/finetune-quick:
                                                         checks the pipeline in ~1.5 min)

What it does, all with ``mgnn`` commands (each printed before it runs):

1. makes the data if missing (``make_prose.py``, ``make_lines_small.py``);
2. ``mgnn train pretrain.yaml``: the char-LSTM language model on the stdlib's code;
3. ``mgnn eval`` of that model on the prose's validation text: the "before" numbers;
4. ``mgnn train lm-scratch.yaml``, the no-pretraining baseline, and ``mgnn train ft-*.yaml``
   for each strategy, then for each run ``mgnn eval`` (prose, "after"), ``mgnn eval`` on the
   stdlib validation text the base was scored on (how much of the old domain is
   forgotten), and ``mgnn export`` (the merged standalone model, where the strategy can be
   merged);
5. the classification comparison: ``cls-scratch``, ``cls-probe``, ``cls-pretrained``;
6. writes ``OUT/results.json`` and ``OUT/results.md`` (the tables README.md shows).

A run folder that already holds a completed run is reused (``--fresh`` deletes them
first), so an interrupted script can simply be started again.

Timings: OpenBLAS, which numpy uses for matrix products, starts one thread per core and
lets them spin while they wait. On a 2-core machine where anything else runs, that
spinning can make a run ten times slower (we saw a pretraining stall for minutes), so
this script sets ``OPENBLAS_NUM_THREADS=1`` unless you set it yourself. The matrices of
these small models gain little from a second thread anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROSE = HERE / "data" / "prose.txt"
LINES = (HERE / "data" / "lines_train.csv", HERE / "data" / "lines_val.csv")
STRATEGIES = ["full", "freeze", "bitfit", "lora", "adalora", "ia3", "adapter", "prefix", "prompt"]
CLASSIFIERS = ["cls-scratch", "cls-probe", "cls-pretrained"]
SEEDS = [0, 1, 2]
# The pretraining run's validation text (the last 5% of the first 2,000,000 stdlib characters)
# as `mgnn eval --data` options: how a fine-tuned model still does on the old domain.
STDLIB_VAL = ["corpus=stdlib", "paths=null", "max_chars=2000000", "val_fraction=0.05"]


def rel(path: Path) -> str:
    try:
        return os.path.relpath(path, ROOT)
    except ValueError:  # another drive (Windows)
        return str(path)


class Runner:
    def __init__(self, out: Path, quick: bool) -> None:
        self.out, self.quick = out, quick
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")  # see the module docstring
        paths = [str(ROOT), str(ROOT / "cli")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)  # works from a plain checkout too
        self.env = env

    def mgnn(self, *args: str, log: str | None = None, check: bool = True) -> tuple[int, str, float]:
        """Run ``mgnn ARGS`` from the repository root; returns (exit status, stdout, seconds)."""
        cmd = [sys.executable, "-m", "mgnn", *args]
        print("$ mgnn " + " ".join(args), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if log:
            (self.logs / f"{log}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
        if check and proc.returncode != 0:
            sys.exit(f"failed (exit {proc.returncode}): mgnn {' '.join(args)}\n{proc.stderr.strip()[-2000:]}")
        return proc.returncode, proc.stdout, seconds

    def eval_json(self, run: Path, *data: str) -> dict:
        args = ["eval", rel(run), "--json", "--batch-size", "32"]
        for d in data:
            args += ["--data", d]
        if data:
            args += ["--split", "val"]
        return json.loads(self.mgnn(*args)[1])

    def train(self, spec: Path, name: str, overrides: list[str]) -> dict:
        """Train one spec into OUT/name (or reuse a completed run there)."""
        run = self.out / name
        info = run / "run.json"
        if info.is_file() and json.loads(info.read_text())["status"] in ("completed", "early_stopped"):
            print(f"reusing {rel(run)} (completed earlier; --fresh to redo)")
            return {"run": run, "seconds": json.loads((self.logs / f"{name}.time").read_text())["seconds"]
                    if (self.logs / f"{name}.time").is_file() else None}
        if run.exists():
            shutil.rmtree(run)  # an unfinished run: start it again
        code, _, seconds = self.mgnn("train", rel(spec), "--plain", "--run-dir", rel(run), *overrides, log=name)
        (self.logs / f"{name}.time").write_text(json.dumps({"seconds": seconds}))
        return {"run": run, "seconds": seconds}

    def quick_overrides(self, kind: str) -> list[str]:
        if not self.quick:
            return []
        if kind == "pretrain":
            return ["train.steps=30", "train.eval_every=30", "data.max_chars=300000"]
        if kind == "lm":
            return ["train.steps=10", "train.eval_every=5"]
        if kind == "adalora":
            return ["train.steps=10", "train.eval_every=5", "finetune.strategy.total_steps=10",
                    "finetune.strategy.tinit=2", "finetune.strategy.tfinal=2", "finetune.strategy.delta_t=2"]
        return ["train.epochs=1"]


def file_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="where the runs go (default runs/finetune, with --quick runs/finetune-quick)")
    parser.add_argument("--quick", action="store_true", help="a few steps per run: checks the pipeline only")
    parser.add_argument("--fresh", action="store_true", help="delete earlier runs in --out first")
    parser.add_argument("--only", nargs="*", choices=STRATEGIES + CLASSIFIERS + ["lm-scratch"],
                        help="run only these (and the pretraining)")
    args = parser.parse_args()
    out = (args.out or ROOT / "runs" / ("finetune-quick" if args.quick else "finetune")).resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    r = Runner(out, args.quick)
    started = time.perf_counter()

    # 1. data
    if not PROSE.is_file():
        subprocess.run([sys.executable, str(HERE / "make_prose.py")], check=True)
    if not all(p.is_file() for p in LINES):
        subprocess.run([sys.executable, str(HERE / "make_lines_small.py")], check=True)

    # 2. pretraining
    pre = r.train(HERE / "pretrain.yaml", "pretrain", r.quick_overrides("pretrain"))
    base = pre["run"]
    r.mgnn("export", rel(base))
    base_export = file_size(base / "export.safetensors")
    base_info = run_json(base)
    base_stdlib = r.eval_json(base)                      # its own validation text (code)
    # 3. before: the pretrained model on the prose's validation text
    before = r.eval_json(base, rel(PROSE), "val_fraction=0.1")
    results: dict = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": args.quick,
        "pretrain": {"seconds": pre["seconds"], "parameters": base_info["parameters"], "export_bytes": base_export,
                     "val_stdlib": base_stdlib, "val_prose": before, "data": base_info["data"]},
        "lm": {}, "classification": {},
    }
    wanted = set(args.only or STRATEGIES + CLASSIFIERS + ["lm-scratch"])
    from_base = [f"finetune.from={rel(base)}"]

    # 4. the language-model fine-tunes, and the scratch baseline
    for name in ["lm-scratch"] + STRATEGIES:
        if name not in wanted:
            continue
        spec = HERE / (f"{name}.yaml" if name == "lm-scratch" else f"ft-{name}.yaml")
        run_name = name if name == "lm-scratch" else f"ft-{name}"
        overrides = r.quick_overrides("adalora" if name == "adalora" else "lm")
        if name != "lm-scratch":
            overrides = from_base + overrides
        done = r.train(spec, run_name, overrides)
        run = done["run"]
        info = run_json(run)
        after = r.eval_json(run)
        row: dict = {"seconds": done["seconds"], "status": info["status"], "after": after, "data": info["data"],
                     "parameters": info["parameters"], "finetune": info.get("finetune"),
                     "adapter_bytes": file_size(run / "adapter.safetensors"),
                     "best": json.loads((run / "checkpoints" / "index.json").read_text())["best"]}
        if name != "lm-scratch":  # the old domain, scored as the base was
            row["stdlib_after"] = r.eval_json(run, *STDLIB_VAL)
            row["start"] = start_loss(r, spec, overrides)
        code, text, _ = r.mgnn("export", rel(run), check=False, log=f"{run_name}.export")
        row["export"] = file_size(run / "export.safetensors") if code == 0 else \
            (r.logs / f"{run_name}.export.log").read_text().strip().splitlines()[-1]
        if code == 0 and name != "lm-scratch":  # the merged model must score what the run scored
            row["export_check"] = check_export(r, run)
        results["lm"][name] = row

    # 5. classification: from scratch, a linear probe, a full fine-tune with a new head. A
    #    300-line training set makes single runs noisy, so each is trained with 3 seeds
    #    (the new head's / the scratch model's initial weights, dropout, batch order).
    for name in CLASSIFIERS:
        if name not in wanted:
            continue
        runs_ = []
        for seed in SEEDS[: 1 if args.quick else len(SEEDS)]:
            overrides = r.quick_overrides("cls") + (from_base if name != "cls-scratch" else []) + [f"train.seed={seed}"]
            done = r.train(HERE / f"{name}.yaml", f"{name}-seed{seed}", overrides)
            info = run_json(done["run"])
            runs_.append({"seed": seed, "seconds": done["seconds"], "status": info["status"],
                          "reason": info.get("reason"), "step": info["step"], "eval": r.eval_json(done["run"]),
                          "parameters": info["parameters"], "finetune": info.get("finetune"),
                          "adapter_bytes": file_size(done["run"] / "adapter.safetensors"), "data": info["data"]})
        results["classification"][name] = runs_

    # 6. samples: what the prose models write
    samples = {}
    for name in ("pretrain", "lm-scratch", "ft-full", "ft-lora"):
        if (out / name).is_dir():
            _, text, _ = r.mgnn("generate", rel(out / name), "--prompt", "The ", "--length", "240",
                                "--temperature", "0.6", "--seed", "0")
            samples[name] = text.rstrip("\n")
    results["samples"] = samples
    results["total_seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    md = to_markdown(results)
    (out / "results.md").write_text(md, encoding="utf-8")
    print()
    print(md)
    print(f"wrote {rel(out / 'results.md')} and {rel(out / 'results.json')}")


def start_loss(r: Runner, spec: Path, overrides: list[str]) -> float:
    """The fine-tune's validation loss at step 0: the strategy applied, nothing trained yet.
    Equal to the base's for every strategy that starts as the identity (LoRA, adapters,
    IA3, prefix...), not for prompt tuning (its virtual tokens are there from the start)."""
    code = (
        "import json, sys\n"
        "from microgradnn.spec import load_spec\n"
        "from microgradnn.train import Trainer\n"
        "trainer = Trainer(load_spec(sys.argv[1], sys.argv[2:]), dry_run=1)  # writes nothing\n"
        "print(json.dumps(trainer.validate()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, rel(spec), *overrides], cwd=ROOT, env=r.env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"could not score {rel(spec)} at step 0:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)["val_loss"]


def check_export(r: Runner, run: Path) -> float:
    """Load the merged export the way ``finetune.from`` does (a plain model of the base's
    architecture, no strategy) and score it on the run's validation text. Returns the
    absolute difference of its loss and the run's own (0 up to float32 rounding)."""
    code = (
        "import json, sys\n"
        "from microgradnn.train import build, runs\n"
        "from microgradnn.train.finetune_hook import load_base, load_into\n"
        "from microgradnn.train.trainer import evaluate_model\n"
        "run = sys.argv[1]\n"
        "base = load_base(run + '/export.safetensors')\n"
        "spec = runs.read_spec(run)\n"
        "model = build.build_model(base.model_spec, base.info)\n"
        "load_into(model, base.state, base.source, skip_head=False)\n"
        "dm = build.build_data(spec, vocab=base.vocab)\n"
        "loss = build.build_loss(spec.get('loss'), dm.task)\n"
        "res = evaluate_model(model, dm, loss, [], 32, 'cpu', False, build.loss_ignore_index(loss), dm.task)\n"
        "print(json.dumps(res))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(run)], cwd=ROOT, env=r.env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"the merged export of {rel(run)} does not load as a plain model:\n{proc.stderr[-2000:]}")
    merged = json.loads(proc.stdout)["val_loss"]
    return abs(merged - r.eval_json(run)["loss"])


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def _n(x: float | int | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else f"{x:,}"


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} KiB"


def to_markdown(res: dict) -> str:
    pre = res["pretrain"]
    before = pre["val_prose"]
    val_chars = next((row["data"].get("val_chars") for row in res["lm"].values()), None)
    lines = [
        f"Runs of {res['date']} on {res['machine']}" + (" (QUICK: a few steps each, numbers meaningless)"
                                                         if res["quick"] else "") + ".",
        "",
        f"Pretraining: {pre['parameters']['total']:,} parameters, {_n(pre['seconds'], 0)} s; "
        f"stdlib validation loss {_n(pre['val_stdlib']['loss'])} "
        f"(perplexity {_n(pre['val_stdlib']['perplexity'], 2)}); "
        f"standalone model file {_kib(pre['export_bytes'])}.",
        "",
        f"Prose validation text ({_n(val_chars)} characters). *Before* = the pretrained model, untouched: "
        f"loss {_n(before['loss'])}, perplexity {_n(before['perplexity'], 2)}, "
        f"next-character accuracy {_n(100 * before['accuracy'], 1)}%.",
        "",
        "| strategy | trainable parameters | share | loss at step 0 | loss before → after "
        "| perplexity before → after | accuracy after | stdlib loss after (was "
        f"{_n(pre['val_stdlib']['loss'])}) | saved result | merged export | wall time |",
        "|---|--:|--:|--:|---|---|--:|--:|--:|---|--:|",
    ]
    for name, row in res["lm"].items():
        a = row["after"]
        ft = row.get("finetune") or {}
        if name == "lm-scratch":
            params, share = row["parameters"]["trainable"], 1.0
            loss = f"(random) → **{_n(a['loss'])}**"
            ppl = f"(random) → {_n(a['perplexity'], 2)}"
            saved = "whole model"
        else:
            params, share = ft.get("trainable"), ft.get("share")
            loss = f"{_n(before['loss'])} → **{_n(a['loss'])}**"
            ppl = f"{_n(before['perplexity'], 2)} → {_n(a['perplexity'], 2)}"
            saved = _kib(row["adapter_bytes"])
        export = row["export"]
        export = _kib(export) if isinstance(export, int) else "not mergeable"
        if "export_check" in row:
            export += f" (Δloss {row['export_check']:.0e})"
        stdlib = _n(row["stdlib_after"]["loss"]) if "stdlib_after" in row else "-"
        label = "from scratch (no pretraining)" if name == "lm-scratch" else f"`{name}`"
        if ft.get("ranks"):
            label += " (final ranks " + ", ".join(str(v) for v in ft["ranks"].values()) + ")"
        start = "-" if "start" not in row else (
            "= before" if abs(row["start"] - before["loss"]) < 1e-5 else _n(row["start"]))
        lines.append(f"| {label} | {_n(params)} | {100 * share:.2f}% | {start} | {loss} | {ppl} | "
                     f"{_n(100 * a['accuracy'], 1)}% | {stdlib} | {saved} | {export} | {_n(row['seconds'], 0)} s |")
    if res["classification"]:
        lines += ["", "Classification (code / comment / docstring line; 300 training lines, 1,500 validation lines; "
                  "chance 33.3%). Mean of the seeds, each seed's value in brackets:", "",
                  "| model | trainable parameters | validation accuracy | macro F1 | validation loss "
                  "| epochs run (early stopping) | wall time per run |", "|---|--:|--:|--:|--:|--:|--:|"]
        titles = {"cls-scratch": "same model from scratch", "cls-probe": "pretrained, frozen + new head (probe)",
                  "cls-pretrained": "pretrained + new head, all fine-tuned"}
        for name, seeds in res["classification"].items():
            first = seeds[0]
            trainable = (first.get("finetune") or {}).get("trainable", first["parameters"]["trainable"])
            per_epoch = -(-first["data"]["train_examples"] // 32)

            def stat(key: str, scale: float = 1.0, digits: int = 3) -> str:
                values = [scale * s["eval"][key] for s in seeds]
                mean = sum(values) / len(values)
                each = ", ".join(f"{v:.{digits}f}" for v in values)
                return f"{mean:.{digits}f} ({each})" if len(values) > 1 else f"{mean:.{digits}f}"

            epochs = ", ".join(str(s["step"] // per_epoch) for s in seeds)
            seconds = sum(s["seconds"] or 0 for s in seeds) / len(seeds)
            lines.append(f"| {titles.get(name, name)} | {_n(trainable)} | **{stat('accuracy', 100, 1)}%** | "
                         f"{stat('f1')} | {stat('loss')} | {epochs} | {_n(seconds, 0)} s |")
    if res.get("samples"):
        lines += ["", "Samples (`mgnn generate RUN --prompt \"The \" --length 240 --temperature 0.6 --seed 0`):", ""]
        for name, text in res["samples"].items():
            lines += [f"{name}:", "", "```", text, "```", ""]
    lines.append(f"Total time of run_all.py: {_n(res['total_seconds'] / 60, 1)} min.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
