"""Acceptance experiment of ``factorlens explain`` on data with known truth (issue 17, item 4).

Two classes of synthetic lesions that differ in ONE generative factor (low vs high levels of ``--factor``;
every other factor drawn from the dataset's mixture, the same for both classes). A small CNN learns them
(at the generator's decoded size); ``explain`` then looks for the difference through a trained generator
(``--run``: a β-TCVAE or any VAE through its encoder, a GAN from ``--codes prior`` draws or ``inverted``
source images, a diffusion autoencoder through its semantic code; default: the demo's β-TCVAE). Passes when

- the classifier's test accuracy is >= 0.95;
- AttFind's top direction flips >= 50 % of source images while the 95th percentile of 100 random
  directions at the same alpha flips <= 5 %;
- the oracle reads the separating factor as the factor the top direction moves most, >= 2x any other;
- the ranking is the same when explain runs again with the same seed.

    python -m benchmarks.explain_known_factor --factor lesion_colour --run /tmp/base-demo/btcvae \\
        --out /tmp/explain-bench

Writes ``OUT/<factor>/`` (classifier, the explanation) and prints one JSON line per factor.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

# factor -> (low levels, high levels, fixed other factors {name: allowed levels})
FACTORS: dict[str, tuple[list[int], list[int], dict[str, list[int]]]] = {
    "size": ([0, 1], [4, 5], {}),
    "eccentricity": ([0, 1], [3, 4], {}),
    "orientation": ([1, 2], [5, 6], {"eccentricity": [3, 4]}),  # visible only on elongated lesions
    "position_x": ([0, 1], [3, 4], {}),
    "position_y": ([0, 1], [3, 4], {}),
    "lesion_colour": ([0, 1], [3, 4], {}),
    "skin_tone": ([0, 1], [3, 4], {}),
}
# dataset factor -> the oracle's reading of it
ORACLE_NAME = {"size": "size", "eccentricity": "eccentricity", "orientation": "orientation",
               "position_x": "centroid_x", "position_y": "centroid_y", "lesion_colour": "darkness",
               "skin_tone": "skin_tone"}


def two_class_lesions(factor: str, n: int, seed: int):
    """``(images uint8 [n, 3, 64, 64], labels int64 [n])``: label 0 = low levels of ``factor``, 1 = high."""
    from factorlens.data.synthetic import FACTOR_NAMES, SyntheticLesionSampler

    low, high, fixed = FACTORS[factor]
    rng = np.random.default_rng(seed)
    sampler = SyntheticLesionSampler()
    factors = sampler.sample_factors(n, rng)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    column = FACTOR_NAMES.index(factor)
    factors[:, column] = np.where(labels == 0, rng.choice(low, n), rng.choice(high, n))
    for name, levels in fixed.items():
        factors[:, FACTOR_NAMES.index(name)] = rng.choice(levels, n)
    noise = rng.integers(0, 2**62, n, dtype=np.int64)
    return sampler.render(factors, noise), labels


def run_factor(factor: str, args) -> dict:
    from factorlens.directions import GeneratorAdapter
    from factorlens.directions.oracle import ORACLES
    from factorlens.explain.classifier import (
        ClassifierOptions,
        load_classifier,
        save_classifier,
        train_classifier,
    )
    from factorlens.explain.contrastive import ContrastiveOptions
    from factorlens.explain.pipeline import ExplainOptions, explain, write_explanation
    from factorlens.explain.run import posterior_adapter
    from factorlens.training import load_run

    started = time.perf_counter()
    out = Path(args.out) / factor
    images, labels = two_class_lesions(factor, args.n, args.seed)
    names = [f"low_{factor}", f"high_{factor}"]
    options = ClassifierOptions(epochs=args.epochs, head=args.head, seed=args.seed)
    data = f"two-class {factor} n={args.n} seed={args.seed}"
    run = load_run(args.run)
    # the classifier sees decoded images: a diffusion model may decode at a lower resolution (2x2 means)
    decoded = int(getattr(run.model, "resolution", 0) or images.shape[-1])
    classifier_images = images
    if decoded != images.shape[-1]:
        step = images.shape[-1] // decoded
        classifier_images = np.rint(images.reshape(*images.shape[:2], decoded, step, decoded, step)
                                    .mean(axis=(3, 5))).astype(np.uint8)
        data += f" size={decoded}"
    saved = out / "classifier" / "classifier.json"
    if saved.is_file() and json.loads(saved.read_text())["data"] == data and json.loads(
        saved.read_text()
    )["options"] == asdict(options):  # deterministic: reuse the classifier of an earlier run
        classifier = load_classifier(out / "classifier")
        report = classifier.meta["training"]
    else:
        classifier, report = train_classifier(classifier_images, labels, names, options, progress=False)
        save_classifier(classifier, out / "classifier", options=options, extra={"data": data})
    classifier_s = time.perf_counter() - started
    # a generator without encoder (the GAN) samples the prior; its source codes come from --codes
    has_encoder = bool(getattr(run.model, "has_encoder", True))
    adapter = posterior_adapter(run) if has_encoder else GeneratorAdapter.from_model(run.model)
    explain_options = ExplainOptions(k=args.k, steps=args.steps, alpha=args.alpha, num_source=args.num_source,
                                     num_random=args.num_random, seed=args.seed, codes=args.codes,
                                     inversion_steps=args.inversion_steps)
    contrastive = ContrastiveOptions(features=args.features, edit=args.edit)
    # source images: a random subset of the low class
    rest = np.random.default_rng(args.seed + 7)
    source = images[labels == 0]
    source = source[np.sort(rest.permutation(len(source))[: args.num_source])]
    oracle = ORACLES.get("synthetic-lesions")
    t0 = time.perf_counter()
    first = explain(adapter, classifier, target=names[1], source=names[0], source_images=source,
                    options=explain_options, contrastive=contrastive, oracle=oracle, what=f"run {args.run}",
                    progress=False)
    explain_s = time.perf_counter() - t0
    write_explanation(first, out / "explanation")
    again = explain(adapter, classifier, target=names[1], source=names[0], source_images=source,
                    options=explain_options.__class__(**{**explain_options.__dict__, "num_random": 0}),
                    contrastive=contrastive, oracle=None, what=f"run {args.run}", progress=False)
    ranking = [(s["direction"], s["sign"]) for s in first.report["selected"]]
    ranking_again = [(s["direction"], s["sign"]) for s in again.report["selected"]]
    top = first.report["selected"][0] if ranking else None
    wanted = ORACLE_NAME[factor]
    result = {
        "factor": factor,
        "oracle_factor": wanted,
        "run": args.run,
        "classifier": asdict(options),
        "contrastive": {"features": args.features, "edit": args.edit},
        "classifier_test_accuracy": report["test_accuracy"],
        "classifier_balanced_accuracy": report["balanced_accuracy"],
        "source_predicted_target": first.report["source_predicted_target"],
        "alpha": args.alpha,
        "codes": first.report["codes"],
        "codes_from": first.report["codes_from"],
        "top": None if top is None else {k: top[k] for k in ("direction", "sign", "mean_delta_p",
                                                             "flip_fraction")},
        "random_flip_p95": first.report["random"]["flip_fraction_p95"],
        "random_flip_mean": first.report["random"]["flip_fraction_mean"],
        "random_active_flip_p95": first.report["random_active"]["flip_fraction_p95"],
        "active_dim": first.report["active_dim"],
        "moved_most": None if top is None else top["oracle"]["moved_most"],
        "ratio_to_next": None if top is None else top["oracle"]["ratio_to_next"],
        "effect": None if top is None else dict(
            zip(top["oracle"]["factor_names"], np.round(top["oracle"]["effect"], 3).tolist(), strict=True)),
        "ranking": ranking,
        "same_ranking_again": ranking == ranking_again,
        "time_s": {"classifier": round(classifier_s, 1), "explain": round(explain_s, 1),
                   "total": round(time.perf_counter() - started, 1)},
    }
    checks = {
        "accuracy>=0.95": report["test_accuracy"] >= 0.95,
        "top_flips>=0.5": top is not None and top["flip_fraction"] >= 0.5,
        "random_p95<=0.05": result["random_flip_p95"] is not None and result["random_flip_p95"] <= 0.05,
        "oracle_reads_factor": top is not None and top["oracle"]["moved_most"] == wanted,
        "oracle_ratio>=2": top is not None and (top["oracle"]["ratio_to_next"] or 0) >= 2,
        "same_ranking": result["same_ranking_again"],
    }
    result["checks"] = checks
    result["passed"] = all(checks.values())
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", default="lesion_colour",
                        help=f"comma-separated, from: {', '.join(FACTORS)} (or 'all')")
    parser.add_argument("--run", default="/tmp/base-demo/btcvae",
                        help="a trained run directory (β-TCVAE, any VAE, or the GAN)")
    parser.add_argument("--out", default="/tmp/explain-known-factor")
    parser.add_argument("--n", type=int, default=4000, help="images of the two-class dataset")
    parser.add_argument("--epochs", type=int, default=8, help="classifier epochs")
    parser.add_argument("--head", default="flatten", choices=("pool", "flatten"),
                        help="classifier head: flatten keeps position (geometric factors), pool does not")
    parser.add_argument("--features", default="latent", choices=("latent", "decoder"),
                        help="projector input of the contrastive directions")
    parser.add_argument("--edit", default="fixed", choices=("fixed", "linear", "mlp"))
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--alpha", type=float, default=3.0)
    parser.add_argument("--num-source", type=int, default=256)
    parser.add_argument("--num-random", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codes", default="auto", choices=("auto", "posterior", "prior", "inverted"),
                        help="source codes (auto: encoder means; a GAN: prior draws; inverted: decoder "
                        "inversion of the source images)")
    parser.add_argument("--inversion-steps", type=int, default=300)
    args = parser.parse_args(argv)
    from factorlens.environment import machine_line

    factors = list(FACTORS) if args.factor == "all" else args.factor.split(",")
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        parser.error(f"--factor {unknown[0]} is not one of {', '.join(FACTORS)}")
    print(json.dumps({"machine": machine_line("fp32")}), flush=True)
    for factor in factors:
        print(json.dumps(run_factor(factor, args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
