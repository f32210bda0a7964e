"""The direction-method registry and the closed-form methods (SeFa, PCA).

Every method is a function ``method(adapter, *, k, seed, steps, **options) -> DirectionSet``; ``k`` is the
number of directions (``None`` = the method's default), ``steps`` the training steps of learned methods
(ignored by closed-form ones). Options are validated by :func:`discover_directions`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.errors import ConfigError
from factorlens.registry import Registry

DirectionMethod = Callable[..., DirectionSet]
DIRECTION_METHODS: Registry[DirectionMethod] = Registry("direction method")

COMMON_ARGUMENTS = ("k", "seed", "steps")


def discover_directions(
    adapter: GeneratorAdapter,
    method: str,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    **options: Any,
) -> DirectionSet:
    """Run direction method ``method`` on ``adapter``; unknown options raise a one-line ``ConfigError``."""
    fn = check_options(method, options)
    if k is not None and k < 1:
        raise ConfigError(f"number of directions k must be >= 1, got {k}")
    if steps is not None and steps < 1:
        raise ConfigError(f"training steps must be >= 1, got {steps}")
    return fn(adapter, k=k, seed=seed, steps=steps, **options)


def check_options(method: str, options: dict[str, Any]) -> Callable[..., DirectionSet]:
    """The method's function, after checking ``options`` against its keyword arguments: an unknown name
    or a value of the wrong type (against the default's type; an int is accepted for a float) is a
    one-line ``ConfigError``."""
    fn = DIRECTION_METHODS.get(method)
    parameters = {
        name: p for name, p in inspect.signature(fn).parameters.items()
        if name not in ("adapter", *COMMON_ARGUMENTS)
    }
    for name, value in options.items():
        if name not in parameters:
            choices = ", ".join(parameters) or "none"
            raise ConfigError(f"direction method {method!r} has no option {name!r}; options: {choices}")
        default = parameters[name].default
        if default is None or default is inspect.Parameter.empty:
            continue
        expected = type(default)
        if expected is bool:
            fits = isinstance(value, bool)
        else:  # a bool is not a number here; an int is fine where a float is expected
            accepted = (int, float) if expected is float else expected
            fits = isinstance(value, accepted) and not isinstance(value, bool)
        if not fits:
            raise ConfigError(
                f"direction method {method!r} option {name!r} must be {expected.__name__}, got {value!r}"
            )
    return fn


def _resolve_k(k: int | None, available: int, method: str) -> int:
    if k is None:
        return available
    if k > available:
        raise ConfigError(f"{method} gives at most {available} directions, asked for k={k}")
    return k


@DIRECTION_METHODS.register("sefa")
def sefa(
    adapter: GeneratorAdapter,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    normalize_units: bool = True,
) -> DirectionSet:
    """SeFa (Shen & Zhou 2021): eigenvectors of ``W^T W`` for the first decoder weight ``W [out, d]``.

    Each output unit's weight vector (a row of ``W``) is scaled to unit norm first (``normalize_units``),
    so a direction's eigenvalue counts how many feature units it drives rather than how large their
    weights are. ``np.linalg.eigh`` (``W^T W`` is symmetric) with eigenvalues sorted in descending order,
    unlike the reference code's unsorted ``eig``.
    """
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


@DIRECTION_METHODS.register("pca")
def pca(
    adapter: GeneratorAdapter,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    num_samples: int = 2000,
) -> DirectionSet:
    """Principal axes of the base codes, or GANSpace-style PCA of first-layer activations.

    With posterior base codes (a VAE), the aggregate posterior is anisotropic and its principal axes are
    the directions (scale = sqrt(eigenvalue)). Under the prior N(0, I) that PCA would be meaningless, so
    (as GANSpace) we take PCA of the first-layer activations of ``num_samples`` prior codes and regress the
    codes on the component coordinates by least squares; the normalised rows of the regression matrix are
    the directions.
    """
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


@DIRECTION_METHODS.register("kmeans")
def kmeans(
    adapter: GeneratorAdapter,
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    num_samples: int = 4096,
    kind: str = "axial",
    restarts: int = 10,
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

    if kind not in ("axial", "spherical"):
        raise ConfigError(f"kmeans: kind must be 'axial' or 'spherical', got {kind!r}")
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


@DIRECTION_METHODS.register("axes")
def axes(
    adapter: GeneratorAdapter, *, k: int | None = None, seed: int = 0, steps: int | None = None
) -> DirectionSet:
    """Baseline: the latent coordinate axes, ordered by the base codes' variance along them."""
    variance = adapter.direction_scales(np.eye(adapter.latent_dim)) ** 2
    order = np.argsort(-variance, kind="stable")
    k = _resolve_k(k, adapter.latent_dim, "axes")
    matrix = np.eye(adapter.latent_dim)[order[:k]]
    return DirectionSet(matrix, adapter.direction_scales(matrix), "axes", {"order": "variance"}, 0)


@DIRECTION_METHODS.register("random")
def random_directions(
    adapter: GeneratorAdapter, *, k: int | None = None, seed: int = 0, steps: int | None = None
) -> DirectionSet:
    """Baseline: random orthonormal directions."""
    k = _resolve_k(k, adapter.latent_dim, "random")
    matrix = random_orthonormal(k, adapter.latent_dim, seed)
    return DirectionSet(matrix, adapter.direction_scales(matrix), "random", {}, seed)
