"""Classifiers to explain: a small CNN trained here (safetensors + JSON), or a user's TorchScript file.

Both load as a :class:`Classifier`: ``probabilities(images float [B, C, H, W] in [0, 1]) -> [B, classes]``
with the input normalisation applied inside, plus the class names, channels and image size it expects.
Pickles are refused: weights are safetensors, user models TorchScript (``torch.jit.load``), metadata JSON.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from factorlens.errors import CheckpointError, ConfigError, DataError
from factorlens.io import atomic_write_bytes, atomic_write_json
from factorlens.schema import choice, integer, number, option

WEIGHTS_FILE = "classifier.safetensors"
META_FILE = "classifier.json"
FORMAT_VERSION = 1
HEADS = ("pool", "flatten")


@dataclass(frozen=True)
class ClassifierOptions:
    """Training options of ``factorlens classifier train`` (``--set key=value``)."""

    epochs: int = option(8, integer(1), "passes over the training split (class-balanced sampling)")
    batch_size: int = option(64, integer(1), "images per step")
    lr: float = option(1e-3, number(positive=True), "Adam learning rate")
    width: int = option(32, integer(4), "channels of the first convolution (doubled twice)")
    head: str = option(
        "pool",
        choice(*HEADS),
        "pool: global average pooling then a linear layer (position-blind); flatten: a linear layer on the "
        "whole last feature map (keeps where things are)",
    )
    seed: int = option(0, integer(0), "seed of the weights and of the sampling")
    test_fraction: float = option(0.2, number(positive=True, hi=1.0), "share of images held out for testing")


class SmallCNN(nn.Module):
    """Three stride-2 conv blocks (width, 2w, 4w), then a linear class head on either the global average of
    the last feature map (``head="pool"``: translation-invariant, blind to position) or the whole flattened
    map (``head="flatten"``: ``4w x (S/8)^2`` features, keeps position; needs the image size)."""

    def __init__(
        self, channels: int, num_classes: int, width: int = 32, head: str = "pool", image_size: int = 64
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"classifier head {head!r} is not one of {', '.join(HEADS)}")
        layers: list[nn.Module] = []
        c_in = channels
        side = image_size
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
            side = (side - 1) // 2 + 1  # stride 2, kernel 3, padding 1
        self.features = nn.Sequential(*layers)
        self.pooled = head == "pool"
        self.head = nn.Linear(c_in if self.pooled else c_in * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)
        return self.head(maps.mean(dim=(2, 3)) if self.pooled else maps.flatten(1))


@dataclass
class Classifier:
    """A classifier ready to explain. ``module`` maps *normalised* images to logits."""

    module: nn.Module
    class_names: list[str]
    channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def class_index(self, name: str, *, option_name: str = "--target") -> int:
        if name not in self.class_names:
            raise ConfigError(
                f"{option_name} {name!r} is not a class of the classifier {self.source}; "
                f"its classes: {', '.join(self.class_names)}"
            )
        return self.class_names.index(name)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=images.dtype).reshape(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).reshape(1, -1, 1, 1)
        return self.module((images - mean) / std)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """``float32 [B, classes]`` softmax probabilities of images in [0, 1] (uint8 is converted)."""
        images = torch.as_tensor(images)
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        self.module.eval()
        chunks = [torch.softmax(self.logits(c.float()), dim=1) for c in torch.split(images, batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0, len(self.class_names))

    def check_images(self, channels: int, image_size: int, what: str) -> None:
        """One-line error when ``what`` produces images this classifier was not built for."""
        if (channels, image_size) != (self.channels, self.image_size):
            raise ConfigError(
                f"classifier {self.source} expects {self.channels}x{self.image_size}x{self.image_size} "
                f"images, {what} gives {channels}x{image_size}x{image_size}"
            )


# ------------------------------------------------------------------ training
def class_balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights ``1 / count(class)`` (normalised to sum 1): every class is drawn equally often."""
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return weights / weights.sum()


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``int64 [classes, classes]``: rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean per-class recall over the classes present in the test split."""
    totals = matrix.sum(axis=1)
    present = totals > 0
    return float((np.diag(matrix)[present] / totals[present]).mean())


def select_classes(dataset, classes: Sequence[str] | None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(indices, class names, labels 0..C-1)`` of the images of ``classes`` (default: all of them)."""
    if dataset.labels is None or not dataset.class_names:
        raise DataError(f"dataset {dataset.spec} has no class labels to train a classifier on")
    names = list(classes) if classes else list(dataset.class_names)
    unknown = [c for c in names if c not in dataset.class_names]
    if unknown:
        raise ConfigError(
            f"--classes {','.join(unknown)} not in dataset {dataset.spec}; its classes: "
            f"{', '.join(dataset.class_names)}"
        )
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError(f"--classes needs at least two different classes, got {','.join(names)}")
    original = np.array([dataset.class_names.index(c) for c in names])
    keep = np.flatnonzero(np.isin(dataset.labels, original))
    remap = {int(o): i for i, o in enumerate(original)}
    labels = np.array([remap[int(v)] for v in dataset.labels[keep]], dtype=np.int64)
    for i, name in enumerate(names):
        if not (labels == i).any():
            raise DataError(f"class {name} has no images in dataset {dataset.spec}")
    return keep, names, labels


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    options: ClassifierOptions | None = None,
    *,
    groups: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[Classifier, dict[str, Any]]:
    """Train :class:`SmallCNN` on ``uint8 [N, C, S, S]`` images; returns the classifier and its test report
    (accuracy, balanced accuracy, confusion matrix on a held-out split, grouped by ``groups``)."""
    from factorlens.data.base import ImageDataset
    from factorlens.data.split import split_indices

    options = options or ClassifierOptions()
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    split_ds = ImageDataset(
        name="classifier",
        spec="classifier",
        images=images[:, :1, :1, :1],
        ids=[""] * len(images),
        groups=groups,
    )
    train_idx, test_idx = split_indices(split_ds, test_fraction=options.test_fraction, seed=options.seed)
    present = np.unique(labels[train_idx])
    if len(present) < len(class_names):
        raise DataError("every class needs images in the training split; give more images")
    gen = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)
    channels, size = int(images.shape[1]), int(images.shape[-1])
    x_train = torch.as_tensor(images[train_idx]).float() / 255.0
    mean = x_train.mean(dim=(0, 2, 3)).tolist()
    std = x_train.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    module = SmallCNN(channels, len(class_names), options.width, options.head, size)
    classifier = Classifier(module, list(class_names), channels, size, mean, std, "(in memory)")
    optimiser = torch.optim.Adam(module.parameters(), lr=options.lr)
    weights = torch.as_tensor(class_balanced_weights(labels[train_idx]))
    y_train = torch.as_tensor(labels[train_idx])
    steps_per_epoch = max(1, len(train_idx) // options.batch_size)
    total = options.epochs * steps_per_epoch
    module.train()
    for _ in tqdm(range(total), desc="classifier", unit="step", disable=not progress):
        rows = torch.multinomial(weights, options.batch_size, replacement=True, generator=gen)
        loss = nn.functional.cross_entropy(classifier.logits(x_train[rows]), y_train[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    module.eval()
    predicted = classifier.probabilities(images[test_idx]).argmax(dim=1).numpy()
    matrix = confusion_matrix(labels[test_idx], predicted, len(class_names))
    report = {
        "test_images": int(len(test_idx)),
        "train_images": int(len(train_idx)),
        "test_accuracy": float(np.trace(matrix) / max(1, matrix.sum())),
        "balanced_accuracy": balanced_accuracy(matrix),
        "confusion_matrix": matrix.tolist(),
        "final_loss": float(loss.item()),
    }
    classifier.meta = {"training": report}
    return classifier, report


# ------------------------------------------------------------------ files
def save_classifier(
    classifier: Classifier,
    directory: str | Path,
    *,
    options: ClassifierOptions,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``classifier.safetensors`` then ``classifier.json`` (atomically) into ``directory``."""
    from dataclasses import asdict

    from safetensors.torch import save as save_tensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in classifier.module.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, save_tensors(state))
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "small-cnn",
        "classes": classifier.class_names,
        "channels": classifier.channels,
        "image_size": classifier.image_size,
        "normalisation": {"mean": classifier.mean, "std": classifier.std},
        "options": asdict(options),
        **classifier.meta,
        **(extra or {}),
    }
    atomic_write_json(directory / META_FILE, meta)
    return directory


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"classifier metadata {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"classifier metadata {path} is not valid JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"classifier metadata {path} must be a JSON object")
    for key in ("classes", "channels", "image_size"):
        if key not in meta:
            raise CheckpointError(f"classifier metadata {path} lacks {key!r}")
    classes = meta["classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"classifier metadata {path}: 'classes' must list at least two names")
    return meta


def _normalisation(meta: dict[str, Any], path: Path) -> tuple[list[float], list[float]]:
    norm = meta.get("normalisation") or {}
    channels = int(meta["channels"])
    mean = norm.get("mean", [0.0] * channels)
    std = norm.get("std", [1.0] * channels)
    if isinstance(mean, (int, float)):
        mean = [float(mean)] * channels
    if isinstance(std, (int, float)):
        std = [float(std)] * channels
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise CheckpointError(
            f"classifier metadata {path}: normalisation needs {channels} means and positive stds"
        )
    return [float(m) for m in mean], [float(s) for s in std]


def load_classifier(path: str | Path) -> Classifier:
    """Load a directory written by :func:`save_classifier`, or a TorchScript file ``model.pt`` with its
    ``model.json`` next to it (``{"classes": [...], "channels", "image_size", "normalisation": {"mean",
    "std"}}``; the module maps normalised images to logits). Anything else, pickles included, is refused
    with a one-line :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        meta_path = path / META_FILE
        meta = _read_meta(meta_path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path / WEIGHTS_FILE))
        except FileNotFoundError:
            raise CheckpointError(f"classifier weights {path / WEIGHTS_FILE} not found") from None
        except SafetensorError as exc:
            raise CheckpointError(f"classifier weights {path / WEIGHTS_FILE} are corrupted: {exc}") from None
        saved_options = meta.get("options", {})
        if saved_options.get("head", "pool") not in HEADS:
            raise CheckpointError(f"classifier metadata {meta_path}: head must be one of {', '.join(HEADS)}")
        module = SmallCNN(
            int(meta["channels"]),
            len(meta["classes"]),
            int(saved_options.get("width", 32)),
            str(saved_options.get("head", "pool")),
            int(meta["image_size"]),
        )
        try:
            module.load_state_dict(state)
        except RuntimeError:
            raise CheckpointError(
                f"classifier weights {path / WEIGHTS_FILE} do not match {meta_path}"
            ) from None
    elif path.is_file():
        meta_path = path.with_suffix(".json")
        meta = _read_meta(meta_path)
        module = _load_torchscript(path)
    else:
        raise CheckpointError(
            f"classifier {path} not found (a directory from `factorlens classifier "
            "train`, or a TorchScript file with a JSON of the same name)"
        )
    mean, std = _normalisation(meta, meta_path)
    module.eval()
    return Classifier(
        module,
        list(meta["classes"]),
        int(meta["channels"]),
        int(meta["image_size"]),
        mean,
        std,
        str(path),
        meta,
    )


def _load_torchscript(path: Path) -> nn.Module:
    """``torch.jit.load`` of a TorchScript archive; a pickle (or anything not TorchScript) is refused."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        raise CheckpointError(
            f"classifier {path} is not a TorchScript archive (pickles are refused)"
        ) from None
    if not any(name.endswith("constants.pkl") or "/code/" in name for name in names):
        raise CheckpointError(
            f"classifier {path} is a torch.save pickle, not TorchScript; export it with "
            "torch.jit.script(model).save(path)"
        )
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"classifier {path} cannot be loaded as TorchScript: {' '.join(str(exc).split())[:200]}"
        ) from None
