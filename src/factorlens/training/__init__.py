"""Training: one loop for every model, and the run-directory format downstream commands read.

- :func:`train` (``trainer.py``): config dict + output folder -> run directory.
- :func:`load_run` / :class:`Run` (``rundir.py``): open a run directory (model on CPU, eval mode).
"""

from factorlens.training.rundir import FORMAT_VERSION, Run, load_run
from factorlens.training.trainer import TrainingInterrupted, train

__all__ = ["FORMAT_VERSION", "Run", "TrainingInterrupted", "load_run", "train"]
