"""``factorlens encode RUN``: posterior means and log-variances of a run's encoder, saved as ``.npz``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from factorlens.errors import ConfigError

SPLITS = ("train", "test", "all")  # factorlens.evaluation.SPLITS, spelled out: no torch at parser build


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


def run(args: argparse.Namespace) -> int:
    from factorlens.evaluation import evaluation_images
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
    own_data = args.data is None or args.data == run.config.data.spec
    split = args.split or ("test" if own_data else "all")
    if not own_data and split != "all":
        raise ConfigError(f"--split {split} refers to the run's own dataset; use --split all with --data")
    # all_if_empty=False: the test split of a run without one is written as it is, empty.
    chosen = evaluation_images(run, args.data, split=split, all_if_empty=False, progress=progress_enabled())
    indices, dataset, subset = chosen.indices, chosen.dataset, chosen.subset()
    posterior = run.encode(subset.images, batch_size=args.batch_size, dtype="float32")
    mu, logvar = posterior.mean, posterior.logvar
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
