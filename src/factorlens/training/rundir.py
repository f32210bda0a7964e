"""Run directories: the on-disk format every downstream command reads (see ``docs/training.md``).

```
RUN/config.yaml                        resolved config
RUN/split.json                         {"train": [...], "test": [...], "n": N, "spec": ...}
RUN/log.jsonl                          one record per log interval
RUN/checkpoints/iter-<k>/model.safetensors   weights (adversary weights prefixed "adversary.")
RUN/checkpoints/iter-<k>/state.pt            optimizer + RNG + batch-order state (weights_only load)
RUN/checkpoints/iter-<k>/meta.json           {"iteration", "model", "format_version", "factorlens_version"}
RUN/checkpoint.json                    {"latest": "checkpoints/iter-<k>"}, replaced last
RUN/summary.json                       final figures
```

Every file is written through :mod:`factorlens.io` (temp file + fsync + rename), and the
``checkpoint.json`` pointer is replaced only after the checkpoint it points to is complete, so a reader
(or a resumed run) never sees a half-written checkpoint. Nothing here unpickles arbitrary objects:
weights are safetensors and ``state.pt`` is loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

import factorlens
from factorlens.config import (
    ModelSection,
    RunConfig,
    load_config,
    parse_model_section,
    parse_run_config,
    resolve_model_section,
)
from factorlens.errors import CheckpointError, ConfigError
from factorlens.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from factorlens.models.base import LatentModel

FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.json"
LOG_FILE = "log.jsonl"
POINTER_FILE = "checkpoint.json"
SUMMARY_FILE = "summary.json"
CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
KEEP_CHECKPOINTS = 2


def build_run_model(model_section: dict | ModelSection, *, channels: int, image_size: int = 64,
                    source: str = "config") -> tuple[LatentModel, dict]:
    """Build the model a config's ``model`` section names, for ``[B, channels, image_size, image_size]``.

    Returns the model and the resolved section (every option of the objective and the network family
    filled in) that ``config.yaml`` records. Parameter errors are one-line ``ConfigError`` naming the key.
    """
    from factorlens.models import build_model

    section = model_section if isinstance(model_section, ModelSection) else parse_model_section(
        model_section, source)
    model = build_model(section.name, section.params, channels=channels, image_size=image_size,
                        network=section.network)
    return model, resolve_model_section(section.to_dict())


# --- reading ---------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found: not a complete factorlens {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupted ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint folder ``checkpoint.json`` points to."""
    pointer = _read_json(run_dir / POINTER_FILE, "run directory (no checkpoint)")
    latest = pointer.get("latest") if isinstance(pointer, dict) else None
    if not isinstance(latest, str) or Path(latest).is_absolute() or ".." in Path(latest).parts:
        raise CheckpointError(f"{run_dir / POINTER_FILE} is corrupted: 'latest' must be a relative path")
    return run_dir / latest


def read_meta(checkpoint_dir: Path, *, expected_model: str) -> dict:
    """Read and check ``meta.json`` (model name and format version)."""
    meta = _read_json(checkpoint_dir / META_FILE, "checkpoint")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{checkpoint_dir / META_FILE} is corrupted: expected a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{checkpoint_dir / META_FILE}: checkpoint format version {meta.get('format_version')!r} is not "
            f"supported (this factorlens reads version {FORMAT_VERSION})"
        )
    if meta.get("model") != expected_model:
        raise CheckpointError(
            f"{checkpoint_dir}: checkpoint is of model {meta.get('model')!r}, config says {expected_model!r}"
        )
    return meta


def load_weights(model: torch.nn.Module, checkpoint_dir: Path, *, file: str = WEIGHTS_FILE) -> None:
    """Load ``file`` (``model.safetensors``, or ``ema.safetensors``: the EMA of the weights) into
    ``model`` (strict: every tensor present, same shapes)."""
    path = checkpoint_dir / file
    try:
        tensors = safetensors_load(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found") from None
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupted: {str(exc).splitlines()[0]}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: tensor {key} has shape {list(tensor.shape)}, "
                f"the model expects {list(expected[key].shape)}"
            )
    model.load_state_dict(tensors, strict=True)


