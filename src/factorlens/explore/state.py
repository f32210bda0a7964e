"""What the explorer shows and computes for one run: its slider sets, base codes, decodes and walks.

A **slider set** is either the run's latent axes or the directions of a :class:`DirectionSet`.

- Latent axes (``"axes"``): one slider per latent dimension, ordered by decreasing mean KL to the prior
  over the figures' statistics images (:func:`factorlens.viz.run_figures.latent_stats`: the run's test
  split, at most 1,000 images), labelled with the factor sharing the most mutual information with the
  dimension where the dataset knows its factors. A slider holds the *standardised coordinate* of the
  code in that dimension: value ``t`` means ``z_j = m_j + t * s_j``, with ``m_j`` and ``s_j`` the mean and
  standard deviation of the posterior means over those images (posterior-sigma units). A GAN has no
  encoder: ``m = 0``, ``s = 1`` (the prior) and the dimensions keep their index order.
- Directions: one slider per direction ``k``; value ``t`` shifts the base code by ``t`` posterior sigmas
  along it, ``z = base + sum_k t_k * DirectionSet.shift_vectors()[k]``.

Sliders not mentioned in a request keep the base code's coordinate. Everything here is plain numpy and
torch; :mod:`factorlens.explore.protocol` validates requests, :mod:`factorlens.explore.server` serves.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from factorlens.errors import ConfigError, DataError
from factorlens.evaluation import encode_images
from factorlens.viz.grid import to_uint8_hwc
from factorlens.viz.traversals import best_factors, decode_codes, order_dims
from factorlens.viz.walks import walk_order

DEFAULT_SPAN = 3.0
ACTIVE_THRESHOLD = 0.01  # nats, as in the traversal figures
AXES = "axes"
SCORES_FILE = "scores.json"  # written next to a direction set by factorlens discover


@dataclass
class Slider:
    """One slider: ``index`` is the latent dimension (axes) or the direction number (a direction set)."""

    index: int
    label: str
    detail: str
    active: bool = True

    def to_json(self) -> dict:
        return {"index": self.index, "label": self.label, "detail": self.detail, "active": self.active}


@dataclass
class SliderSet:
    """A set of sliders and how their values move a code (see the module docstring)."""

    name: str
    kind: str  # "axes" or "directions"
    description: str
    sliders: list[Slider]  # in display order
    unit: np.ndarray  # float64 [n, d]: the code change of +1 on each slider (by slider index)
    offsets: np.ndarray | None = None  # float64 [n]: axes only, the coordinate at slider value 0
    summary: list[list[str]] = field(default_factory=list)  # set-level scores (name, value)

    @property
    def size(self) -> int:
        return int(self.unit.shape[0])

    def code(self, base: np.ndarray, values: dict[int, float]) -> np.ndarray:
        """``float32 [d]``: ``base`` with the given slider values applied (float64 arithmetic)."""
        z = np.asarray(base, dtype=np.float64).copy()
        for index, value in values.items():
            if self.offsets is not None:  # axes: slider index = dimension, unit = diag(sd)
                z[index] = self.offsets[index] + value * self.unit[index, index]
            else:
                z += value * self.unit[index]
        return z.astype(np.float32)

    def positions(self, base: np.ndarray) -> list[float] | None:
        """Axes only: each slider's value for ``base`` (its standardised coordinate); ``None`` for a
        direction set, whose sliders start at 0."""
        if self.offsets is None:
            return None
        base = np.asarray(base, dtype=np.float64)
        scale = np.diagonal(self.unit)
        return [float(v) for v in (base - self.offsets) / scale]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "sliders": [slider.to_json() for slider in self.sliders],
            "summary": self.summary,
        }


def axes_set(model, data=None, *, active_threshold: float = ACTIVE_THRESHOLD) -> SliderSet:
    """The latent axes of ``model``; ``data`` (a :class:`~factorlens.viz.run_figures.FigureData`) gives the
    KL order, the scales and the MI labels when the model has an encoder."""
    d = int(model.latent_dim)
    if data is None or not getattr(model, "has_encoder", True):
        sliders = [Slider(j, f"z{j}", "prior N(0, 1): slider = z", True) for j in range(d)]
        return SliderSet(
            AXES,
            "axes",
            f"{d} latent dimensions in prior units, slider = z ("
            + ("a model without encoder)" if not getattr(model, "has_encoder", True) else "no images given)"),
            sliders,
            np.eye(d),
            np.zeros(d),
        )
    from factorlens.viz.run_figures import latent_stats

    stats = latent_stats(model, data)
    codes = np.asarray(stats.codes, dtype=np.float64)
    means = codes.mean(axis=0)
    spread = codes.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)  # one image, or a constant dimension: prior units
    factor_of = best_factors(stats.factor_mi, stats.factor_names)
    sliders = []
    for dim in order_dims(stats.kl_per_dim, d, None):
        kl = float(stats.kl_per_dim[dim])
        label = f"z{dim}" + (f" {factor_of[dim][0]}" if factor_of else "")
        detail = f"KL {kl:.2f} nats" + (
            f", MI with {factor_of[dim][0]} {factor_of[dim][1]:.2f}" if factor_of else ""
        )
        sliders.append(Slider(dim, label, detail, kl >= active_threshold))
    n_active = sum(slider.active for slider in sliders)
    description = (
        f"{d} latent dimensions ordered by mean KL to the prior over {len(stats.indices)} images of "
        f"{data.description}; {n_active} have KL >= {active_threshold:g} nats; slider = (z - mean) / sd "
        "of the posterior means"
        + ("; labels: the factor sharing most mutual information" if factor_of else "")
    )
    return SliderSet(AXES, "axes", description, sliders, np.diag(spread), means)


def direction_set(path: str | Path, latent_dim: int, name: str | None = None) -> SliderSet:
    """The directions saved in ``path`` (``factorlens discover`` output) as sliders: labels from the
    set, each direction's strongest factor effect and the set's scores from ``scores.json`` if present."""
    from factorlens.directions import DirectionSet

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"--directions {path}: not a directory")
    directions = DirectionSet.load(path)
    if directions.latent_dim != latent_dim:
        raise ConfigError(
            f"--directions {path}: directions of a {directions.latent_dim}-d latent space, the run's is "
            f"{latent_dim}-d"
        )
    scores = _read_scores(path)
    effect = np.asarray(scores.get("effect") or [], dtype=np.float64)
    factor_names = list(scores.get("factor_names") or [])
    sliders = []
    for k in range(directions.num_directions):
        label = (directions.labels or [""] * directions.num_directions)[k] or f"direction {k}"
        detail = f"{directions.method} #{k}, sd {float(directions.scales[k]):.3g}"
        if effect.shape == (directions.num_directions, len(factor_names)) and factor_names:
            best = int(np.argmax(np.abs(effect[k])))
            detail += f", strongest effect: {factor_names[best]} {effect[k, best]:+.2f}"
        sliders.append(Slider(k, label, detail))
    summary = [
        [key, f"{scores[key]:.3g}"]
        for key in ("direction_mig", "modularity", "coverage")
        if isinstance(scores.get(key), (int, float))
    ]
    index = scores.get("interpretability_index")
    if isinstance(index, dict) and isinstance(index.get("score"), (int, float)):
        summary.append(["interpretability_index", f"{index['score']:.3g}"])
    return SliderSet(
        name or path.name,
        "directions",
        f"{directions.num_directions} {directions.method} directions from {path}; slider = shift in "
        "posterior sd along the direction",
        sliders,
        directions.shift_vectors().astype(np.float64),
        summary=summary,
    )


def _read_scores(path: Path) -> dict:
    scores_path = path / SCORES_FILE
    if not scores_path.is_file():
        return {}
    try:
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--directions {path}: {scores_path.name} is not valid JSON ({exc})") from None
    return scores if isinstance(scores, dict) else {}


def walk_code(source: np.ndarray, target: np.ndarray, position: float) -> tuple[np.ndarray, list[int]]:
    """The manifold walk of :mod:`factorlens.viz.walks`, continuous: the dimensions move from the source
    to the target one at a time (largest ``|target - source|`` first); ``position`` in [0, 1] is the
    fraction of the moves made. Returns the code and the order of the dimensions."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if not np.any(np.abs(target - source) > 0):  # nothing to walk
        return source.astype(np.float32), []
    order = walk_order(source, target, max_dims=None)
    moves = position * len(order)
    z = source.copy()
    for j, dim in enumerate(order):
        fraction = min(max(moves - j, 0.0), 1.0)
        z[dim] = source[dim] + fraction * (target[dim] - source[dim])
    return z.astype(np.float32), order


