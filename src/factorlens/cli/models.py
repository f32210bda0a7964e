"""``factorlens models``: the model registry and each model's config fields with defaults."""

from __future__ import annotations

import argparse
import dataclasses


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the models and their config fields",
        description="Lists every registered model with its default network family, the fields of its "
        "config dataclass (the keys allowed in a config's `model:` section) with their defaults, and the "
        "network families `model.network` can name.",
    )
    parser.set_defaults(func=run)


def _type_name(annotation) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def describe_models() -> str:
    from factorlens.models import MODELS, model_config_class
    from factorlens.networks import NETWORKS
    from factorlens.schema import help_of

    lines = []
    for name in MODELS.names():
        entry = MODELS.get(name)
        network = f" (network: {entry.network})" if entry.network else ""
        lines.append(f"{name}{network}: {entry.description}")
        for f in dataclasses.fields(model_config_class(name)):
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "(required)"
            help_text = f"  # {help_of(f)}" if help_of(f) else ""
            lines.append(f"  {f.name}: {_type_name(f.type)} = {default}{help_text}")
    lines.append("networks (model.network):")
    lines += [f"  {name}: {NETWORKS.get(name).description}" for name in NETWORKS.names()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:  # noqa: ARG001 - no options
    print(describe_models())
    return 0
