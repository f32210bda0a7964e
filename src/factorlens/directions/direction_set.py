"""A set of latent directions in one portable format (safetensors matrix + JSON provenance)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factorlens.errors import CheckpointError, ConfigError
from factorlens.io import atomic_write_bytes, atomic_write_json

MATRIX_FILE = "directions.safetensors"
META_FILE = "directions.json"
FORMAT_VERSION = 1


@dataclass
class DirectionSet:
    """K latent directions of a d-dimensional latent space.

    Attributes:
        matrix: ``float32 [K, d]``, one direction per row (unit norm for every built-in method except the
            ``linear`` Voynov deformator, whose column norms are learned).
        scales: ``float32 [K]``: standard deviation of the base codes projected on each unit direction, so
            that ``z + t * scales[k] * matrix[k] / |matrix[k]|`` is a shift of ``t`` posterior sigmas.
        method: name in :data:`factorlens.directions.DIRECTION_METHODS`.
        params: the options the method ran with (JSON-serialisable).
        seed: the random seed (0 for deterministic methods).
        labels: optional human labels, one per direction (``""`` = unlabelled).
        extras: method-specific JSON data (eigenvalues, segment counts, training losses...).
    """

    matrix: np.ndarray
    scales: np.ndarray
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    labels: list[str] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        self.scales = np.asarray(self.scales, dtype=np.float32)
        if self.matrix.ndim != 2:
            raise ConfigError(f"direction matrix must be [K, d], got shape {tuple(self.matrix.shape)}")
        if self.scales.shape != (self.matrix.shape[0],):
            raise ConfigError(
                f"direction scales must have shape [{self.matrix.shape[0]}], got {tuple(self.scales.shape)}"
            )
        if self.labels is not None and len(self.labels) != self.matrix.shape[0]:
            raise ConfigError(f"{len(self.labels)} direction labels for {self.matrix.shape[0]} directions")

    @property
    def num_directions(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.matrix.shape[1])

    def unit_matrix(self) -> np.ndarray:
        """``float32 [K, d]``: the directions scaled to unit norm (zero rows stay zero)."""
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        return (self.matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def shift_vectors(self) -> np.ndarray:
        """``float32 [K, d]``: the latent shift of one posterior sigma along each direction."""
        return self.unit_matrix() * self.scales[:, None]

    def save(self, directory: str | Path, *, figures: dict[str, str] | None = None) -> Path:
        """Write ``directions.safetensors`` and ``directions.json`` into ``directory`` (atomically).

        ``figures`` maps PNG file names (relative to ``directory``) to captions for the HTML report.
        """
        from safetensors.numpy import save as save_tensors

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"matrix": np.ascontiguousarray(self.matrix), "scales": np.ascontiguousarray(self.scales)}
        atomic_write_bytes(directory / MATRIX_FILE, save_tensors(tensors))
        meta = {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "num_directions": self.num_directions,
            "latent_dim": self.latent_dim,
            "params": self.params,
            "seed": int(self.seed),
            "labels": self.labels,
            "extras": self.extras,
            "figures": dict(figures or {}),
        }
        atomic_write_json(directory / META_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> DirectionSet:
        """Read a set written by :meth:`save`; raises :class:`CheckpointError` naming the bad file."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(directory)
        matrix_path, meta_path = directory / MATRIX_FILE, directory / META_FILE
        for path in (matrix_path, meta_path):
            if not path.is_file():
                raise CheckpointError(f"missing direction file {path}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"corrupted direction metadata {meta_path}: {exc}") from exc
        try:
            tensors = load_file(str(matrix_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"corrupted direction matrix {matrix_path}: {exc}") from exc
        if not isinstance(meta, dict) or "method" not in meta:
            raise CheckpointError(f"direction metadata {meta_path} has no 'method' entry")
        if "matrix" not in tensors or "scales" not in tensors:
            raise CheckpointError(f"direction matrix {matrix_path} lacks the 'matrix' or 'scales' tensor")
        try:
            return cls(
                matrix=tensors["matrix"],
                scales=tensors["scales"],
                method=str(meta["method"]),
                params=dict(meta.get("params") or {}),
                seed=int(meta.get("seed", 0)),
                labels=meta.get("labels"),
                extras=dict(meta.get("extras") or {}),
            )
        except ConfigError as exc:
            raise CheckpointError(f"inconsistent direction files in {directory}: {exc}") from exc

    @staticmethod
    def read_figures(directory: str | Path) -> dict[str, str]:
        """The ``{filename: caption}`` figure entry of a saved set (empty when there is none)."""
        meta_path = Path(directory) / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read direction metadata {meta_path}: {exc}") from exc
        return dict(meta.get("figures") or {})


def projected_std(base_codes: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``float32 [K]``: std of ``base_codes [N, d]`` projected on each unit row of ``directions [K, d]``."""
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    unit = directions / np.where(norms > 0, norms, 1.0)
    return (
        (np.asarray(base_codes, dtype=np.float64) @ unit.T.astype(np.float64)).std(axis=0).astype(np.float32)
    )
