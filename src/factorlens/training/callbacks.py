"""Trainer callbacks: the training loop's behaviour beyond one optimisation step, one class each.

The :class:`~factorlens.training.trainer.Trainer` calls, in list order, on every callback:

==================== ===================================================================================
``on_train_start``   before the first step of this session (fresh or resumed)
``on_before_optimizer_step`` after the model's backward (and the gradients' all-reduce), before the
                     model's optimiser steps: where a callback may change gradients or learning rates
``on_step_end``      after every step (device tensors only: no host sync here)
``on_sync``          before a log record or checkpoint, once the loss terms are reduced over processes
``on_log(record)``   after a ``log.jsonl`` record was made (``record``: iter, time_s, images_per_s, terms)
``on_checkpoint``    a checkpoint is due (``Checkpointing`` writes it; later callbacks see
                     ``trainer.last_checkpoint``)
``on_train_end``     after the last step, when training completed
``teardown``         always, also after an error or interrupt (close files, restore signal handlers)
==================== ===================================================================================

A callback with state that must survive a resume gives it to the checkpoint through
``checkpoint_files(trainer) -> {file name: tensors}`` and reads it back in ``restore(trainer, dir)``.
:func:`default_callbacks` is what ``factorlens train`` uses; a notebook or test passes its own list.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from factorlens.errors import CheckpointError, ConfigError, TrainingError
from factorlens.training import rundir

if TYPE_CHECKING:
    from factorlens.training.trainer import Trainer


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_before_optimizer_step(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer) -> None: ...
    def on_sync(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, record: dict) -> None: ...
    def on_checkpoint(self, trainer: Trainer) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...
    def teardown(self, trainer: Trainer) -> None: ...

    def checkpoint_files(self, trainer: Trainer) -> dict[str, dict[str, torch.Tensor]]:
        return {}

    def restore(self, trainer: Trainer, checkpoint_dir: Path) -> None: ...


def _kept(trainer: Trainer) -> str:
    if trainer.last_checkpoint is None:
        return "no checkpoint was written yet"
    return f"the previous checkpoint {trainer.last_checkpoint} is intact (free space, then --resume)"


class NaNStop(Callback):
    """Stops training with a one-line ``TrainingError`` at the first sync after a loss term went
    non-finite, naming the term and the iteration; the last good checkpoint is kept (this runs before
    the checkpoint of that sync is written)."""

    def on_sync(self, trainer: Trainer) -> None:
        if trainer.first_bad is None:
            return
        first_bad = trainer.first_bad.tolist()
        # Report the earliest iteration; at it, prefer a component term over the total "loss" it makes.
        bad = [(it, name == "loss", index, name)
               for index, (it, name) in enumerate(zip(first_bad, trainer.term_names, strict=True)) if it >= 0]
        if bad:
            iteration, _, _, name = min(bad)
            kept = (
                f"the last good checkpoint {trainer.last_checkpoint} is kept"
                if trainer.last_checkpoint is not None
                else "no checkpoint was written"
            )
            raise TrainingError(
                f"non-finite loss term {name!r} at iteration {iteration} of {trainer.out}; {kept} "
                f"(try a lower train.lr or precision fp32)"
            )


class JsonlLog(Callback):
    """Rewrites ``RUN/log.jsonl`` (atomically) with every record so far, on the main process."""

    def on_log(self, trainer: Trainer, record: dict) -> None:
        if not trainer.dist.is_main:
            return
        try:
            rundir.write_log(trainer.out, trainer.records)
        except OSError as exc:
            raise CheckpointError(
                f"could not write {trainer.out / rundir.LOG_FILE} at iteration {trainer.iteration}: "
                f"{exc.strerror or exc}; {_kept(trainer)}"
            ) from None


class Checkpointing(Callback):
    """Writes ``RUN/checkpoints/iter-<k>/`` (weights, optimiser/RNG state, every callback's
    ``checkpoint_files``) and moves the pointer, on the main process."""

    def on_checkpoint(self, trainer: Trainer) -> None:
        if not trainer.dist.is_main:
            # Rank 0 writes; the others remember where it goes, for their messages.
            trainer.last_checkpoint = rundir.checkpoint_dir_for(trainer.out, trainer.iteration)
            return
        extra: dict[str, dict[str, torch.Tensor]] = {}
        for callback in trainer.callbacks:
            extra.update(callback.checkpoint_files(trainer))
        try:
            trainer.last_checkpoint = rundir.write_checkpoint(
                trainer.out,
                iteration=trainer.iteration,
                model_name=trainer.model_name,
                weights=trainer.model.state_dict(),
                state=trainer.state(),
                extra_weights=extra,
            )
        except OSError as exc:
            # Disk full, quota, permissions: the pointer still names the previous, complete checkpoint
            # (every file is written atomically and the pointer moves last).
            raise CheckpointError(
                f"could not write the checkpoint of iteration {trainer.iteration} to "
                f"{rundir.checkpoint_dir_for(trainer.out, trainer.iteration)}: {exc.strerror or exc}; "
                f"{_kept(trainer)}"
            ) from None


class ProgressBar(Callback):
    """A tqdm bar on stderr (main process), with images/s and the first loss terms at each log."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        self.bar = tqdm(total=trainer.config.train.iterations, initial=trainer.iteration,
                        desc=f"train {trainer.model_name}", unit="it", file=sys.stderr,
                        disable=not trainer.dist.is_main, dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer) -> None:
        self.bar.update(1)

    def on_log(self, trainer: Trainer, record: dict) -> None:
        self.bar.set_postfix(
            {"img/s": f"{record['images_per_s']:.0f}",
             **{k: f"{record[k]:.4g}" for k in trainer.term_names[:6]}},
            refresh=False,
        )

    def teardown(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SignalStop(Callback):
    """SIGINT/SIGTERM become a stop request honoured after the current step (main thread only): the
    trainer checkpoints and raises ``TrainingInterrupted``. Handlers are restored afterwards."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
            trainer.stop_signal = signum

        self.previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def teardown(self, trainer: Trainer) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


class EMA(Callback):
    """An exponential moving average of the model's weights, ``ema = decay * ema + (1 - decay) * w``
    after every step (buffers such as BatchNorm statistics are copied). Saved as ``ema.safetensors`` in
    each checkpoint; ``load_run`` uses it for a run with ``train.ema > 0`` (diffusion models sample
    with it). The average starts at the initial weights.
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema must be in (0, 1) for an EMA, got {decay}")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        if not self.shadow:
            self.shadow = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    @torch.no_grad()
    def on_step_end(self, trainer: Trainer) -> None:
        state = trainer.model.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.shadow[k] for k in floats], [state[k].detach() for k in floats],
                             1.0 - self.decay)
        for key, value in self.shadow.items():
            if not value.is_floating_point():
                value.copy_(state[key])

    def checkpoint_files(self, trainer: Trainer) -> dict[str, dict[str, torch.Tensor]]:
        return {rundir.EMA_FILE: self.shadow}

    def restore(self, trainer: Trainer, checkpoint_dir: Path) -> None:
        from safetensors.torch import load_file

        path = checkpoint_dir / rundir.EMA_FILE
        if not path.exists():
            raise CheckpointError(
                f"{path} not found: the run keeps an EMA (train.ema) but this checkpoint has none")
        self.shadow = load_file(str(path), device=str(trainer.device))


