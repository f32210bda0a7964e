"""Every figure of one run, written into a folder with a ``figures.json`` manifest of captions.

The manifest has the same shape as the ``"figures"`` entry of ``directions.json``: file name -> caption
saying how the figure was made (data, images, span, steps, ordering). The HTML report embeds the files in
manifest order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factorlens.data.base import ImageDataset
from factorlens.errors import DataError, FactorlensError
from factorlens.evaluation import encode_images, evaluation_images
from factorlens.io import atomic_write_json
from factorlens.viz import panels
from factorlens.viz.stats import MI_BINS, latent_factor_mi, mean_kl_per_dim
from factorlens.viz.traversals import save_traversal_comparison, traversal
from factorlens.viz.walks import walk

MANIFEST_FILE = "figures.json"
FIGURES_DIR = "figures"
STATS_IMAGES = 1000  # images encoded for the KL ordering and the MI labels
# Defaults of ``viz``/``report``, sized so one run's figures embed in about 1-2 MB of HTML: a traversal
# tile of a trained model is ~5-9 KB of PNG, so 2 images x 6 dimensions x 10 steps stays near 1 MB.
REPORT_IMAGES = 2
REPORT_TRAVERSAL_DIMS = 6
REPORT_WALK_DIMS = 6
PRIOR_ROWS, PRIOR_COLS = 2, 8


@dataclass
class FigureData:
    """The images figures are drawn from: a dataset, a pool of candidate indices and a description."""

    dataset: ImageDataset
    pool: np.ndarray  # int64 indices into dataset (the run's test split, or all of --data)
    description: str  # e.g. "synthetic-lesions:n=128, test split (26 images)"


def figure_data(run, data_spec: str | None = None) -> FigureData:
    """The run's test split (every image when it is empty), or every image of ``data_spec`` when given
    (:func:`factorlens.evaluation.evaluation_images`)."""
    chosen = evaluation_images(run, data_spec, split="all" if data_spec is not None else "test")
    if data_spec is not None:
        where = f"{data_spec} ({len(chosen)} images)"
    else:
        part = "test split" if chosen.split == "test" else "all images"
        where = f"{chosen.spec}, {part} ({len(chosen)} images)"
    return FigureData(dataset=chosen.dataset, pool=chosen.indices, description=where)


def resolve_image(dataset: ImageDataset, token: str | int) -> int:
    """An image given as its id in the dataset or, failing that, as an integer index."""
    text = str(token)
    try:
        return dataset.ids.index(text)
    except ValueError:
        pass
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(dataset):
        return int(text)
    raise DataError(f"image {text!r} is neither an id of {dataset.spec} nor an index below {len(dataset)}")


def choose_images(data: FigureData, *, n: int = 3, ids: Sequence[str] | None = None) -> np.ndarray:
    """Indices of the images to draw: ``ids`` (ids or indices) when given, else the pool's first ``n``."""
    if ids:
        return np.array([resolve_image(data.dataset, token) for token in ids], dtype=np.int64)
    if n < 1:
        raise FactorlensError(f"--images must be at least 1, got {n}")
    return data.pool[:n]


@dataclass
class LatentStats:
    kl_per_dim: np.ndarray  # [d] nats
    codes: np.ndarray  # [N, d] posterior means of the stats images
    indices: np.ndarray  # [N] dataset indices of those images
    factor_mi: np.ndarray | None  # [d, K] nats
    factor_names: list[str]


def latent_stats(model, data: FigureData, *, max_images: int = STATS_IMAGES) -> LatentStats:
    """KL per dimension and (when the dataset has factors) MI per dimension and factor, over the first
    ``max_images`` of the pool."""
    indices = data.pool[:max_images]
    posterior = encode_images(model, data.dataset.images[indices], dtype=np.float32)
    codes, logvars = posterior.mean, posterior.logvar
    factor_mi, names = None, []
    if data.dataset.factors is not None and data.dataset.factor_names:
        factor_mi = latent_factor_mi(codes, data.dataset.factors[indices], bins=MI_BINS)
        names = list(data.dataset.factor_names)
    return LatentStats(
        kl_per_dim=mean_kl_per_dim(codes, logvars),
        codes=codes,
        indices=indices,
        factor_mi=factor_mi,
        factor_names=names,
    )


