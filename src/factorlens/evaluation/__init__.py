"""Evaluation of trained runs: the layer between training and the pure metric functions.

- :mod:`~factorlens.evaluation.posterior`: :class:`Posterior` and :func:`encode_images`, the one batched
  encoder pass (eval mode, no gradients) every consumer of codes uses.
- :mod:`~factorlens.evaluation.images`: :func:`evaluation_indices` / :func:`evaluation_images`, the one
  rule for which images of a run are evaluated (test split; every image when the test split is empty;
  all of another dataset).
- :mod:`~factorlens.evaluation.adapters`: the ``METRICS`` registry of Table-1 columns, each mapping
  :class:`EvaluationInputs` to a pure function of :mod:`factorlens.metrics`; :func:`evaluate_codes`.
- :mod:`~factorlens.evaluation.table1`: :func:`evaluate_runs` (what ``factorlens evaluate`` runs), the
  Markdown/CSV tables, the relative change over β-TCVAE and the files it writes.

``Run.images(split)`` and ``Run.encode(images)`` (``factorlens.training``) delegate here.
"""

from factorlens.evaluation.adapters import (
    METRICS,
    TABLE_ORDER,
    EvaluationInputs,
    EvaluationOptions,
    MetricSpec,
    MetricValue,
    evaluate_codes,
)
from factorlens.evaluation.images import SPLITS, EvaluationImages, evaluation_images, evaluation_indices
from factorlens.evaluation.posterior import Posterior, encode_images
from factorlens.evaluation.table1 import (
    BASELINE_MODEL,
    PAPER_ROW_NAMES,
    TableRow,
    encoder_function,
    evaluate_runs,
    format_csv,
    format_markdown,
    relative_change,
    score_images,
    unique_row_names,
    write_results,
)

__all__ = [
    "BASELINE_MODEL",
    "METRICS",
    "PAPER_ROW_NAMES",
    "SPLITS",
    "TABLE_ORDER",
    "EvaluationImages",
    "EvaluationInputs",
    "EvaluationOptions",
    "MetricSpec",
    "MetricValue",
    "Posterior",
    "TableRow",
    "encode_images",
    "encoder_function",
    "evaluate_codes",
    "evaluate_runs",
    "evaluation_images",
    "evaluation_indices",
    "format_csv",
    "format_markdown",
    "relative_change",
    "score_images",
    "unique_row_names",
    "write_results",
]
