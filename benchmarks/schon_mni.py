"""Schon et al.'s slice-position question on a real MRI volume, offline: does a latent direction track the
slice position when a model is trained on 2-D slices of a 3-D volume?

Schon et al. ("Interpreting Latent Spaces of Generative Models for Medical Images using Unsupervised
Methods") used thoracic CT; no CT ships offline, so this uses the MNI ICBM152 2009a T1 template that nilearn's
wheel ships (197 x 233 x 189 at 1 mm; copyright McGill University, see nilearn's data folder; the volume is
read in place and never copied). One command: train a beta-TCVAE on its axial slices with the ``cpu/btcvae``
preset (``factorlens train``; skipped when --run holds a finished run), encode every slice, then

- MIG of the position factor (binned, the slices' relative position in ``position_bins`` bins) and the PSNR
  of the reconstructions from the posterior means (Table 1's column);
- per latent axis and per discovered direction (the axes baseline, SeFa, PCA, Voynov & Babenko):
  Spearman's rho between the slices' projections on the direction and their exact relative position (an
  encoder-side measure);
- per direction, an interventional measure: base codes (training slices) are moved along the direction over
  [-3, 3] scales, decoded, and each decoded image is given the position of its nearest real slice (L2 in
  pixels); |Spearman rho| between shift and that position, averaged over base codes.

Writes ``OUT/schon_mni.json`` and ``OUT/schon_mni.md``; the traversal grids are in
``RUN/directions/<method>/``.

    python benchmarks/schon_mni.py --run runs/schon-mni --out results/schon-mni --iters 450 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from factorlens.environment import cpu_model

MNI_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
# (method, trained?): "axes" is the baseline of the latent axes themselves
METHODS = (("axes", False), ("sefa", False), ("pca", False), ("voynov", True))


def mni_path() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data" / MNI_FILE


def exact_positions(dataset) -> np.ndarray:
    """``(k + 0.5) / n`` of each slice, from its id (``.../z0123``) and the volume's slice count."""
    count = dataset.notes["slices_in_volumes"]
    return np.array([(int(re.search(r"(\d+)$", i).group(1)) + 0.5) / count for i in dataset.ids])


def rho(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def interventional_rho(model, unit: np.ndarray, scale: float, base: np.ndarray, images: np.ndarray,
                       positions: np.ndarray, steps: int = 9) -> float:
    """Mean over base codes of |Spearman rho| between the shift and the nearest real slice's position."""
    import torch

    shifts = np.linspace(-3, 3, steps) * scale
    reference = images.reshape(len(images), -1).astype(np.float32) / 255.0
    values = []
    with torch.no_grad():
        for code in base:
            codes = code[None, :] + shifts[:, None] * unit[None, :]
            decoded = model.decode(torch.as_tensor(codes, dtype=torch.float32)).numpy().reshape(steps, -1)
            distances = ((decoded[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2)
            values.append(abs(rho(shifts, positions[distances.argmin(axis=1)])))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/schon-mni"))
    parser.add_argument("--out", type=Path, default=Path("results/schon-mni"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=450)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--voynov-steps", type=int, default=300)
    parser.add_argument("--base-codes", type=int, default=16)
    args = parser.parse_args(argv)

    import torch

    from factorlens.directions import DirectionSet
    from factorlens.directions.pipeline import discover_for_run
    from factorlens.evaluation import METRICS, EvaluationOptions, score_images
    from factorlens.metrics.mig import mig
    from factorlens.training import load_run

    spec = f"nifti:{mni_path()}:size={args.size},skip_empty=0,min_fraction=0.02,group=slice"
    timings = {}
    if not (args.run / "summary.json").exists():
        started = time.perf_counter()
        command = [sys.executable, "-m", "factorlens", "train", "--config", "cpu/btcvae", "--data", spec,
                   "--iters", str(args.iters), "--batch-size", str(args.batch_size),
                   "--set", f"model.latent_dim={args.latent_dim}", "--out", str(args.run)]
        subprocess.run(command + (["--resume"] if args.run.exists() else []), check=True)
        timings["train_s"] = round(time.perf_counter() - started, 1)
    run = load_run(args.run)
    dataset = run.load_dataset()
    positions = exact_positions(dataset)
    codes = run.encode(dataset.images).mean
    result = {
        "spec": run.config.data.spec,
        "run": str(args.run),
        "iterations": json.loads((args.run / "summary.json").read_text()).get("iterations"),
        "slices": len(dataset),
        "cpu": cpu_model(),
        "mig_position": float(mig(codes, dataset.factors, factor_names=["position"]).score),
    }
    psnr = METRICS.get("psnr").compute(score_images(run.model, dataset), EvaluationOptions())
    result["psnr_db"] = float(psnr.value)
    axis_rho = [rho(codes[:, j], positions) for j in range(codes.shape[1])]
    best_axis = int(np.argmax(np.abs(axis_rho)))
    result["latent_axes"] = {"best": best_axis, "rho": axis_rho}
    rng = np.random.default_rng(0)
    train_idx = np.asarray(run.split["train"])
    base = codes[np.sort(rng.choice(train_idx, size=min(args.base_codes, len(train_idx)), replace=False))]
    torch.manual_seed(0)
    for method, steps in METHODS:
        out = args.run / "directions" / method
        if not (out / "directions.json").exists():  # directions found by an earlier call are reused
            started = time.perf_counter()
            discover_for_run(args.run, method=method, steps=args.voynov_steps if steps else None, rca_steps=0)
            timings[f"{method}_s"] = round(time.perf_counter() - started, 1)
        directions = DirectionSet.load(out)
        units = directions.unit_matrix()
        projection = [rho(codes @ unit, positions) for unit in units]
        intervention = [interventional_rho(run.model, unit, float(scale), base, dataset.images, positions)
                        for unit, scale in zip(units, directions.scales, strict=True)]
        best = int(np.argmax(np.abs(projection)))
        result[method] = {
            "projection_rho": projection,
            "interventional_abs_rho": intervention,
            "best_by_projection": best,
            "best_by_intervention": int(np.argmax(intervention)),
            "traversal": str(out / "traversal.png"),
        }
    result["seconds"] = timings
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "schon_mni.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"MNI152 T1 axial slices: {result['slices']} ({result['spec']}), beta-TCVAE, {result['iterations']} "
        f"iterations; CPU: {result['cpu']}",
        "",
        f"MIG of the position factor: {100 * result['mig_position']:.2f} %; PSNR of the reconstructions "
        f"(all slices): {result['psnr_db']:.2f} dB",
        f"latent axes (encoder side): best |rho| {abs(axis_rho[best_axis]):.3f} (z{best_axis})",
        "",
        "| method | directions | best projection rho (direction) | best interventional mean abs(rho) "
        "(direction) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method, _ in METHODS:
        entry = result[method]
        b, c = entry["best_by_projection"], entry["best_by_intervention"]
        count = len(entry["projection_rho"])
        lines.append(f"| {method} | {count} | {entry['projection_rho'][b]:+.3f} ({b}) | "
                     f"{entry['interventional_abs_rho'][c]:.3f} ({c}) |")
    (args.out / "schon_mni.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