def read_manifest(folder: str | Path) -> dict[str, str]:
    path = Path(folder) / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("figures") or {})
    except (json.JSONDecodeError, AttributeError):
        raise FactorlensError(f'{path} is corrupted: expected {{"figures": {{file: caption}}}}') from None


def update_manifest(folder: str | Path, figures: dict[str, str]) -> dict[str, str]:
    """Merge ``figures`` into the folder's manifest (new captions replace old ones for the same file)."""
    merged = {**read_manifest(folder), **figures}
    atomic_write_json(Path(folder) / MANIFEST_FILE, {"figures": merged})
    return merged


def default_out(run) -> Path:
    return Path(run.path) / FIGURES_DIR


def traversal_figures(
    run,
    out: Path,
    *,
    data: FigureData,
    stats: LatentStats,
    n_images: int = 3,
    ids: Sequence[str] | None = None,
    steps: int = 10,
    span: float = 3.0,
    inactive: str = "grey",
    active_threshold: float = 0.01,
    max_dims: int | None = None,
    compare=None,
) -> dict[str, str]:
    """Fig. 1a traversal PNG + GIF (and a side-by-side comparison with ``compare``, another Run).

    ``max_dims``: show only this many dimensions per image, those with the most KL (``None``: all).
    """
    chosen = choose_images(data, n=n_images, ids=ids)
    image_ids = [data.dataset.ids[i] for i in chosen]
    common = dict(
        steps=steps, span=span, active_threshold=active_threshold, inactive=inactive, image_ids=image_ids
    )
    figure = traversal(
        run,
        data.dataset.images[chosen],
        source=data.description,
        max_dims=max_dims,
        kl_per_dim=stats.kl_per_dim,
        kl_images=len(stats.indices),
        factor_mi=stats.factor_mi,
        factor_names=stats.factor_names,
        mi_bins=MI_BINS,
        **common,
    )
    figure.save(out / "traversal.png")
    figure.save(out / "traversal.gif")
    figures = {"traversal.png": figure.caption, "traversal.gif": figure.animation_caption}
    if compare is not None:
        if data.dataset.channels != compare.model.channels:
            raise DataError(
                f"--compare {compare.path}: its model expects {compare.model.channels} channels, "
                f"{data.dataset.spec} has {data.dataset.channels}"
            )
        other_data = FigureData(dataset=data.dataset, pool=data.pool, description=data.description)
        other_stats = latent_stats(compare.model, other_data)
        other = traversal(
            compare.model,
            data.dataset.images[chosen],
            max_dims=max_dims,
            kl_per_dim=other_stats.kl_per_dim,
            factor_mi=other_stats.factor_mi,
            factor_names=other_stats.factor_names,
            **common,
        ).data
        names = [
            f"{run.model_name} ({Path(run.path).name})",
            f"{compare.model_name} ({Path(compare.path).name})",
        ]
        save_traversal_comparison([figure.data, other], names, out / "traversal_compare.png")
        figures["traversal_compare.png"] = (
            f"Traversals of {names[0]} (left) and {names[1]} (right) on the same "
            f"images; each ordered by its own per-dimension KL. {figure.description}."
        )
    return figures


def walk_figures(
    run,
    out: Path,
    *,
    data: FigureData,
    stats: LatentStats,
    source: str | int | None = None,
    target: str | int | None = None,
    dims: Sequence[int] | None = None,
    frames: int = 5,
    max_dims: int = 8,
) -> dict[str, str]:
    """Fig. 1b manifold walk PNG + GIF. Default pair: the first pool image and the stats image whose
    code is farthest from it (Euclidean distance of posterior means)."""
    source_index = int(data.pool[0]) if source is None else resolve_image(data.dataset, source)
    if target is None:
        source_code = encode_images(run.model, data.dataset.images[[source_index]], dtype=np.float32).mean
        target_index = int(stats.indices[np.argmax(np.linalg.norm(stats.codes - source_code, axis=1))])
    else:
        target_index = resolve_image(data.dataset, target)
    images = data.dataset.images
    figure = walk(
        run,
        images[source_index],
        images[target_index],
        dims=dims,
        frames=frames,
        max_dims=max_dims,
        source_name=data.dataset.ids[source_index],
        target_name=data.dataset.ids[target_index],
        where=data.description,
    )
    figure.save(out / "walk.png")
    figure.save(out / "walk.gif")
    return {"walk.png": figure.caption, "walk.gif": figure.animation_caption}


