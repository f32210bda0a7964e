"""Directions in the h-space of a diffusion U-Net: the adapter, hspace, hspace-pca, random, the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factorlens.cli.main import main
from factorlens.directions import GeneratorAdapter, discover_directions
from factorlens.directions.hspace import DiffusionAdapter, ShiftModule, hspace_loss_step
from factorlens.directions.voynov import reconstructor_input
from factorlens.errors import ConfigError

pytest.importorskip("monai")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def adapter() -> DiffusionAdapter:
    from test_ddpm import tiny_ddpm

    return GeneratorAdapter.from_model(tiny_ddpm(), None)


def test_adapter_codes_and_zero_shift(adapter: DiffusionAdapter) -> None:
    assert isinstance(adapter, DiffusionAdapter)
    assert (adapter.noise_dim, adapter.h_dim, adapter.latent_dim) == (3072, 4096, 7168)
    assert adapter.direction_dim == 4096 and adapter.base_source == "prior"
    base = adapter.sample_base(2, torch.Generator().manual_seed(0))
    assert base.shape == (2, 7168) and not base[:, 3072:].any() and base[:, :3072].std() > 0.9
    with torch.no_grad():
        decoded = adapter.decode(base)
        plain = adapter.model.sample(adapter.split(base)[0], steps=adapter.ddim_steps)
    assert torch.equal(decoded, plain)  # Δh = 0 through the hook: bit for bit
    # the unit r: RMS over samples and steps of ‖h - the step's mean h‖, computed here independently
    h = adapter.collect_h(adapter._h_samples, seed=adapter._h_seed + 7_919).double()  # [n, s, 4096]
    per_step = [torch.cov(h[:, s].T).trace() for s in range(h.shape[1])]  # total variance per step
    r = float(torch.stack(per_step).mean().sqrt())
    assert float(adapter.h_unit) == pytest.approx(r, rel=1e-5) and r > 0
    unit = np.zeros((2, 4096))
    unit[0, 0] = 1.0
    unit[1] = np.random.default_rng(0).standard_normal(4096)
    np.testing.assert_allclose(adapter.direction_scales(adapter.embed_directions(unit)), [r, r], rtol=1e-5)
    half = np.zeros((1, 7168))
    half[0, 0], half[0, 3072] = 1.0, 1.0  # half of it in x_T: the h part has norm 1/sqrt(2)
    assert adapter.direction_scales(half)[0] == pytest.approx(r / np.sqrt(2), rel=1e-5)


def test_checkpointed_and_plain_gradients_agree(adapter: DiffusionAdapter) -> None:
    module = ShiftModule(adapter.h_dim, 3, "proj", torch.Generator().manual_seed(1))
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    k, eps = torch.tensor([0, 2]), torch.tensor([1.5, -2.0])
    grads = []
    for checkpointed in (False, True):
        adapter.checkpointed = checkpointed
        module.zero_grad()
        _, shifted = hspace_loss_step(adapter, module, x_t, k, eps)
        ((shifted - 0.5) ** 2).mean().backward()
        grads.append(module.linear.weight.grad.clone())
    adapter.checkpointed = False
    assert float(grads[0].abs().max()) > 1e-6  # the chain carries a gradient to the directions
    assert not grads[0][1].any()  # direction 1 was not drawn
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=0)


def test_hspace_method_directions(adapter: DiffusionAdapter) -> None:
    for deformator in ("proj", "ortho"):
        directions = discover_directions(adapter, "hspace", k=3, steps=1, seed=0, batch_size=2,
                                         ddim_steps=3, deformator=deformator)
        h_rows = directions.matrix[:, 3072:]
        assert directions.matrix.shape == (3, 7168) and not directions.matrix[:, :3072].any()
        np.testing.assert_allclose(np.linalg.norm(h_rows, axis=1), 1.0, atol=1e-6)
        if deformator == "ortho":
            np.testing.assert_allclose(h_rows @ h_rows.T, np.eye(3), atol=1e-5)
        np.testing.assert_allclose(directions.scales, adapter.direction_scales(directions.matrix), rtol=1e-6)
        assert directions.params["ddim_steps"] == 3 and 0 <= directions.extras["final_loss"] < 10
        # one step: its accuracy is both the last tenth's and the only entry of the curve
        extras = directions.extras
        assert extras["train_accuracy_by_tenth"] == [extras["train_accuracy_last_10pct"]]
    no_disc = discover_directions(adapter, "hspace", k=2, steps=1, batch_size=2, ddim_steps=3,
                                  realism_weight=0.0, checkpoint=False)
    assert no_disc.params["realism_weight"] == 0.0 and not no_disc.params["checkpoint"]


def test_hspace_realism_start_delays_the_discriminators_pull(adapter: DiffusionAdapter) -> None:
    def learned(**options) -> np.ndarray:
        return discover_directions(adapter, "hspace", k=2, steps=2, seed=3, batch_size=2, ddim_steps=3,
                                   checkpoint=False, **options).matrix

    without = learned(realism_weight=0.0)
    # switched on after the last step: the discriminator trains but never reaches the shift module
    np.testing.assert_array_equal(learned(realism_weight=1.0, realism_start=2), without)
    # switched on at step 1: step 0 is the ablation's, step 1 is not
    from_step_1 = learned(realism_weight=1.0, realism_start=1)
    assert np.abs(from_step_1 - without).max() > 1e-6
    assert np.abs(from_step_1 - learned(realism_weight=1.0)).max() > 1e-6


def test_hspace_init_pca_and_shift_lr(adapter: DiffusionAdapter) -> None:
    pca = discover_directions(adapter, "hspace-pca", k=3, num_samples=4, ddim_steps=3, t_edit=500, seed=5)
    for deformator in ("proj", "ortho"):
        # one step at a negligible learning rate: the learned rows are still the initial ones
        started = discover_directions(adapter, "hspace", k=3, steps=1, seed=5, batch_size=2, ddim_steps=3,
                                      t_edit=500, init="pca", init_samples=4, lr=1e-12, checkpoint=False,
                                      deformator=deformator)
        assert started.params["init"] == "pca" and started.params["init_samples"] == 4
        np.testing.assert_allclose(started.matrix, pca.matrix, atol=1e-6)
    # shift_lr slows the shift module alone: the reconstructor's lr (1e-3) does not move the directions
    slow = discover_directions(adapter, "hspace", k=3, steps=2, seed=5, batch_size=2, ddim_steps=3,
                               t_edit=500, init="pca", init_samples=4, shift_lr=1e-12, checkpoint=False)
    assert slow.params["shift_lr"] == 1e-12 and slow.params["lr"] == 1e-3
    np.testing.assert_allclose(slow.matrix, pca.matrix, atol=1e-6)
    common = discover_directions(adapter, "hspace", k=3, steps=2, seed=5, batch_size=2, ddim_steps=3,
                                 t_edit=500, init="pca", init_samples=4, checkpoint=False)
    assert common.params["shift_lr"] == 1e-3 and np.abs(common.matrix - pca.matrix).max() > 1e-3
    random_start = discover_directions(adapter, "hspace", k=3, steps=1, seed=5, batch_size=2, ddim_steps=3,
                                       t_edit=500, lr=1e-12, checkpoint=False)
    assert np.abs(random_start.matrix[:, 3072:] @ pca.matrix[:, 3072:].T).max() < 0.2  # not the same start
    with pytest.raises(ConfigError, match="init"):
        discover_directions(adapter, "hspace", k=3, steps=1, ddim_steps=3, init="sefa")


def test_reconstructor_input_difference_is_scale_free() -> None:
    gen = torch.Generator().manual_seed(0)
    # float64, so that the identities below hold to rounding of 1e-12
    original = torch.rand(3, 3, 8, 8, generator=gen, dtype=torch.float64)
    scale = torch.tensor([1e-3, 1e-2, 1.0], dtype=torch.float64)[:, None, None, None]
    change = torch.randn(3, 3, 8, 8, generator=gen, dtype=torch.float64) * scale
    assert torch.equal(reconstructor_input(original, original + change, "pair"),
                       torch.cat([original, original + change], dim=1))
    seen = reconstructor_input(original, original + change, "difference")
    assert seen.shape == (3, 7, 8, 8) and torch.equal(seen[:, :3], original)
    normalised, log_rms = seen[:, 3:6], seen[:, 6:]
    torch.testing.assert_close(normalised.pow(2).mean(dim=(1, 2, 3)), torch.ones(3, dtype=torch.float64))
    # the identity: normalised difference x exp(log RMS) is the difference
    torch.testing.assert_close(normalised * log_rms.exp(), change, atol=1e-12, rtol=1e-9)
    assert float(log_rms.std(dim=(1, 2, 3)).max()) == 0.0  # one constant plane per sample
    # an edit ten times smaller shows the same pattern, one log(10) lower
    smaller = reconstructor_input(original, original + change / 10, "difference")
    torch.testing.assert_close(smaller[:, 3:6], seen[:, 3:6], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(smaller[:, 6:], seen[:, 6:] - float(np.log(10)), atol=1e-9, rtol=0)


def test_hspace_difference_reconstructor(adapter: DiffusionAdapter) -> None:
    directions = discover_directions(adapter, "hspace", k=3, steps=2, seed=0, batch_size=2, ddim_steps=3,
                                     reconstructor_input="difference", checkpoint=False)
    pair = discover_directions(adapter, "hspace", k=3, steps=2, seed=0, batch_size=2, ddim_steps=3,
                               checkpoint=False)
    assert directions.params["reconstructor_input"] == "difference"
    assert pair.params["reconstructor_input"] == "pair"
    assert np.abs(directions.matrix - pair.matrix).max() > 1e-6  # a different reconstructor, other gradients
    with pytest.raises(ConfigError, match="reconstructor_input"):
        discover_directions(adapter, "hspace", k=3, steps=1, ddim_steps=3, reconstructor_input="sum")


def test_hspace_pca_and_random(adapter: DiffusionAdapter) -> None:
    pca = discover_directions(adapter, "hspace-pca", k=4, num_samples=4, ddim_steps=3)
    rows = pca.matrix[:, 3072:]
    np.testing.assert_allclose(rows @ rows.T, np.eye(4), atol=1e-6)
    ratios = pca.extras["explained_variance_ratio"]
    assert ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1
    # the first direction is the top principal axis of the same h samples
    h = adapter.collect_h(4, seed=0).reshape(-1, 4096).double()
    centred = (h - h.mean(0)).numpy()
    variance = np.var(centred @ rows.T, axis=0)
    assert variance[0] == pytest.approx(float(np.max(np.var(centred @ np.linalg.svd(centred)[2][:1].T,
                                                               axis=0))), rel=1e-6)
    random = discover_directions(adapter, "random", k=3, seed=0)
    assert not random.matrix[:, :3072].any()
    np.testing.assert_allclose(random.matrix[:, 3072:] @ random.matrix[:, 3072:].T, np.eye(3), atol=1e-6)


def test_bad_inputs_one_line(adapter: DiffusionAdapter, phantom) -> None:
    with pytest.raises(ConfigError, match="k=5000 directions exceed h's dimension 4096") as info:
        discover_directions(adapter, "hspace", k=5000, steps=1)
    assert "\n" not in str(info.value)
    vae_like = GeneratorAdapter(phantom.decode, phantom.latent_dim)
    for method in ("hspace", "hspace-pca"):
        with pytest.raises(ConfigError, match=f"method {method} needs a diffusion run"):
            discover_directions(vae_like, method, k=2, steps=1)
    with pytest.raises(ConfigError, match="shift_min must be < option.shift_max"):
        discover_directions(adapter, "hspace", k=2, steps=1, shift_min=4.0)


def test_discover_cli_refuses_hspace_on_a_gan_run(capsys) -> None:
    code = main(["discover", "tests/fixtures/v1-gan-run", "--method", "hspace", "--out", "/nonexistent/x",
                 "--rca-steps", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: method hspace needs a diffusion run") and err.count("\n") == 1
    code = main(["discover", "tests/fixtures/v1-gan-run", "--method", "random", "--out", "/nonexistent/x",
                 "--rca-pairs", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: --rca-pairs must be >= 0, got -1\n"


def test_traverse_a_diffusion_run_along_its_direction_sets(tmp_path, capsys) -> None:
    """`factorlens traverse` on a diffusion run draws one grid per saved h-space direction set (and says
    what to run when there is none)."""
    import json

    from monai.networks.nets import DiffusionModelUNet
    from safetensors.torch import save_file
    from test_ddpm import TINY_ARGS

    from factorlens.training import load_run

    torch.manual_seed(0)
    unet = DiffusionModelUNet(**{k: v for k, v in TINY_ARGS.items() if k != "image_size"})
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp_path / "u.safetensors"))
    (tmp_path / "a.json").write_text(json.dumps(TINY_ARGS))
    run_dir = tmp_path / "run"
    assert main(["import-unet", str(tmp_path / "u.safetensors"), "--config", str(tmp_path / "a.json"),
                 "--out", str(run_dir), "--data", "synthetic-lesions:n=16"]) == 0
    capsys.readouterr()
    assert main(["traverse", str(run_dir)]) == 2
    assert "it has none; run `factorlens discover" in capsys.readouterr().err
    adapter = GeneratorAdapter.from_model(load_run(run_dir).model, None)
    directions = discover_directions(adapter, "hspace-pca", k=2, num_samples=2, ddim_steps=2)
    directions.save(run_dir / "directions" / "hspace-pca")
    assert main(["traverse", str(run_dir), "--out", str(tmp_path / "fig")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "fig" / "traversal_hspace-pca.png") as image:
        assert image.height > 2 * 32 and image.width > 7 * 32  # 2 directions x 7 shifts
