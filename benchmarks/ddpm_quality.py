"""What a trained ``ddpm`` run on synthetic lesions reaches: the lesion oracle's found-rate on samples
and on training images, DDIM inversion PSNR, and optionally an ``hspace`` run with RCA against random.

    python -m benchmarks.ddpm_quality RUN --samples 256 --sample-steps 50 --invert 64 --invert-steps 50
    python -m benchmarks.ddpm_quality RUN --hspace-steps 100 --rca-steps 50      # + hspace, K = 6

"Found": the oracle (``factorlens.directions.oracle``, synthetic-lesions) finds a region whose luminance
is at least ``--min-darkness`` (0.05) below the skin's (the median of the image border) and whose area
is between 0.5 % and 50 % of the image. Training images are area-averaged to the run's resolution first,
so both rates are read at the same size. Prints one JSON object (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from factorlens.directions.voynov import RECONSTRUCTOR_INPUTS


def found(readings: np.ndarray, *, min_darkness: float) -> np.ndarray:
    """``[N]`` bool: a lesion-like region (see the module docstring) in each row of oracle readings."""
    area, darkness = readings[:, 0], readings[:, 5]
    ok = np.isfinite(area) & np.isfinite(darkness)
    return ok & (darkness >= min_darkness) & (area >= 0.005) & (area <= 0.5)


def colour_distances(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[N]``: L2 distance (RGB in [0, 1]) from each image's mean colour to the nearest mean colour of the
    ``reference`` images (both ``[N, C, H, W]``). The oracle's found-rate looks for a darker blob only;
    this says whether the skin has a colour the training images have."""
    means, ref = images.mean(axis=(2, 3)), reference.mean(axis=(2, 3))
    return np.sqrt(((means[:, None, :] - ref[None, :, :]) ** 2).sum(-1)).min(axis=1)


def found_rates_by_direction(adapter, directions, oracle, *, n: int, shift: float,
                             min_darkness: float) -> np.ndarray:
    """``[K]`` found-rate of each direction over ``n`` base codes (seed 1) shifted by ``shift`` units."""
    with torch.no_grad():
        base = adapter.sample_base(n, torch.Generator().manual_seed(1))
        vectors = torch.as_tensor(directions.shift_vectors()).float()
        codes = (base[None] + shift * vectors[:, None]).reshape(-1, adapter.latent_dim)
        images = adapter.decode_batched(codes, 64).numpy()
    return found(oracle.read(images), min_darkness=min_darkness).reshape(len(vectors), n).mean(axis=1)


