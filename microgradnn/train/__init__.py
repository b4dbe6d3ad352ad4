"""Floor 4: train a recurrent model from a spec, and use the run afterwards.

::

    from microgradnn.spec import load_spec
    from microgradnn.train import Trainer, evaluate, generate

    trainer = Trainer(load_spec("examples/charlm.yaml"))
    summary = trainer.fit()                      # writes runs/charlm/ (see runs.py)
    Trainer.resume("runs/charlm").fit()          # continues exactly where it stopped
    evaluate("runs/charlm")                      # {"loss": ..., "perplexity": ...}
    print(generate("runs/charlm", "def ", length=200, temperature=0.8))

    # your own Module on your own data, from Python
    Trainer.from_model(my_model, adding(), loss="mse", steps=200).fit()  # microgradnn.data.adding

The parts: :mod:`.build` (spec -> objects), :mod:`.step` (forward, loss, count: written
once), :mod:`.trainer` (the loop), :mod:`.callbacks` (one hook list: early stopping,
checkpoint cadence, the NaN stop, the log, the display), :mod:`.checkpoints` (what a
checkpoint holds, best-k), :mod:`.runs` (the one writer of the run folder),
:mod:`.parallel` (the process seam). The ``mgnn`` command line (``cli/mgnn``) is a thin
layer over these: its live display is one more callback.
"""

from .build import build_data, build_model
from .callbacks import Callback, CallbackList, CheckpointCadence, EarlyStopping, MetricsLog, NonFiniteStop
from .errors import BuildError, TrainError
from .inference import LoadedRun, evaluate, export, generate, load_run
from .parallel import SingleProcess
from .step import Step, evaluate_batches
from .trainer import Trainer, evaluate_model

__all__ = [
    "Trainer", "Step", "evaluate_batches", "EarlyStopping", "CheckpointCadence", "NonFiniteStop", "MetricsLog",
    "Callback", "CallbackList", "SingleProcess", "TrainError", "BuildError",
    "evaluate", "generate", "export", "load_run", "LoadedRun", "evaluate_model", "build_data", "build_model",
]
