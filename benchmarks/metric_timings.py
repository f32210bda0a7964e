"""Time each metric on dSprites-sized synthetic problems and print a table.

    OMP_NUM_THREADS=1 python -m benchmarks.metric_timings [--exact-samples 20] [--skip-gbt] [--scaling]

Codes are derived from the full dSprites factor grid (3 x 6 x 40 x 32 x 32 = 737,280 rows): the five
factors plus noise, padded with noise latents to D = 32 (D = 10 for exact MIG, Chen's latent size). No
model is needed. Each metric runs with the sizes printed in its row.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from factorlens.environment import machine_line

DSPRITES_SIZES = [3, 6, 40, 32, 32]


def dsprites_like_codes(latent_dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in DSPRITES_SIZES], indexing="ij"), -1).reshape(-1, 5)
    signal = grid / np.array(DSPRITES_SIZES) + rng.normal(0, 0.05, grid.shape)
    noise = rng.normal(size=(len(grid), latent_dim - 5))
    return np.c_[signal, noise].astype(np.float32), grid


def main(argv: list[str] | None = None) -> None:
    from factorlens.metrics import (
        dci,
        discrete_mutual_info,
        few_label_accuracy,
        gmm_nmi,
        mig,
        mig_exact,
        modularity_explicitness,
        psnr,
        sap,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact-samples", type=int, default=20, help="Monte Carlo samples S for exact MIG")
    parser.add_argument("--skip-gbt", action="store_true", help="skip DCI with gradient boosting (slowest)")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also time every metric on 1/4 and 1/2 of its rows and print the fitted exponent b of "
        "time ~ rows^b (1 = linear)",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    codes, grid = dsprites_like_codes(32, rng)
    n = len(codes)
    subset = rng.permutation(n)[:15_000]
    sub_codes, sub_grid = codes[subset], grid[subset]
    exact_codes, _ = dsprites_like_codes(10, rng)
    logvars = np.full(exact_codes.shape, 2 * np.log(0.05), dtype=np.float32)
    labels = rng.integers(0, 7, 10_015)
    isic_codes = np.c_[np.eye(7)[labels] + rng.normal(0, 1.0, (10_015, 7)), rng.normal(size=(10_015, 3))]
    images = rng.random((10_000, 3, 64, 64))
    recon = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1)

    def rows_of(array: np.ndarray, fraction: float) -> np.ndarray:
        return array[: max(1, round(len(array) * fraction))]

    # (label, problem size at fraction f, metric on the first f of its rows). Every input is in random
    # order (a permutation, or i.i.d. draws), so a prefix is a random subsample; mig_exact alone needs the
    # whole, ordered factor grid and runs at f = 1 only.
    order = rng.permutation(n)
    shuffled_codes, shuffled_grid = codes[order], grid[order]
    cases = [
        ("discrete_mutual_info", lambda f: f"{round(n * f)} x 32, 5 factors",
         lambda f: float(discrete_mutual_info(rows_of(shuffled_codes, f), rows_of(shuffled_grid, f)).sum())),
        ("mig (binned-20)", lambda f: f"{round(n * f)} x 32",
         lambda f: mig(rows_of(shuffled_codes, f), rows_of(shuffled_grid, f)).score),
        ("dci (random-forest)", lambda f: f"{round(15_000 * f)} rows (2/3 train), D=32",
         lambda f: dci(rows_of(sub_codes, f), rows_of(sub_grid, f), model="random-forest").disentanglement),
    ]
    if not args.skip_gbt:
        cases.append(("dci (gbt, dlib default)", lambda f: f"{round(15_000 * f)} rows (2/3 train), D=32",
                      lambda f: dci(rows_of(sub_codes, f), rows_of(sub_grid, f)).disentanglement))
    cases += [
        ("sap (discrete)", lambda f: f"{round(15_000 * f)} rows (2/3 train), D=32",
         lambda f: sap(rows_of(sub_codes, f), rows_of(sub_grid, f)).score),
        ("modularity + explicitness", lambda f: f"{round(15_000 * f)} rows (2/3 train), D=32",
         lambda f: modularity_explicitness(rows_of(sub_codes, f), rows_of(sub_grid, f)).modularity),
        ("mig_exact (Chen)", lambda f: f"{round(n * f)} x 10, S={args.exact_samples}, 4 factors scored",
         # exact MIG needs the whole factor grid (it conditions on every factor value): full size only
         lambda f: mig_exact(exact_codes, logvars, DSPRITES_SIZES, n_samples=args.exact_samples,
                             factors_scored=[1, 2, 3, 4]).score if f == 1.0 else None),
        ("gmm_nmi", lambda f: f"{round(10_015 * f)} x 10, 7 components, 10 seeds",
         lambda f: gmm_nmi(rows_of(isic_codes, f), rows_of(labels, f)).mean),
        ("few_label_accuracy", lambda f: f"{round(10_015 * f)} x 10, 10 folds",
         lambda f: few_label_accuracy(rows_of(isic_codes, f), rows_of(labels, f)).accuracy_mean),
        ("psnr", lambda f: f"{round(10_000 * f)} x 3 x 64 x 64",
         lambda f: psnr(rows_of(images, f), rows_of(recon, f)).score),
    ]
    fractions = (0.25, 0.5, 1.0) if args.scaling else (1.0,)
    rows: list = []
    for label, size, fn in cases:
        if args.scaling:
            fn(fractions[0])  # warm-up: one-off costs (imports, thread start) would fall on the smallest size
        times = {}
        for fraction in fractions:
            start = time.perf_counter()
            value = fn(fraction)
            if value is None:
                continue
            times[fraction] = time.perf_counter() - start
        rows.append((label, size(1.0), times, value, scaling_exponent(times)))

    print(f"# {machine_line('float64 (numpy)')}; {os.environ.get('OMP_NUM_THREADS', 'default')} OMP threads")
    if args.scaling:
        print(f"{'metric':<28} {'problem size (full)':<42} {'s @1/4':>8} {'s @1/2':>8} {'s @1':>8} "
              f"{'exponent':>8}  value")
        for label, size, times, value, exponent in rows:
            cells = " ".join(f"{times[f]:>8.2f}" if f in times else f"{'-':>8}" for f in fractions)
            shown = f"{exponent:>8.2f}" if exponent is not None else f"{'-':>8}"
            print(f"{label:<28} {size:<42} {cells} {shown}  {value:.4g}")
        return
    print(f"{'metric':<28} {'problem size':<40} {'seconds':>9}  value")
    for label, size, times, value, _ in rows:
        print(f"{label:<28} {size:<40} {times[1.0]:>9.2f}  {value:.4g}")


def scaling_exponent(times: dict[float, float]) -> float | None:
    """Least-squares slope b of log(seconds) against log(rows) (time ~ rows^b); None with < 2 sizes."""
    if len(times) < 2:
        return None
    x = np.log(np.array(list(times)))
    y = np.log(np.array(list(times.values())))
    return float(np.polyfit(x, y, 1)[0])


if __name__ == "__main__":
    main()
