"""``explain``: contrastive directions + AttFind for one classifier, through any generator adapter."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet, projected_std
from factorlens.errors import ConfigError, DataError
from factorlens.explain.attfind import AttFindStep, attfind, effect_table
from factorlens.explain.classifier import Classifier
from factorlens.explain.contrastive import (
    ContrastiveOptions,
    EditModels,
    edit_codes,
    mean_directions,
    posterior_sigma,
    train_directions,
)
from factorlens.io import atomic_write_json
from factorlens.schema import choice, integer, number, option

STRIP_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
EXPLANATION_FILE = "explanation.json"


@dataclass(frozen=True)
class ExplainOptions:
    """Options of ``factorlens explain`` (flags) besides the directions' own (``--option``)."""

    k: int = option(10, integer(1), "number of contrastive directions")
    steps: int = option(300, integer(1), "training steps of the directions")
    alpha: float = option(
        3.0, number(positive=True), "edit size in posterior sigmas (directions train at U[alpha/2, alpha])"
    )
    num_source: int = option(256, integer(1), "source images (codes) to explain on")
    threshold: float = option(0.25, number(), "AttFind's first threshold on the mean delta-p")
    threshold_step: float = option(0.02, number(lo=0), "AttFind lowers the threshold by this each round")
    max_directions: int = option(3, integer(1), "AttFind keeps at most this many directions")
    num_random: int = option(100, integer(0), "random directions at the same alpha, the baseline")
    codes: str = option(
        "auto",
        choice("auto", "posterior", "prior", "inverted"),
        "source codes: encoder means of source images, prior draws the classifier assigns to the source "
        "class, or codes found by inverting the generator on source images (auto: posterior when the "
        "model has an encoder, prior otherwise)",
    )
    inversion_steps: int = option(300, integer(1), "Adam steps per image of --codes inverted")
    seed: int = option(0, integer(0), "seed of the directions, the source subset and the baseline")


@dataclass
class Explanation:
    directions: DirectionSet
    report: dict[str, Any]
    edits: EditModels
    source_codes: torch.Tensor
    base_probs: np.ndarray
    figures: dict[str, np.ndarray]


def _probabilities(
    adapter: GeneratorAdapter, classifier: Classifier, codes: torch.Tensor, batch_size: int = 256
) -> np.ndarray:
    out = [
        classifier.probabilities(adapter.decode_batched(c, batch_size))
        for c in torch.split(codes, batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, len(classifier.class_names)))


def source_codes(
    adapter: GeneratorAdapter,
    classifier: Classifier,
    *,
    images: np.ndarray | None,
    mode: str,
    source: int | None,
    target: int,
    num: int,
    seed: int,
    what: str,
    inversion_steps: int = 300,
    progress: bool = False,
) -> tuple[torch.Tensor, str]:
    """``[n, d]`` codes of the images to explain and a sentence saying where they came from.

    ``posterior``: encoder means of ``images`` (already restricted to the source class); ``inverted``: codes
    that decode to ``images`` (Adam on the decoder, ``inversion_steps`` steps; see
    :mod:`factorlens.directions.inversion`); ``prior``: N(0, I) draws whose decoded image the classifier
    assigns to ``source`` (or to any class but ``target``).
    """
    gen = np.random.default_rng(seed)
    if mode in ("posterior", "inverted"):
        if mode == "posterior" and adapter.encode is None:
            raise ConfigError(
                f"{what} has no encoder, so it cannot encode source images; use --codes prior or inverted"
            )
        if images is None or len(images) == 0:
            raise DataError(f"no source images to explain ({what})")
        rows = np.sort(gen.permutation(len(images))[:num])
        from factorlens.data.base import to_float

        if mode == "inverted":
            from factorlens.directions.inversion import invert

            with adapter.frozen():  # gradients reach the codes only
                found = invert(adapter.decode, to_float(images[rows]), adapter.latent_dim,
                               steps=inversion_steps, seed=seed, progress=progress)
            return found.codes, found.describe()
        with torch.no_grad():
            codes = torch.cat(
                [adapter.encode(to_float(images[rows[i : i + 256]])) for i in range(0, len(rows), 256)]
            )
        return codes, f"encoder means of {len(rows)} source images"
    torch_gen = torch.Generator().manual_seed(seed)
    kept: list[torch.Tensor] = []
    drawn = 0
    while sum(len(c) for c in kept) < num and drawn < 20 * num:
        z = torch.randn(max(num, 64), adapter.latent_dim, generator=torch_gen)
        drawn += len(z)
        predicted = _probabilities(adapter, classifier, z).argmax(axis=1)
        keep = predicted == source if source is not None else predicted != target
        kept.append(z[torch.as_tensor(keep)])
    codes = torch.cat(kept)[:num] if kept else torch.zeros(0, adapter.latent_dim)
    if len(codes) == 0:
        raise DataError(f"none of {drawn} prior samples of {what} is classified as the source class")
    return codes, f"{len(codes)} prior codes (of {drawn} drawn) the classifier assigns to the source class"


