"""``explain`` on a run directory: load and check everything first, then explain, then write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factorlens.errors import ConfigError, DataError
from factorlens.explain.classifier import load_classifier
from factorlens.explain.contrastive import ContrastiveOptions
from factorlens.explain.pipeline import ExplainOptions, explain, write_explanation

POSTERIOR_SAMPLE = 4096  # training images encoded for the aggregate posterior


def source_images_of(dataset, indices: np.ndarray, *, source: str | None, target: str) -> np.ndarray:
    """Images at ``indices`` labelled ``source`` (or, without a source, not labelled ``target``)."""
    if dataset.labels is None or not dataset.class_names:
        if source is not None:
            raise DataError(f"dataset {dataset.spec} has no labels, so --source {source} cannot be found")
        return dataset.images[indices]
    labels = dataset.labels[indices]
    if source is not None:
        if source not in dataset.class_names:
            raise DataError(
                f"--source {source!r} is not a class of dataset {dataset.spec}; its classes: "
                f"{', '.join(dataset.class_names)}"
            )
        keep = labels == dataset.class_names.index(source)
    elif target in dataset.class_names:
        keep = labels != dataset.class_names.index(target)
    else:
        keep = np.ones(len(labels), dtype=bool)
    if not keep.any():
        raise DataError(
            f"no source images: class {source or 'not ' + target} has no images in {dataset.spec} "
            f"({len(indices)} images looked at)"
        )
    return dataset.images[indices[keep]]


def posterior_adapter(run):
    """The run's generator with its aggregate posterior: encoder means of (up to 4,096) training images."""
    from factorlens.directions import GeneratorAdapter

    train_images = run.images("train")
    rows = np.sort(np.random.default_rng(0).permutation(len(train_images))[:POSTERIOR_SAMPLE])
    return GeneratorAdapter.from_model(run.model, train_images[rows])


def explain_run(
    run_path: Path,
    classifier_path: Path,
    *,
    target: str,
    source: str | None = None,
    data_spec: str | None = None,
    out: Path | None = None,
    options: ExplainOptions | None = None,
    contrastive: ContrastiveOptions | None = None,
    progress: bool = True,
) -> Path:
    from factorlens.directions import GeneratorAdapter
    from factorlens.directions.oracle import ORACLES
    from factorlens.evaluation import evaluation_images
    from factorlens.training import load_run

    options = options or ExplainOptions()
    classifier = load_classifier(classifier_path)
    classifier.class_index(target, option_name="--target")
    if source is not None:
        classifier.class_index(source, option_name="--source")
    run = load_run(run_path)
    what = f"run {run_path}"
    model = run.model
    # decoded images are what the classifier sees: a diffusion model may decode at a lower resolution
    decoded_size = int(getattr(model, "resolution", 0) or run.split.get("image_size", 64))
    classifier.check_images(int(run.split.get("channels", 3)), decoded_size, what)
    if getattr(model, "is_diffusion", False):
        raise ConfigError(
            f"{what} is a ddpm, whose only code is the noise x_T: explain a classifier through a diffusion "
            "autoencoder (model diffae: a semantic code conditions the U-Net), the VAE family or the GAN"
        )
    has_encoder = bool(getattr(model, "has_encoder", True))
    if not has_encoder and options.codes == "posterior":
        raise ConfigError(
            f"{what} ({run.model_name}) has no encoder, so it cannot encode source images "
            "(--codes posterior); use --codes prior or --codes inverted"
        )
    if not has_encoder and options.codes in ("auto", "prior") and data_spec is not None:
        raise ConfigError(
            f"{what} ({run.model_name}) has no encoder: --data needs --codes inverted (source images are "
            "inverted by optimisation) or no --data with --codes prior"
        )
    source_images = None
    if options.codes == "inverted" or (has_encoder and options.codes != "prior"):
        chosen = evaluation_images(run, data_spec, split=None if data_spec else "test")
        source_images = source_images_of(chosen.dataset, chosen.indices, source=source, target=target)
        adapter = posterior_adapter(run) if has_encoder else GeneratorAdapter.from_model(model)
        dataset_name = chosen.dataset.name
    else:
        adapter = GeneratorAdapter.from_model(model)
        dataset_name = run.config.data.spec.split(":")[0]
    oracle = ORACLES.get(dataset_name) if dataset_name in ORACLES else None
    explanation = explain(
        adapter,
        classifier,
        target=target,
        source=source,
        source_images=source_images,
        options=options,
        contrastive=contrastive,
        oracle=oracle,
        what=what,
        progress=progress,
    )
    explanation.report["run"] = str(run_path)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in target)
    return write_explanation(explanation, out or run_path / "directions" / f"explain-{safe}")
