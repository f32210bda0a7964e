"""The architecture's seams: networks apart from objectives at every image size, the one option parser,
registry overrides, the public Trainer with its callbacks (EMA, TensorBoard, optimisers), process state
left as found, and v1 run directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from factorlens.config import RunConfig, TrainConfig, parse_run_config
from factorlens.errors import ConfigError
from factorlens.models import MODELS, ModelEntry, build_model
from factorlens.networks import NETWORKS, SIZES, network_family
from factorlens.schema import number, option, parse
from factorlens.training import Callback, Trainer, default_callbacks, load_run, train
from factorlens.training.callbacks import EMA

V1_RUN = Path(__file__).parent / "fixtures" / "v1-gan-run"
DATA = "synthetic-lesions:n=64"


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


# --- networks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["conv", "resnet", "dcgan"])
@pytest.mark.parametrize("size", SIZES)
def test_every_family_at_every_size_and_channel_count(family, size):
    torch.manual_seed(0)
    networks = network_family(family)
    for channels in (1, 3):
        x = torch.rand(2, channels, size, size)
        assert networks.encoder(channels, 6, size)(x).shape == (2, 6)
        assert networks.discriminator(channels, size)(x).shape == (2, 1)
        decoder = networks.decoder(3, channels, size)
        assert decoder(torch.randn(2, 3)).shape == (2, channels, size, size)
        assert isinstance(decoder.first, nn.ConvTranspose2d)  # the latent-reading layer SeFa reads


def test_one_stride2_stage_per_doubling():
    def strided(module):  # resolution doublings of a decoder: stride-2 transposed convs and upsamplings
        return sum(1 for m in module.modules()
                   if isinstance(m, nn.Upsample)
                   or (isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2)))

    for name in (n for n in NETWORKS.names() if NETWORKS.get(n).denoiser is None):  # encoder/decoder families
        counts = [strided(network_family(name).decoder(4, 3, size)) for size in SIZES]
        assert counts[1] - counts[0] == 1 and counts[2] - counts[1] == 1, (name, counts)


def test_model_network_picks_the_family_and_the_presets_are_objective_plus_network():
    torch.manual_seed(0)
    preset = build_model("btcvae-resnet", {"latent_dim": 4}, channels=3)
    torch.manual_seed(0)
    composed = build_model("btcvae", {"latent_dim": 4}, channels=3, network="resnet")
    a, b = preset.state_dict(), composed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    gan_on_resnet = build_model("gan", {"latent_dim": 4}, channels=1, network="resnet", image_size=32)
    assert gan_on_resnet.decode(torch.randn(2, 4)).shape == (2, 1, 32, 32)
    with pytest.raises(ConfigError, match="unknown network 'vit'; choose one of: conv, dcgan, resnet"):
        build_model("btcvae", {}, channels=3, network="vit")
    with pytest.raises(ConfigError, match="image size 48 px is not supported"):
        build_model("vae", {}, channels=3, image_size=48)


def test_config_model_network_is_checked_and_recorded(tmp_path):
    config = {"model": {"name": "btcvae", "network": "resnett"}, "data": {"spec": DATA}}
    with pytest.raises(ConfigError, match=r"unknown network 'resnett'.*\(in cfg\.yaml\)"):
        parse_run_config(config, "cfg.yaml")
    typed = parse_run_config({"model": {"name": "btcvae", "network": "resnet", "latent_dim": 3}})
    assert typed.model.network == "resnet" and typed.model.params.latent_dim == 3
    assert typed.train == TrainConfig() and typed.to_dict()["model"]["network"] == "resnet"


# --- the one option parser -------------------------------------------------------------------------------


def test_parse_gives_one_wording_for_every_source():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Options:
        scale: float = option(1.0, number(positive=True), "a scale")
        steps: int = 3

    assert parse(Options, {"scale": 2, "steps": 4}, where="x", prefix="option") == Options(2.0, 4)
    cases = [({"scale": -1}, "option.scale in --option must be > 0, got -1.0"),
             ({"steps": 1.5}, "option.steps in --option must be an integer, got 1.5"),
             ({"bogus": 1}, "unknown key option.bogus in --option (unknown option of option); allowed: "
                            "scale, steps")]
    for given, message in cases:
        with pytest.raises(ConfigError) as info:
            parse(Options, given, where="--option", prefix="option")
        assert str(info.value) == message


def test_run_config_is_typed_and_round_trips():
    typed = parse_run_config({"model": {"name": "vae"}, "train": {"lr": 3e-4, "optimizer": "sgd"}})
    assert isinstance(typed, RunConfig) and typed.train.lr == 3e-4 and typed.train.optimizer == "sgd"
    assert parse_run_config(typed.to_dict()) == typed
    assert typed.replace("train", iterations=7).train.iterations == 7
    with pytest.raises(ConfigError, match=r"train\.iterations in replace\(\) must be >= 1"):
        typed.replace("train", iterations=0)


# --- registry override -----------------------------------------------------------------------------------


def test_registry_override_is_scoped():
    entry = ModelEntry(MODELS.get("vae").config_class, lambda config, channels: nn.Identity(), "stand-in")
    with MODELS.override("vae", entry):
        assert MODELS.get("vae") is entry
        with MODELS.override("brand-new", entry):
            assert "brand-new" in MODELS
    assert "brand-new" not in MODELS and MODELS.get("vae") is not entry


# --- Trainer, callbacks, process state ------------------------------------------------------------------


def small_config(name: str = "gan", **train) -> dict:
    train_cfg = {"iterations": 6, "batch_size": 8, "log_every": 2, "checkpoint_every": 3, "num_threads": 1,
                 "seed": 1, **train}
    return {"model": {"name": name, "latent_dim": 4, "width": 4} if name == "gan" else {"name": name},
            "train": train_cfg, "data": {"spec": DATA}}


def test_train_leaves_the_global_rng_and_thread_count_as_found(tmp_path):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    threads = torch.get_num_threads()
    train(small_config(num_threads=1), tmp_path / "run")
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def on_train_start(self, trainer):
        self.events.append(("start", trainer.iteration))

    def on_log(self, trainer, record):
        self.events.append(("log", record["iter"]))

    def on_checkpoint(self, trainer):
        self.events.append(("checkpoint", trainer.iteration))

    def on_train_end(self, trainer):
        self.events.append(("end", trainer.iteration))


def test_callbacks_see_the_schedule_in_order(tmp_path):
    recorder = Recorder()
    config = parse_run_config(small_config())
    out = tmp_path / "run"
    train(config, out, callbacks=[*default_callbacks(config, progress=False, out=out), recorder])
    assert recorder.events == [("start", 0), ("log", 2), ("checkpoint", 3), ("log", 4), ("log", 6),
                               ("checkpoint", 6), ("end", 6)]


def test_ema_matches_a_hand_computed_average_and_resumes_bitwise(tmp_path):
    decay = 0.5
    config = parse_run_config(small_config(iterations=2, checkpoint_every=100))
    torch.manual_seed(0)
    model = build_model("gan", config.model.params, channels=3)
    images = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8).numpy()
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema = EMA(decay)

    class Check(Callback):
        def on_step_end(self, trainer):
            for key, value in trainer.model.state_dict().items():
                if value.is_floating_point():
                    expected[key] = decay * expected[key] + (1 - decay) * value.detach()
                else:
                    expected[key] = value.detach().clone()

    Trainer(model=model, config=config, out=tmp_path, train_images=images, device=torch.device("cpu"),
            callbacks=[ema, Check()]).run()
    for key, value in expected.items():
        torch.testing.assert_close(ema.shadow[key], value, rtol=1e-6, atol=1e-7, msg=key)

    # In a run directory: ema.safetensors per checkpoint, load_run uses it, resume is bitwise.
    run_config = small_config(ema=0.9, iterations=6, checkpoint_every=3)
    straight = train(run_config, tmp_path / "straight")
    train({**run_config, "train": {**run_config["train"], "iterations": 3}}, tmp_path / "resumed")
    resumed = train(run_config, tmp_path / "resumed", resume=True)
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(straight / "checkpoints/iter-6" / name))
        b = load_file(str(resumed / "checkpoints/iter-6" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ema_weights = load_file(str(straight / "checkpoints/iter-6/ema.safetensors"))
    run = load_run(straight)
    assert all(torch.equal(v, ema_weights[k]) for k, v in run.model.state_dict().items())


def test_optimizer_comes_from_the_config(tmp_path):
    from factorlens.training import rundir

    out = train(small_config(optimizer="sgd", momentum=0.9, lr=1e-3, iterations=3), tmp_path / "sgd")
    state = rundir.load_state(out / "checkpoints/iter-3")
    group = state["optimizer"]["param_groups"][0]
    assert group["momentum"] == 0.9 and group["lr"] == 1e-3 and "betas" not in group
    out = train(small_config(optimizer="adamw", weight_decay=0.01, iterations=3), tmp_path / "adamw")
    group = rundir.load_state(out / "checkpoints/iter-3")["optimizer"]["param_groups"][0]
    assert group["weight_decay"] == 0.01 and group["decoupled_weight_decay"] is True


def test_tensorboard_callback_and_export(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from factorlens.cli.main import main

    out = train(small_config(tensorboard=True), tmp_path / "run")
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("loss/adv_gen")] == [2, 4, 6]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("loss/adv_gen")] == pytest.approx([r["adv_gen"] for r in log])
    assert [e.step for e in events.Images("traversal")] == [3, 6]

    assert main(["export-tensorboard", str(out), "--out", str(tmp_path / "exported")]) == 0
    exported = EventAccumulator(str(tmp_path / "exported")).Reload()
    assert exported.Tags()["scalars"] == events.Tags()["scalars"]


# --- v1 run directories ----------------------------------------------------------------------------------


def test_a_v1_run_directory_loads_decodes_and_resumes(tmp_path):
    run = load_run(V1_RUN)
    assert run.config.model.name == "gan" and run.config.model.network is None
    assert run.config.train.optimizer == "adam" and run.iteration == 3
    images = run.model.decode(torch.zeros(2, 4))
    assert images.shape == (2, 3, 64, 64)
    copy = tmp_path / "v1"
    shutil.copytree(V1_RUN, copy)
    train(small_config(iterations=5, seed=0, log_every=1, checkpoint_every=3), copy, resume=True)
    resumed = load_run(copy)
    assert resumed.iteration == 5 and resumed.config.model.network == "dcgan"
    with pytest.raises(ConfigError, match=r"model\.width differ"):
        other = small_config(iterations=6, seed=0, log_every=1, checkpoint_every=3)
        other["model"]["width"] = 8
        train(other, copy, resume=True)
