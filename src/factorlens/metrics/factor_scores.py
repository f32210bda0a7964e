"""Observational disentanglement scores on labelled codes, after disentanglement_lib's definitions:
DCI (Eastwood & Williams 2018), SAP (Kumar et al. 2018, dlib's discrete variant), modularity and
explicitness (Ridgeway & Zemel 2018).

dlib draws ``num_train`` and ``num_test`` fresh points from the generative model; here they are disjoint
random subsets of the given rows (the same thing for a dataset that is the full factor grid). When fewer
rows are given, two thirds train and one third test; the sizes used are recorded in each result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from factorlens.errors import DataError
from factorlens.metrics.downstream import standardize
from factorlens.metrics.mutual_info import (
    binned_mutual_info,
    check_codes,
    check_factors,
    histogram_discretize,
)
from factorlens.registry import Registry

# Importance models for DCI: name -> factory(seed) of an sklearn classifier with ``feature_importances_``.
DCI_IMPORTANCE_MODELS: Registry[Callable[[int], object]] = Registry("DCI importance model")


@DCI_IMPORTANCE_MODELS.register("gbt")
def _gradient_boosting(seed: int):
    from sklearn.ensemble import GradientBoostingClassifier

    # dlib: GradientBoostingClassifier() with sklearn defaults (100 trees of depth 3).
    return GradientBoostingClassifier(random_state=seed)


@DCI_IMPORTANCE_MODELS.register("random-forest")
def _random_forest(seed: int):
    from sklearn.ensemble import RandomForestClassifier

    # Much faster than boosting on many-valued factors (dSprites' 40 orientations): one tree per estimator
    # instead of one per class and stage. All features are candidates at each split (max_features=None), as in
    # boosting, so importances are not spread onto noise latents by feature subsampling; depth-limited.
    return RandomForestClassifier(n_estimators=50, max_depth=8, max_features=None, random_state=seed)


@dataclass
class TrainTestSplit:
    train: np.ndarray
    test: np.ndarray


def train_test_rows(n_rows: int, num_train: int, num_test: int, rng: np.random.Generator) -> TrainTestSplit:
    """Disjoint random row subsets of sizes ``num_train``/``num_test`` (2:1 of all rows when too few)."""
    if num_train < 1 or num_test < 1:
        raise DataError(f"num_train and num_test must be >= 1, got {num_train} and {num_test}")
    if n_rows < 3:
        raise DataError(f"need at least 3 codes to split into train and test, got {n_rows}")
    order = rng.permutation(n_rows)
    if num_train + num_test > n_rows:
        num_train = (2 * n_rows) // 3
        num_test = n_rows - num_train
    return TrainTestSplit(train=order[:num_train], test=order[num_train : num_train + num_test])


def _known_rows(codes: np.ndarray, factors: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0])
    known = (factors >= 0).all(axis=1)
    if not known.any():
        raise DataError(f"{what}: no row has every factor known")
    return codes[known], factors[known]


def _entropy_normalised(p: np.ndarray, axis: int) -> np.ndarray:
    """1 - entropy of ``p`` normalised along ``axis`` with log base = its length (dlib adds 1e-11)."""
    from scipy.stats import entropy

    return 1.0 - entropy(p + 1e-11, base=p.shape[axis], axis=axis)


@dataclass
class DCIResult:
    """Attributes:
    disentanglement, completeness: in [0, 1], weighted as in dlib.
    informativeness_train, informativeness_test: mean classification accuracy over factors.
    importance: ``[D, K]`` feature importances of latent j for predicting factor k.
    per_factor_test_accuracy: ``[K]``.
    model, num_train, num_test, seed: how it was computed.
    """

    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float
    importance: np.ndarray
    per_factor_test_accuracy: np.ndarray
    model: str
    num_train: int
    num_test: int
    seed: int

    @property
    def estimator(self) -> str:
        return f"DCI, {self.model} importances, {self.num_train} train / {self.num_test} test"

    def to_dict(self) -> dict:
        return {
            "disentanglement": self.disentanglement,
            "completeness": self.completeness,
            "informativeness_train": self.informativeness_train,
            "informativeness_test": self.informativeness_test,
            "importance": self.importance.tolist(),
            "per_factor_test_accuracy": self.per_factor_test_accuracy.tolist(),
            "estimator": self.estimator,
            "model": self.model,
            "num_train": self.num_train,
            "num_test": self.num_test,
            "seed": self.seed,
        }


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """``[D, K]`` non-negative importances -> (disentanglement, completeness) as in dlib's ``dci.py``."""
    importance = np.asarray(importance, dtype=np.float64)
    d, k = importance.shape
    if d < 2 or k < 2:
        raise DataError(f"DCI needs at least 2 latents and 2 factors, got {d} and {k}")
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    per_code = _entropy_normalised(importance, axis=1)
    per_factor = _entropy_normalised(importance, axis=0)
    disentanglement = float(np.sum(per_code * weights.sum(axis=1) / weights.sum()))
    completeness = float(np.sum(per_factor * weights.sum(axis=0) / weights.sum()))
    return disentanglement, completeness


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    model: str = "gbt",
    seed: int = 0,
) -> DCIResult:
    """DCI disentanglement / completeness / informativeness.

    Args:
        codes: ``float [N, D]`` encoder means; factors: ``int [N, K]`` (rows with any -1 are dropped).
        num_train, num_test: dlib's defaults 10,000 / 5,000.
        model: ``"gbt"`` (dlib: sklearn GradientBoostingClassifier) or ``"random-forest"`` (faster).
        seed: row subsets and model seeds.
    """
    factory = DCI_IMPORTANCE_MODELS.get(model)
    codes, factors = _known_rows(codes, factors, "dci")
    rows = train_test_rows(codes.shape[0], num_train, num_test, np.random.default_rng(seed))
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    train_acc, test_acc = np.zeros(factors.shape[1]), np.zeros(factors.shape[1])
    for k in range(factors.shape[1]):
        y_train, y_test = factors[rows.train, k], factors[rows.test, k]
        if np.unique(y_train).size < 2:
            raise DataError(f"dci: factor {k} takes a single value in the {rows.train.size} training rows")
        classifier = factory(seed)
        classifier.fit(codes[rows.train], y_train)
        importance[:, k] = np.abs(classifier.feature_importances_)
        train_acc[k] = float(np.mean(classifier.predict(codes[rows.train]) == y_train))
        test_acc[k] = float(np.mean(classifier.predict(codes[rows.test]) == y_test))
    disentanglement, completeness = dci_from_importance(importance)
    return DCIResult(
        disentanglement=disentanglement,
        completeness=completeness,
        informativeness_train=float(train_acc.mean()),
        informativeness_test=float(test_acc.mean()),
        importance=importance,
        per_factor_test_accuracy=test_acc,
        model=model,
        num_train=int(rows.train.size),
        num_test=int(rows.test.size),
        seed=seed,
    )