def _summary(delta: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    return {"mean_delta_p": float(delta.mean()), "flip_fraction": float(flipped.mean())}


def oracle_effects(
    adapter: GeneratorAdapter,
    oracle,
    codes: torch.Tensor,
    edited: torch.Tensor,
    reference: torch.Tensor,
    names: list[str],
) -> np.ndarray:
    """``[J]`` |mean change| of each oracle factor between ``codes`` and ``edited`` decodes, in stds of that
    factor over decoded ``reference`` codes (orientation differences wrapped to half a turn)."""
    before = oracle(adapter.decode_batched(codes).numpy())
    after = oracle(adapter.decode_batched(edited).numpy())
    change = after - before
    if "orientation" in names:
        j = names.index("orientation")
        change[:, j] = (change[:, j] + np.pi / 2) % np.pi - np.pi / 2
    std = np.nanstd(oracle(adapter.decode_batched(reference).numpy()), axis=0)
    with np.errstate(invalid="ignore"):
        effect = np.abs(np.nanmean(change, axis=0)) / np.where(std > 0, std, 1.0)
    return np.nan_to_num(effect)


def random_baseline(
    adapter, classifier, codes, base_probs, target_index, options, covariance, basis, progress
):
    """Flip fraction and mean delta-p of ``num_random`` random unit directions at the same alpha (posterior
    sigmas along each); ``basis [m, d]`` restricts them to a subspace."""
    rgen = torch.Generator().manual_seed(options.seed + 1)
    rows = []
    for _ in tqdm(range(options.num_random), desc="random", unit="dir", disable=not progress):
        unit = torch.randn(adapter.latent_dim, generator=rgen)
        if basis is not None:
            unit = (unit @ basis.T) @ basis
        unit = unit / unit.norm()
        shifted = codes + options.alpha * posterior_sigma(unit, covariance) * unit
        d, f = effect_table(base_probs, _probabilities(adapter, classifier, shifted)[None], target_index)
        rows.append(_summary(d, f))
    flips = np.array([r["flip_fraction"] for r in rows])
    delta = np.array([r["mean_delta_p"] for r in rows])
    return {
        "num_random": options.num_random,
        "space": "code" if basis is None else f"active subspace ({basis.shape[0]} dims)",
        "flip_fraction_mean": float(flips.mean()) if len(flips) else None,
        "flip_fraction_p95": float(np.percentile(flips, 95)) if len(flips) else None,
        "mean_delta_p_mean": float(delta.mean()) if len(delta) else None,
        "mean_delta_p_p95": float(np.percentile(delta, 95)) if len(delta) else None,
    }


def explain(
    adapter: GeneratorAdapter,
    classifier: Classifier,
    *,
    target: str,
    source: str | None = None,
    source_images: np.ndarray | None = None,
    options: ExplainOptions | None = None,
    contrastive: ContrastiveOptions | None = None,
    oracle: Any = None,
    what: str = "the generator",
    progress: bool = True,
) -> Explanation:
    """Train the directions, rank them with AttFind and measure the random baseline (nothing is written).

    ``source_images`` are the images of the source class (posterior codes); ``oracle`` a
    :class:`~factorlens.directions.oracle.FactorOracle` or None.
    """
    started = time.perf_counter()
    options = options or ExplainOptions()
    contrastive = contrastive or ContrastiveOptions()
    target_index = classifier.class_index(target, option_name="--target")
    source_index = None if source is None else classifier.class_index(source, option_name="--source")
    if source_index == target_index:
        raise ConfigError(f"--source and --target are the same class {target!r}")
    probe = adapter.decode_batched(adapter.sample_base(1, torch.Generator().manual_seed(0)))
    classifier.check_images(int(probe.shape[1]), int(probe.shape[-1]), what)
    mode = options.codes
    if mode == "auto":
        mode = "posterior" if adapter.encode is not None and source_images is not None else "prior"
    codes, codes_from = source_codes(
        adapter,
        classifier,
        images=source_images,
        mode=mode,
        source=source_index,
        target=target_index,
        num=options.num_source,
        seed=options.seed,
        what=what,
        inversion_steps=options.inversion_steps,
        progress=progress,
    )
    covariance = adapter.base_covariance()
    t0 = time.perf_counter()
    edits, losses = train_directions(
        adapter,
        contrastive,
        k=options.k,
        steps=options.steps,
        alpha=options.alpha,
        seed=options.seed,
        progress=progress,
    )
    train_s = time.perf_counter() - t0

    # AttFind table: every (direction, sign) on every source code.
    base_probs = _probabilities(adapter, classifier, codes)
    edited_probs = []
    with torch.no_grad():
        plus = edit_codes(edits, codes, options.alpha, covariance)
        minus = edit_codes(edits, codes, -options.alpha, covariance)
    candidates = torch.stack([plus, minus], dim=1).reshape(2 * options.k, len(codes), -1)
    for c in tqdm(range(len(candidates)), desc="attfind", unit="edit", disable=not progress):
        edited_probs.append(_probabilities(adapter, classifier, candidates[c]))
    delta, flipped = effect_table(base_probs, np.stack(edited_probs), target_index)
    chosen = attfind(
        delta,
        flipped,
        threshold=options.threshold,
        step=options.threshold_step,
        max_directions=options.max_directions,
    )

    # Random directions at the same alpha: in the whole code space (the baseline) and, for reference, in
    # the subspace the learned directions live in.
    baseline = {}
    for key, basis in (("random", None), ("random_active", edits.basis)):
        baseline[key] = random_baseline(
            adapter, classifier, codes, base_probs, target_index, options, covariance, basis, progress
        )
    matrix = mean_directions(edits, codes)
    reference = adapter.reference_codes()
    scales = projected_std(reference, matrix)
    gen = torch.Generator().manual_seed(options.seed + 2)
    reference_sample = adapter.sample_base(min(256, 4 * len(codes)), gen)
    oracle_codes = codes[: min(128, len(codes))]
    # When no candidate passes AttFind's threshold, the strongest one is still reported and drawn, marked
    # as below the threshold: "nothing explains it" and "this is the best there is, and it is weak" are
    # both answers a user needs to see (it is never a selected direction).
    below = []
    if not chosen and len(delta):
        best = int(np.argmax(delta.mean(axis=1)))
        # round -1: not one of AttFind's rounds
        below = [AttFindStep(best, best // 2, 1 if best % 2 == 0 else -1, -1, options.threshold,
                             float(delta[best].mean()), int(delta.shape[1]))]
    described = []
    for step in chosen + below:
        entry = {**step.to_json(), **_summary(delta[step.candidate], flipped[step.candidate])}
        if oracle is not None:
            edited = candidates[step.candidate][: len(oracle_codes)]
            effect = oracle_effects(
                adapter, oracle.read, oracle_codes, edited, reference_sample, list(oracle.factor_names)
            )
            order = np.argsort(-effect)
            entry["oracle"] = {
                "factor_names": list(oracle.factor_names),
                "effect": effect.tolist(),
                "moved_most": oracle.factor_names[int(order[0])],
                "ratio_to_next": float(effect[order[0]] / effect[order[1]]) if effect[order[1]] > 0 else None,
            }
        described.append(entry)
    selected = described[: len(chosen)]
    best_below = described[len(chosen):]
    all_candidates = [
        {"direction": c // 2, "sign": 1 if c % 2 == 0 else -1, **_summary(delta[c], flipped[c])}
        for c in range(len(delta))
    ]
    report = {
        "target": target,
        "target_index": target_index,
        "source": source,
        "classes": classifier.class_names,
        "classifier": classifier.source,
        "alpha": options.alpha,
        "alpha_units": "posterior sigmas: z + alpha * sigma_k(z) * u_k(z), sigma_k the aggregate "
        "posterior's std along u_k (1 per unit under a prior)",
        "codes": mode,
        "codes_from": codes_from,
        "num_source": int(len(codes)),
        "source_predicted_target": float((base_probs.argmax(axis=1) == target_index).mean()),
        "options": asdict(options),
        "contrastive": asdict(contrastive),
        "selected": selected,
        "best_below_threshold": best_below[0] if best_below else None,
        "candidates": all_candidates,
        "random": baseline["random"],
        "random_active": baseline["random_active"],
        "active_dim": int(edits.basis.shape[0]),
        "final_loss": losses[-1] if losses else None,
        "time_s": {"directions": train_s, "total": time.perf_counter() - started},
    }
    labels = [""] * options.k
    for entry in selected:
        sign = "+" if entry["sign"] > 0 else "-"
        labels[entry["direction"]] = f"{sign} -> {target} (rank {entry['round'] + 1})"
    directions = DirectionSet(
        matrix,
        scales,
        "explain",
        params={**asdict(contrastive), **asdict(options), "target": target, "source": source},
        seed=options.seed,
        labels=labels,
        extras={"edit": contrastive.edit, "losses_tail": losses[-10:]},
    )
    figures = {
        "strips": _strip_images(
            adapter, classifier, edits, codes, chosen + below, options, covariance, target_index
        )
    }
    return Explanation(directions, report, edits, codes, base_probs, figures)


def _strip_images(adapter, classifier, edits, codes, chosen, options, covariance, target_index):
    """``(images [R, S, C, H, W], p_target [R, S])`` for the first 3 source codes x chosen directions."""
    rows, probs = [], []
    alphas = [0.0] + [f * options.alpha for f in STRIP_FRACTIONS]
    for step in chosen:
        for n in range(min(3, len(codes))):
            z = codes[n : n + 1]
            frames = torch.cat(
                [edit_codes(edits, z, step.sign * a, covariance)[step.direction] for a in alphas]
            )
            images = adapter.decode_batched(frames)
            rows.append(images.numpy())
            probs.append(classifier.probabilities(images)[:, target_index].numpy())
    return {"images": np.array(rows), "p_target": np.array(probs), "alphas": alphas}


def write_explanation(explanation: Explanation, out: str | Path) -> Path:
    """Write the DirectionSet, ``explanation.json``, ``edits.safetensors`` and the figures into ``out``."""
    from safetensors.torch import save as save_tensors

    from factorlens.explain.figures import save_delta_bars, save_strips
    from factorlens.io import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = explanation.report
    figures = {}
    strips = explanation.figures["strips"]
    if len(strips["images"]):
        below = report["best_below_threshold"] is not None
        entries = [report["best_below_threshold"]] if below else report["selected"]
        save_strips(strips, report, entries, out / "counterfactuals.png", below_threshold=below)
        which = (
            "the strongest candidate, BELOW AttFind's threshold (no direction was selected)"
            if below
            else "AttFind's directions"
        )
        figures["counterfactuals.png"] = (
            f"Counterfactual strips: rows = source images x {which}, columns = reconstruction, "
            f"then edits up to alpha = {report['alpha']:g} posterior sigmas; p({report['target']}) under each"
        )
    save_delta_bars(report, out / "delta_p.png")
    figures["delta_p.png"] = (
        f"Mean change of p({report['target']}) per direction and sign; dashed: 95th "
        f"percentile of {report['random']['num_random']} random directions at the same alpha"
    )
    state = {k: v.detach().contiguous() for k, v in explanation.edits.state_dict().items()}
    atomic_write_bytes(out / "edits.safetensors", save_tensors(state))
    atomic_write_json(out / EXPLANATION_FILE, report)
    explanation.directions.save(out, figures=figures)
    return out
