"""The one encoder pass: images -> posterior means and log-variances, batched, in eval mode, no gradients.

Every consumer of a run's codes goes through :func:`encode_images` (``factorlens encode``, Table 1, the
figures' statistics, the directions' aggregate posterior), so they all see the same numbers: the model's
float32 outputs, copied into float64 (``dtype=np.float64``, the default; exact) or float32 arrays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from factorlens.errors import ConfigError, FactorlensError

ENCODE_BATCH = 256

# Called once per batch inside the pass with (x float32 [B, C, H, W] in [0, 1], mu [B, d], logvar [B, d])
# as torch tensors, under no_grad and in eval mode (Table 1 decodes the means there for PSNR).
BatchHook = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], None]  # noqa: F821


@dataclass
class Posterior:
    """Diagonal Gaussian posteriors q(z|x_n) = N(mean_n, exp(logvar_n)) of N images.

    Attributes:
        mean: ``float [N, d]`` encoder means (the codes every metric uses).
        logvar: ``float [N, d]`` encoder log-variances.
    """

    mean: np.ndarray
    logvar: np.ndarray

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.mean.shape[1])

    def astype(self, dtype) -> Posterior:
        return Posterior(self.mean.astype(dtype), self.logvar.astype(dtype))


def require_encoder(model, what: str) -> None:
    """A one-line ``FactorlensError`` when ``model`` has no encoder (a GAN)."""
    if not getattr(model, "has_encoder", True):
        raise FactorlensError(f"{what} needs an encoder; model {type(model).__name__} has none (a GAN)")


@contextlib.contextmanager
def evaluating(model) -> Iterator[None]:
    """Run the block with ``model`` in eval mode, then restore its mode.

    Codes and figures must not depend on (or change) BatchNorm batch statistics: a model handed over
    straight from training is still in train mode, where a forward pass would use the batch's own
    statistics and overwrite the running averages.
    """
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def as_float_images(images) -> torch.Tensor:  # noqa: F821 - torch imported lazily
    """``uint8`` (0..255) or float (0..1) images ``[N, C, H, W]`` (numpy or torch) -> ``float32`` tensor
    in [0, 1]."""
    import torch

    tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).div_(255.0)
    return tensor.to(torch.float32)


def encode_images(
    model,
    images,
    *,
    batch_size: int = ENCODE_BATCH,
    dtype=np.float64,
    each_batch: BatchHook | None = None,
) -> Posterior:
    """Posterior of ``images [N, C, H, W]`` (``uint8`` or float in [0, 1], numpy or torch) under ``model``.

    Batches of ``batch_size`` images are converted to float32 one at a time (the whole set never is) and
    encoded under ``torch.no_grad()`` with the model in eval mode; the model's train/eval mode is restored
    afterwards. ``dtype``: of the returned arrays (float64 or float32; both hold the float32 outputs
    exactly). ``each_batch``: see :data:`BatchHook`. No images give ``[0, d]`` arrays.
    """
    import torch

    require_encoder(model, "encoding images")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if np.dtype(dtype) not in (np.float64, np.float32):
        raise ConfigError(f"codes are float64 or float32, not {np.dtype(dtype)}")
    torch_dtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    means, logvars = [], []
    with torch.no_grad(), evaluating(model):
        for start in range(0, len(images), batch_size):
            x = as_float_images(images[start : start + batch_size])
            mu, logvar = model.encode(x)
            means.append(mu.to(torch_dtype).numpy())
            logvars.append(logvar.to(torch_dtype).numpy())
            if each_batch is not None:
                each_batch(x, mu, logvar)
    if not means:
        empty = np.zeros((0, int(model.latent_dim)), dtype=dtype)
        return Posterior(empty, empty.copy())
    return Posterior(np.concatenate(means), np.concatenate(logvars))
