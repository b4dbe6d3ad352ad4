"""Floor 4: train a recurrent model from a spec, and use the run afterwards.

::

    from microgradnn.spec import load_spec
    from microgradnn.train import Trainer, evaluate, generate

    trainer = Trainer(load_spec("examples/charlm.yaml"))
    summary = trainer.fit()                      # writes runs/charlm/ (see runs.py)
    Trainer.resume("runs/charlm").fit()          # continues exactly where it stopped
    evaluate("runs/charlm")                      # {"loss": ..., "perplexity": ...}
    print(generate("runs/charlm", "def ", length=200, temperature=0.8))

The ``mgnn`` command line (``cli/mgnn``) is a thin layer over these: its live display is
one more callback (:mod:`microgradnn.train.callbacks`).
"""

from .build import BuildError, TrainError, build_data, build_model
from .callbacks import Callback, CallbackList
from .inference import LoadedRun, evaluate, export, generate, load_run
from .trainer import EarlyStopping, Trainer, evaluate_model

__all__ = [
    "Trainer", "EarlyStopping", "Callback", "CallbackList", "TrainError", "BuildError",
    "evaluate", "generate", "export", "load_run", "LoadedRun", "evaluate_model", "build_data", "build_model",
]
