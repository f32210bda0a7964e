"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest
import torch

from factorlens.directions import GeneratorAdapter
from factorlens.directions.phantom import PlantedPhantom


@pytest.fixture(scope="module")
def phantom() -> PlantedPhantom:
    """A planted-direction phantom (8-d code, 4 factors, 16 px) whose true directions are known."""
    torch.manual_seed(0)
    return PlantedPhantom(latent_dim=8, num_factors=4, image_size=16, seed=0)


@pytest.fixture(scope="module")
def adapter(phantom: PlantedPhantom) -> GeneratorAdapter:
    """The phantom as a generator, with base codes from its aggregate posterior."""
    return GeneratorAdapter(
        phantom.decode,
        phantom.latent_dim,
        posterior_codes=phantom.posterior_codes(1000, seed=1),
        first_layer_weight=phantom.first_decoder_layer_weight(),
    )
