"""The ddpm model, the unet network, DDIM sampling/inversion, `factorlens sample` and `import-unet`."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from PIL import Image

from factorlens.cli.main import main
from factorlens.errors import ConfigError
from factorlens.models import build_model
from factorlens.models.ddpm import DDPM, generate
from factorlens.models.diffusion import alphas_cumprod, ddim_sample, ddim_timesteps

pytest.importorskip("monai")

TINY = {"resolution": 32, "unet_channels": [8, 16], "attention_levels": [False, True], "norm_num_groups": 8,
        "num_head_channels": 8, "sample_steps": 5}
TINY_ARGS = {"spatial_dims": 2, "in_channels": 3, "out_channels": 3, "channels": [8, 16],
             "attention_levels": [False, True], "num_res_blocks": 1, "norm_num_groups": 8,
             "num_head_channels": 8, "image_size": 32}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_ddpm(seed: int = 0) -> DDPM:
    """The tiny U-Net with its zero-initialised layers (MONAI zeroes the output conv, so an untrained
    net predicts ε̂ = 0 whatever h is) filled with small seeded noise, so that h matters."""
    torch.manual_seed(seed)
    m = build_model("ddpm", TINY, channels=3, image_size=64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return m.eval()


@pytest.fixture(scope="module")
def model() -> DDPM:
    return tiny_ddpm()


def test_parameter_count_and_h_space(model: DDPM) -> None:
    from factorlens.networks.unet import h_shape

    assert sum(p.numel() for p in model.parameters()) == 45259
    assert h_shape(model.unet, 3, 32) == (16, 16, 16)
    assert model.latent_dim == 3 * 32 * 32
    cpu = build_model("ddpm", {"resolution": 32}, channels=3, image_size=64)  # the cpu/ddpm U-Net
    assert sum(p.numel() for p in cpu.parameters()) == 1_113_955
    assert h_shape(cpu.unet, 3, 32) == (64, 8, 8)


def test_linear_schedule_values() -> None:
    acp = alphas_cumprod("linear", 1000)
    expected = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    torch.testing.assert_close(acp.double(), expected, atol=1e-6, rtol=0)
    assert float(acp[0]) == pytest.approx(0.9999, abs=1e-7)
    assert float(acp[-1]) == pytest.approx(4.04e-5, rel=1e-2)
    cosine = alphas_cumprod("cosine", 1000)
    assert float(cosine[-1]) < float(cosine[0]) and bool((cosine[1:] <= cosine[:-1]).all())
    assert ddim_timesteps(1000, 4) == [750, 500, 250, 0]


def test_hand_ddim_chain_equals_monai_scheduler(model: DDPM) -> None:
    from monai.networks.schedulers import DDIMScheduler

    steps = 5
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    chains = []
    for clip in (False, True):
        with torch.no_grad():
            ours = ddim_sample(model.eps_fn(), x_t, model.alphas_cumprod, steps, clip=clip)
            scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="linear_beta", clip_sample=clip)
            scheduler.set_timesteps(steps)
            scheduler.timesteps = torch.tensor(ddim_timesteps(1000, steps))  # the same chain ("leading")
            x = x_t
            for t in scheduler.timesteps:
                eps = model.unet(x, torch.full((2,), int(t), dtype=torch.long))
                x, _ = scheduler.step(eps, int(t), x)
        torch.testing.assert_close(ours, x, atol=1e-5, rtol=1e-5)
        assert float((ours - x_t).abs().mean()) > 0.1  # the chain did move the sample
        chains.append(ours)
    assert float((chains[0] - chains[1]).abs().max()) > 1e-3  # clipping acted


def test_v_prediction_chain_equals_monai_scheduler_and_v_converts_to_eps() -> None:
    """``model.prediction: v``: our ε̂ = √ᾱ v̂ + √(1-ᾱ) x_t feeds the same DDIM step; MONAI's scheduler
    with ``prediction_type="v_prediction"`` takes v̂ itself. And the identity: the true v gives the true ε."""
    from monai.networks.schedulers import DDIMScheduler

    torch.manual_seed(0)
    vmodel = build_model("ddpm", {**TINY, "prediction": "v"}, channels=3, image_size=64)
    vmodel.load_state_dict(tiny_ddpm().state_dict())  # the same seeded non-zero weights
    vmodel.eval()
    steps = 5
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = ddim_sample(vmodel.eps_fn(), x_t, vmodel.alphas_cumprod, steps, clip=True)
        scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="linear_beta", clip_sample=True,
                                  prediction_type="v_prediction")
        scheduler.set_timesteps(steps)
        scheduler.timesteps = torch.tensor(ddim_timesteps(1000, steps))
        x = x_t
        for t in scheduler.timesteps:
            v = vmodel.unet(x, torch.full((2,), int(t), dtype=torch.long))
            x, _ = scheduler.step(v, int(t), x)
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=1e-5)
    assert float((ours - x_t).abs().mean()) > 0.1
    # the identity, in float64: x_t = √ᾱ x0 + √(1-ᾱ) ε and v = √ᾱ ε - √(1-ᾱ) x0 give back ε
    gen = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(3, 3, 4, 4, generator=gen).double(), torch.randn(3, 3, 4, 4, generator=gen).double()
    t = torch.tensor([0, 500, 999])
    a = vmodel.alphas_cumprod.double()[t].view(-1, 1, 1, 1)
    x_noisy, v_true = a.sqrt() * x0 + (1 - a).sqrt() * eps, a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(vmodel.to_eps(v_true, x_noisy, t), eps, atol=1e-6, rtol=0)


def test_v_prediction_loss_targets_v() -> None:
    """The loss of a U-Net that outputs the true v is 0 (up to float32), and differs from the ε loss."""
    torch.manual_seed(0)
    vmodel = build_model("ddpm", {**TINY, "prediction": "v"}, channels=3, image_size=64)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    x0 = vmodel.to_model_space(x)
    recorded = {}

    class Oracle(torch.nn.Module):  # returns v computed from the noise the loss drew
        def forward(self, x_t, t):
            a = vmodel.alphas_cumprod[t].view(-1, 1, 1, 1)
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
            recorded["t"] = t
            return a.sqrt() * eps - (1 - a).sqrt() * x0

    vmodel.unet = Oracle()
    assert float(vmodel.compute_loss(x, dataset_size=4).loss) < 1e-6
    emodel = build_model("ddpm", TINY, channels=3, image_size=64)
    emodel.unet = Oracle()
    torch.manual_seed(0)
    assert float(emodel.compute_loss(x, dataset_size=4).loss) > 0.1  # v is not ε


def test_ddim_deterministic_and_zero_shift_is_bit_identical(model: DDPM) -> None:
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    acp = model.alphas_cumprod

    def chain(shift=None, t_edit=0):  # x_0 before clamping (an untrained net saturates the images)
        return ddim_sample(model.eps_fn(shift, t_edit=t_edit), x_t, acp, 4)

    with torch.no_grad():
        a, b = chain(), chain()
        zero = chain(torch.zeros(2, 16, 16, 16))
        moved = chain(torch.full((2, 16, 16, 16), 0.5))
        late = chain(torch.full((2, 16, 16, 16), 0.5), t_edit=500)  # 2 of the 4 steps shifted
        images = model.sample(x_t, steps=4)
        images_zero = model.sample(x_t, steps=4, shift=torch.zeros(2, 16, 16, 16))
        unclipped = model.sample(x_t, steps=4, clip=False)  # the chain `a`, mapped to [0, 1]
    assert torch.equal(unclipped, (a.clamp(-1.0, 1.0) + 1.0) * 0.5)
    assert not torch.equal(unclipped, images)  # model.clip_sample (default true) changes the chain
    assert torch.equal(a, b)
    assert torch.equal(a, zero) and torch.equal(images, images_zero)
    assert float((moved - a).abs().max()) > 1e-3
    assert float((late - a).abs().max()) > 1e-3 and float((late - moved).abs().max()) > 1e-3
    assert images.shape == (2, 3, 32, 32) and float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    torch.testing.assert_close(generate(model, 3, steps=2, seed=5), generate(model, 3, steps=2, seed=5),
                               rtol=0, atol=0)


def test_area_averaging_and_losses(model: DDPM) -> None:
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.to_model_space(x), torch.nn.functional.avg_pool2d(x, 2) * 2 - 1)
    torch.manual_seed(0)
    out = model.compute_loss(x, dataset_size=4)
    assert set(out.terms) == {"loss", "mse"} and 0.2 < float(out.loss.detach()) < 5.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        bf16 = model.compute_loss(x, dataset_size=4)
    assert bf16.loss.dtype == torch.float32
    assert float(bf16.loss.detach()) == pytest.approx(float(out.loss.detach()), rel=0.05)


def test_inversion_inverts_the_chain_exactly_for_a_fixed_noise_prediction(model: DDPM) -> None:
    """With ε̂ independent of x (any fixed tensor), every DDIM step is an exact affine map and inversion
    followed by sampling returns the image; the real U-Net's ε̂ only approximates that."""
    from factorlens.models.diffusion import ddim_invert

    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    fixed = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))

    def eps_fn(x, t, step):
        return fixed

    acp = model.alphas_cumprod.double()
    x_t = ddim_invert(eps_fn, x0.double(), acp, 5)
    back = ddim_sample(eps_fn, x_t, acp, 5)
    torch.testing.assert_close(back, x0.double(), atol=1e-9, rtol=0)
    # x_T sits at t = 800: sqrt(acp) x0 + sqrt(1 - acp) eps, with ε̂ the same at every step
    expected = acp[800].sqrt() * x0.double() + (1 - acp[800]).sqrt() * fixed.double()
    torch.testing.assert_close(x_t, expected, atol=1e-9, rtol=0)
    with torch.no_grad():
        assert model.invert(torch.rand(1, 3, 64, 64), steps=3).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("params,message", [
    ({"resolution": 48}, "image size 48 px is not supported"),
    ({"resolution": 128}, "must divide the data's 64 px"),
    ({"unet_channels": [8, 16], "attention_levels": [False]}, "attention_levels has 1 entries"),
    ({"unet_channels": [12, 16]}, "norm_num_groups 32 must divide"),
])
def test_bad_model_options_one_line(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_model("ddpm", {**TINY, **params} if "unet_channels" not in params else
                    {**TINY, "norm_num_groups": 32 if "12" in str(params) else 8, **params},
                    channels=3, image_size=64)
    assert "\n" not in str(info.value)


def test_unet_family_refuses_vae(capsys) -> None:
    with pytest.raises(ConfigError, match="network 'unet' builds diffusion denoisers only"):
        build_model("vae", {}, channels=3, network="unet")


def test_train_sample_and_load_run_with_ema(tmp_path, capsys) -> None:
    from factorlens.training import load_run, train

    config = {"model": {"name": "ddpm", **TINY},
              "train": {"iterations": 3, "batch_size": 8, "lr": 1e-3, "ema": 0.9, "log_every": 1,
                        "checkpoint_every": 3, "num_threads": 1, "seed": 0},
              "data": {"spec": "synthetic-lesions:n=64"}}
    out = train(config, tmp_path / "run", progress=False)
    ckpt = out / "checkpoints" / "iter-3"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "ema.safetensors").exists()
    run = load_run(out)
    assert isinstance(run.model, DDPM) and run.iteration == 3
    from safetensors.torch import load_file

    ema = load_file(str(ckpt / "ema.safetensors"))
    torch.testing.assert_close(run.model.unet.conv_in.conv.weight, ema["unet.conv_in.conv.weight"],
                               rtol=0, atol=0)
    assert [r["iter"] for r in run.log()] == [1, 2, 3] and all(r["mse"] > 0 for r in run.log())
    png = tmp_path / "grid.png"
    assert main(["sample", str(out), "--n", "5", "--steps", "2", "--out", str(png)]) == 0
    with Image.open(png) as image:
        assert image.width > 3 * 64 and image.height > 2 * 64  # 3x2 tiles of 32 px at scale 2
    assert main(["sample", "tests/fixtures/v1-gan-run", "--n", "2", "--out", str(png)]) == 2
    assert "takes diffusion runs" in capsys.readouterr().err


