"""One wrapper around any generator (VAE decoder, GAN generator, test phantom) for direction discovery."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from factorlens.directions.direction_set import projected_std
from factorlens.errors import ConfigError

BASE_SOURCES = ("posterior", "prior")

DecodeFn = Callable[[torch.Tensor], torch.Tensor]


class GeneratorAdapter:
    """A decoder ``z [B, d] -> images [B, C, H, W] in [0, 1]`` plus where its base codes come from.

    Base codes are drawn from the **aggregate posterior** (rows of ``posterior_codes``: encoder means of
    real images), the default whenever they are given, or from the **prior** N(0, I) (the default for a
    generator without encoder). Shifts along directions are measured in sigmas of this base distribution.

    Args:
        decode: differentiable decode function (gradients flow to ``z`` for learned methods).
        latent_dim: d.
        encode: optional ``images [B, C, H, W] -> encoder means [B, d]``.
        posterior_codes: optional ``[N, d]`` encoder means of real images.
        base_source: ``"posterior"`` or ``"prior"``; defaults as above.
        first_layer_weight: optional ``[out, d]`` weight of the first latent -> feature layer (SeFa).
        features: optional ``z [B, d] -> [B, F]`` first-layer activations (GANSpace-style PCA).
        discriminator: optional ``images -> realism logits [B]`` (higher = more real).
        frozen_modules: modules whose parameters are frozen while a method trains through ``decode``.
    """

    #: RCA's default pool of decoded pairs (0 = fresh pairs every step; see ``rca_comparison``)
    default_rca_pairs = 0

    def __init__(
        self,
        decode: DecodeFn,
        latent_dim: int,
        *,
        encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        posterior_codes: np.ndarray | torch.Tensor | None = None,
        base_source: str | None = None,
        first_layer_weight: torch.Tensor | np.ndarray | None = None,
        features: Callable[[torch.Tensor], torch.Tensor] | None = None,
        discriminator: Callable[[torch.Tensor], torch.Tensor] | None = None,
        frozen_modules: Sequence[nn.Module] = (),
    ) -> None:
        self._decode = decode
        self.latent_dim = int(latent_dim)
        self.encode = encode
        self.posterior_codes = (
            None if posterior_codes is None else torch.as_tensor(posterior_codes, dtype=torch.float32).cpu()
        )
        if self.posterior_codes is not None and (
            self.posterior_codes.ndim != 2 or self.posterior_codes.shape[1] != self.latent_dim
        ):
            raise ConfigError(
                f"posterior codes must be [N, {self.latent_dim}], got {tuple(self.posterior_codes.shape)}"
            )
        if base_source is None:
            base_source = "posterior" if self.posterior_codes is not None else "prior"
        if base_source not in BASE_SOURCES:
            raise ConfigError(
                f"unknown base source {base_source!r}; choose one of: {', '.join(BASE_SOURCES)}"
            )
        if base_source == "posterior" and self.posterior_codes is None:
            raise ConfigError(
                "base source 'posterior' needs encoder means (give images to a model with encoder)"
            )
        self.base_source = base_source
        self.first_layer_weight = (
            None if first_layer_weight is None else torch.as_tensor(first_layer_weight).detach().float().cpu()
        )
        self.features = features
        self.discriminator = discriminator
        self.frozen_modules = list(frozen_modules)

    # ------------------------------------------------------------------ construction from a model
    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        images: np.ndarray | torch.Tensor | None = None,
        *,
        base_source: str | None = None,
        batch_size: int = 256,
    ) -> GeneratorAdapter:
        """Wrap a registry model (any :class:`~factorlens.models.base.LatentModel`, the GAN included).

        ``images`` (``uint8`` or float in [0, 1], ``[N, C, 64, 64]``) are encoded to posterior means when the
        model has an encoder; a GAN (``has_encoder = False``) always samples the prior.
        """
        from factorlens.evaluation import encode_images

        if getattr(model, "is_diffusion", False):
            from factorlens.directions.hspace import DiffusionAdapter

            return DiffusionAdapter(model, images, base_source=base_source)
        model.eval()
        has_encoder = bool(getattr(model, "has_encoder", True))
        posterior_codes = None
        encode = None
        if has_encoder:

            def encode(x: torch.Tensor) -> torch.Tensor:
                return model.encode(x)[0]

            if images is not None:
                if len(images) == 0:
                    raise ConfigError("no images to encode for the aggregate posterior")
                posterior_codes = encode_images(model, images, batch_size=batch_size, dtype=np.float32).mean
        try:
            first_weight = model.first_decoder_layer_weight()
        except NotImplementedError:
            first_weight = None
        features = _first_layer_feature_fn(model, first_weight) if first_weight is not None else None
        adversary = getattr(model, "adversary", None)
        discriminator = _logit_fn(adversary) if isinstance(adversary, nn.Module) else None
        frozen = [model] + ([adversary] if isinstance(adversary, nn.Module) else [])
        return cls(
            model.decode,
            int(model.latent_dim),
            encode=encode,
            posterior_codes=posterior_codes,
            base_source=base_source,
            first_layer_weight=first_weight,
            features=features,
            discriminator=discriminator,
            frozen_modules=frozen,
        )

    # ------------------------------------------------------------------ direction space
    @property
    def direction_dim(self) -> int:
        """Dimension of the space directions live in (``latent_dim``; a diffusion adapter's h-space)."""
        return self.latent_dim

    def embed_directions(self, matrix: np.ndarray) -> np.ndarray:
        """``[K, direction_dim]`` rows -> ``[K, latent_dim]`` code shifts (the identity here)."""
        return np.asarray(matrix)

    # ------------------------------------------------------------------ use
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, d]`` -> images ``[B, C, H, W]`` in [0, 1] (keeps the autograd graph)."""
        return self._decode(z)

    @torch.no_grad()
    def decode_batched(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Decode without gradients, in batches (for scoring and figures)."""
        return torch.cat([self._decode(chunk) for chunk in torch.split(z, batch_size)]) if len(z) else z

    def sample_base(self, n: int, generator: torch.Generator, source: str | None = None) -> torch.Tensor:
        """``[n, d]`` base codes: random rows of the posterior codes, or N(0, I) draws."""
        source = source or self.base_source
        if source == "posterior":
            if self.posterior_codes is None:
                raise ConfigError("base source 'posterior' needs encoder means")
            rows = torch.randint(len(self.posterior_codes), (n,), generator=generator)
            return self.posterior_codes[rows]
        return torch.randn(n, self.latent_dim, generator=generator)

    def reference_codes(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        """``[N, d]`` float64 sample of the base distribution used for fitting and for direction scales."""
        if self.base_source == "posterior":
            return self.posterior_codes.double().numpy()
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.latent_dim, generator=gen, dtype=torch.float64).numpy()

    def direction_scales(self, matrix: np.ndarray) -> np.ndarray:
        """``[K]`` std of the base codes along each unit row of ``matrix [K, d]`` (1 under the prior)."""
        if self.base_source == "prior":
            return np.ones(len(matrix), dtype=np.float32)
        return projected_std(self.reference_codes(), matrix)

    def base_covariance(self) -> torch.Tensor:
        """``[d, d]`` float32 covariance of the base distribution (identity under the prior)."""
        if self.base_source == "prior":
            return torch.eye(self.latent_dim)
        codes = self.posterior_codes.double()
        return torch.cov(codes.T).reshape(self.latent_dim, self.latent_dim).float()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Freeze the wrapped modules' parameters (restored afterwards) while a method trains through them."""
        params = [p for module in self.frozen_modules for p in module.parameters()]
        previous = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in zip(params, previous, strict=True):
                p.requires_grad_(flag)


def _first_layer_feature_fn(
    model: nn.Module, weight: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The output of the module that owns the first decoder weight, captured with a forward hook.

    GANSpace takes the output of BigGAN's first (latent -> features) linear layer; the same layer is the
    one :meth:`first_decoder_layer_weight` exposes, so we hook the module whose weight shares its storage.
    """
    owner = None
    for module in model.modules():
        candidate = getattr(module, "weight", None)
        if isinstance(candidate, torch.Tensor) and candidate.data_ptr() == weight.data_ptr():
            owner = module
            break
    if owner is None:
        return None

    def features(z: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = owner.register_forward_hook(lambda _m, _inp, out: captured.append(out.detach()))
        try:
            with torch.no_grad():
                model.decode(z)
        finally:
            handle.remove()
        return captured[0].reshape(len(z), -1)

    return features


def _logit_fn(adversary: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def logits(images: torch.Tensor) -> torch.Tensor:
        out = adversary(images)
        if isinstance(out, tuple):
            out = out[0]
        return out.reshape(len(images), -1).mean(dim=1)

    return logits
