"""Time each metric on dSprites-sized synthetic problems and print a table.

    OMP_NUM_THREADS=1 python -m benchmarks.metric_timings [--exact-samples 20] [--skip-gbt]

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


def timed(label: str, size: str, fn, rows: list) -> None:
    start = time.perf_counter()
    result = fn()
    rows.append((label, size, time.perf_counter() - start, result))


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
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    codes, grid = dsprites_like_codes(32, rng)
    n = len(codes)
    rows: list = []
    timed(
        "discrete_mutual_info",
        f"{n} x 32, 5 factors",
        lambda: float(discrete_mutual_info(codes, grid).sum()),
        rows,
    )
    timed("mig (binned-20)", f"{n} x 32", lambda: mig(codes, grid).score, rows)
    subset = rng.permutation(n)[:15_000]
    sub_codes, sub_grid = codes[subset], grid[subset]
    timed(
        "dci (random-forest)",
        "10000 train / 5000 test, D=32",
        lambda: dci(sub_codes, sub_grid, model="random-forest").disentanglement,
        rows,
    )
    if not args.skip_gbt:
        timed(
            "dci (gbt, dlib default)",
            "10000 train / 5000 test, D=32",
            lambda: dci(sub_codes, sub_grid).disentanglement,
            rows,
        )
    timed("sap (discrete)", "10000 train / 5000 test, D=32", lambda: sap(sub_codes, sub_grid).score, rows)
    timed(
        "modularity + explicitness",
        "10000 train / 5000 test, D=32",
        lambda: modularity_explicitness(sub_codes, sub_grid).modularity,
        rows,
    )
    exact_codes, _ = dsprites_like_codes(10, rng)
    logvars = np.full(exact_codes.shape, 2 * np.log(0.05), dtype=np.float32)
    timed(
        "mig_exact (Chen)",
        f"{n} x 10, S={args.exact_samples}, 4 factors scored",
        lambda: (
            mig_exact(
                exact_codes,
                logvars,
                DSPRITES_SIZES,
                n_samples=args.exact_samples,
                factors_scored=[1, 2, 3, 4],
            ).score
        ),
        rows,
    )
    labels = rng.integers(0, 7, 10_015)
    isic_codes = np.c_[np.eye(7)[labels] + rng.normal(0, 1.0, (10_015, 7)), rng.normal(size=(10_015, 3))]
    timed("gmm_nmi", "10015 x 10, 7 components, 10 seeds", lambda: gmm_nmi(isic_codes, labels).mean, rows)
    timed(
        "few_label_accuracy",
        "10015 x 10, 10 folds",
        lambda: few_label_accuracy(isic_codes, labels).accuracy_mean,
        rows,
    )
    images = rng.random((10_000, 3, 64, 64))
    recon = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1)
    timed("psnr", "10000 x 3 x 64 x 64", lambda: psnr(images, recon).score, rows)

    print(f"# {machine_line('float64 (numpy)')}; {os.environ.get('OMP_NUM_THREADS', 'default')} OMP threads")
    print(f"{'metric':<28} {'problem size':<40} {'seconds':>9}  value")
    for label, size, seconds, value in rows:
        print(f"{label:<28} {size:<40} {seconds:>9.2f}  {value:.4g}")


if __name__ == "__main__":
    main()
