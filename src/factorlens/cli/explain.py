"""``factorlens explain RUN --classifier CLF --target CLASS``: DiffEx-style explanation of a classifier."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain a classifier with contrastive latent directions ranked by AttFind",
        description="Trains K contrastive directions in RUN's latent space, ranks them by how much they "
        "raise the classifier's probability of --target on source images (AttFind), and writes "
        "OUT (default RUN/directions/explain-<target>/): directions.safetensors/.json, explanation.json, "
        "edits.safetensors, counterfactuals.png, delta_p.png (docs/explain.md).",
    )
    parser.add_argument("run", help="run directory (VAE family, GAN; a diffusion run is refused)")
    parser.add_argument(
        "--classifier",
        required=True,
        help="directory from `factorlens classifier train`, or a TorchScript file with a JSON",
    )
    parser.add_argument("--target", required=True, help="the class to explain (a class of the classifier)")
    parser.add_argument(
        "--source",
        default=None,
        help="class of the source images (default: every image not labelled --target)",
    )
    parser.add_argument(
        "--data", default=None, help="dataset spec of the source images (default: the run's own, test split)"
    )
    parser.add_argument("--out", default=None, help="output directory")
    parser.add_argument("-k", type=int, default=None, help="number of directions (default 10)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of the directions (300)")
    parser.add_argument("--alpha", type=float, default=None, help="edit size in posterior sigmas (3)")
    parser.add_argument("--num-source", type=int, default=None, help="source images (256)")
    parser.add_argument(
        "--codes",
        default=None,
        help="auto, posterior, prior or inverted (a GAN's codes of real images, by optimisation)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the directions or of AttFind, e.g. edit=mlp, features=decoder, "
        "temperature=2, threshold=0.25, num_random=100 (docs/explain.md lists them)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from factorlens.cli.discover import parse_options
    from factorlens.errors import ConfigError
    from factorlens.explain.contrastive import ContrastiveOptions
    from factorlens.explain.pipeline import ExplainOptions
    from factorlens.explain.run import explain_run
    from factorlens.schema import fields_of, parse

    given = parse_options(args.option)
    flags = {
        "k": args.k,
        "steps": args.steps,
        "alpha": args.alpha,
        "num_source": args.num_source,
        "codes": args.codes,
        "seed": args.seed,
    }
    explain_keys, contrastive_keys = set(fields_of(ExplainOptions)), set(fields_of(ContrastiveOptions))
    unknown = sorted(set(given) - explain_keys - contrastive_keys)
    if unknown:
        allowed = ", ".join(sorted(explain_keys | contrastive_keys))
        raise ConfigError(
            f"unknown key option.{unknown[0]} in --option (unknown option of explain); allowed: {allowed}"
        )
    explain_given = {k: v for k, v in given.items() if k in explain_keys}
    explain_given.update({k: v for k, v in flags.items() if v is not None})
    options = parse(ExplainOptions, explain_given, where="command line", prefix="option", owner="explain")
    contrastive = parse(
        ContrastiveOptions,
        {k: v for k, v in given.items() if k in contrastive_keys},
        where="--option",
        prefix="option",
        owner="explain",
    )
    out = explain_run(
        Path(args.run),
        Path(args.classifier),
        target=args.target,
        source=args.source,
        data_spec=args.data,
        out=None if args.out is None else Path(args.out),
        options=options,
        contrastive=contrastive,
    )
    print(out)
    return 0
