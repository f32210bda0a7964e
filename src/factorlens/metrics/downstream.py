"""The two use-cases of Table 1 (Sarhan et al. 2019): clustering the codes with a 7-component GMM
(NMI against the diagnosis) and classifying the diagnosis from the codes with few labels (an MLP trained
on one stratified tenth, tested on the other nine tenths)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from factorlens.errors import DataError
from factorlens.metrics.mutual_info import check_codes


@dataclass
class GMMNMIResult:
    """Attributes:
    mean, std: NMI over the seeds (std with ddof=0).
    per_seed: ``[n_seeds]`` NMI of each GMM fit.
    seeds: the GMM ``random_state`` of each fit.
    n_components: mixture components.
    estimator: how it was computed.
    """

    mean: float
    std: float
    per_seed: np.ndarray
    seeds: list[int]
    n_components: int
    estimator: str

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "std": self.std,
            "per_seed": self.per_seed.tolist(),
            "seeds": self.seeds,
            "n_components": self.n_components,
            "estimator": self.estimator,
        }


@dataclass
class FewLabelResult:
    """Attributes:
    accuracy_mean, accuracy_std: accuracy over the folds (std ddof=0).
    balanced_accuracy_mean, balanced_accuracy_std: balanced accuracy over the folds.
    per_fold_accuracy, per_fold_balanced_accuracy: ``[folds]``.
    train_sizes: training images per fold (about N / folds).
    seed: seed of the folds and of the MLP initialisation.
    n_not_converged: folds whose MLP stopped at ``max_iter`` (sklearn's ConvergenceWarning).
    estimator: how it was computed.
    """

    accuracy_mean: float
    accuracy_std: float
    balanced_accuracy_mean: float
    balanced_accuracy_std: float
    per_fold_accuracy: np.ndarray
    per_fold_balanced_accuracy: np.ndarray
    train_sizes: list[int]
    seed: int
    n_not_converged: int
    estimator: str

    def to_dict(self) -> dict:
        return {
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "balanced_accuracy_mean": self.balanced_accuracy_mean,
            "balanced_accuracy_std": self.balanced_accuracy_std,
            "per_fold_accuracy": self.per_fold_accuracy.tolist(),
            "per_fold_balanced_accuracy": self.per_fold_balanced_accuracy.tolist(),
            "train_sizes": self.train_sizes,
            "seed": self.seed,
            "n_not_converged": self.n_not_converged,
            "estimator": self.estimator,
        }


def _check_labels(labels: np.ndarray, n_rows: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n_rows,):
        raise DataError(f"labels must be [N={n_rows}], got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise DataError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if (labels < 0).any():
        raise DataError(f"{int((labels < 0).sum())} labels are unknown (-1); drop those rows first")
    return labels.astype(np.int64)


def standardize(codes: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Zero mean, unit variance per column, with the mean and std (ddof 0) of ``reference`` (default:
    ``codes`` itself; pass the training rows to standardise test rows alike); constant columns are
    centred only (scale 1)."""
    reference = codes if reference is None else reference
    std = reference.std(axis=0)
    return (codes - reference.mean(axis=0)) / np.where(std > 0, std, 1.0)


def gmm_nmi(
    codes: np.ndarray, labels: np.ndarray, n_components: int = 7, seeds: Iterable[int] = range(10)
) -> GMMNMIResult:
    """NMI between the labels and the clusters of a Gaussian mixture fitted to the standardised codes.

    Args:
        codes: ``float [N, D]`` encoder means.
        labels: ``int [N]`` class indices.
        n_components: mixture components (7 diagnoses in ISIC 2018).
        seeds: one GMM fit (``random_state``) per seed; the paper averages 10 realisations.

    sklearn ``GaussianMixture`` (full covariances, k-means init) and ``normalized_mutual_info_score``
    (arithmetic mean normalisation).
    """
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.mixture import GaussianMixture

    codes = check_codes(codes)
    labels = _check_labels(labels, codes.shape[0])
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise DataError("gmm_nmi needs at least one seed")
    if codes.shape[0] < n_components:
        raise DataError(f"gmm_nmi needs at least n_components={n_components} codes, got {codes.shape[0]}")
    features = standardize(codes)
    scores = []
    for seed in seeds:
        # reg_covar keeps a collapsed (constant) latent from making a covariance singular.
        mixture = GaussianMixture(n_components=n_components, random_state=seed, reg_covar=1e-5)
        clusters = mixture.fit_predict(features)
        scores.append(normalized_mutual_info_score(labels, clusters))
    per_seed = np.array(scores)
    return GMMNMIResult(
        mean=float(per_seed.mean()),
        std=float(per_seed.std()),
        per_seed=per_seed,
        seeds=seeds,
        n_components=n_components,
        estimator=f"GaussianMixture({n_components}, full) on standardised codes, "
        f"NMI (arithmetic), {len(seeds)} seeds",
    )


def few_label_accuracy(
    codes: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 10,
    seed: int = 0,
    hidden_layer_sizes: tuple[int, ...] = (100,),
    max_iter: int = 500,
) -> FewLabelResult:
    """Classification with few labels: for each of ``folds`` stratified folds, train an MLP on that
    fold alone (1/folds of the data) and test on the remaining folds.

    Features are standardised with the training fold's statistics. sklearn ``MLPClassifier`` (Adam,
    ReLU, ``hidden_layer_sizes``, ``random_state=seed``). Returns mean +- std of accuracy and balanced
    accuracy over the folds.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    codes = check_codes(codes)
    labels = _check_labels(labels, codes.shape[0])
    if folds < 2:
        raise DataError(f"folds must be >= 2, got {folds}")
    class_counts = np.bincount(labels)
    if class_counts[class_counts > 0].max() < folds:
        raise DataError(f"few_label_accuracy needs a class with at least folds={folds} images")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracies, balanced, sizes = [], [], []
    not_converged = 0
    # StratifiedKFold yields (other folds, this fold); the small fold is the training set here.
    for rest_idx, fold_idx in splitter.split(codes, labels):
        scaler = StandardScaler().fit(codes[fold_idx])
        classifier = MLPClassifier(
            hidden_layer_sizes=hidden_layer_sizes, max_iter=max_iter, random_state=seed
        )
        # On ~N/10 points the MLP often hits max_iter while still fitting noise; that is expected here,
        # so the warning is recorded in the result (n_not_converged) instead of printed once per fold.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            classifier.fit(scaler.transform(codes[fold_idx]), labels[fold_idx])
        not_converged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for other in caught:
            if not issubclass(other.category, ConvergenceWarning):
                warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
        predicted = classifier.predict(scaler.transform(codes[rest_idx]))
        accuracies.append(accuracy_score(labels[rest_idx], predicted))
        balanced.append(balanced_accuracy_score(labels[rest_idx], predicted))
        sizes.append(int(fold_idx.size))
    acc, bal = np.array(accuracies), np.array(balanced)
    return FewLabelResult(
        accuracy_mean=float(acc.mean()),
        accuracy_std=float(acc.std()),
        balanced_accuracy_mean=float(bal.mean()),
        balanced_accuracy_std=float(bal.std()),
        per_fold_accuracy=acc,
        per_fold_balanced_accuracy=bal,
        train_sizes=sizes,
        seed=seed,
        n_not_converged=not_converged,
        estimator=f"MLPClassifier{hidden_layer_sizes} trained on 1 of {folds} stratified "
        f"folds, tested on the other {folds - 1}",
    )
