"""Does keeping the latent-reading layer orthogonal (Song et al.'s NOG, NOG+OLR) make a generator's latent
space more interpretable? A paired-seed experiment: the same model, data, budget and seed with
``train.orthogonality.method`` none / nog / nog+olr.

    python -m benchmarks.orthogonality --models gan,btcvae --methods none,nog,nog+olr --seeds 0,1,2 \\
        --iterations 600 --batch-size 32 --data synthetic-lesions:n=2000 --out runs/orthogonality

Per run: the VP score (Zhu et al.; identity axes and Song et al.'s SeFa axes), the direction-MIG of SeFa
directions read by the synthetic-lesion oracle, a sample-quality proxy (the oracle's lesion-found rate on
256 prior samples), and for VAEs the factor MIG, DCI disentanglement (random forest) and PSNR of the
test split. Then, per model and metric, each treatment minus the baseline, paired by seed, with a
bootstrap 95 % interval (``factorlens.evaluation.compare``). Runs are resumable (a finished run is reused);
prints a Markdown table and writes ``OUT/orthogonality.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from factorlens.directions import GeneratorAdapter, discover_directions
from factorlens.directions.oracle import ORACLES
from factorlens.directions.scores import score_directions
from factorlens.environment import machine_line, machine_record
from factorlens.evaluation import EvaluationOptions, evaluate_codes
from factorlens.evaluation.compare import compare
from factorlens.evaluation.table1 import decoder_function, score_images
from factorlens.io import atomic_write_json
from factorlens.metrics.vp import sefa_axes, vp_score
from factorlens.training import load_run, train

METRICS = {  # key -> (label, scale for display)
    "vp": ("VP %", 100.0),
    "vp_sefa": ("VP (SeFa axes) %", 100.0),
    "sefa_direction_mig": ("SeFa direction-MIG", 1.0),
    "lesion_found": ("lesion found %", 100.0),
    "mig_factors": ("MIG (factors) %", 100.0),
    "dci": ("DCI-D", 1.0),
    "psnr": ("PSNR dB", 1.0),
}


def run_config(model: str, method: str, seed: int, args: argparse.Namespace) -> dict:
    params = {"name": model, "latent_dim": args.latent_dim}
    if model == "gan":
        params["width"] = args.gan_width
    return {
        "model": params,
        "train": {"iterations": args.iterations, "batch_size": args.batch_size, "seed": seed,
                  "log_every": 50, "checkpoint_every": args.iterations, "num_threads": args.threads,
                  "lr": args.lr, "orthogonality": {"method": method}},
        "data": {"spec": args.data},
    }


@torch.no_grad()
def lesion_found_rate(decode, latent_dim: int, *, n: int = 256, seed: int = 0) -> float:
    """Fraction of ``n`` prior samples in which the synthetic-lesion oracle finds a lesion."""
    codes = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    readings = ORACLES.get("synthetic-lesions").read(decode(codes))
    return float(np.isfinite(readings).all(axis=1).mean())


def score_run(run_dir: Path, args: argparse.Namespace) -> dict:
    run = load_run(run_dir)
    model = run.model
    decode = decoder_function(model)
    weight = model.first_decoder_layer_weight().detach().double().numpy()
    scores: dict[str, float] = {}
    started = time.perf_counter()
    scores["vp"] = vp_score(decode, model.latent_dim, n_pairs=args.vp_pairs, seed=0).score
    scores["vp_sefa"] = vp_score(decode, model.latent_dim, axes=sefa_axes(weight), n_pairs=args.vp_pairs,
                                 seed=0).score
    images = run.images("train") if model.has_encoder else None
    adapter = GeneratorAdapter.from_model(model, images)
    directions = discover_directions(adapter, "sefa", k=min(8, model.latent_dim))
    oracle = ORACLES.get("synthetic-lesions")
    scores["sefa_direction_mig"] = score_directions(adapter, directions, oracle.read, oracle.factor_names,
                                                    num_codes=32, seed=0).direction_mig
    scores["lesion_found"] = lesion_found_rate(decode, model.latent_dim)
    if model.has_encoder:
        dataset = run.load_dataset().subset(np.asarray(run.split["test"]))
        inputs = score_images(model, dataset)
        values = evaluate_codes(inputs, EvaluationOptions(dci_model="random-forest"))
        for key in ("mig_factors", "dci", "psnr"):
            scores[key] = values[key].value
    scores["score_seconds"] = round(time.perf_counter() - started, 1)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gan,btcvae")
    parser.add_argument("--methods", default="none,nog,nog+olr")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--gan-width", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--vp-pairs", type=int, default=10_000)
    parser.add_argument("--data", default="synthetic-lesions:n=2000")
    parser.add_argument("--out", default="runs/orthogonality")
    args = parser.parse_args()
    out = Path(args.out)
    models = [m for m in args.models.split(",") if m]
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results: dict = {"command": vars(args), "machine": machine_record("fp32"), "runs": {}}
    started = time.perf_counter()
    for model in models:
        for method in methods:
            for seed in seeds:
                run_dir = out / model / method.replace("+", "-") / f"seed-{seed}"
                cached = run_dir / "orthogonality_scores.json"
                if cached.exists():  # a finished and scored run: reused when the benchmark is re-run
                    results["runs"][f"{model}/{method}/{seed}"] = json.loads(cached.read_text())
                    continue
                t0 = time.perf_counter()
                train(run_config(model, method, seed, args), run_dir, resume=True, progress=False)
                train_seconds = round(time.perf_counter() - t0, 1)
                scores = score_run(run_dir, args)
                summary = json.loads((run_dir / "summary.json").read_text())
                log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
                scores.update({"train_seconds": train_seconds, "train_wall_time_s": summary["wall_time_s"],
                               "olr_active": log[-1].get("olr_active"),
                               "layer_max_cos": log[-1].get("layer_max_cos")})
                results["runs"][f"{model}/{method}/{seed}"] = scores
                atomic_write_json(cached, scores)
                print(f"{model} {method} seed {seed}: {json.dumps(scores)}", flush=True)
                atomic_write_json(out / "orthogonality.json", results)
    lines = ["| model | treatment vs none | metric | none (mean) | treatment (mean) | paired difference "
             "[95 % CI] | seeds treatment ahead |", "|---|---|---|---:|---:|---|---|"]
    comparisons = []
    for model in models:
        base = {s: results["runs"][f"{model}/none/{s}"] for s in seeds}
        for method in (m for m in methods if m != "none"):
            treated = {s: results["runs"][f"{model}/{method}/{s}"] for s in seeds}
            for key, (label, scale) in METRICS.items():
                if base[seeds[0]].get(key) is None:
                    continue
                c = compare({s: treated[s][key] for s in seeds}, {s: base[s][key] for s in seeds}, key,
                            names=(method, "none"), label=label, scale=scale)
                comparisons.append({"model": model, **c.__dict__})
                lo, hi = (v * scale for v in c.interval)
                lines.append(f"| {model} | {method} | {label} | {np.mean(c.b_values) * scale:.2f} | "
                             f"{np.mean(c.a_values) * scale:.2f} | {c.mean * scale:+.2f} "
                             f"[{lo:+.2f}, {hi:+.2f}] | {c.a_wins} of {c.n} |")
    results["comparisons"] = comparisons
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "orthogonality.json", results)
    print("\n".join(lines))
    print(f"\n{machine_line('fp32')}; total {results['total_seconds']} s")


if __name__ == "__main__":
    main()
