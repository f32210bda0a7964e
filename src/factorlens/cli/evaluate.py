"""``factorlens evaluate RUN... --out DIR``: Table 1 (MIG_p, MIG_hf, PSNR, NMI, ACC and the factor-based
metrics the data allows) for trained runs, written as ``table1.md``, ``table1.csv`` and ``metrics.json``."""

from __future__ import annotations

import argparse

from factorlens.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compute Table 1 metrics for trained runs",
        description="Encodes each run's test split (or all of --data) once and writes DIR/table1.md, "
        "DIR/table1.csv and DIR/metrics.json. See docs/metrics.md for every estimator.",
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="run directories written by `factorlens train`"
    )
    parser.add_argument(
        "--data", help="evaluate on all of this dataset spec instead of each run's test split"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of every randomised metric (default 0)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument(
        "--dci-model", default="gbt", help="DCI importance model: gbt (dlib) or random-forest"
    )
    parser.add_argument(
        "--interventional",
        action="store_true",
        help="also compute the FactorVAE and BetaVAE scores (slow; needs a dataset sampler)",
    )
    parser.add_argument(
        "--interventional-votes",
        type=int,
        default=10_000,
        help="training votes/points of the interventional scores (eval uses half)",
    )
    parser.add_argument(
        "--exact-mig",
        action="store_true",
        help="also compute Chen et al.'s MIG (slow; needs --data covering the full factor grid)",
    )
    parser.add_argument(
        "--exact-mig-samples", type=int, default=10_000, help="Monte Carlo samples of exact MIG"
    )
    parser.add_argument(
        "--vp", action="store_true",
        help="also compute the VP score (Zhu et al.; a small CNN trained on 10 %% of --vp-pairs pairs)",
    )
    parser.add_argument("--vp-pairs", type=int, default=10_000, help="image pairs of the VP score")
    parser.add_argument("--vp-axes", choices=("identity", "sefa"), default="identity",
                        help="latent axes the VP pairs vary along: the code's own, or the SeFa "
                        "re-parametrisation of the decoder's first layer (Song et al.)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorlens.evaluation import evaluate_runs
    from factorlens.metrics import DCI_IMPORTANCE_MODELS

    for option, value in (
        ("--batch-size", args.batch_size),
        ("--interventional-votes", args.interventional_votes),
        ("--exact-mig-samples", args.exact_mig_samples),
        ("--vp-pairs", args.vp_pairs),
    ):
        if value < 2:
            raise ConfigError(f"{option} must be >= 2, got {value}")
    DCI_IMPORTANCE_MODELS.get(args.dci_model)  # unknown name -> ConfigError listing the choices
    table = evaluate_runs(
        args.runs,
        args.data,
        args.out,
        seed=args.seed,
        batch_size=args.batch_size,
        dci_model=args.dci_model,
        interventional=args.interventional,
        interventional_train=args.interventional_votes,
        interventional_eval=args.interventional_votes // 2,
        exact_mig=args.exact_mig,
        exact_mig_samples=args.exact_mig_samples,
        vp=args.vp,
        vp_pairs=args.vp_pairs,
        vp_axes=args.vp_axes,
    )
    print(table, end="")
    return 0