def load_state(checkpoint_dir: Path) -> dict:
    """Load ``state.pt`` with ``weights_only=True``: a file holding arbitrary objects is refused
    without being executed."""
    path = checkpoint_dir / STATE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} refused: it holds objects other than tensors ({first})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupted: {str(exc).strip().splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a factorlens training state of format version {FORMAT_VERSION}")
    return state


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / LOG_FILE
    if not path.exists():
        return []
    records = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise CheckpointError(f"{path} line {line_number} is not valid JSON") from None
    return records


# --- writing ---------------------------------------------------------------------------------------------


def write_log(run_dir: Path, records: list[dict]) -> None:
    """Rewrite ``log.jsonl`` atomically (a few hundred KB at most; appending could leave half a line)."""
    atomic_write_text(run_dir / LOG_FILE, "".join(json.dumps(r) + "\n" for r in records))


def checkpoint_dir_for(run_dir: Path, iteration: int) -> Path:
    """Where the checkpoint of ``iteration`` lives: ``checkpoints/iter-<iteration>/``."""
    return run_dir / CHECKPOINTS_DIR / f"iter-{iteration}"


def _safetensors_bytes(weights: dict[str, torch.Tensor]) -> bytes:
    # clone: safetensors refuses tensors sharing storage; contiguous: channels_last weights.
    return safetensors_save({k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()})


def write_checkpoint(run_dir: Path, *, iteration: int, model_name: str, weights: dict[str, torch.Tensor],
                     state: dict, extra_weights: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write ``checkpoints/iter-<iteration>/``, then move the pointer, then prune old checkpoints.

    ``extra_weights``: more safetensors files of the checkpoint by file name (``ema.safetensors``).
    """
    checkpoint_dir = checkpoint_dir_for(run_dir, iteration)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(checkpoint_dir / WEIGHTS_FILE, _safetensors_bytes(weights))
    for name, tensors in (extra_weights or {}).items():
        atomic_write_bytes(checkpoint_dir / name, _safetensors_bytes(tensors))
    buffer = io.BytesIO()
    torch.save({**state, "format_version": FORMAT_VERSION}, buffer)
    atomic_write_bytes(checkpoint_dir / STATE_FILE, buffer.getvalue())
    atomic_write_json(checkpoint_dir / META_FILE, {
        "iteration": iteration,
        "model": model_name,
        "format_version": FORMAT_VERSION,
        "factorlens_version": factorlens.__version__,
    })
    atomic_write_json(run_dir / POINTER_FILE, {"latest": f"{CHECKPOINTS_DIR}/iter-{iteration}"})
    _prune_checkpoints(run_dir, keep=checkpoint_dir.name)
    return checkpoint_dir


def _prune_checkpoints(run_dir: Path, *, keep: str) -> None:
    def iteration_of(path: Path) -> int:
        try:
            return int(path.name.removeprefix("iter-"))
        except ValueError:
            return -1

    folders = sorted((p for p in (run_dir / CHECKPOINTS_DIR).glob("iter-*") if p.is_dir()), key=iteration_of)
    # Keep the newest KEEP_CHECKPOINTS up to the one just written; newer folders can exist only from an
    # abandoned attempt (a crash after resuming from an older checkpoint) and are stale.
    keep_index = [p.name for p in folders].index(keep)
    stale = folders[keep_index + 1:] + folders[: max(0, keep_index + 1 - KEEP_CHECKPOINTS)]
    for folder in stale:
        shutil.rmtree(folder)


# --- the Run object --------------------------------------------------------------------------------------


@dataclass
class Run:
    """A trained run, as every downstream command sees it.

    Attributes:
        path: the run directory.
        config: the run's typed config (``config.model.name``, ``config.train.lr``, ``config.data.spec``).
        model: the model at the latest checkpoint, in eval mode, on the CPU (EMA weights when the run
            kept an EMA, ``train.ema > 0``).
        split: ``{"train": [...], "test": [...], "n": N, "spec": ...}`` indices into the dataset.
        model_name: registry name of the model.
        iteration: iteration of the loaded checkpoint.
    """

    path: Path
    config: RunConfig
    model: LatentModel
    split: dict
    model_name: str
    iteration: int
    _dataset: Any = field(default=None, repr=False)

    def load_dataset(self, *, progress: bool = False):
        """The dataset the run was trained on (``config.data.spec``), checked against ``split.json``."""
        if self._dataset is None:
            from factorlens.data import load_dataset

            dataset = load_dataset(self.config.data.spec, progress=progress)
            if len(dataset) != self.split["n"]:
                raise CheckpointError(
                    f"{self.path / SPLIT_FILE}: the run was trained on {self.split['n']} images but "
                    f"{self.config.data.spec!r} now has {len(dataset)}"
                )
            self._dataset = dataset
        return self._dataset

    def log(self) -> list[dict]:
        """The ``log.jsonl`` records (dicts with ``iter``, ``time_s``, ``images_per_s`` and loss terms)."""
        return read_log(self.path)

    def summary(self) -> dict | None:
        path = self.path / SUMMARY_FILE
        return _read_json(path, "run") if path.exists() else None

    def images(self, split: str = "test", *, all_if_empty: bool = True):
        """``uint8 [n, C, 64, 64]`` images of ``split`` (``"test"``, ``"train"`` or ``"all"``) of the run's
        dataset; an empty test split means every image unless ``all_if_empty=False`` (the rule of
        :func:`factorlens.evaluation.evaluation_images`)."""
        from factorlens.evaluation import evaluation_images

        return evaluation_images(self, split=split, all_if_empty=all_if_empty).images

    def encode(self, images, *, batch_size: int = 256, dtype: str = "float64"):
        """:class:`~factorlens.evaluation.Posterior` (``mean``, ``logvar`` ``[N, d]`` of ``dtype``) of
        ``images`` (``uint8`` or float in [0, 1]) under the run's model, by
        :func:`factorlens.evaluation.encode_images`."""
        from factorlens.evaluation import encode_images

        return encode_images(self.model, images, batch_size=batch_size, dtype=dtype)


def load_run(path: str | Path) -> Run:
    """Open a run directory written by :func:`factorlens.training.train` (model on CPU, eval mode)."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} not found")
    if not (run_dir / CONFIG_FILE).exists():
        raise CheckpointError(f"{run_dir} is not a factorlens run directory (no {CONFIG_FILE})")
    try:
        config = parse_run_config(load_config(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))
    except ConfigError as exc:
        raise CheckpointError(f"invalid run config: {exc}") from None
    split = _read_json(run_dir / SPLIT_FILE, "run directory")
    if not isinstance(split, dict) or not {"train", "test", "n"} <= set(split):
        raise CheckpointError(f"{run_dir / SPLIT_FILE} is corrupted: expected keys train, test, n")
    checkpoint_dir = latest_checkpoint(run_dir)
    model_name = config.model.name
    meta = read_meta(checkpoint_dir, expected_model=model_name)
    model, _ = build_run_model(config.model, channels=split.get("channels", 3),
                               image_size=split.get("image_size", 64))
    load_weights(model, checkpoint_dir)
    if config.train.ema > 0:
        load_weights(model, checkpoint_dir, file=EMA_FILE)
    model.eval()
    return Run(path=run_dir, config=config, model=model, split=split, model_name=model_name,
               iteration=int(meta["iteration"]))
