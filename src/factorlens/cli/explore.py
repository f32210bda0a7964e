"""``factorlens explore RUN``: serve the interactive latent-space explorer of a run on a local port."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from factorlens.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"  # factorlens.explore.server's defaults, spelled out: no torch at parser build
DEFAULT_PORT = 8765


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explore",
        help="interactive latent-space explorer in the browser (local server)",
        description="Serves one self-contained page: a base image (test split, prior sample or an "
        "uploaded PNG/JPEG), its reconstruction and one slider per latent dimension (ordered by KL, "
        "labelled with the factor sharing most MI) or per direction of a direction set; reset, randomise, "
        "a two-image walk, save image and code. Listens on 127.0.0.1 unless --host says otherwise; "
        "prints the URL and serves until interrupted.",
    )
    parser.add_argument("run", help="run directory written by `factorlens train`")
    parser.add_argument(
        "--directions",
        nargs="+",
        metavar="DIR",
        help="direction-set folders (factorlens discover --out); default: every RUN/directions/*/ "
        "holding a direction set",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--span", type=float, default=3.0, help="slider range [-span, span] (default 3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorlens.explore import Explorer, make_server
    from factorlens.explore.state import direction_folders
    from factorlens.training import load_run

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [0, 65535], got {args.port}")
    run_ = load_run(args.run)
    folders = [Path(p) for p in args.directions] if args.directions else direction_folders(run_.path)
    explorer = Explorer.from_run(run_, folders, span=args.span)
    server = make_server(explorer, args.host, args.port, quiet=True)
    if server.allowed_hosts is None:
        print(
            f"warning: listening on {args.host}, not a loopback address: anyone who can reach this machine "
            "can use the explorer",
            file=sys.stderr,
        )
    sets = ", ".join(explorer.sets)
    print(f"factorlens explore: {explorer.title}; slider sets: {sets}", flush=True)
    print(f"open {server.url}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
