"""The direction-method registry and the closed-form methods (SeFa, PCA, K-means, the baselines).

Every method is registered with :func:`direction_method` as a :class:`DirectionMethodEntry`: a frozen
options dataclass (its fields, declared with :func:`factorlens.schema.option`, are the method's own options
— ``discover --option KEY=VALUE`` — with their defaults, checks and help lines) and a function
``run(adapter, options, *, k, seed, steps) -> DirectionSet``. ``k`` is the number of directions (``None`` =
the method's default), ``steps`` the training steps of learned methods (ignored by closed-form ones).
:func:`discover_directions` parses the options with :func:`factorlens.schema.parse` and runs the method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.errors import ConfigError
from factorlens.registry import Registry
from factorlens.schema import Check, boolean, choice, help_of, integer, number, option, parse

DirectionMethod = Callable[..., DirectionSet]  # run(adapter, options, *, k, seed, steps) -> DirectionSet


@dataclass(frozen=True)
class DirectionMethodEntry:
    """A registered direction method.

    Attributes:
        options_class: frozen dataclass of the method's own options (the keys ``--option`` accepts).
        run: ``run(adapter, options, *, k, seed, steps) -> DirectionSet`` with ``options`` an instance of
            ``options_class``.
        description: one line for ``factorlens discover --list-methods``.
    """

    options_class: type
    run: DirectionMethod
    description: str


DIRECTION_METHODS: Registry[DirectionMethodEntry] = Registry("direction method")

PYTHON_WHERE = "discover_directions()"  # the source named in option errors of a Python call


def direction_method(name: str, options_class: type, description: str) -> Callable[[DirectionMethod],
                                                                                     DirectionMethod]:
    """Decorator: register ``run`` as direction method ``name``; returns ``run`` unchanged."""

    def decorator(run: DirectionMethod) -> DirectionMethod:
        DIRECTION_METHODS.register(name)(DirectionMethodEntry(options_class, run, description))
        return run

    return decorator


def fraction(*, positive: bool = False) -> Check:
    """A number in [0, 1] (``positive``: in (0, 1])."""
    base = number(positive=positive, lo=None if positive else 0)

    def check(value: Any, where: str) -> float:
        value = base(value, where)
        if value > 1:
            raise ConfigError(f"{where} must be <= 1, got {value}")
        return value

    return check


@dataclass(frozen=True)
class NoOptions:
    """A method without options of its own."""


def parse_options(method: str, options: Mapping[str, Any] | None, *, where: str = PYTHON_WHERE) -> Any:
    """``options`` of direction method ``method`` as its options dataclass (defaults filled in).

    Raises:
        ConfigError: one line for an unknown method, an unknown key (``unknown key option.<key> in
            <where> (unknown option of direction method <method>); allowed: ...``) or a bad value
            (``option.<key> in <where> must be ...``).
    """
    entry = DIRECTION_METHODS.get(method)
    return parse(entry.options_class, options, where=where, prefix="option",
                 owner=f"direction method {method}")


def check_options(method: str, options: Mapping[str, Any] | None, *, where: str = "options") -> Any:
    """Check ``options`` before anything is loaded (see :func:`parse_options`); returns the parsed
    options."""
    return parse_options(method, options, where=where)


def discover_directions(
    adapter: GeneratorAdapter,
    method: str,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    **options: Any,
) -> DirectionSet:
    """Run direction method ``method`` on ``adapter`` with its own ``options`` (keywords, parsed into the
    method's options dataclass); an unknown or bad option raises a one-line ``ConfigError``."""
    parsed = parse_options(method, options)
    if k is not None and k < 1:
        raise ConfigError(f"number of directions k must be >= 1, got {k}")
    if steps is not None and steps < 1:
        raise ConfigError(f"training steps must be >= 1, got {steps}")
    return DIRECTION_METHODS.get(method).run(adapter, parsed, k=k, seed=seed, steps=steps)


def describe_methods() -> str:
    """Every direction method with its options (name, type, default, help line), for
    ``factorlens discover --list-methods`` and ``docs/directions.md``."""
    lines = []
    for name in DIRECTION_METHODS.names():
        entry = DIRECTION_METHODS.get(name)
        lines.append(f"{name}: {entry.description}")
        fields = dataclasses.fields(entry.options_class)
        if not fields:
            lines.append("  (no options)")
        for f in fields:
            type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            help_text = f"  # {help_of(f)}" if help_of(f) else ""
            lines.append(f"  {f.name}: {type_name} = {f.default!r}{help_text}")
    return "\n".join(lines)


def _resolve_k(k: int | None, available: int, method: str) -> int:
    if k is None:
        return available
    if k > available:
        raise ConfigError(f"{method} gives at most {available} directions, asked for k={k}")
    return k


@dataclass(frozen=True)
class SefaOptions:
    normalize_units: bool = option(True, boolean, "scale each output unit's weight vector to unit norm first")


@direction_method("sefa", SefaOptions, "SeFa (Shen & Zhou 2021): eigenvectors of W^T W, W = first decoder "
                  "layer weight")
def sefa(
    adapter: GeneratorAdapter,
    options: SefaOptions | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> DirectionSet:
    """SeFa (Shen & Zhou 2021): eigenvectors of ``W^T W`` for the first decoder weight ``W [out, d]``.

    Each output unit's weight vector (a row of ``W``) is scaled to unit norm first (``normalize_units``),
    so a direction's eigenvalue counts how many feature units it drives rather than how large their
    weights are. ``np.linalg.eigh`` (``W^T W`` is symmetric) with eigenvalues sorted in descending order,
    unlike the reference code's unsorted ``eig``.
    """
    options = options or SefaOptions()
    normalize_units = options.normalize_units
    if adapter.first_layer_weight is None:
        raise ConfigError("sefa needs the first decoder layer weight; this model does not expose one")
    weight = adapter.first_layer_weight.double().numpy()
    if normalize_units:
        norms = np.linalg.norm(weight, axis=1, keepdims=True)
        weight = weight / np.where(norms > 0, norms, 1.0)
    eigenvalues, eigenvectors = np.linalg.eigh(weight.T @ weight)
    order = np.argsort(eigenvalues)[::-1]
    k = _resolve_k(k, adapter.latent_dim, "sefa")
    matrix = eigenvectors[:, order[:k]].T
    return DirectionSet(
        matrix=matrix,
        scales=adapter.direction_scales(matrix),
        method="sefa",
        params={"normalize_units": normalize_units, "base_source": adapter.base_source},
        seed=0,
        extras={"eigenvalues": eigenvalues[order[:k]].tolist()},
    )


@dataclass(frozen=True)
class PcaOptions:
    num_samples: int = option(2000, integer(1), "prior codes whose first-layer activations are analysed "
                              "(prior base codes only, e.g. a GAN)")


@direction_method("pca", PcaOptions, "principal axes of the base codes (prior: GANSpace PCA of first-layer "
                  "activations)")
def pca(
    adapter: GeneratorAdapter,
    options: PcaOptions | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> DirectionSet:
    """Principal axes of the base codes, or GANSpace-style PCA of first-layer activations.

    With posterior base codes (a VAE), the aggregate posterior is anisotropic and its principal axes are
    the directions (scale = sqrt(eigenvalue)). Under the prior N(0, I) that PCA would be meaningless, so
    (as GANSpace) we take PCA of the first-layer activations of ``num_samples`` prior codes and regress the
    codes on the component coordinates by least squares; the normalised rows of the regression matrix are
    the directions.
    """
    num_samples = (options or PcaOptions()).num_samples
    if adapter.base_source == "posterior":
        codes = adapter.reference_codes()
        centred = codes - codes.mean(axis=0)
        covariance = centred.T @ centred / max(len(codes) - 1, 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        k = _resolve_k(k, adapter.latent_dim, "pca")
        matrix = eigenvectors[:, order[:k]].T
        variance = eigenvalues[order[:k]]
        params = {"space": "posterior", "base_source": adapter.base_source}
    else:
        if adapter.features is None:
            raise ConfigError("pca under the prior needs first-layer activations; this model exposes none")
        import torch

        gen = torch.Generator().manual_seed(seed)
        z = adapter.sample_base(num_samples, gen)
        activations = adapter.features(z).double().numpy()
        codes = z.double().numpy()
        centred = activations - activations.mean(axis=0)
        _, singular, components = np.linalg.svd(centred, full_matrices=False)
        k = _resolve_k(k, min(adapter.latent_dim, len(singular)), "pca")
        coordinates = centred @ components[:k].T  # [N, k]
        regression, *_ = np.linalg.lstsq(coordinates, codes - codes.mean(axis=0), rcond=None)  # [k, d]
        matrix = regression / np.linalg.norm(regression, axis=1, keepdims=True)
        variance = singular[:k] ** 2 / max(len(codes) - 1, 1)
        params = {"space": "first-layer activations", "num_samples": num_samples, "base_source": "prior"}
    return DirectionSet(
        matrix=matrix,
        scales=adapter.direction_scales(matrix),
        method="pca",
        params=params,
        seed=seed if adapter.base_source == "prior" else 0,
        extras={"explained_variance": variance.tolist()},
    )


def _axial_kmeans(
    unit: np.ndarray, k: int, *, restarts: int, rng: np.random.Generator, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, float]:
    """Diametrical clustering (Dhillon et al. 2003) of unit vectors ``unit [N, d]`` into ``k`` *lines*.

    Each vector goes to the line it is most parallel or anti-parallel to (largest ``(x . u)^2``); each
    line is the leading eigenvector of its members' scatter matrix. Returns ``(lines [k, d], labels [N],
    objective = mean max_k (x . u_k)^2)`` of the best of ``restarts`` random starts.
    """
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(restarts):
        lines = unit[rng.choice(len(unit), size=k, replace=False)].copy()
        labels = np.full(len(unit), -1)
        for _ in range(max_iter):
            fit = (unit @ lines.T) ** 2  # [N, k]
            new_labels = fit.argmax(axis=1)
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
            for c in range(k):
                members = unit[labels == c]
                if len(members) == 0:
                    # An empty line restarts at the vector the current lines explain worst.
                    lines[c] = unit[fit.max(axis=1).argmin()]
                    continue
                lines[c] = np.linalg.eigh(members.T @ members)[1][:, -1]
        objective = float(((unit @ lines.T) ** 2).max(axis=1).mean())
        if best is None or objective > best[2]:
            best = (lines.copy(), labels.copy(), objective)
    assert best is not None
    return best


@dataclass(frozen=True)
class KmeansOptions:
    num_samples: int = option(4096, integer(1), "base codes to cluster")
    kind: str = option("axial", choice("axial", "spherical"),
                       "axial (lines: a code and its negative together) or spherical (rays, Klindt et al.)")
    restarts: int = option(10, integer(1), "random starts; the best fit is kept")


@direction_method("kmeans", KmeansOptions, "Klindt et al.: K-means of the L2-normalised base codes (K may "
                  "exceed d)")
def kmeans(
    adapter: GeneratorAdapter,
    options: KmeansOptions | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> DirectionSet:
    """Klindt et al.'s directions: K-means of the L2-normalised base codes; K may exceed d.

    Each base code (encoder mean, or a prior draw for a GAN) is scaled to unit length, so the clusters
    group codes by *direction* from the origin (the prior mean), not by distance. ``kind="spherical"`` is
    Klindt et al.'s K-means on the unit codes (directions = normalised centroids, i.e. rays). Their codes
    are non-negative ReLU activations; a VAE's or a GAN's codes are symmetric about 0, where spherical
    K-means spends half its clusters on the opposite ray of a line it already has. So the default
    ``kind="axial"`` clusters *lines* (diametrical clustering: a code and its negative fall in the same
    cluster; directions = leading eigenvectors of each cluster's scatter). Directions are ordered by
    cluster size; K defaults to d and may exceed it (an overcomplete set, as in Klindt et al.'s
    K in {d/2, d, 2d}). ``steps`` is unused (runs to convergence, ``restarts`` random starts). Pair them
    with :func:`~factorlens.directions.scores.interpretability_index`.
    """
    from sklearn.cluster import KMeans

    options = options or KmeansOptions()
    num_samples, kind, restarts = options.num_samples, options.kind, options.restarts
    codes = adapter.reference_codes(num_samples, seed=seed)
    norms = np.linalg.norm(codes, axis=1, keepdims=True)
    unit = codes[norms[:, 0] > 1e-12] / norms[norms[:, 0] > 1e-12]
    k = adapter.latent_dim if k is None else k
    if k < 1 or len(unit) < k:
        raise ConfigError(f"kmeans needs 1 <= k <= the {len(unit)} non-zero base codes, got k={k}")
    if kind == "spherical":
        fitted = KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit(unit)
        centroids, labels, fit_quality = fitted.cluster_centers_, fitted.labels_, float(fitted.inertia_)
    else:
        centroids, labels, fit_quality = _axial_kmeans(
            unit, k, restarts=restarts, rng=np.random.default_rng(seed)
        )
        # A line has no sign: orient each one so that its largest coordinate is positive (deterministic).
        centroids = centroids * np.sign(centroids[np.arange(k), np.abs(centroids).argmax(axis=1)])[:, None]
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    centroids = centroids[order]
    matrix = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return DirectionSet(
        matrix=matrix,
        scales=adapter.direction_scales(matrix),
        method="kmeans",
        params={
            "num_codes": int(len(unit)),
            "kind": kind,
            "restarts": restarts,
            "base_source": adapter.base_source,
        },
        seed=seed,
        extras={
            "cluster_sizes": sizes[order].tolist(),
            # spherical: sklearn's inertia (lower is better); axial: mean squared cosine to the own line.
            ("inertia" if kind == "spherical" else "mean_squared_cosine"): fit_quality,
        },
    )


def random_orthonormal(num_directions: int, latent_dim: int, seed: int) -> np.ndarray:
    """``[K, d]`` random orthonormal rows (QR of a Gaussian matrix, sign-fixed), ``K <= d``."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((latent_dim, num_directions)))
    return (q * np.sign(np.diag(r))).T


@direction_method("axes", NoOptions, "baseline: the latent coordinate axes, by the base codes' variance")
def axes(
    adapter: GeneratorAdapter,
    options: NoOptions | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> DirectionSet:
    """Baseline: the latent coordinate axes, ordered by the base codes' variance along them."""
    variance = adapter.direction_scales(np.eye(adapter.latent_dim)) ** 2
    order = np.argsort(-variance, kind="stable")
    k = _resolve_k(k, adapter.latent_dim, "axes")
    matrix = np.eye(adapter.latent_dim)[order[:k]]
    return DirectionSet(matrix, adapter.direction_scales(matrix), "axes", {"order": "variance"}, 0)


@direction_method("random", NoOptions, "baseline: random orthonormal directions")
def random_directions(
    adapter: GeneratorAdapter,
    options: NoOptions | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> DirectionSet:
    """Baseline: random orthonormal directions."""
    k = _resolve_k(k, adapter.direction_dim, "random")
    matrix = adapter.embed_directions(random_orthonormal(k, adapter.direction_dim, seed))
    return DirectionSet(matrix, adapter.direction_scales(matrix), "random", {}, seed)