def make_run_figures(
    run,
    out: str | Path | None = None,
    *,
    data_spec: str | None = None,
    n_images: int = REPORT_IMAGES,
    ids: Sequence[str] | None = None,
    steps: int = 10,
    span: float = 3.0,
    inactive: str = "grey",
    max_dims: int | None = REPORT_TRAVERSAL_DIMS,
    walk_dims: int = REPORT_WALK_DIMS,
    n_reconstructions: int = 8,
    seed: int = 0,
) -> dict[str, str]:
    """Write every figure of ``run`` (a :class:`~factorlens.training.Run`) into ``out`` (default
    ``RUN/figures``) and return its manifest (file -> caption), which replaces the folder's: only the
    figures drawn now are listed (``traverse`` / ``walk`` add to it afterwards).

    ``max_dims`` / ``walk_dims``: dimensions per traversal image (most KL first; ``None`` = all) and
    moves of the manifold walk; the defaults keep a report near 1-2 MB per run."""
    out = Path(out) if out is not None else default_out(run)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    records = run.log()
    if panels.loss_terms(records):
        panels.save_training_curves(
            records, out / "training_curves.png", title=f"{run.model_name}: log.jsonl"
        )
        figures["training_curves.png"] = (
            f"Training curves: every loss term logged in log.jsonl against the "
            f"iteration ({len(records)} records)."
        )
    model = run.model
    panels.save_prior_samples(model, out / "prior_samples.png", rows=PRIOR_ROWS, cols=PRIOR_COLS, seed=seed)
    figures["prior_samples.png"] = (
        f"{PRIOR_ROWS * PRIOR_COLS} images decoded from codes drawn from the prior N(0, I) (seed {seed})."
    )
    if getattr(model, "has_encoder", True):
        data = figure_data(run, data_spec)
        stats = latent_stats(model, data)
        recon_idx = data.pool[:n_reconstructions]
        panels.save_reconstructions(
            model,
            data.dataset.images[recon_idx],
            out / "reconstructions.png",
            image_ids=[data.dataset.ids[i] for i in recon_idx],
        )
        figures["reconstructions.png"] = (
            f"Inputs (top) and reconstructions decode(mu(x)) (bottom) of the first "
            f"{len(recon_idx)} images of {data.description}."
        )
        panels.save_kl_bars(stats.kl_per_dim, out / "kl_per_dim.png")
        figures["kl_per_dim.png"] = (
            f"Mean KL of each latent dimension to the prior over {len(stats.indices)} "
            f"images of {data.description}, largest first."
        )
        if stats.factor_mi is not None:
            order = np.argsort(-stats.kl_per_dim, kind="stable")
            panels.save_mi_heatmap(
                stats.factor_mi, stats.factor_names, out / "mi_heatmap.png", dim_order=order
            )
            figures["mi_heatmap.png"] = (
                f"Mutual information (nats, posterior means in {MI_BINS} bins) between "
                f"each latent dimension (rows, by decreasing KL) and each known factor, "
                f"over {len(stats.indices)} images of {data.description}."
            )
        figures.update(
            traversal_figures(
                run,
                out,
                data=data,
                stats=stats,
                n_images=n_images,
                ids=ids,
                steps=steps,
                span=span,
                inactive=inactive,
                max_dims=max_dims,
            )
        )
        figures.update(walk_figures(run, out, data=data, stats=stats, max_dims=walk_dims))
    # A fresh manifest, not a merge: figures left in the folder by an earlier `traverse --compare` or
    # by a dataset with factors must not reappear in this report under their old captions.
    atomic_write_json(out / MANIFEST_FILE, {"figures": figures})
    return figures