@dataclass
class SAPResult:
    """Attributes:
    score: mean over factors of (best - second best) latent's test accuracy.
    score_matrix: ``[D, K]`` test accuracy of a 1-feature linear SVM from latent j to factor k.
    num_train, num_test, seed: sizes used.
    """

    score: float
    score_matrix: np.ndarray
    num_train: int
    num_test: int
    seed: int
    estimator: str = "SAP (discrete): LinearSVC(C=0.01, balanced) accuracy per latent and factor"

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "score_matrix": self.score_matrix.tolist(),
            "num_train": self.num_train,
            "num_test": self.num_test,
            "seed": self.seed,
            "estimator": self.estimator,
        }


def top_two_gap(matrix: np.ndarray) -> float:
    """Mean over columns of (largest - second largest) entry (dlib's ``compute_avg_diff_top_two``)."""
    ordered = np.sort(matrix, axis=0)
    return float(np.mean(ordered[-1] - ordered[-2]))


def sap(
    codes: np.ndarray, factors: np.ndarray, *, num_train: int = 10_000, num_test: int = 5_000, seed: int = 0
) -> SAPResult:
    """SAP score, dlib's discrete-factor variant: for every latent j and factor k a linear SVM
    (``LinearSVC(C=0.01, class_weight="balanced")``) predicts v_k from z_j alone; the score matrix holds
    test accuracies; SAP is the mean over factors of the gap between the two best latents."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    codes, factors = _known_rows(codes, factors, "sap")
    if codes.shape[1] < 2:
        raise DataError(f"SAP needs at least 2 latents, got {codes.shape[1]}")
    rows = train_test_rows(codes.shape[0], num_train, num_test, np.random.default_rng(seed))
    scores = np.zeros((codes.shape[1], factors.shape[1]))
    for j in range(codes.shape[1]):  # one classifier per (latent, factor) pair is the definition
        for k in range(factors.shape[1]):
            y_train = factors[rows.train, k]
            if np.unique(y_train).size < 2:
                raise DataError(
                    f"sap: factor {k} takes a single value in the {rows.train.size} training rows"
                )
            classifier = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
            with warnings.catch_warnings():
                # dlib accepts unconverged liblinear fits (C=0.01 on one feature); so do we.
                warnings.simplefilter("ignore", ConvergenceWarning)
                classifier.fit(codes[rows.train, j : j + 1], y_train)
            predicted = classifier.predict(codes[rows.test, j : j + 1])
            scores[j, k] = float(np.mean(predicted == factors[rows.test, k]))
    return SAPResult(
        score=top_two_gap(scores),
        score_matrix=scores,
        num_train=int(rows.train.size),
        num_test=int(rows.test.size),
        seed=seed,
    )


@dataclass
class ModularityResult:
    """Attributes:
    modularity: mean over latents of 1 - (deviation from an ideal one-factor latent).
    explicitness_train, explicitness_test: mean over factors of the macro one-vs-rest ROC AUC of a
        logistic regression from all latents to the factor.
    mi: ``[D, K]`` binned MI (nats) on the training rows, from which modularity is computed.
    bins, num_train, num_test, seed: how it was computed.
    """

    modularity: float
    explicitness_train: float
    explicitness_test: float
    mi: np.ndarray
    per_factor_explicitness_test: np.ndarray
    bins: int
    num_train: int
    num_test: int
    seed: int

    @property
    def estimator(self) -> str:
        return f"modularity on binned-{self.bins} MI; explicitness = logistic-regression macro ROC AUC"

    def to_dict(self) -> dict:
        return {
            "modularity": self.modularity,
            "explicitness_train": self.explicitness_train,
            "explicitness_test": self.explicitness_test,
            "mi": self.mi.tolist(),
            "per_factor_explicitness_test": self.per_factor_explicitness_test.tolist(),
            "estimator": self.estimator,
            "bins": self.bins,
            "num_train": self.num_train,
            "num_test": self.num_test,
            "seed": self.seed,
        }


def modularity_from_mi(mi: np.ndarray) -> float:
    """dlib's ``modularity``: per latent, 1 - sum_{k != best} MI^2 / (MI_best^2 (K - 1)); 0 for a latent
    with no information; mean over latents."""
    squared = np.square(np.asarray(mi, dtype=np.float64))
    if squared.shape[1] < 2:
        raise DataError("modularity needs at least 2 factors")
    best = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = (squared.sum(axis=1) - best) / (best * (squared.shape[1] - 1))
    per_latent = np.where(best > 0, 1.0 - deviation, 0.0)
    return float(per_latent.mean())


def _macro_auc(classifier, features: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classifier's classes that have both positives and negatives in
    ``labels`` (dlib's MultiLabelBinarizer version breaks when a class is missing from one split)."""
    from sklearn.metrics import roc_auc_score

    probabilities = classifier.predict_proba(features)
    aucs = []
    for column, value in enumerate(classifier.classes_):
        positive = labels == value
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, probabilities[:, column]))
    return float(np.mean(aucs)) if aucs else float("nan")