def test_import_unet_round_trip_and_refusals(tmp_path, capsys) -> None:
    from monai.networks.nets import DiffusionModelUNet
    from safetensors.torch import save_file

    from factorlens.training import load_run

    torch.manual_seed(1)
    unet = DiffusionModelUNet(**{k: v for k, v in TINY_ARGS.items() if k != "image_size"}).eval()
    (tmp_path / "args.json").write_text(json.dumps(TINY_ARGS))
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp_path / "u.safetensors"))
    torch.save(unet.state_dict(), tmp_path / "u.pt")
    torch.save(unet, tmp_path / "module.pt")
    (tmp_path / "u.pkl").write_bytes(pickle.dumps({"weights": [1.0, 2.0], "why": object}))
    x = torch.randn(1, 3, 32, 32)
    t = torch.tensor([10])
    for name in ("u.safetensors", "u.pt"):
        out = tmp_path / f"run-{name}"
        argv = ["import-unet", str(tmp_path / name), "--config", str(tmp_path / "args.json"), "--out",
                str(out), "--data", "synthetic-lesions:n=16"]
        assert main(argv) == 0
        run = load_run(out)
        with torch.no_grad():
            assert torch.equal(run.model.unet(x, t), unet(x, t))
        assert run.model.resolution == 32 and run.model.image_size == 64
    capsys.readouterr()
    for name, expected in (("module.pt", "holding objects other than tensors"), ("u.pkl", "is a pickle")):
        argv = ["import-unet", str(tmp_path / name), "--config", str(tmp_path / "args.json"), "--out",
                str(tmp_path / "refused"), "--data", "synthetic-lesions:n=16"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and err.startswith("error: ")
    (tmp_path / "v.json").write_text(json.dumps({**TINY_ARGS, "prediction_type": "v_prediction"}))
    argv = ["import-unet", str(tmp_path / "u.pt"), "--config", str(tmp_path / "v.json"), "--out",
            str(tmp_path / "run-v"), "--data", "synthetic-lesions:n=16"]
    assert main(argv) == 0 and load_run(tmp_path / "run-v").model.config.prediction == "v"
    (tmp_path / "bad-v.json").write_text(json.dumps({**TINY_ARGS, "prediction_type": "sample"}))
    argv = ["import-unet", str(tmp_path / "u.pt"), "--config", str(tmp_path / "bad-v.json"), "--out",
            str(tmp_path / "refused")]
    assert main(argv) == 2
    assert "prediction_type in" in capsys.readouterr().err
    (tmp_path / "cond.json").write_text(json.dumps({**TINY_ARGS, "with_conditioning": True}))
    argv = ["import-unet", str(tmp_path / "u.pt"), "--config", str(tmp_path / "cond.json"), "--out",
            str(tmp_path / "refused")]
    assert main(argv) == 2
    assert "conditional U-Nets are not supported" in capsys.readouterr().err


def test_more_one_line_errors() -> None:
    from factorlens.models.unet_import import model_params_from_args

    with pytest.raises(ConfigError, match="model 'ddpm' needs a denoiser network \\(unet\\), not 'conv'"):
        build_model("ddpm", TINY, channels=3, image_size=64, network="conv")
    with pytest.raises(ConfigError, match="spatial_dims in a.json: only 2-D U-Nets are supported, got 3"):
        model_params_from_args({"spatial_dims": 3, "in_channels": 1}, "a.json")
    with pytest.raises(ConfigError, match="per-level values \\[1, 2\\] are not supported"):
        model_params_from_args({**TINY_ARGS, "num_res_blocks": [1, 2]}, "a.json")
    params, channels = model_params_from_args({**TINY_ARGS, "num_res_blocks": [1, 1]}, "a.json")
    assert channels == 3 and params["num_res_blocks"] == 1 and params["resolution"] == 32


def test_missing_monai_is_a_one_line_error(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "monai", None)  # import monai -> ImportError
    with pytest.raises(ConfigError, match=r"need MONAI and einops: pip install 'factorlens\[diffusion\]'"):
        build_model("ddpm", TINY, channels=3, image_size=64)
