"""The one training loop for every model (VAE family, adversarial β-TCVAE, GAN): :class:`Trainer`, and
:func:`train`, which prepares a run directory and runs a Trainer with the default callbacks.

Design (see ``docs/training.md``):
- the Trainer holds what bitwise resume needs and the schedule; logging, checkpoint files, NaN stop,
  progress, signals, EMA and TensorBoard are callbacks (``callbacks.py``);
- the whole training split is one ``uint8`` tensor on the device; each epoch is a seeded permutation,
  batches are converted to float per step and the last incomplete batch is dropped (no DataLoader: the
  data is 64x64 and fits in memory, and worker processes would fight for the CPU);
- the adversarial update is a hook of this loop: when ``model.adversary`` is set, a second Adam
  optimizer (adversary parameters only) steps ``model.adversary_loss(x, x_hat.detach())`` after each
  generator step, and the generator optimizer holds every other parameter;
- loss terms are accumulated as device tensors and read back only at log intervals, so a GPU never waits
  for the host between logs; non-finite values are tracked on the device too (first bad iteration per
  term) and reported at the next sync;
- on CPU the run is deterministic: a run interrupted at iteration k and resumed ends with bitwise the
  same weights as an uninterrupted one (checkpoints hold optimizer, RNG and batch-order state).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from factorlens.config import (
    RESUMABLE_CHANGES,
    DataConfig,
    RunConfig,
    TrainConfig,
    config_differences,
    dump_config,
    parse_run_config,
    resolve_model_section,
)
from factorlens.errors import CheckpointError, ConfigError, TrainingError
from factorlens.io import atomic_write_json, atomic_write_text
from factorlens.models.base import LatentModel
from factorlens.training import distributed, rundir
from factorlens.training._malloc import tune_glibc_malloc
from factorlens.training.callbacks import Callback, default_callbacks

RUN_FILES = (rundir.CONFIG_FILE, rundir.SPLIT_FILE, rundir.LOG_FILE, rundir.POINTER_FILE, rundir.SUMMARY_FILE)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM during training: the current step finished and a checkpoint was written.

    A ``KeyboardInterrupt`` so that it propagates like Ctrl-C; the CLI maps it to exit code 130.
    """


def progress_enabled() -> bool:
    """The project-wide progress-bar rule (docs/architecture.md)."""
    if os.environ.get("FACTORLENS_NO_PROGRESS") == "1":
        return False
    return not (os.environ.get("CI") and not sys.stderr.isatty())


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but torch sees no CUDA device; use auto or cpu")
    return torch.device(requested)


def adversary_of(model: nn.Module) -> nn.Module | None:
    """The model's ``adversary`` submodule (``LatentModel`` sets it to None when there is none)."""
    return getattr(model, "adversary", None)


def _use_channels_last(model: nn.Module) -> bool:
    """channels_last for conv models (oneDNN's fast layout), unless the model opts out with a class
    attribute ``channels_last = False``: the diffusion U-Net's GroupNorm/attention blocks ran 1.5x slower
    in bf16 in that layout (docs/performance.md)."""
    has_conv = any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
    return has_conv and getattr(model, "channels_last", True)


# --- run-directory preparation ---------------------------------------------------------------------------


def _prepare_out_dir(out: Path, *, resume: bool, force: bool) -> dict | None:
    """Check what ``out`` holds; returns the stored config when resuming an existing run."""
    if force and resume:
        raise ConfigError("--resume and --force exclude each other (force starts the run over)")
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    holds_run = (out / rundir.CONFIG_FILE).exists()
    # A run that failed before its first checkpoint holds nothing worth keeping: start it over.
    abandoned = holds_run and not (out / rundir.POINTER_FILE).exists() and not resume
    if force or abandoned:
        # Remove only what a run writes: --out may be a folder that also holds the user's own files.
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        if (out / rundir.CHECKPOINTS_DIR).exists():
            import shutil

            shutil.rmtree(out / rundir.CHECKPOINTS_DIR)
        return None
    if holds_run:
        if not resume:
            raise ConfigError(
                f"--out {out} already holds a run; pass --resume to continue it or --force to overwrite it"
            )
        from factorlens.config import load_config

        return load_config(out / rundir.CONFIG_FILE)
    if any(out.iterdir()):
        raise ConfigError(
            f"--out {out} is not empty and holds no factorlens run; use another folder or --force"
        )
    return None