def modularity_explicitness(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    bins: int = 20,
    seed: int = 0,
) -> ModularityResult:
    """Ridgeway & Zemel's modularity (from binned MI on the training rows) and explicitness (logistic
    regression on all latents, z-scored with the training rows' statistics -> one-vs-rest ROC AUC per
    factor), as in dlib's ``modularity_explicitness.py``. Both are invariant to rescaling the codes."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    codes, factors = _known_rows(codes, factors, "modularity")
    rows = train_test_rows(codes.shape[0], num_train, num_test, np.random.default_rng(seed))
    mi = binned_mutual_info(histogram_discretize(codes[rows.train], bins=bins), factors[rows.train])
    modularity = modularity_from_mi(mi)
    # dlib z-scores the codes with the training rows' mean and std before the regularised logistic
    # regression, so explicitness does not depend on the codes' scale.
    train_codes = standardize(codes[rows.train])
    test_codes = standardize(codes[rows.test], reference=codes[rows.train])
    explicit_train, explicit_test = np.zeros(factors.shape[1]), np.zeros(factors.shape[1])
    for k in range(factors.shape[1]):
        classifier = LogisticRegression()
        with warnings.catch_warnings():
            # dlib uses LogisticRegression() defaults (max_iter=100) and accepts where lbfgs stops.
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(train_codes, factors[rows.train, k])
        explicit_train[k] = _macro_auc(classifier, train_codes, factors[rows.train, k])
        explicit_test[k] = _macro_auc(classifier, test_codes, factors[rows.test, k])
    return ModularityResult(
        modularity=modularity,
        explicitness_train=float(np.nanmean(explicit_train)),
        explicitness_test=float(np.nanmean(explicit_test)),
        mi=mi,
        per_factor_explicitness_test=explicit_test,
        bins=bins,
        num_train=int(rows.train.size),
        num_test=int(rows.test.size),
        seed=seed,
    )
