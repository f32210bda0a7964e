"""factorlens: interpretable latent representations of medical images."""

__version__ = "0.1.0"