def _check_batch_split(batch_size: int, world_size: int) -> None:
    """The global batch is split evenly over the torchrun processes; the β-TCVAE estimator needs >= 2
    images per process."""
    if batch_size % world_size or batch_size // world_size < 2:
        raise ConfigError(
            f"train.batch_size {batch_size} must be a multiple of the {world_size} processes "
            f"with at least 2 images per process"
        )


def _split_for(dataset, data_cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    from factorlens.data import split_indices

    train_idx, test_idx = split_indices(dataset, test_fraction=data_cfg.test_fraction,
                                        seed=data_cfg.split_seed)
    return np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)


# --- the loop ----------------------------------------------------------------------------------------------


def build_optimizer(params: list[nn.Parameter], train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """The model's optimiser from ``train.optimizer`` (``adam`` default, ``adamw``, ``sgd``)."""
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train_cfg.lr, momentum=train_cfg.momentum,
                               weight_decay=train_cfg.weight_decay)
    optimizer_class = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(params, lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                           weight_decay=train_cfg.weight_decay)


class Trainer:
    """One training session (fresh or resumed) of a model on a training split.

    The trainer owns what bitwise resume needs (weights, optimisers, RNG and batch-order state, the
    accumulated loss terms) and the schedule (log and checkpoint intervals, stop requests); everything
    else it does is a :class:`~factorlens.training.callbacks.Callback` (log file, checkpoint files, NaN
    stop, progress bar, signals, EMA, TensorBoard).

    Args:
        model: the model to train (moved to ``device``; channels_last when it has convolutions and
            does not opt out, see ``_use_channels_last``).
        config: the run's typed config (``train`` options; ``model.name`` for messages).
        out: the run directory the callbacks write to (and that messages name).
        train_images: ``uint8 [N, C, S, S]``, the training split (kept on the device).
        device: where to train.
        callbacks: called in order (see ``factorlens.training.callbacks``); none by default.
        dist_ctx: the torchrun context (single process by default).
    """

    def __init__(self, *, model: LatentModel, config: RunConfig, out: Path, train_images: np.ndarray,
                 device: torch.device, callbacks: Sequence[Callback] = (),
                 dist_ctx: distributed.DistContext | None = None) -> None:
        train_cfg = config.train
        self.config = config
        self.out = Path(out)
        self.device = device
        self.model_name = config.model.name
        self.callbacks = list(callbacks)
        self.stop_signal: int | None = None
        self.stop_agreed = False
        self.dist = dist_ctx if dist_ctx is not None else distributed.DistContext()
        # train.batch_size is the global batch; each rank computes its slice of it.
        self.batch_size = train_cfg.batch_size
        _check_batch_split(self.batch_size, self.dist.world_size)
        self.local_batch = self.batch_size // self.dist.world_size
        self.dataset_size = int(train_images.shape[0])
        if self.dataset_size < self.batch_size:
            raise ConfigError(
                f"train.batch_size {self.batch_size} exceeds the {self.dataset_size} training images of "
                f"{config.data.spec!r}"
            )
        self.model = model.to(device)
        self.channels_last = _use_channels_last(model)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.images = torch.from_numpy(np.ascontiguousarray(train_images)).to(device)

        adversary = adversary_of(model)
        adversary_ids = {id(p) for p in adversary.parameters()} if adversary is not None else set()
        self.generator_params = [
            p for p in model.parameters() if id(p) not in adversary_ids and p.requires_grad
        ]
        self.adversary_params = (
            [p for p in adversary.parameters() if p.requires_grad] if adversary is not None else []
        )
        distributed.broadcast_parameters(self.model, self.dist)
        # train.orthogonality: the latent-reading layer; with OLR it steps with its own SGD (the setting
        # eta* is derived for) and leaves the model's optimiser.
        self.latent_layer: nn.Module | None = None
        self.layer_optimizer: torch.optim.Optimizer | None = None
        model_params = self.generator_params
        if train_cfg.orthogonality.method != "none":
            from factorlens.training.orthogonality import latent_layer_of

            self.latent_layer = latent_layer_of(self.model)
            if "olr" in train_cfg.orthogonality.method:
                layer_weight = self.latent_layer.weight
                model_params = [p for p in self.generator_params if p is not layer_weight]
                self.layer_optimizer = torch.optim.SGD([layer_weight], lr=train_cfg.lr)
        self.optimizer = build_optimizer(model_params, train_cfg)
        # The adversary keeps Adam (the paper's and DCGAN's setting), with its own lr and betas.
        self.adv_optimizer = (
            torch.optim.Adam(self.adversary_params, lr=train_cfg.adv_lr, betas=tuple(train_cfg.adv_betas))
            if adversary is not None
            else None
        )
        self.compute_loss = torch.compile(model.compute_loss) if train_cfg.compile else model.compute_loss
        from factorlens.environment import resolve_precision

        # train.precision "auto" becomes fp32 or bf16 here (summary.json records which, and why).
        self.precision, self.precision_reason = resolve_precision(train_cfg.precision, device.type)
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
            if self.precision == "bf16"
            else nullcontext
        )
        # Batch order: its own generator so that model-side sampling noise cannot shift it.
        self.order_generator = torch.Generator().manual_seed(train_cfg.seed)
        self.permutation: torch.Tensor | None = None
        self.position = 0
        self.iteration = 0
        self.elapsed_s = 0.0
        self.term_names: list[str] | None = None
        self.term_sums: torch.Tensor | None = None
        self.first_bad: torch.Tensor | None = None
        self.steps_since_log = 0
        self.records: list[dict] = []
        self.last_checkpoint: Path | None = None
        self._reseed_rank_noise()

    def _reseed_rank_noise(self) -> None:
        """Under torchrun, give each rank its own sampling-noise stream (the weights were initialised
        from the common seed before this). Called again after a resume, whose RNG state is rank 0's."""
        if self.dist.enabled:
            torch.manual_seed(self.config.train.seed * 1_000_003 + self.dist.rank * 7_919 + self.iteration)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    # -- checkpoint state --
    def state(self) -> dict[str, Any]:
        """What ``state.pt`` holds: optimisers, RNG and batch-order state, accumulated loss terms."""
        return {
            "iteration": self.iteration,
            "elapsed_s": self.elapsed_s,
            "optimizer": self.optimizer.state_dict(),
            "adv_optimizer": self.adv_optimizer.state_dict() if self.adv_optimizer is not None else None,
            "layer_optimizer": (
                self.layer_optimizer.state_dict() if self.layer_optimizer is not None else None
            ),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "order_rng": self.order_generator.get_state(),
            "permutation": self.permutation.cpu() if self.permutation is not None else None,
            "position": self.position,
            "term_names": self.term_names,
            "term_sums": self.term_sums.cpu() if self.term_sums is not None else None,
            "first_bad": self.first_bad.cpu() if self.first_bad is not None else None,
            "steps_since_log": self.steps_since_log,
        }

    def restore(self, checkpoint_dir: Path) -> None:
        """Continue from a checkpoint written by this trainer (weights, state, callbacks' files)."""
        rundir.read_meta(checkpoint_dir, expected_model=self.model_name)
        rundir.load_weights(self.model, checkpoint_dir)
        state = rundir.load_state(checkpoint_dir)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.adv_optimizer is not None:
                self.adv_optimizer.load_state_dict(state["adv_optimizer"])
            if self.layer_optimizer is not None:
                self.layer_optimizer.load_state_dict(state["layer_optimizer"])
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and state["cuda_rng"]:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            self.order_generator.set_state(state["order_rng"])
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"{checkpoint_dir / rundir.STATE_FILE} does not match this model/optimizer: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        self.iteration = int(state["iteration"])
        self.elapsed_s = float(state["elapsed_s"])
        perm = state["permutation"]
        self.permutation = perm.to(self.device) if perm is not None else None
        self.position = int(state["position"])
        self.term_names = state["term_names"]
        self.term_sums = state["term_sums"].to(self.device) if state["term_sums"] is not None else None
        self.first_bad = state["first_bad"].to(self.device) if state["first_bad"] is not None else None
        self.steps_since_log = int(state["steps_since_log"])
        self.records = [r for r in rundir.read_log(self.out) if r.get("iter", 0) <= self.iteration]
        self.last_checkpoint = checkpoint_dir
        for callback in self.callbacks:
            callback.restore(self, checkpoint_dir)
        self._reseed_rank_noise()

    # -- one step --
    def next_batch(self) -> torch.Tensor:
        """The next ``float32 [B, C, S, S]`` batch in [0, 1] (this rank's slice under torchrun)."""
        if self.permutation is None or self.position + self.batch_size > self.dataset_size:
            order = torch.randperm(self.dataset_size, generator=self.order_generator)
            if self.device.type == "cuda":
                # A copy from pageable memory makes the host wait for the GPU; from pinned memory it
                # is queued like any kernel (the host allocator keeps the buffer until it is done).
                order = order.pin_memory()
            self.permutation = order.to(self.device, non_blocking=True)
            self.position = 0
        index = self.permutation[self.position : self.position + self.batch_size]
        if self.dist.enabled:
            start = self.dist.rank * self.local_batch
            index = index[start : start + self.local_batch]
        self.position += self.batch_size
        x = self.images[index].to(torch.float32).div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def step(self) -> None:
        """One generator step (and one adversary step when the model has an adversary)."""
        x = self.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        if self.layer_optimizer is not None:
            self.layer_optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.compute_loss(x, dataset_size=self.dataset_size)
        out.loss.backward()
        if self.dist.enabled:
            distributed.all_reduce_mean_grads(self.generator_params, self.dist)
            # Every rank stops after the same step, also when only one of them got the signal.
            self.stop_agreed = distributed.any_rank(self.stop_signal is not None, self.dist)
        self._emit("on_before_optimizer_step")
        self.optimizer.step()
        if self.layer_optimizer is not None:
            self.layer_optimizer.step()
        terms = {"loss": out.loss.detach(), **out.terms}
        if self.adv_optimizer is not None:
            if out.x_hat is None:
                raise TrainingError(f"model {self.model_name!r} has an adversary but returned no x_hat")
            self.adv_optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                adv_out = self.model.adversary_loss(x, out.x_hat.detach())
            adv_out.loss.backward()
            distributed.all_reduce_mean_grads(self.adversary_params, self.dist)
            self.adv_optimizer.step()
            adv_terms = {"adv_loss": adv_out.loss.detach(), **adv_out.terms}
            for name, value in adv_terms.items():
                terms[name if name not in terms else f"adv_{name}"] = value
        distributed.broadcast_buffers(self.model, self.dist)
        self.iteration += 1
        self._accumulate(terms)

    def _accumulate(self, terms: dict[str, torch.Tensor]) -> None:
        if self.term_names is None:
            self.term_names = list(terms)
        elif list(terms) != self.term_names:
            raise TrainingError(
                f"model {self.model_name!r} changed its loss terms at iteration {self.iteration}: "
                f"{list(terms)} vs {self.term_names}"
            )
        values = torch.stack([t.detach().reshape(()).to(torch.float32) for t in terms.values()])
        if self.term_sums is None:
            self.term_sums = torch.zeros_like(values)
            self.first_bad = torch.full_like(values, -1, dtype=torch.int64)
        self.term_sums += values
        # Remember the first iteration at which each term went non-finite, without a host sync.
        newly_bad = ~torch.isfinite(values) & (self.first_bad < 0)
        now_bad = torch.full_like(self.first_bad, self.iteration)
        self.first_bad = torch.where(newly_bad, now_bad, self.first_bad)
        self.steps_since_log += 1

    # -- syncs: log records --
    def reduce_terms(self) -> None:
        """Under torchrun: average the accumulated terms over ranks and take the earliest non-finite
        iteration. Idempotent between logs (re-averaging values that are already equal changes nothing)."""
        if not self.dist.enabled or self.term_sums is None:
            return
        distributed.all_reduce_(self.term_sums, self.dist, "sum").div_(self.dist.world_size)
        never = torch.iinfo(torch.int64).max
        first = torch.where(self.first_bad < 0, torch.full_like(self.first_bad, never), self.first_bad)
        distributed.all_reduce_(first, self.dist, "min")
        self.first_bad = torch.where(first == never, torch.full_like(first, -1), first)

    def log_record(self, interval_s: float) -> dict:
        """The mean of each loss term since the last record (``records`` grows by it); resets the sums."""
        means = (self.term_sums / max(self.steps_since_log, 1)).tolist()
        record = {
            "iter": self.iteration,
            "time_s": round(self.elapsed_s, 3),
            "images_per_s": round(self.steps_since_log * self.batch_size / max(interval_s, 1e-9), 2),
            **{name: float(v) for name, v in zip(self.term_names, means, strict=True)},
        }
        self.records.append(record)
        self.term_sums.zero_()
        self.steps_since_log = 0
        return record

    def run(self) -> None:
        """Train until ``train.iterations``; logs and checkpoints on schedule, stops on a signal."""
        total = self.config.train.iterations
        log_every = self.config.train.log_every
        checkpoint_every = self.config.train.checkpoint_every
        self.model.train()
        interval_start = time.perf_counter()
        session_start_elapsed = self.elapsed_s
        session_start = interval_start
        try:
            self._emit("on_train_start")
            while self.iteration < total:
                self.step()
                self.elapsed_s = session_start_elapsed + (time.perf_counter() - session_start)
                self._emit("on_step_end")
                log_due = self.iteration % log_every == 0 or self.iteration == total
                checkpoint_due = self.iteration % checkpoint_every == 0 or self.iteration == total
                stopping = self.stop_agreed if self.dist.enabled else self.stop_signal is not None
                if log_due or checkpoint_due or stopping:
                    self.reduce_terms()
                    self._emit("on_sync")
                if log_due:
                    now = time.perf_counter()
                    record = self.log_record(now - interval_start)
                    interval_start = now
                    self._emit("on_log", record)
                if checkpoint_due or stopping:
                    self._emit("on_checkpoint")
                if stopping:
                    name = signal.Signals(self.stop_signal or signal.SIGTERM).name
                    raise TrainingInterrupted(
                        f"{name} at iteration {self.iteration}: checkpoint written to "
                        f"{self.last_checkpoint}; continue with --resume"
                    )
            self._emit("on_train_end")
        finally:
            self._emit("teardown")


