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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a shared 2-core machine two threads of tiny convolutions wait on
    each other (8 s instead of 0.2 s for a 4-step DDIM chain at load 13)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
