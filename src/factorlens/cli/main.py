"""``factorlens`` entry point: builds the parser from the modules of ``factorlens.cli`` and maps errors to
exit codes (``FactorlensError`` -> 2 with ``error: <message>`` on stderr, interrupt -> 130)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence

import factorlens
import factorlens.cli
from factorlens.errors import FactorlensError
from factorlens.openmp import apply_openmp_environment

EXIT_INTERRUPTED = 130
NOT_COMMANDS = frozenset({"main"})


def command_modules() -> list[str]:
    """The subcommands, one per module of ``factorlens.cli`` (sorted, so ``--help`` is stable); a module
    ``export_tensorboard`` is the command ``export-tensorboard``."""
    return sorted(
        info.name.replace("_", "-")
        for info in pkgutil.iter_modules(factorlens.cli.__path__)
        if info.name not in NOT_COMMANDS and not info.name.startswith("_")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorlens",
        description="Interpretable latent representations of medical images: train disentangled VAEs, "
        "evaluate them correctly, discover latent directions, draw reports.",
    )
    parser.add_argument("--version", action="version", version=f"factorlens {factorlens.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"factorlens.cli.{name.replace('-', '_')}")
        register = getattr(module, "register", None)
        if register is None:
            # A command module without register() is a bug in factorlens, not something to skip quietly.
            raise TypeError(f"factorlens.cli.{name.replace('-', '_')} defines no register(subparsers)")
        register(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ARG001
    """Format a warning as ``warning: <message>`` on one line: users need the message (which names the
    file and the count), not the source line of factorlens that raised it."""
    text = " ".join(str(message).split())
    return f"warning: {text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (0 ok, 2 user error, 130 interrupted)."""
    # Before any command module loads torch: libgomp reads its wait policy once, at load time.
    apply_openmp_environment()
    previous_format = warnings.formatwarning
    # formatwarning, not showwarning: warnings recorded by callers (pytest.warns, catch_warnings) stay
    # recorded; only how a displayed warning looks changes.
    warnings.formatwarning = _one_line_warning
    try:
        return _run(argv)
    finally:
        warnings.formatwarning = previous_format


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2 inside argparse
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except FactorlensError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        detail = " ".join(str(exc).split())
        print(f"interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