def train(config: dict | RunConfig, out: str | Path, *, resume: bool = False, force: bool = False,
          progress: bool | None = None, callbacks: Sequence[Callback] | None = None) -> Path:
    """Train the model described by ``config`` into the run directory ``out``; returns ``out``.

    Args:
        config: a :class:`~factorlens.config.RunConfig`, or the YAML mapping ``{"model": {"name", ...},
            "train": {...}, "data": {...}}`` (validated here; missing train/data options take their
            defaults, see ``factorlens.config``).
        out: run directory. If it already holds a run, ``resume=True`` continues it from its latest
            checkpoint (only iterations, log/checkpoint intervals, device, threads and compile may
            change) and ``force=True`` deletes it and starts over; otherwise a ``ConfigError``.
        progress: show the tqdm bar on stderr (default: the project rule, see ``progress_enabled``).
        callbacks: the trainer's callbacks; default :func:`~factorlens.training.callbacks.default_callbacks`.
            Pass ``default_callbacks(...) + [mine]`` to add one.

    Process-wide state is left as it was found: the global torch RNG (the run seeds its own), the
    intra-op thread count (``train.num_threads``) and cuDNN's benchmark flag. The glibc allocator tuning
    (``train.malloc_tuning``) cannot be undone; the command line applies it (:func:`apply_process_settings`).

    Raises:
        ConfigError, CheckpointError, DataError: bad config / run directory / data, before training.
        TrainingError: a non-finite loss; the last good checkpoint is kept.
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint of the finished step was written.
    """
    typed = parse_run_config(config, "config")
    out = Path(out)
    device = resolve_device(typed.train.device)
    # Under torchrun this joins the process group; otherwise a single-process context.
    ctx = distributed.context_from_env(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    # Every batch has the same shapes, so cuDNN's one-off search for the fastest kernels pays.
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark or device.type == "cuda"
    threads = torch.get_num_threads()
    if typed.train.num_threads > 0:
        torch.set_num_threads(typed.train.num_threads)
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    ended_together = True  # finished, or stopped by a signal all ranks agreed on
    try:
        with torch.random.fork_rng(devices=rng_devices):
            return _train(typed, out, resume=resume, force=force, progress=progress, device=device, ctx=ctx,
                          callbacks=callbacks)
    except TrainingInterrupted:
        raise
    except BaseException:
        ended_together = False
        raise
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        distributed.shutdown(ctx, wait=ended_together)


def apply_process_settings(config: RunConfig) -> None:
    """Process-wide settings a training command makes once, at its start: the glibc allocator tuning
    (``train.malloc_tuning``; see ``_malloc.py``). Called by the CLI, not by :func:`train`."""
    if config.train.malloc_tuning:
        tune_glibc_malloc()


def _train(config: RunConfig, out: Path, *, resume: bool, force: bool, progress: bool | None,
           device: torch.device, ctx: distributed.DistContext, callbacks: Sequence[Callback] | None) -> Path:
    train_cfg = config.train
    _check_batch_split(train_cfg.batch_size, ctx.world_size)
    stored_config = distributed.run_on_main(
        lambda: _prepare_out_dir(out, resume=resume, force=force), ctx
    )

    from factorlens.data import load_dataset

    show_progress = (progress_enabled() if progress is None else progress) and ctx.is_main

    def load():
        return load_dataset(config.data.spec, skip_bad=config.data.skip_bad, progress=show_progress)

    # Rank 0 decodes first (and fills the cache), then the other ranks read the cache.
    loaded: list = []
    distributed.run_on_main(lambda: loaded.append(load()), ctx)
    dataset = loaded[0] if loaded else load()
    if stored_config is not None:
        split = _read_split(out, expected_n=len(dataset))
        train_idx = np.asarray(split["train"], dtype=np.int64)
        test_idx = np.asarray(split["test"], dtype=np.int64)
    else:
        train_idx, test_idx = _split_for(dataset, config.data)

    torch.manual_seed(train_cfg.seed)
    model, model_section = rundir.build_run_model(config.model, channels=dataset.channels,
                                                  image_size=dataset.image_size)
    record = {**config.to_dict(), "model": model_section}
    if stored_config is None:
        model.on_fresh_run()  # e.g. diffae's model.init_unet (a resumed run has it in its checkpoint)

    if stored_config is not None:
        stored = {**stored_config, "model": resolve_model_section(stored_config["model"])}
        changed = [k for k in config_differences(stored, record) if k not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(
                f"--resume: {', '.join(changed)} differ from {out / rundir.CONFIG_FILE}; "
                f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change (or use --force)"
            )

    if callbacks is None:
        callbacks = default_callbacks(config, progress=show_progress, out=out)
    trainer = Trainer(model=model, config=config, out=out, train_images=dataset.images[train_idx],
                      device=device, callbacks=callbacks, dist_ctx=ctx)
    if stored_config is not None and (out / rundir.POINTER_FILE).exists():
        checkpoint_dir = rundir.latest_checkpoint(out)
        trainer.restore(checkpoint_dir)
        if trainer.iteration > train_cfg.iterations:
            raise ConfigError(
                f"--resume: {out} is already at iteration {trainer.iteration}, beyond train.iterations "
                f"{train_cfg.iterations}"
            )
        if trainer.iteration == train_cfg.iterations and (out / rundir.SUMMARY_FILE).exists():
            return out  # already complete: nothing to do

    if ctx.is_main and train_cfg.precision == "auto":
        reason = trainer.precision_reason.removeprefix("auto: ")
        print(f"train.precision auto -> {trainer.precision} ({reason})", file=sys.stderr)
    if ctx.is_main:
        _write_run_files(out, record, dataset, train_idx, test_idx, fresh=stored_config is None)
    distributed.barrier(ctx)

    trainer.run()
    if ctx.is_main:
        _write_summary(trainer)
    return out


def _write_run_files(out: Path, config: dict, dataset, train_idx: np.ndarray, test_idx: np.ndarray, *,
                     fresh: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / rundir.CONFIG_FILE, dump_config(config))
    if fresh:
        atomic_write_json(out / rundir.SPLIT_FILE, {
            "train": train_idx.tolist(),
            "test": test_idx.tolist(),
            "n": len(dataset),
            "spec": config["data"]["spec"],
            "channels": dataset.channels,
            "image_size": dataset.image_size,
        })
    # summary.json marks a complete run: it goes while the run is being (re)trained.
    (out / rundir.SUMMARY_FILE).unlink(missing_ok=True)


def _read_split(out: Path, *, expected_n: int) -> dict:
    split = rundir._read_json(out / rundir.SPLIT_FILE, "run directory")
    if not isinstance(split, dict) or split.get("n") != expected_n:
        raise CheckpointError(
            f"{out / rundir.SPLIT_FILE} was made for {split.get('n') if isinstance(split, dict) else '?'} "
            f"images, the dataset now has {expected_n}"
        )
    return split


def _write_summary(trainer: Trainer) -> None:
    from factorlens.environment import machine_record

    last = trainer.records[-1] if trainer.records else {}
    images = trainer.iteration * trainer.batch_size
    atomic_write_json(trainer.out / rundir.SUMMARY_FILE, {
        "model": trainer.model_name,
        "iterations": trainer.iteration,
        "batch_size": trainer.batch_size,
        "dataset_size": trainer.dataset_size,
        "wall_time_s": round(trainer.elapsed_s, 3),
        "images_per_s": round(images / trainer.elapsed_s, 2) if trainer.elapsed_s > 0 else None,
        "device": str(trainer.device),
        "precision": trainer.precision,
        "precision_reason": trainer.precision_reason,
        "num_threads": torch.get_num_threads(),
        "processes": trainer.dist.world_size,
        "torch_version": torch.__version__,
        "final_terms": {k: v for k, v in last.items() if k not in ("iter", "time_s", "images_per_s")},
        "environment": machine_record(trainer.precision),  # CPU/GPU, torch, oneDNN, numpy
    })
