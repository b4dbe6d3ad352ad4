"""Chapter 10 reference solution."""

import json
from pathlib import Path


def best_eval(run_dir, key):
    events = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [e for e in events if e.get("event") == "eval" and key in e]
    best = min(evals, key=lambda e: e[key])
    return best["step"], best[key]
