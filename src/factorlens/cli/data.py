"""``factorlens data info SPEC``: load (and cache) a dataset and summarise it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets", description="Dataset utilities.")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = actions.add_parser(
        "info",
        help="summarise a dataset spec",
        description="Load SPEC (decoding and caching it on first use) and print image count and shape, "
        "class counts, ground-truth factors, handcrafted lesion factors and loading notes.",
    )
    info.add_argument("spec", help="e.g. synthetic-lesions:n=2000, dsprites, ham10000:/data/HAM10000")
    info.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of failing")
    info.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    from factorlens.data import describe, load_dataset
    from factorlens.training.trainer import progress_enabled

    dataset = load_dataset(args.spec, skip_bad=args.skip_bad, progress=progress_enabled())
    print(describe(dataset))
    return 0
