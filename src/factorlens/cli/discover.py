"""``factorlens discover RUN --method NAME``: find, score and draw interpretable latent directions."""

from __future__ import annotations

import argparse

# The names of ``factorlens.directions.DIRECTION_METHODS``, spelled out so that building the parser (every
# `factorlens` command, `--help` included) does not import torch; a test keeps the two in step.
METHOD_NAMES = ("axes", "hspace", "hspace-pca", "kmeans", "pca", "random", "sefa", "sfvq", "voynov")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "discover",
        help="discover interpretable latent directions of a trained run",
        description="Writes RUN/directions/<method>/: directions.safetensors, directions.json, scores.json, "
        "a traversal grid and (for datasets with an oracle) an effect-matrix heat map.",
    )
    parser.add_argument("run", help="run directory written by `factorlens train`")
    parser.add_argument("--method", required=True,
                        help=f"one of: {', '.join(METHOD_NAMES)} (--list-methods lists their options)")
    parser.add_argument("--out", default=None, help="output directory (default RUN/directions/<method>)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of learned methods")
    parser.add_argument("-k", type=int, default=None, help="number of directions (default: method's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rca-steps", type=int, default=300, help="post-hoc RCA training steps (0 = skip)")
    parser.add_argument("--rca-pairs", type=int, default=None,
                        help="train RCA's reconstructors on one pool of this many decoded pairs (0 = fresh "
                        "pairs every step; default 1024 for diffusion runs, 0 otherwise)")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="a method's own option, repeatable (values parsed as YAML scalars), e.g. "
        "--option deformator=ortho for voynov, --option kind=spherical for kmeans; --list-methods lists them",
    )
    parser.add_argument("--list-methods", action=ListMethods,
                        help="list the direction methods with their options (defaults, help) and exit")
    parser.set_defaults(func=run)


class ListMethods(argparse.Action):
    """``--list-methods``: print :func:`factorlens.directions.methods.describe_methods` and exit, like
    ``--help`` (RUN and --method are not needed). Imported only when given: building the parser stays
    torch-free."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from factorlens.directions.methods import describe_methods

        print(describe_methods())
        parser.exit()


def parse_options(assignments: list[str]) -> dict:
    """``["key=value", ...]`` -> ``{key: YAML scalar}``; a malformed one is a one-line ``ConfigError``."""
    from factorlens.config import parse_yaml
    from factorlens.errors import ConfigError

    options: dict = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--option {assignment!r}: expected KEY=VALUE, e.g. deformator=ortho")
        if key in options:
            raise ConfigError(f"--option {key} given twice")
        options[key] = parse_yaml(text, f"--option {key}")
    return options


def run(args: argparse.Namespace) -> int:
    from factorlens.directions.methods import check_options
    from factorlens.directions.pipeline import discover_for_run
    from factorlens.errors import ConfigError

    if args.rca_pairs is not None and args.rca_pairs < 0:
        raise ConfigError(f"--rca-pairs must be >= 0, got {args.rca_pairs}")
    options = parse_options(args.option)
    # Checked here, before anything is loaded, so that a bad option's error names --option as its source.
    check_options(args.method, options, where="--option")
    out = discover_for_run(
        args.run,
        method=args.method,
        out=args.out,
        k=args.k,
        steps=args.steps,
        seed=args.seed,
        rca_steps=args.rca_steps,
        rca_pairs=args.rca_pairs,
        options=options,
    )
    print(out)
    return 0
