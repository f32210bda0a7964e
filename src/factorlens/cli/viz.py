"""``factorlens viz`` (every figure of a run), ``traverse``, ``walk``, ``report``: figures of runs."""

from __future__ import annotations

import argparse
from pathlib import Path

# Constants only: the heavy figure modules are imported when a command runs, not at CLI start-up.
REPORT_IMAGES = 2
REPORT_TRAVERSAL_DIMS = 6


def register(subparsers: argparse._SubParsersAction) -> None:
    traverse = subparsers.add_parser(
        "traverse",
        help="latent traversal grid + GIF of a run (Fig. 1a)",
        description="For each chosen image, one row per latent dimension: its posterior mean decoded "
        "with that "
        "dimension swept over [-span, span]; rows ordered by mean KL to the prior. Writes traversal.png, "
        "traversal.gif (and traversal_compare.png with --compare) into RUN/figures or --out.",
    )
    traverse.add_argument("run", help="run directory")
    traverse.add_argument("--data", help="draw images from this dataset spec instead of the run's test split")
    group = traverse.add_mutually_exclusive_group()
    group.add_argument(
        "--images", type=int, default=3, help="number of images (first of the split, default 3)"
    )
    group.add_argument("--ids", nargs="+", help="image ids (or indices) to traverse")
    traverse.add_argument("--steps", type=int, default=10, help="columns per row (default 10)")
    traverse.add_argument("--span", type=float, default=3.0, help="sweep [-span, span] (default 3)")
    traverse.add_argument(
        "--inactive",
        choices=("grey", "hide"),
        default="grey",
        help="dimensions with KL < 0.01 nats: grey them (default) or hide them",
    )
    traverse.add_argument(
        "--max-dims",
        type=int,
        metavar="N",
        help="show only the N dimensions with the most KL per image (default: all)",
    )
    traverse.add_argument(
        "--compare", metavar="RUN2", help="second run drawn side by side on the same images"
    )
    traverse.add_argument("--out", help="output folder (default RUN/figures)")
    traverse.set_defaults(func=run_traverse)

    walk = subparsers.add_parser(
        "walk",
        help="manifold walk from a source to a target image (Fig. 1b)",
        description="Move from the source image's code to the target's one latent dimension per column "
        "(default order: largest |mu_target - mu_source| first). Writes walk.png and walk.gif.",
    )
    walk.add_argument("run", help="run directory")
    walk.add_argument("--source", required=True, help="source image id or index")
    walk.add_argument("--target", required=True, help="target image id or index")
    walk.add_argument("--dims", type=int, nargs="+", help="dimensions to move, in order")
    walk.add_argument("--frames", type=int, default=5, help="images per column (default 5)")
    walk.add_argument("--data", help="dataset spec the ids refer to (default: the run's dataset)")
    walk.add_argument("--out", help="output folder (default RUN/figures)")
    walk.set_defaults(func=run_walk)

    figures = subparsers.add_parser(
        "viz",
        help="draw every figure of a run (what the report embeds)",
        description="Training curves, prior samples, reconstructions, per-dimension KL, MI heat map, "
        "traversal and manifold walk of RUN, with captions in figures.json, into RUN/figures or --out.",
    )
    figures.add_argument("run", help="run directory")
    figures.add_argument("--data", help="draw images from this dataset spec instead of the run's test split")
    figures.add_argument(
        "--images", type=int, default=REPORT_IMAGES, help=f"images per traversal (default {REPORT_IMAGES})"
    )
    figures.add_argument(
        "--max-dims",
        type=int,
        default=REPORT_TRAVERSAL_DIMS,
        metavar="N",
        help=f"traversal rows per image: the N dimensions with the most KL (default {REPORT_TRAVERSAL_DIMS})",
    )
    figures.add_argument("--steps", type=int, default=10, help="traversal steps (default 10)")
    figures.add_argument("--span", type=float, default=3.0, help="traversal span (default 3)")
    figures.add_argument("--out", help="output folder (default RUN/figures)")
    figures.set_defaults(func=run_figures)

    report = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of runs",
        description="Draw every figure of each run into RUN/figures and write one HTML file with everything "
        "embedded (no network needed): configs, training curves, figures, Table 1, direction sets.",
    )
    report.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    report.add_argument("--results", help="folder written by factorlens evaluate (table1.csv / table1.md)")
    report.add_argument("--data", help="draw figures from this dataset spec instead of each run's test split")
    report.add_argument(
        "--images", type=int, default=REPORT_IMAGES, help=f"images per traversal (default {REPORT_IMAGES})"
    )
    report.add_argument(
        "--max-dims",
        type=int,
        default=REPORT_TRAVERSAL_DIMS,
        metavar="N",
        help=f"traversal rows per image: the N dimensions with the most KL (default {REPORT_TRAVERSAL_DIMS})",
    )
    report.add_argument("--steps", type=int, default=10, help="traversal steps (default 10)")
    report.add_argument("--span", type=float, default=3.0, help="traversal span (default 3)")
    report.add_argument("--out", required=True, help="HTML file to write")
    report.set_defaults(func=run_report)


def _prepare(args: argparse.Namespace):
    from factorlens.training import load_run
    from factorlens.viz.run_figures import default_out, figure_data, latent_stats

    run = load_run(args.run)
    out = Path(args.out) if args.out else default_out(run)
    out.mkdir(parents=True, exist_ok=True)
    data = figure_data(run, args.data)
    return run, out, data, latent_stats(run.model, data)


def run_traverse(args: argparse.Namespace) -> int:
    from factorlens.training import load_run
    from factorlens.viz.run_figures import default_out, traversal_figures, update_manifest

    diffusion = load_run(args.run)
    if getattr(diffusion.model, "is_diffusion", False):  # traversals along its h-space direction sets
        from factorlens.directions.hspace import save_direction_traversals

        out = Path(args.out) if args.out else default_out(diffusion)
        for path in save_direction_traversals(diffusion, out):
            print(path)
        return 0
    run, out, data, stats = _prepare(args)
    compare = load_run(args.compare) if args.compare else None
    figures = traversal_figures(
        run,
        out,
        data=data,
        stats=stats,
        n_images=args.images,
        ids=args.ids,
        steps=args.steps,
        span=args.span,
        inactive=args.inactive,
        max_dims=args.max_dims,
        compare=compare,
    )
    update_manifest(out, figures)
    for name in figures:
        print(out / name)
    return 0


def run_walk(args: argparse.Namespace) -> int:
    from factorlens.viz.run_figures import update_manifest, walk_figures

    run, out, data, stats = _prepare(args)
    figures = walk_figures(
        run,
        out,
        data=data,
        stats=stats,
        source=args.source,
        target=args.target,
        dims=args.dims,
        frames=args.frames,
    )
    update_manifest(out, figures)
    for name in figures:
        print(out / name)
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from factorlens.training import load_run
    from factorlens.viz.run_figures import default_out, make_run_figures

    run = load_run(args.run)
    out = Path(args.out) if args.out else default_out(run)
    manifest = make_run_figures(
        run,
        out,
        data_spec=args.data,
        n_images=args.images,
        steps=args.steps,
        span=args.span,
        max_dims=args.max_dims,
    )
    for name in manifest:
        print(out / name)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from factorlens.viz.report import write_report

    path = write_report(
        args.runs,
        args.out,
        results_dir=args.results,
        data_spec=args.data,
        n_images=args.images,
        steps=args.steps,
        span=args.span,
        max_dims=args.max_dims,
    )
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
