"""``factorlens models``: the model registry and each model's config fields with defaults."""

from __future__ import annotations

import argparse
import dataclasses


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the models and their config fields",
        description="Lists every registered model with the fields of its config dataclass "
        "(the keys allowed in a config's `model:` section) and their defaults.",
    )
    parser.set_defaults(func=run)


def _type_name(annotation) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def describe_models() -> str:
    from factorlens.models import MODELS, model_config_class

    lines = []
    for name in MODELS.names():
        lines.append(name)
        for f in dataclasses.fields(model_config_class(name)):
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "(required)"
            lines.append(f"  {f.name}: {_type_name(f.type)} = {default}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:  # noqa: ARG001 - no options
    print(describe_models())
    return 0