class TensorBoard(Callback):
    """TensorBoard event files in ``RUN/tensorboard/``: every log record's terms as scalars
    (``loss/<term>``, ``speed/images_per_s``) and, at each checkpoint of a model with an encoder or a
    prior, a latent traversal image. Needs the optional extra ``factorlens[tensorboard]``."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.tensorboard needs the tensorboard package: pip install 'factorlens[tensorboard]'"
            ) from None
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self.writer = None

    def open_writer(self, *, purge_step: int | None):
        """A ``SummaryWriter`` on ``log_dir``; ``purge_step``: drop events from that step on (a resumed
        run rewrites the steps after its checkpoint)."""
        return self._writer_class(log_dir=str(self.log_dir), purge_step=purge_step)

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.dist.is_main:
            self.writer = self.open_writer(purge_step=trainer.iteration + 1 if trainer.iteration else None)

    def on_log(self, trainer: Trainer, record: dict) -> None:
        if self.writer is None:
            return
        write_record_scalars(self.writer, record)
        self.writer.flush()

    def on_checkpoint(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        image = traversal_image(trainer.model, trainer.images[:1], seed=trainer.config.train.seed)
        self.writer.add_image("traversal", image, global_step=trainer.iteration, dataformats="HWC")
        self.writer.flush()

    def teardown(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def write_record_scalars(writer, record: dict) -> None:
    """One ``log.jsonl`` record as TensorBoard scalars at step ``record["iter"]``."""
    step = int(record["iter"])
    for key, value in record.items():
        if key in ("iter", "time_s"):
            continue
        tag = "speed/images_per_s" if key == "images_per_s" else f"loss/{key}"
        writer.add_scalar(tag, float(value), global_step=step, walltime=None)


@torch.no_grad()
def traversal_image(model, base_images: torch.Tensor, *, seed: int, steps: int = 7,
                    max_dims: int = 8) -> Any:
    """A small traversal grid (rows: the first ``max_dims`` latent dimensions, columns: ``steps`` values
    in [-3, 3] around the base code) as ``uint8 [H, W, C]``; the model's train/eval mode is restored."""
    import numpy as np

    was_training = model.training
    model.eval()
    try:
        x = base_images[:1].to(torch.float32).div(255.0)
        if getattr(model, "has_encoder", True):
            base = model.encode(x)[0].float()
        else:
            generator = torch.Generator().manual_seed(seed)
            base = torch.randn(1, model.latent_dim, generator=generator).to(x.device)
        dims = min(model.latent_dim, max_dims)
        values = torch.linspace(-3.0, 3.0, steps, device=x.device)
        codes = base.repeat(dims * steps, 1)
        for d in range(dims):
            codes[d * steps:(d + 1) * steps, d] = values
        images = model.decode(codes).float().clamp(0, 1).cpu()
    finally:
        model.train(was_training)
    c, h, w = images.shape[1:]
    grid = images.reshape(dims, steps, c, h, w).permute(0, 3, 1, 4, 2).reshape(dims * h, steps * w, c)
    return (grid.numpy() * 255).round().astype(np.uint8)


def default_callbacks(config, *, progress: bool, out: Path) -> list[Callback]:
    """What ``factorlens train`` runs: NaN stop, orthogonality (if ``train.orthogonality``), JSONL log,
    EMA (if ``train.ema``), checkpointing,
    TensorBoard (if ``train.tensorboard``), progress bar (if ``progress``), signal stop. Order matters:
    the NaN check runs before anything is written, the EMA before the checkpoint that saves it."""
    callbacks: list[Callback] = [NaNStop()]
    if config.train.orthogonality.method != "none":
        from factorlens.training.orthogonality import Orthogonality

        callbacks.append(Orthogonality(config.train.orthogonality.method))  # adds to records: before the log
    callbacks.append(JsonlLog())
    if config.train.ema > 0:
        callbacks.append(EMA(config.train.ema))
    callbacks.append(Checkpointing())
    if config.train.tensorboard:
        callbacks.append(TensorBoard(out / "tensorboard"))
    if progress:
        callbacks.append(ProgressBar())
    callbacks.append(SignalStop())
    return callbacks