def png_data_uri(image: np.ndarray) -> str:
    """``float [C, H, W]`` in [0, 1] -> a ``data:image/png;base64,...`` URI (fast PNG, no optimisation)."""
    import base64

    buffer = io.BytesIO()
    hwc = to_uint8_hwc(image)
    Image.fromarray(hwc[:, :, 0] if image.shape[0] == 1 else hwc).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def prior_code(latent_dim: int, seed: int) -> np.ndarray:
    """``float32 [d]``: the first draw of N(0, I) from a generator seeded with ``seed`` (as
    :func:`factorlens.viz.panels.prior_samples` draws its first image)."""
    return torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(seed))[0].numpy()


def upload_to_images(data: bytes, channels: int, size: int) -> np.ndarray:
    """A PNG or JPEG file's bytes -> ``uint8 [1, channels, size, size]``: RGB (alpha on white), centre
    square crop, area-averaged resize, as the dataset loaders do; greyscale runs get the luminance."""
    from factorlens.data.imaging import CropBox, to_rgb

    try:
        with Image.open(io.BytesIO(data)) as handle:
            if handle.format not in ("PNG", "JPEG"):
                raise DataError(f"upload: expected a PNG or JPEG image, got {handle.format or 'unknown'}")
            width, height = handle.size
            if width * height > MAX_UPLOAD_PIXELS or min(width, height) < 1:
                raise DataError(
                    f"upload: {width}x{height} pixels; at most {MAX_UPLOAD_PIXELS:,} pixels are accepted"
                )
            handle.load()
            image = handle.copy()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any decoder failure is the file's fault
        raise DataError(f"upload: not a readable PNG or JPEG image ({' '.join(str(exc).split())})") from None
    rgb = to_rgb(image)
    crop = CropBox.centre_square(*rgb.size)
    resample = Image.Resampling.BICUBIC if min(rgb.size) < size else Image.Resampling.BOX
    small = rgb.resize((size, size), resample, box=crop.pixels(*rgb.size))
    if channels == 1:
        small = small.convert("L")
    array = np.asarray(small, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if array.shape[0] != channels:
        raise DataError(f"upload: the run's model reads {channels}-channel images")
    return np.array(array[None], copy=True, order="C")  # writable: PIL arrays are read-only


MAX_UPLOAD_PIXELS = 40_000_000


def refuse_diffusion(model) -> None:
    """A one-line ``ConfigError`` for a diffusion model: its code is ``[x_T, delta h]`` (thousands of
    entries) and each decode a DDIM chain of seconds on a CPU (docs/cli.md), not a slider's answer."""
    if getattr(model, "is_diffusion", False):
        raise ConfigError(
            f"factorlens explore does not serve diffusion models yet ({type(model).__name__}); "
            "use factorlens sample, or factorlens discover --method hspace and its traversal figures"
        )


class Explorer:
    """Everything the server answers with, for one run: slider sets, base images, decode, encode, walk.

    Args:
        model: a :class:`~factorlens.models.base.LatentModel` (eval mode).
        data: the run's test split as :class:`~factorlens.viz.run_figures.FigureData` (``None`` for a GAN).
        sets: extra slider sets (direction sets), after the latent axes.
        span: the sliders' range ``[-span, span]``; requests beyond it are refused.
        title: what the page's heading says.
    """

    def __init__(self, model, data=None, *, sets=(), span: float = DEFAULT_SPAN, title: str = "factorlens"):
        if not (np.isfinite(span) and span > 0):
            raise ConfigError(f"--span must be a positive number, got {span}")
        refuse_diffusion(model)
        self.model = model
        self.has_encoder = bool(getattr(model, "has_encoder", True))
        self.data = data if self.has_encoder else None
        self.latent_dim = int(model.latent_dim)
        self.channels = int(model.channels)
        self.span = float(span)
        self.title = title
        all_sets = [axes_set(model, self.data), *sets]
        names = [s.name for s in all_sets]
        if len(set(names)) != len(names):
            raise ConfigError(f"two slider sets share a name: {names}")
        self.sets = {s.name: s for s in all_sets}
        self.image_size = int(self.decode(np.zeros(self.latent_dim, np.float32)).shape[-1])

    @classmethod
    def from_run(cls, run, directions=(), *, span: float = DEFAULT_SPAN) -> Explorer:
        """An explorer of a :class:`~factorlens.training.Run` and the direction folders ``directions``."""
        from factorlens.viz.run_figures import figure_data

        model = run.model
        refuse_diffusion(model)  # before the test split is loaded
        data = figure_data(run) if getattr(model, "has_encoder", True) else None
        sets = [direction_set(path, int(model.latent_dim)) for path in directions]
        title = f"{Path(run.path).name} ({run.model_name}, iteration {run.iteration})"
        return cls(model, data, sets=sets, span=span, title=title)

    # ------------------------------------------------------------------ what the page asks
    @property
    def test_count(self) -> int:
        return 0 if self.data is None else len(self.data.pool)

    def info(self) -> dict:
        return {
            "title": self.title,
            "latent_dim": self.latent_dim,
            "channels": self.channels,
            "image_size": self.image_size,
            "has_encoder": self.has_encoder,
            "span": self.span,
            "test_images": self.test_count,
            "test_source": None if self.data is None else self.data.description,
            "sets": [s.to_json() for s in self.sets.values()],
        }

    def decode(self, code: np.ndarray) -> np.ndarray:
        """``float32 [C, H, W]`` in [0, 1]: the library's decode of one code."""
        return decode_codes(self.model, np.asarray(code, dtype=np.float32)[None])[0]

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``float32 [d]`` posterior mean of ``uint8 [1, C, H, W]``."""
        return encode_images(self.model, images, dtype=np.float32).mean[0]

    def _answer(self, code: np.ndarray, **extra) -> dict:
        answer = {"code": [float(v) for v in code], "image": png_data_uri(self.decode(code))}
        answer["positions"] = {
            name: s.positions(code) for name, s in self.sets.items() if s.offsets is not None
        }
        answer.update(extra)
        return answer

    def test_image(self, index: int) -> dict:
        """The ``index``-th image of the test split: its input, code and reconstruction."""
        dataset_index = int(self.data.pool[index])
        images = self.data.dataset.images[[dataset_index]]
        code = self.encode(images)
        return self._answer(
            code,
            input=png_data_uri(images[0].astype(np.float32) / 255.0),
            id=str(self.data.dataset.ids[dataset_index]),
            source=f"test image {index} ({self.data.dataset.ids[dataset_index]})",
        )

    def prior_sample(self, seed: int) -> dict:
        code = prior_code(self.latent_dim, seed)
        return self._answer(code, input=None, id=f"prior-{seed}", source=f"prior sample, seed {seed}")

    def upload(self, data: bytes) -> dict:
        images = upload_to_images(data, self.channels, self.image_size)
        return self._answer(
            self.encode(images),
            input=png_data_uri(images[0].astype(np.float32) / 255.0),
            id="upload",
            source="uploaded image",
        )

    def decode_request(self, set_name: str, base: np.ndarray, values: dict[int, float]) -> dict:
        return self._answer(self.sets[set_name].code(base, values))

    def walk(self, source: np.ndarray, target: np.ndarray, position: float) -> dict:
        code, order = walk_code(source, target, position)
        moves = position * len(order)
        done = [order[j] for j in range(len(order)) if moves >= j + 1]
        moving = order[len(done)] if len(done) < len(order) and moves > len(done) else None
        return self._answer(code, order=order, moved=done, moving=moving)


def direction_folders(run_path: str | Path) -> list[Path]:
    """The direction sets saved inside a run: ``RUN/directions/*/`` folders holding a set's metadata."""
    from factorlens.directions.direction_set import META_FILE

    return sorted(p for p in (Path(run_path) / "directions").glob("*") if (p / META_FILE).is_file())
