"""``factorlens sample RUN --n 64 --out grid.png [--steps 50]``: a PNG grid of DDIM samples of a
diffusion run (seeded initial noise, η = 0)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="a PNG grid of samples of a diffusion run (DDIM)",
        description="Draws --n initial noises x_T ~ N(0, I) (seeded) and runs the deterministic DDIM chain "
        "(η = 0) of a diffusion run (model ddpm, or an imported U-Net) with the run's EMA weights; writes "
        "the images as one PNG grid.",
    )
    parser.add_argument("run", type=Path, help="run directory of a ddpm model")
    parser.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps (default: the run's model.sample_steps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise (default 0)")
    parser.add_argument("--cols", type=int, default=None, help="grid columns (default: about sqrt(n))")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorlens.errors import ConfigError
    from factorlens.models.ddpm import generate
    from factorlens.training import load_run
    from factorlens.viz.grid import save_grid

    if args.cols is not None and args.cols < 1:
        raise ConfigError(f"--cols must be a positive integer, got {args.cols}")
    run_ = load_run(args.run)
    if not getattr(run_.model, "is_diffusion", False):  # diffae decodes semantic codes: not sampled here
        raise ConfigError(f"factorlens sample takes diffusion runs (model ddpm); {args.run} is a "
                          f"{run_.model_name!r} run (its prior samples: factorlens viz)")
    images = generate(run_.model, args.n, steps=args.steps, seed=args.seed).numpy()
    cols = args.cols or math.ceil(math.sqrt(args.n))
    rows = math.ceil(args.n / cols)
    if rows * cols > args.n:  # pad the last row with white tiles
        import numpy as np

        images = np.concatenate([images, np.ones((rows * cols - args.n, *images.shape[1:]), images.dtype)])
    steps = args.steps or run_.model.config.sample_steps
    save_grid(images.reshape(rows, cols, *images.shape[1:]), args.out, scale=2,
              title=f"{args.n} DDIM samples ({steps} steps, seed {args.seed}), iteration {run_.iteration}")
    print(f"wrote {args.out}")
    return 0