def shifted_found_rates(adapter, directions, oracle, *, n: int, min_darkness: float,
                        largest: float = 3.0) -> dict:
    """Found-rates at the largest traversal shifts, +3 and -3 units (and +-``largest``, the top of a
    training range, when that is larger): overall and per direction."""
    out: dict = {"n_codes": n}
    for shift in (3.0, -3.0) + ((largest, -largest) if largest > 3.0 else ()):
        rates = found_rates_by_direction(adapter, directions, oracle, n=n, shift=shift,
                                         min_darkness=min_darkness)
        out[f"{shift:+g}"] = {"rate": float(rates.mean()), "by_direction": np.round(rates, 3).tolist()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--invert", type=int, default=64, help="training images inverted (0 = skip)")
    parser.add_argument("--invert-steps", type=int, default=50)
    parser.add_argument("--min-darkness", type=float, default=0.05)
    parser.add_argument("--hspace-steps", type=int, default=0,
                        help="train hspace (K = 6) for this many steps")
    parser.add_argument("--rca-steps", type=int, default=0)
    parser.add_argument("--rca-pairs", type=int, default=1024,
                        help="RCA's pool of decoded pairs (0 = online)")
    parser.add_argument("--hspace-ddim-steps", type=int, default=10)
    parser.add_argument("--hspace-batch", type=int, default=4, help="hspace: initial noises per step")
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="hspace without per-step gradient checkpointing (2x faster, more memory)")
    parser.add_argument("--realism-weights", type=float, nargs="+", default=[0.1, 0.0],
                        help="hspace runs, one per discriminator weight (0 = the ablation)")
    parser.add_argument("--shift-range", type=float, nargs=2, default=[0.5, 3.0], metavar=("MIN", "MAX"),
                        help="hspace's training shifts, in units of r (its shift_min, shift_max)")
    parser.add_argument("--realism-start", type=int, default=0,
                        help="hspace: step from which the discriminator's loss reaches the shift module")
    parser.add_argument("--hspace-init", choices=("random", "pca"), default="random",
                        help="hspace's initial directions (its init option; pca = the top-K hspace-pca set)")
    parser.add_argument("--shift-lr", type=float, default=0.0,
                        help="hspace's shift_lr: the shift module's learning rate (0 = the common 1e-3)")
    parser.add_argument("--reconstructor-input", choices=RECONSTRUCTOR_INPUTS, default="pair",
                        help="hspace's reconstructor_input (difference: RMS-normalised difference, log RMS)")
    parser.add_argument("--hspace-seed", type=int, default=0,
                        help="hspace's training seed (initial directions, x_T, shifts); scoring keeps seed 0")
    parser.add_argument("--rca-input", choices=RECONSTRUCTOR_INPUTS, default=None,
                        help="what RCA's reconstructors see (default: --reconstructor-input)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", default=None, help="write the first 64 samples as a PNG grid here")
    parser.add_argument("--closed-form", action="store_true",
                        help="score hspace-pca and random (K = 6) with the oracle (--score-codes base codes)")
    parser.add_argument("--score-codes", type=int, default=8)
    parser.add_argument("--found-codes", type=int, default=32,
                        help="initial noises of the found-rate at the largest shifts (+-3 units)")
    parser.add_argument("-k", type=int, default=6, help="directions per set")
    parser.add_argument("--t-edit", type=int, default=0,
                        help="directions act (and hspace-pca reads h) at steps with t >= this")
    parser.add_argument("--raw", action="store_true", help="the raw weights (model.safetensors), not the EMA")
    parser.add_argument("--out", default=None)
    parser.add_argument("--save-directions", default=None,
                        help="write each direction set (DirectionSet files) under DIR/<method>[-realism-W]")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from factorlens.directions.oracle import ORACLES
    from factorlens.environment import machine_line
    from factorlens.metrics.reconstruction import psnr
    from factorlens.models.ddpm import generate
    from factorlens.training import load_run

    oracle = ORACLES.get("synthetic-lesions")
    run = load_run(args.run)
    model = run.model
    if args.raw:
        from factorlens.training.rundir import latest_checkpoint, load_weights

        load_weights(model, latest_checkpoint(run.path))
    result: dict = {"run": str(args.run), "iteration": run.iteration, "weights": "raw" if args.raw else "ema",
                    "machine": machine_line(),
                    "threads": args.threads, "load_average_start": os.getloadavg()}
    started = time.perf_counter()
    samples = generate(model, args.samples, steps=args.sample_steps, seed=0).numpy()
    result["sample_seconds"] = round(time.perf_counter() - started, 1)
    sample_found = found(oracle.read(samples), min_darkness=args.min_darkness)
    result["samples"] = {"n": args.samples, "ddim_steps": args.sample_steps,
                         "found_rate": float(sample_found.mean())}
    if args.grid:
        from factorlens.viz.grid import save_grid

        grid = samples[:64]
        cols = 8
        rows = len(grid) // cols
        save_grid(grid[: rows * cols].reshape(rows, cols, *grid.shape[1:]), args.grid, scale=2,
                  title=f"ddpm iteration {run.iteration} ({result['weights']} weights): DDIM "
                        f"{args.sample_steps} steps, seed 0")
    train_idx = np.asarray(run.split["train"])
    chosen = np.sort(np.random.default_rng(0).choice(train_idx, size=min(args.samples, len(train_idx)),
                                                     replace=False))
    images = torch.from_numpy(run.load_dataset().images[chosen]).float() / 255.0
    at_res = torch.nn.functional.interpolate(images, size=(model.resolution,) * 2, mode="area").numpy()
    train_found = found(oracle.read(at_res), min_darkness=args.min_darkness)
    result["training_images"] = {"n": len(chosen), "found_rate": float(train_found.mean())}
    # Colour: samples, and (the yardstick) half of the chosen training images, against other training images.
    others = np.setdiff1d(train_idx, chosen)[: 4 * len(chosen)]
    pool = torch.from_numpy(run.load_dataset().images[others]).float() / 255.0
    pool = torch.nn.functional.interpolate(pool, size=(model.resolution,) * 2, mode="area").numpy()
    half = len(at_res) // 2
    result["colour"] = {
        "what": "median L2 distance (RGB, [0, 1]) of an image's mean colour to the nearest mean colour of "
                f"{len(pool)} other training images",
        "samples_median": float(np.median(colour_distances(samples, pool))),
        "samples_p90": float(np.quantile(colour_distances(samples, pool), 0.9)),
        "training_median": float(np.median(colour_distances(at_res[:half], pool))),
        "training_p90": float(np.quantile(colour_distances(at_res[:half], pool), 0.9)),
        "samples_mean_rgb": samples.mean(axis=(0, 2, 3)).round(3).tolist(),
        "training_mean_rgb": at_res.mean(axis=(0, 2, 3)).round(3).tolist(),
    }
    if args.invert > 0:
        started = time.perf_counter()
        subset = images[: args.invert]
        with torch.no_grad():
            x_t = model.invert(subset, steps=args.invert_steps)
            back = model.sample(x_t, steps=args.invert_steps, clip=False).numpy()
        score = psnr(np.clip(at_res[: args.invert], 0, 1), back)
        result["inversion"] = {"n": args.invert, "ddim_steps": args.invert_steps, "psnr_db": score.score,
                               "psnr_min_db": float(score.per_image.min()),
                               "seconds": round(time.perf_counter() - started, 1)}
    if args.closed_form:
        from factorlens.directions import GeneratorAdapter, discover_directions
        from factorlens.directions.scores import score_directions

        adapter = GeneratorAdapter.from_model(model, None)
        for method in ("hspace-pca", "random"):
            started = time.perf_counter()
            options = {"t_edit": args.t_edit} if method == "hspace-pca" else {}
            directions = discover_directions(adapter, method, k=args.k, seed=0, **options)
            adapter.configure(t_edit=args.t_edit)
            scores = score_directions(adapter, directions, oracle.read, oracle.factor_names,
                                      num_codes=args.score_codes, seed=0)
            rho = np.round(scores.matched_rho, 3).tolist()
            if args.save_directions:
                directions.save(os.path.join(args.save_directions, f"{method}-tedit-{args.t_edit}"))
            result[method] = {
                "k": args.k, "ddim_steps": adapter.ddim_steps, "t_edit": args.t_edit,
                "score_codes": args.score_codes,
                "matched_abs_spearman": dict(zip(scores.factor_names, rho, strict=True)),
                "matched_direction": scores.matched_direction.tolist(),
                "direction_mig": scores.direction_mig,
                "found_at_largest_shifts": shifted_found_rates(
                    adapter, directions, oracle, n=args.found_codes, min_darkness=args.min_darkness),
                "extras": directions.extras, "seconds": round(time.perf_counter() - started, 1)}
    if args.hspace_steps > 0:
        from factorlens.directions import GeneratorAdapter, discover_directions
        from factorlens.directions.scores import rca_comparison, score_directions

        adapter = GeneratorAdapter.from_model(model, None)
        for realism in args.realism_weights:
            started = time.perf_counter()
            directions = discover_directions(adapter, "hspace", k=args.k, steps=args.hspace_steps,
                                             seed=args.hspace_seed,
                                             ddim_steps=args.hspace_ddim_steps, realism_weight=realism,
                                             realism_start=args.realism_start, t_edit=args.t_edit,
                                             shift_min=args.shift_range[0], shift_max=args.shift_range[1],
                                             batch_size=args.hspace_batch, init=args.hspace_init,
                                             shift_lr=args.shift_lr,
                                             reconstructor_input=args.reconstructor_input,
                                             checkpoint=not args.no_checkpoint)
            entry: dict = {"k": args.k, "steps": args.hspace_steps, "ddim_steps": args.hspace_ddim_steps,
                           "t_edit": args.t_edit, "shift_range": args.shift_range,
                           "realism_weight": realism, "realism_start": args.realism_start,
                           "init": args.hspace_init, "shift_lr": args.shift_lr, "seed": args.hspace_seed,
                           "reconstructor_input": args.reconstructor_input, "extras": directions.extras,
                           "seconds": round(time.perf_counter() - started, 1)}
            if args.save_directions:  # before scoring: an hour of training is not lost if scoring fails
                directions.save(os.path.join(args.save_directions, f"hspace-realism-{realism:g}"))
            scores = score_directions(adapter, directions, oracle.read, oracle.factor_names,
                                      num_codes=args.score_codes, seed=0)
            entry["matched_abs_spearman"] = dict(zip(scores.factor_names,
                                                     np.round(scores.matched_rho, 3).tolist(), strict=True))
            entry["matched_direction"] = scores.matched_direction.tolist()
            entry["direction_mig"] = scores.direction_mig
            entry["found_at_largest_shifts"] = shifted_found_rates(adapter, directions, oracle,
                                                                   n=args.found_codes,
                                                                   min_darkness=args.min_darkness,
                                                                   largest=args.shift_range[1])
            if args.rca_steps > 0:
                entry["rca"] = rca_comparison(adapter, directions, steps=args.rca_steps, seed=0,
                                              pairs=args.rca_pairs,
                                              input_kind=args.rca_input or args.reconstructor_input)
            result[f"hspace_realism_{realism:g}"] = entry
    result["load_average_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
