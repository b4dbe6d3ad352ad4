"""Train a tiny spec with the Trainer, alone or as one rank of ``mpiexec -n N``.

``python train_script.py SPEC.json OUT.npz [float64|float32] [resume]``: trains (or resumes)
the run in the spec, then rank 0 writes the final weights, the validation history and the
run folder's path to OUT.npz. Under mpiexec the Trainer gets the MPI process seam."""

import json
import sys

import numpy as np

import microgradnn as mg
from microgradnn.train import Trainer
from microgradnn.train.data_parallel import MPIDataParallel, launched_by_mpi

spec_path, out_path = sys.argv[1], sys.argv[2]
dtype = sys.argv[3] if len(sys.argv) > 3 else "float32"
resume = len(sys.argv) > 4 and sys.argv[4] == "resume"
mg.set_default_dtype(getattr(mg, dtype))
spec = json.loads(open(spec_path).read())
parallel = MPIDataParallel() if launched_by_mpi() else None
run_dir = spec.pop("run_dir")
stop_at = spec.pop("stop_at", None)
stop_hook = spec.pop("stop_hook", "on_step")  # or "on_step_end": after the step's vote on stopping


class StopAt:
    """A callback that asks for a stop at one step (in ``stop_hook``)."""

    def ask(self, trainer, info):
        if info["step"] == stop_at:
            trainer.request_stop(f"test stop at {stop_at}")

    def on_step(self, trainer, info):
        if stop_hook == "on_step":
            self.ask(trainer, info)

    def on_step_end(self, trainer, info):
        if stop_hook == "on_step_end":
            self.ask(trainer, info)


callbacks = [StopAt()] if stop_at and (parallel is None or parallel.rank == 0) else []  # asked on rank 0 alone
if resume:
    trainer = Trainer.resume(run_dir, callbacks, parallel=parallel, overrides=spec.pop("resume_overrides", []))
else:
    trainer = Trainer(spec, run_dir=run_dir, callbacks=callbacks, parallel=parallel)
summary = trainer.fit()
if parallel is None or parallel.rank == 0:
    arrays = {f"w:{k}": np.asarray(v.array if hasattr(v, "array") else v) for k, v in trainer.model.state_dict().items()}
    arrays["history"] = np.array(json.dumps(trainer.history))
    arrays["status"] = np.array(summary["status"])
    arrays["step"] = np.array(summary["step"])
    np.savez(out_path, **arrays)
