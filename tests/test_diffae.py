"""The diffae model (semantic encoder + conditioned DDPM U-Net): conditioning, decode, init from a ddpm
run, training/resume through the one Trainer, and `explain` through it."""

from __future__ import annotations

import json

import pytest
import torch
from test_explain import _toy_classifier_dir

from factorlens.cli.main import main
from factorlens.errors import ConfigError
from factorlens.models import build_model

pytest.importorskip("monai")

TINY = {"resolution": 32, "unet_channels": [8, 16], "attention_levels": [False, True], "norm_num_groups": 8,
        "num_head_channels": 8, "sample_steps": 3, "semantic_dim": 4}
TRAIN = {"iterations": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "num_threads": 1}
DATA = {"spec": "synthetic-lesions:n=48"}


pytestmark = pytest.mark.usefixtures("one_thread")


def filled(model):
    """MONAI zeroes the U-Net's output convolutions and diffae its semantic projection, so an untrained
    model ignores its inputs: fill every all-zero tensor with small seeded noise."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def test_a_new_model_denoises_as_its_unet_does_unconditionally():
    torch.manual_seed(0)
    model = build_model("diffae", TINY, channels=3, image_size=64).eval()
    with torch.no_grad():
        for name, p in model.unet.named_parameters():  # a trained-looking U-Net, zero projection
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    x_t, t = torch.randn(3, 3, 32, 32), torch.tensor([10, 500, 900])
    with torch.no_grad():
        plain = model.unet(x_t, t)
        with model.conditioned(torch.randn(3, 4)):
            conditioned = model.unet(x_t, t)
    assert torch.equal(plain, conditioned)


def test_decode_is_a_deterministic_function_of_the_semantic_code():
    torch.manual_seed(0)
    model = filled(build_model("diffae", TINY, channels=3, image_size=64))
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first, again = model.decode(z), model.decode(z)
        other = model.decode(z.flip(0))
        by_hand_steps = model.sample(model.decode_noise.expand(2, -1, -1, -1))  # unconditioned
    assert first.shape == (2, 3, 32, 32) and torch.equal(first, again)
    assert torch.equal(other, first.flip(0))  # each image depends on its own code only
    assert not torch.allclose(first[0], first[1])  # different codes, different images
    assert not torch.allclose(first, by_hand_steps)  # the code is used
    mean, logvar = model.encode(torch.rand(2, 3, 64, 64))
    assert mean.shape == (2, 4) and not logvar.any()
    with pytest.raises(ValueError, match="semantic code batch 3 != U-Net batch 2"), model.conditioned(
        torch.zeros(3, 4)
    ):
        model.unet(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory):
    from factorlens.training import train

    out = tmp_path_factory.mktemp("ddpm") / "run"
    params = {k: v for k, v in TINY.items() if k != "semantic_dim"}
    return train({"model": {"name": "ddpm", **params}, "train": TRAIN, "data": DATA}, out, progress=False)


@pytest.fixture(scope="module")
def diffae_run(tmp_path_factory, ddpm_run):
    from factorlens.training import train

    out = tmp_path_factory.mktemp("diffae") / "run"
    config = {"model": {"name": "diffae", **TINY, "init_unet": str(ddpm_run)}, "train": TRAIN, "data": DATA}
    return train(config, out, progress=False)


def test_init_unet_loads_the_ddpm_runs_unet_and_training_resumes(diffae_run, ddpm_run, tmp_path):
    from factorlens.training import load_run, train

    model = build_model("diffae", {**TINY, "init_unet": str(ddpm_run)}, channels=3, image_size=64)
    model.on_fresh_run()
    source = load_run(ddpm_run).model.unet.state_dict()
    assert all(torch.equal(v, source[k]) for k, v in model.unet.state_dict().items())
    run = load_run(diffae_run)
    assert run.model_name == "diffae" and run.iteration == 2 and run.model.latent_dim == 4
    # resuming does not read init_unet again (the checkpoint holds the U-Net): it may be gone
    config = {"model": {"name": "diffae", **TINY, "init_unet": str(ddpm_run)},
              "train": {**TRAIN, "iterations": 3}, "data": DATA}
    train(config, diffae_run, resume=True, progress=False)
    assert json.loads((diffae_run / "summary.json").read_text())["iterations"] == 3


@pytest.mark.parametrize(("source", "needle"), [
    ("missing", "model.init_unet"),
    ("vae", "is a 'btcvae' run; it must be a ddpm run"),
])
def test_bad_init_unet_is_a_config_error(source, needle, tmp_path):
    from factorlens.training import train

    path = tmp_path / "nothing"
    if source == "vae":
        path = train({"model": {"name": "btcvae", "latent_dim": 4}, "train": TRAIN, "data": DATA},
                     tmp_path / "vae", progress=False)
    model = build_model("diffae", {**TINY, "init_unet": str(path)}, channels=3, image_size=64)
    with pytest.raises(ConfigError, match=needle):
        model.on_fresh_run()


def test_init_unet_refuses_another_prediction(ddpm_run):
    model = build_model("diffae", {**TINY, "init_unet": str(ddpm_run), "prediction": "v"}, channels=3,
                        image_size=64)
    with pytest.raises(ConfigError, match="predicts 'epsilon', this model model.prediction 'v'"):
        model.on_fresh_run()


def test_sample_refuses_a_diffae_run(diffae_run, capsys):
    assert main(["sample", str(diffae_run), "--n", "2", "--out", "x.png"]) == 2
    assert "factorlens sample takes diffusion runs (model ddpm)" in capsys.readouterr().err


def test_explain_runs_through_a_diffae(diffae_run, tmp_path, capsys):
    clf = _toy_classifier_dir(tmp_path, size=32)
    out = tmp_path / "out"
    code = main(["explain", str(diffae_run), "--classifier", str(clf), "--target", "MEL", "--source", "NV",
                 "--out", str(out), "--steps", "2", "-k", "2", "--num-source", "4",
                 "--option", "num_random=2", "--option", "threshold=-1"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "explanation.json").read_text())
    assert report["codes"] == "posterior" and report["num_source"] == 4 and report["active_dim"] <= 4
    assert report["codes_from"] == "encoder means of 4 source images"


def test_explain_refuses_a_plain_ddpm_run(ddpm_run, tmp_path, capsys):
    clf = _toy_classifier_dir(tmp_path, size=32)
    code = main(["explain", str(ddpm_run), "--classifier", str(clf), "--target", "MEL",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a ddpm, whose only code is the noise x_T" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("preset", ["cpu/diffae", "paper/diffae"])
def test_presets_validate_and_build(preset):
    from factorlens.config import load_config, parse_run_config, resolve_config_path

    config = parse_run_config(load_config(resolve_config_path(preset)), preset)
    assert config.model.name == "diffae"
    if preset == "cpu/diffae":  # the figures docs/models.md gives
        params = config.to_dict()["model"]
        params.pop("name")
        params.pop("network", None)
        model = build_model("diffae", params, channels=3, image_size=64)
        assert sum(p.numel() for p in model.parameters()) == 1_777_219
        assert sum(p.numel() for p in model.semantic_encoder.parameters()) == 659_040
        assert model.latent_dim == 32 and model.config.sample_steps == 20
