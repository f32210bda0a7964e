"""Space-filling vector quantisation (Vali & Backstrom 2024) of the base codes, and its directions.

A piecewise-linear curve of ``2^B`` codepoints is fitted to the base codes (encoder means of a VAE):
it starts from 4 points (means of the norm-sorted quartiles) and is grown by doubling, each new curve
sampling the old one just before and after every codepoint. Each training step draws one uniformly
random point on every segment (dithering), assigns each code to its nearest drawn point and minimises
the squared distance (Adam). Directions are the unit segment vectors ``c[i+1] - c[i]``; we keep the K
segments onto which most codes project (the reference code does not release its extraction step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.directions.methods import direction_method, fraction
from factorlens.errors import ConfigError
from factorlens.schema import integer, number, option

INSERT_OFFSET = 0.01  # fractional-index offset of the two points that replace each codepoint on doubling


def initial_curve(codes: torch.Tensor) -> torch.Tensor:
    """``[4, d]`` means of the four quartiles of ``codes`` sorted by norm."""
    order = torch.argsort(codes.norm(dim=1))
    return torch.stack([chunk.mean(0) for chunk in torch.tensor_split(codes[order], 4)])


def double_curve(curve: torch.Tensor) -> torch.Tensor:
    """``[2n, d]``: the curve sampled at fractional indices ``i -+ INSERT_OFFSET`` (clamped to the ends)."""
    n = len(curve)
    positions = torch.arange(n, dtype=curve.dtype)
    positions = torch.stack([positions - INSERT_OFFSET, positions + INSERT_OFFSET], dim=1).reshape(-1)
    positions = positions.clamp(0, n - 1)
    lower = positions.floor().long().clamp(max=n - 2)
    frac = (positions - lower)[:, None]
    return curve[lower] * (1 - frac) + curve[lower + 1] * frac


def project_on_segments(codes: torch.Tensor, curve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest segment of each code: ``(segment index [N], squared distance [N])``."""
    starts, vectors = curve[:-1], curve[1:] - curve[:-1]  # [S, d]
    rel = codes[:, None, :] - starts[None]  # [N, S, d]
    t = ((rel * vectors[None]).sum(-1) / (vectors**2).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    distance = ((rel - t[..., None] * vectors[None]) ** 2).sum(-1)  # [N, S]
    best, index = distance.min(dim=1)
    return index, best


def fit_sfvq(
    codes: torch.Tensor, bits: int, steps: int, *, batch_size: int = 64, lr: float = 1e-3, seed: int = 0
) -> tuple[torch.Tensor, list[float]]:
    """Fit a ``2^bits``-point curve to ``codes [N, d]`` with ``steps`` steps spread over the bitrates.

    Returns the curve ``[2^bits, d]`` and the final mean squared quantisation error of each bitrate.
    """
    if bits < 2:
        raise ConfigError(f"sfvq needs bits >= 2 (4 codepoints), got {bits}")
    gen = torch.Generator().manual_seed(seed)
    curve = initial_curve(codes)
    errors: list[float] = []
    steps_per_bitrate = max(1, steps // (bits - 1))
    for level in range(2, bits + 1):
        if level > 2:
            curve = double_curve(curve)
        curve = curve.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([curve], lr=lr)
        for _ in range(steps_per_bitrate):
            batch = codes[torch.randint(len(codes), (batch_size,), generator=gen)]
            dither = torch.rand(len(curve) - 1, 1, generator=gen)
            points = curve[:-1] + dither * (curve[1:] - curve[:-1])  # one random point per segment
            distance = torch.cdist(batch, points) ** 2
            loss = distance.min(dim=1).values.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        curve = curve.detach()
        with torch.no_grad():
            errors.append(float(project_on_segments(codes, curve)[1].mean()))
    return curve, errors


@dataclass(frozen=True)
class SfvqOptions:
    bits: int = option(5, integer(2), "the curve has 2^bits codepoints (grown from 4 by doubling)")
    batch_size: int = option(64, integer(1), "base codes per training step")
    lr: float = option(1e-3, number(positive=True), "Adam learning rate")
    max_abs_cos: float = option(
        0.9, fraction(positive=True),
        "skip a segment whose absolute cosine with a direction already taken is >= this",
    )


@direction_method("sfvq", SfvqOptions, "space-filling vector quantisation (Vali & Backstrom 2024): the most "
                  "populated segments of a curve through the base codes")
def sfvq(
    adapter: GeneratorAdapter,
    options: SfvqOptions | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> DirectionSet:
    """Directions = unit vectors of the K most populated segments of a ``2^bits``-point SFVQ curve.

    ``steps`` (default 1500) are split evenly over the bitrates 2..bits. A space-filling curve zig-zags:
    neighbouring segments are often nearly (anti-)parallel, i.e. the same line. Segments are taken in
    order of population and one whose ``|cos|`` with a direction already taken is ``>= max_abs_cos`` is
    skipped (Vali & Bäckström pick segments by hand; this greedy rule is ours). K defaults to as many
    distinct directions as there are, at most d; an explicit K that the curve cannot supply is an error.
    """
    options = options or SfvqOptions()
    bits, batch_size, lr, max_abs_cos = options.bits, options.batch_size, options.lr, options.max_abs_cos
    steps = 1500 if steps is None else steps
    codes = torch.as_tensor(adapter.reference_codes(seed=seed), dtype=torch.float32)
    curve, errors = fit_sfvq(codes, bits, steps, batch_size=batch_size, lr=lr, seed=seed)
    segment, _ = project_on_segments(codes, curve)
    counts = torch.bincount(segment, minlength=len(curve) - 1)
    segments = len(curve) - 1
    if k is not None and k > segments:
        raise ConfigError(f"sfvq with bits={bits} has {segments} segments, asked for k={k}")
    wanted = min(adapter.latent_dim, segments) if k is None else k
    all_vectors = (curve[1:] - curve[:-1]).double().numpy()
    all_units = all_vectors / np.maximum(np.linalg.norm(all_vectors, axis=1, keepdims=True), 1e-12)
    chosen: list[int] = []
    skipped: list[int] = []
    for segment_index in torch.argsort(counts, descending=True, stable=True).tolist():
        if len(chosen) == wanted:
            break
        if chosen and np.abs(all_units[chosen] @ all_units[segment_index]).max() >= max_abs_cos:
            skipped.append(segment_index)
            continue
        chosen.append(segment_index)
    if k is not None and len(chosen) < k:
        raise ConfigError(
            f"sfvq: the curve has only {len(chosen)} segments with |cos| < max_abs_cos={max_abs_cos} "
            f"to each other, asked for k={k} (raise bits or max_abs_cos)"
        )
    order = torch.as_tensor(chosen, dtype=torch.long)
    matrix = all_units[chosen]
    return DirectionSet(
        matrix=matrix,
        scales=adapter.direction_scales(matrix),
        method="sfvq",
        params={
            "bits": bits,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "max_abs_cos": max_abs_cos,
            "base_source": adapter.base_source,
        },
        seed=seed,
        extras={
            "segments": order.tolist(),
            "segment_counts": counts[order].tolist(),
            "skipped_near_duplicates": skipped,
            "quantisation_mse_per_bitrate": errors,
            "curve": curve.tolist(),
        },
    )
