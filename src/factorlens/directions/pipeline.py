"""Discover, score and draw directions for a model: what ``factorlens discover`` runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from torch import nn

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.directions.figures import save_effect_heatmap, save_traversal_grid
from factorlens.directions.methods import discover_directions
from factorlens.directions.oracle import ORACLES
from factorlens.directions.scores import interpretability_index, rca_comparison, score_directions
from factorlens.errors import ConfigError
from factorlens.io import atomic_write_json

TRAVERSAL_FILE = "traversal.png"
EFFECT_FILE = "effect_matrix.png"
SCORES_FILE = "scores.json"


def discover_for_model(
    model: nn.Module,
    images: np.ndarray | None,
    out: str | Path,
    *,
    method: str,
    dataset_name: str | None = None,
    k: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    rca_steps: int = 300,
    rca_pairs: int | None = None,
    score_codes: int = 32,
    options: dict | None = None,
) -> DirectionSet:
    """Discover directions of ``model`` (base codes from ``images [N, C, 64, 64]`` uint8 when it has an
    encoder), write ``directions.*``, ``scores.json`` and the figures into ``out``.

    Scores need an oracle for ``dataset_name`` (see :data:`~factorlens.directions.oracle.ORACLES`); RCA
    is computed when ``rca_steps > 0``, from a pool of ``rca_pairs`` decoded pairs (``None``: the
    adapter's ``default_rca_pairs``, 1024 for diffusion runs, 0 = fresh pairs every step otherwise).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adapter = GeneratorAdapter.from_model(model, images)
    started = time.perf_counter()
    directions = discover_directions(adapter, method, k=k, seed=seed, steps=steps, **(options or {}))
    seconds = {"discover": round(time.perf_counter() - started, 2)}
    figures = {TRAVERSAL_FILE: f"{method} directions: traversals of one base code over [-3, 3] posterior sd"}
    save_traversal_grid(adapter, directions, out / TRAVERSAL_FILE, seed=seed)
    scores: dict = {"method": method, "base_source": adapter.base_source}
    if dataset_name is not None and dataset_name in ORACLES:
        started = time.perf_counter()
        oracle = ORACLES.get(dataset_name)
        result = score_directions(
            adapter, directions, oracle.read, oracle.factor_names, num_codes=score_codes, seed=seed
        )
        scores.update(result.to_json())
        save_effect_heatmap(result.effect, oracle.factor_names, out / EFFECT_FILE, title=f"{method} effects")
        figures[EFFECT_FILE] = f"{method}: interventional effect of each direction on each oracle factor"
        seconds["score"] = round(time.perf_counter() - started, 2)
    else:
        scores["oracle"] = None
    # Klindt et al.'s index needs no oracle: every run gets it.
    started = time.perf_counter()
    try:
        scores["interpretability_index"] = interpretability_index(adapter, directions, seed=seed)
    except ConfigError as error:
        # Too few base codes for the protocol's trials: say so in the scores, do not invent a number.
        scores["interpretability_index"] = {"unavailable": str(error)}
    seconds["interpretability"] = round(time.perf_counter() - started, 2)
    if rca_steps > 0 and directions.num_directions <= adapter.latent_dim:
        started = time.perf_counter()
        pairs = adapter.default_rca_pairs if rca_pairs is None else rca_pairs
        # a set trained with a difference-input reconstructor is judged, with its baselines, the same way
        input_kind = str(directions.params.get("reconstructor_input", "pair"))
        scores["rca"] = rca_comparison(adapter, directions, steps=rca_steps, seed=seed, pairs=pairs,
                                       input_kind=input_kind)
        seconds["rca"] = round(time.perf_counter() - started, 2)
    # Wall-clock cost of each stage on this machine (informative only; docs/performance.md).
    scores["seconds"] = seconds
    atomic_write_json(out / SCORES_FILE, scores)
    directions.save(out, figures=figures)
    return directions


def discover_for_run(
    run_path: str | Path,
    *,
    method: str,
    out: str | Path | None = None,
    k: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    rca_steps: int = 300,
    rca_pairs: int | None = None,
    max_images: int = 2000,
    options: dict | None = None,
) -> Path:
    """Load a run (``factorlens.training.load_run``), encode up to ``max_images`` training images (a seeded
    random sample of the training split, :func:`factorlens.evaluation.evaluation_images`) and
    run :func:`discover_for_model`; output defaults to ``RUN/directions/<method>/``."""
    from factorlens.directions.methods import check_options
    from factorlens.evaluation import evaluation_images
    from factorlens.training import load_run

    check_options(method, options or {})  # fail on a misspelt method or option before loading anything
    run = load_run(run_path)
    out = Path(out) if out is not None else Path(run_path) / "directions" / method
    train = evaluation_images(run, split="train")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(train.indices, size=min(max_images, len(train)), replace=False))
    dataset = train.dataset
    discover_for_model(
        run.model,
        dataset.images[chosen],
        out,
        method=method,
        dataset_name=dataset.name,
        k=k,
        steps=steps,
        seed=seed,
        rca_steps=rca_steps,
        rca_pairs=rca_pairs,
        options=options,
    )
    return out
