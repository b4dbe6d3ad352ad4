"""Chapter 10 exercise: find the best evaluation in a run's metrics.jsonl."""


def best_eval(run_dir, key):
    """Return (step, value) of the "eval" event in run_dir/metrics.jsonl with the lowest `key`."""
    raise NotImplementedError("read the JSON lines; run: python tutorials/check.py 10")
