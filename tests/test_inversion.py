"""Decoder inversion (codes of real images for a generator without encoder)."""

from __future__ import annotations

import numpy as np
import torch
from test_explain import GAN_RUN

from factorlens.directions.inversion import invert


def test_inversion_of_a_linear_decoder_matches_the_ridge_solution():
    # decode(z) = W z + b: the objective mean_p (Wz + b - x)^2 + lam * mean_d z^2 is a ridge regression whose
    # minimiser is (W'W / P + lam / d I)^-1 W'(x - b) / P -- an independent, closed-form answer.
    gen = torch.Generator().manual_seed(0)
    d, pixels, lam = 3, 2 * 4 * 4, 0.05
    weight = torch.randn(pixels, d, generator=gen, dtype=torch.float64)
    bias = torch.randn(pixels, generator=gen, dtype=torch.float64) * 0.1
    images = torch.rand(5, 2, 4, 4, generator=gen, dtype=torch.float64)

    def decode(z):
        return (z.double() @ weight.T + bias).reshape(-1, 2, 4, 4).float()

    found = invert(decode, images.float(), d, steps=3000, lr=0.02, prior_weight=lam, restarts=2)
    y = images.reshape(5, pixels) - bias
    ridge = torch.linalg.solve(weight.T @ weight / pixels + lam / d * torch.eye(d, dtype=torch.float64),
                               (y @ weight).T / pixels).T
    np.testing.assert_allclose(found.codes.numpy(), ridge.numpy(), atol=2e-3)
    assert np.all(found.mse <= found.initial_mse)


def test_inversion_finds_codes_that_decode_to_generated_images_and_is_deterministic():
    from factorlens.training import load_run

    model = load_run(GAN_RUN).model.eval()
    truth = torch.randn(6, model.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        images = model.decode(truth)
    found = invert(model.decode, images, model.latent_dim, steps=200, seed=1, prior_weight=0.0)
    # the same code for an image whatever the batch size and whichever images follow it
    again = invert(model.decode, images[:2], model.latent_dim, steps=200, seed=1, prior_weight=0.0,
                   batch_size=1)
    torch.testing.assert_close(again.codes, found.codes[:2], rtol=0, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # only the codes received gradients
    # optimisation makes the decode much closer to the image than the best random start
    assert float(found.mse.mean()) < 0.2 * float(found.initial_mse.mean())
    assert found.describe().startswith("codes found by inverting the generator on 6 images (200 Adam steps")
