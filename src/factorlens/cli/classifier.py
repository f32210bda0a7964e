"""``factorlens classifier train``: a small CNN on a dataset's labels, for ``factorlens explain``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classifier",
        help="train a classifier to explain (safetensors + JSON)",
        description="`classifier train`: a small CNN trained with class-balanced sampling; writes "
        "OUT/classifier.safetensors and OUT/classifier.json (classes, normalisation, test accuracy, "
        "balanced accuracy, confusion matrix).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train a small CNN on a dataset's labels")
    train.add_argument(
        "--data", required=True, help="dataset spec with labels, e.g. synthetic-lesions:n=4000"
    )
    train.add_argument(
        "--classes",
        default=None,
        metavar="A,B,...",
        help="the classes to keep (default: all of the dataset's)",
    )
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training option (epochs, batch_size, lr, width, head=pool|flatten, seed, test_fraction)",
    )
    train.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorlens.cli.discover import parse_options
    from factorlens.data import load_dataset
    from factorlens.explain.classifier import (
        ClassifierOptions,
        save_classifier,
        select_classes,
        train_classifier,
    )
    from factorlens.schema import parse

    options = parse(
        ClassifierOptions,
        _assignments(args.set, parse_options),
        where="--set",
        prefix="classifier",
        owner="classifier train",
    )
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    dataset = load_dataset(args.data)
    keep, names, labels = select_classes(dataset, classes)
    groups = None if dataset.groups is None else dataset.groups[keep]
    classifier, report = train_classifier(dataset.images[keep], labels, names, options, groups=groups)
    out = save_classifier(classifier, args.out, options=options, extra={"data": dataset.spec})
    print(
        f"{out}: {len(names)} classes, test accuracy {report['test_accuracy']:.3f}, balanced accuracy "
        f"{report['balanced_accuracy']:.3f} on {report['test_images']} test images"
    )
    return 0


def _assignments(items: list[str], parse_options) -> dict:
    """``--set key=value`` pairs, with discover's ``--option`` reader (YAML scalars); errors say --set."""
    from factorlens.errors import ConfigError

    try:
        return parse_options(items)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--option", "--set")) from None
