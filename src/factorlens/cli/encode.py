"""``factorlens encode RUN``: posterior means and log-variances of a run's encoder, saved as ``.npz``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from factorlens.errors import ConfigError

SPLITS = ("train", "test", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="encode images with a trained run's encoder",
        description="Writes OUT (.npz) with mu, logvar (float32 [N, d]), indices and ids, plus labels, "
        "class_names, factors, factor_names, handcrafted when the dataset has them.",
    )
    parser.add_argument("run", help="run directory written by `factorlens train`")
    parser.add_argument("--data", help="dataset spec (default: the run's own dataset)")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="images of the run's split to encode (default test; 'all' for another --data)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.set_defaults(func=run)


def encode_images(model, images: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``uint8 [N, C, 64, 64]`` -> ``(mu, logvar)``, each ``float32 [N, d]`` (model in eval mode, no grad)."""
    import torch

    from factorlens.data import to_float

    mus, logvars = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            mu, logvar = model.encode(to_float(images[start : start + batch_size]))
            mus.append(mu.float().numpy())
            logvars.append(logvar.float().numpy())
    d = model.latent_dim
    empty = np.zeros((0, d), dtype=np.float32)
    return (np.concatenate(mus) if mus else empty, np.concatenate(logvars) if logvars else empty)


def run(args: argparse.Namespace) -> int:
    from factorlens.data import load_dataset
    from factorlens.io import atomic_open
    from factorlens.training import load_run
    from factorlens.training.trainer import progress_enabled

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out} must end in .npz")
    run = load_run(args.run)
    if not run.model.has_encoder:
        raise ConfigError(f"run {args.run} is a {run.model_name!r} model: it has no encoder")
    own_data = args.data is None or args.data == run.config["data"]["spec"]
    split = args.split or ("test" if own_data else "all")
    if own_data:
        dataset = run.load_dataset(progress=progress_enabled())
    else:
        if split != "all":
            raise ConfigError(f"--split {split} refers to the run's own dataset; use --split all with --data")
        dataset = load_dataset(args.data, progress=progress_enabled())
        if dataset.channels != run.model.channels:
            raise ConfigError(
                f"--data {args.data} has {dataset.channels} channels, the run's model expects "
                f"{run.model.channels}"
            )
    indices = (np.arange(len(dataset), dtype=np.int64) if split == "all"
               else np.asarray(run.split[split], dtype=np.int64))
    subset = dataset.subset(indices)
    mu, logvar = encode_images(run.model, subset.images, batch_size=args.batch_size)
    arrays = {"mu": mu, "logvar": logvar, "indices": indices, "ids": np.asarray(subset.ids, dtype=str)}
    optional = {
        "labels": subset.labels,
        "class_names": None if subset.class_names is None else np.asarray(subset.class_names, dtype=str),
        "factors": subset.factors,
        "factor_names": np.asarray(subset.factor_names, dtype=str) if subset.factor_names else None,
        "handcrafted": subset.handcrafted,
    }
    arrays.update({k: v for k, v in optional.items() if v is not None})
    with atomic_open(out, "wb") as handle:
        np.savez(handle, **arrays)
    print(f"{out}: {len(indices)} images ({split} split of {dataset.spec}), d = {mu.shape[1]}")
    return 0
