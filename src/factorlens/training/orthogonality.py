"""Orthogonality of the latent-reading layer during training (Song, Sebe & Wang, "Orthogonal SVD
Covariance Conditioning and Latent Disentanglement"): NOG and OLR, as a Trainer callback.

- **NOG** (nearest orthogonal gradient): after backward, the layer's gradient ``G`` (one row per latent
  unit) is replaced by its nearest orthogonal matrix ``U V^T`` from the thin SVD ``G = U S V^T``; a
  gradient with NaN/Inf is left alone (their EigenGAN code skips it the same way).
- **OLR** (optimal learning rate): with ``w``, ``g`` the flattened weight and gradient,
  ``eta* = (w.w * g.w) / (w.w * g.g + 2 (g.w)^2)``; the layer steps with ``eta*`` when
  ``0 < eta* < base`` and with the base rate otherwise. ``eta*`` is derived for a plain gradient step, so
  the layer gets its own SGD optimiser (``Trainer.layer_optimizer``) at ``train.lr`` and every other
  parameter keeps ``train.optimizer``. (The public GAN code feeds ``eta*`` to Adam, and selects the layer by a
  name that matches no parameter, so its parameter group is empty and OLR never acts.)

``nog+olr`` applies NOG, then computes ``eta*`` from the orthogonalised gradient. The log gains
``olr_active`` (fraction of the interval's steps in which ``eta*`` was used), ``layer_max_cos`` (largest
``|cos|`` between two latent rows of the weight) and ``layer_condition`` (condition number of the
``[d, rest]`` weight matrix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from factorlens.errors import ConfigError
from factorlens.training.callbacks import Callback

if TYPE_CHECKING:
    from factorlens.training.trainer import Trainer


def latent_rows(weight: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``[d, rest]`` view of a latent-reading layer's weight (or gradient), one row per latent unit.

    ``ConvTranspose2d`` (1x1 input): weight ``[d, C_out, k, k]``; ``Linear``: ``[out, d]``, so its rows are
    the columns (a transposed view)."""
    if isinstance(layer, nn.ConvTranspose2d):
        return weight.reshape(weight.shape[0], -1)
    if isinstance(layer, nn.Linear):
        return weight.t()
    raise ConfigError(f"orthogonality: unsupported latent layer {type(layer).__name__}")


def write_latent_rows(tensor: torch.Tensor, layer: nn.Module, rows: torch.Tensor) -> None:
    """Write ``rows [d, rest]`` back into ``tensor`` (the layer's weight or gradient) in place; works
    whatever the tensor's memory format (channels_last weights are not viewable as rows)."""
    if isinstance(layer, nn.Linear):
        tensor.copy_(rows.t())
    else:
        tensor.copy_(rows.reshape(tensor.shape))


def nearest_orthogonal(matrix: torch.Tensor) -> torch.Tensor:
    """``U V^T`` of the thin SVD of ``matrix [r, m]`` (computed in float64), same shape and dtype; a
    matrix with NaN/Inf is returned unchanged."""
    if not bool(torch.isfinite(matrix).all()):
        return matrix
    u, _, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return (u @ vh).to(matrix.dtype)


def optimal_learning_rate(weight: torch.Tensor, grad: torch.Tensor, base_lr: float) -> tuple[float, bool]:
    """``(lr, active)``: Song et al.'s ``eta*`` when ``0 < eta* < base_lr``, else ``(base_lr, False)``."""
    if base_lr <= 0:
        raise ConfigError(f"OLR needs a base learning rate > 0, got {base_lr}")
    w, g = weight.detach().double().flatten(), grad.detach().double().flatten()
    ww, gw, gg = w @ w, g @ w, g @ g
    denominator = ww * gg + 2 * gw * gw
    if not bool(torch.isfinite(denominator)) or float(denominator) <= 0:
        return base_lr, False
    eta = float(ww * gw / denominator)
    if 0.0 < eta < base_lr:
        return eta, True
    return base_lr, False


def layer_orthogonality(rows: torch.Tensor) -> tuple[float, float]:
    """``(max |cos|, condition number)`` of the latent rows ``[d, rest]``."""
    rows = rows.detach().double()
    unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.t()
    cos.fill_diagonal_(0.0)
    singular = torch.linalg.svdvals(rows)
    condition = float(singular.max() / singular.min().clamp_min(1e-300))
    return float(cos.abs().max()), condition


def latent_layer_of(model: nn.Module) -> nn.Module:
    """The model's latent-reading layer (``first_decoder_layer()``), or a one-line ConfigError."""
    getter = getattr(model, "first_decoder_layer", None)
    layer = None
    if getter is not None:
        try:
            layer = getter()
        except NotImplementedError:
            layer = None
    if not isinstance(layer, (nn.ConvTranspose2d, nn.Linear)):
        raise ConfigError(
            f"train.orthogonality needs a latent-reading first layer, and model {type(model).__name__} "
            "has none (use a VAE-family model or the GAN)"
        )
    return layer


class Orthogonality(Callback):
    """NOG and/or OLR on the trainer's ``latent_layer`` (see the module docstring)."""

    def __init__(self, method: str) -> None:
        if method not in ("nog", "olr", "nog+olr"):
            raise ConfigError(f"train.orthogonality.method must be nog, olr or nog+olr, got {method!r}")
        self.nog = "nog" in method
        self.olr = "olr" in method
        self.active_steps = 0
        self.steps = 0

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        layer = trainer.latent_layer
        grad = layer.weight.grad
        if grad is None:
            return
        if self.nog:
            write_latent_rows(grad, layer, nearest_orthogonal(latent_rows(grad, layer)))
        if self.olr:
            base = trainer.config.train.lr
            lr, active = optimal_learning_rate(layer.weight, grad, base)
            for group in trainer.layer_optimizer.param_groups:
                group["lr"] = lr
            self.active_steps += int(active)
            self.steps += 1

    def on_log(self, trainer: Trainer, record: dict) -> None:
        layer = trainer.latent_layer
        max_cos, condition = layer_orthogonality(latent_rows(layer.weight, layer))
        if self.olr:
            record["olr_active"] = self.active_steps / max(self.steps, 1)
            self.active_steps = self.steps = 0
        record["layer_max_cos"] = max_cos
        record["layer_condition"] = condition
