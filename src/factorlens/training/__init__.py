"""Training: one loop for every model, and the run-directory format downstream commands read.

- :func:`train` (``trainer.py``): config + output folder -> run directory.
- :class:`Trainer` (``trainer.py``) and its callbacks (``callbacks.py``): the loop itself, for notebooks
  and tests that inject a model or a callback.
- :func:`load_run` / :class:`Run` (``rundir.py``): open a run directory (model on CPU, eval mode).
"""

from factorlens.training.callbacks import Callback, default_callbacks
from factorlens.training.rundir import FORMAT_VERSION, Run, load_run
from factorlens.training.trainer import Trainer, TrainingInterrupted, train

__all__ = ["FORMAT_VERSION", "Callback", "Run", "Trainer", "TrainingInterrupted", "default_callbacks",
           "load_run", "train"]
