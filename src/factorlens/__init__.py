"""factorlens: interpretable latent representations of medical images.

A notebook facade, loaded lazily (``import factorlens`` imports neither torch nor any subpackage)::

    import factorlens as fl

    run = fl.load_run("runs/demo/btcvae")          # factorlens.training.load_run
    dataset = fl.load_dataset("synthetic-lesions")  # factorlens.data.load_dataset
    fl.train(config, "runs/mine")                   # factorlens.training.train
    posterior = run.encode(run.images("test"))      # Posterior(mean, logvar), factorlens.evaluation
    fl.metrics.mig(posterior.mean, factors)         # the pure metric functions
    fl.viz.traversal(run, images)                   # a Figure: shows itself in Jupyter, .save("t.png")
    fl.compare(runs_a, runs_b, "mig_hf")            # paired over seeds: difference, bootstrap interval

``fl.evaluation`` (Table 1, the encoder pass, the evaluation images), ``fl.data``, ``fl.training`` and
``fl.directions`` are the subpackages. See ``examples/``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> (module, attribute); the module is imported on first access
_FUNCTIONS = {
    "load_run": ("factorlens.training", "load_run"),
    "train": ("factorlens.training", "train"),
    "load_dataset": ("factorlens.data", "load_dataset"),
    "compare": ("factorlens.evaluation.compare", "compare"),
}
_SUBPACKAGES = ("data", "directions", "evaluation", "metrics", "training", "viz")

__all__ = ["__version__", *sorted(_FUNCTIONS), *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        module, attribute = _FUNCTIONS[name]
        return getattr(importlib.import_module(module), attribute)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"factorlens.{name}")
    raise AttributeError(f"module 'factorlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FUNCTIONS) | set(_SUBPACKAGES))
