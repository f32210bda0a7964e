"""The training loop and run directories, exercised with tiny models on ``synthetic-lesions:n=128``.

The tiny models stand in for the registry models (they implement ``models/base.py``) so that these tests
check the loop itself in a second or two; they are registered for each test with ``MODELS.override``
(the public seam), so the real ``train`` → ``build_model`` path builds them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from factorlens.config import parse_run_config
from factorlens.errors import CheckpointError, ConfigError, TrainingError
from factorlens.models import MODELS, ModelEntry, build_model
from factorlens.models.base import LatentModel, StepOutput
from factorlens.training import load_run, rundir, train
from factorlens.training.callbacks import Callback, default_callbacks
from factorlens.training.trainer import TrainingInterrupted

DATA_SPEC = "synthetic-lesions:n=128"


class TinyVAE(LatentModel):
    """Conv encoder (one strided conv) + linear decoder upsampled x8; Gaussian VAE loss."""

    def __init__(self, channels: int = 3, latent_dim: int = 4, nan_at: int = 0) -> None:
        super().__init__()
        self.channels = channels
        self.latent_dim = latent_dim
        self.nan_at = nan_at  # 1-based call number at which the "kl" term becomes NaN (0 = never)
        self.calls = 0
        self.enc = nn.Conv2d(channels, 4, kernel_size=8, stride=8)
        self.head = nn.Linear(4 * 8 * 8, 2 * latent_dim)
        self.dec = nn.Linear(latent_dim, channels * 8 * 8)

    def encode(self, x):
        h = torch.relu(self.enc(x)).flatten(1)
        mu, logvar = self.head(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        small = self.dec(z).view(-1, self.channels, 8, 8)
        return torch.sigmoid(nn.functional.interpolate(small, scale_factor=8, mode="nearest"))

    def compute_loss(self, x, *, dataset_size):
        self.calls += 1
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_hat = self.decode(z)
        rec = (x_hat - x).pow(2).flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        if self.calls == self.nan_at:
            kl = kl * float("nan")
        return StepOutput(rec + kl, {"rec": rec.detach(), "kl": kl.detach()}, x_hat)

    def first_decoder_layer_weight(self):
        return self.dec.weight


class TinyAdversarial(TinyVAE):
    """TinyVAE plus a linear discriminator trained by the loop's adversary hook."""

    def __init__(self, channels: int = 3, latent_dim: int = 4) -> None:
        super().__init__(channels, latent_dim)
        self.adversary = nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(channels * 64, 1))

    def compute_loss(self, x, *, dataset_size):
        out = super().compute_loss(x, dataset_size=dataset_size)
        fool = nn.functional.softplus(-self.adversary(out.x_hat)).mean()
        return StepOutput(out.loss + 0.1 * fool, {**out.terms, "fool": fool.detach()}, out.x_hat)

    def adversary_loss(self, x, x_hat):
        discriminator = self.adversary
        real = nn.functional.softplus(-discriminator(x)).mean()
        fake = nn.functional.softplus(discriminator(x_hat)).mean()
        return StepOutput(real + fake, {"d_real": real.detach(), "d_fake": fake.detach()})


TINY_MODELS = {"tiny": TinyVAE, "tiny-adv": TinyAdversarial}


@dataclass
class TinyConfig:
    latent_dim: int = 4
    nan_at: int = 0

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim: must be >= 1, got {self.latent_dim}")


@dataclass
class TinyAdversarialConfig:
    latent_dim: int = 4

    def validate(self) -> None:
        TinyConfig(self.latent_dim).validate()


def _tiny_factory(model_class: type) -> Callable:
    return lambda config, channels: model_class(channels, **dataclasses.asdict(config))


# Registry entries, so that configs naming the tiny models pass validation (which checks the model's
# params before loading data); ``register_tiny_models`` adds them for one test (undone afterwards).
TINY_ENTRIES = {
    "tiny": ModelEntry(TinyConfig, _tiny_factory(TinyVAE), "test model"),
    "tiny-adv": ModelEntry(TinyAdversarialConfig, _tiny_factory(TinyAdversarial), "test model"),
}


def register_tiny_models(stack: contextlib.ExitStack) -> None:
    """Register the tiny models until ``stack`` closes."""
    for name, entry in TINY_ENTRIES.items():
        stack.enter_context(MODELS.override(name, entry))


def tiny_model(name: str, *, channels: int = 3) -> LatentModel:
    return build_model(name, {}, channels=channels)


@pytest.fixture()
def tiny_registry():
    with contextlib.ExitStack() as stack:
        register_tiny_models(stack)
        yield


@pytest.fixture(autouse=True)
def tiny_models(tiny_registry, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


def tiny_config(name: str = "tiny", **train_options) -> dict:
    train_cfg = {"iterations": 20, "batch_size": 16, "lr": 3e-3, "log_every": 5, "checkpoint_every": 10,
                 "num_threads": 1, "seed": 3}
    train_cfg.update(train_options)
    return {"model": {"name": name}, "train": train_cfg, "data": {"spec": DATA_SPEC}}


def test_loss_decreases_and_run_directory_is_complete(tmp_path):
    out = train(tiny_config(iterations=60, checkpoint_every=25), tmp_path / "run")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == list(range(5, 61, 5))
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]  # measured: 851 -> 513
    assert log[-1]["rec"] < log[0]["rec"]
    assert all(r["images_per_s"] > 0 for r in log)
    # last 2 checkpoints kept (25, 50, 60 written -> 50 and 60), pointer on the last one
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter-50", "iter-60"]
    assert json.loads((out / "checkpoint.json").read_text()) == {"latest": "checkpoints/iter-60"}
    meta = json.loads((out / "checkpoints/iter-60/meta.json").read_text())
    assert meta["iteration"] == 60 and meta["model"] == "tiny" and meta["format_version"] == 1
    split = json.loads((out / "split.json").read_text())
    assert split["n"] == 128 and len(split["train"]) + len(split["test"]) == 128
    assert not set(split["train"]) & set(split["test"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 60 and summary["dataset_size"] == len(split["train"])
    assert summary["final_terms"]["loss"] == pytest.approx(log[-1]["loss"])

    run = load_run(out)
    assert run.model_name == "tiny" and run.iteration == 60 and not run.model.training
    assert run.config.train.iterations == 60 and run.config.data.spec == DATA_SPEC
    assert len(run.log()) == 12 and len(run.load_dataset()) == 128
    weights = load_file(str(out / "checkpoints/iter-60/model.safetensors"))
    assert torch.equal(run.model.dec.weight, weights["dec.weight"])


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    # 7 is not a multiple of the epoch length (≈102 train images / 16 = 6 batches): resumes mid-epoch.
    straight = train(tiny_config(iterations=14, checkpoint_every=100), tmp_path / "straight")
    first = train(tiny_config(iterations=7, checkpoint_every=100), tmp_path / "resumed")
    resumed = train(tiny_config(iterations=14, checkpoint_every=100), first, resume=True)
    a = load_file(str(straight / "checkpoints/iter-14/model.safetensors"))
    b = load_file(str(resumed / "checkpoints/iter-14/model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The first session logged at its end (iteration 7); the record at 14 averages 11..14 in both.
    last_a = json.loads((straight / "log.jsonl").read_text().splitlines()[-1])
    last_b = json.loads((resumed / "log.jsonl").read_text().splitlines()[-1])
    assert last_a["iter"] == last_b["iter"] == 14
    assert all(last_a[k] == last_b[k] for k in ("loss", "rec", "kl"))


def test_resume_refuses_a_changed_config_and_reuses_a_complete_run(tmp_path):
    out = train(tiny_config(iterations=5), tmp_path / "run")
    before = {name: (out / name).read_bytes() for name in ("log.jsonl", "summary.json", "checkpoint.json")}
    assert train(tiny_config(iterations=5), out, resume=True) == out
    assert before == {name: (out / name).read_bytes() for name in before}
    with pytest.raises(ConfigError, match=r"train\.lr differ"):
        train(tiny_config(iterations=10, lr=1e-2), out, resume=True)


def test_out_dir_holding_a_run_is_refused_unless_resume_or_force(tmp_path):
    out = train(tiny_config(iterations=5), tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        train(tiny_config(iterations=5, seed=4), out)
    train(tiny_config(iterations=6, seed=4), out, force=True)
    assert json.loads((out / "summary.json").read_text())["iterations"] == 6
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter-6"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no factorlens run"):
        train(tiny_config(), tmp_path / "other")


def test_adversary_hook_steps_only_the_adversary_with_its_own_optimizer(tmp_path):
    out = train(tiny_config("tiny-adv", iterations=10, adv_lr=1e-2), tmp_path / "run")
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert {"loss", "rec", "kl", "fool", "adv_loss", "d_real", "d_fake"} <= set(record)
    assert record["adv_loss"] == pytest.approx(record["d_real"] + record["d_fake"], rel=1e-5)
    state = rundir.load_state(out / "checkpoints/iter-10")
    model = tiny_model("tiny-adv")
    n_adversary = len(list(model.adversary.parameters()))
    assert len(state["adv_optimizer"]["param_groups"][0]["params"]) == n_adversary
    assert len(state["optimizer"]["param_groups"][0]["params"]) == len(list(model.parameters())) - n_adversary
    assert state["adv_optimizer"]["param_groups"][0]["betas"] == (0.5, 0.9)
    weights = load_file(str(out / "checkpoints/iter-10/model.safetensors"))
    assert "adversary.2.weight" in weights
    assert not torch.equal(weights["adversary.2.weight"], model.adversary[2].weight.detach())


def test_non_finite_loss_names_iteration_and_term_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    config = tiny_config(iterations=30, checkpoint_every=10)
    config["model"]["nan_at"] = 13
    with pytest.raises(TrainingError, match=r"non-finite loss term 'kl' at iteration 13") as info:
        train(config, out)
    assert "iter-10" in str(info.value) and "\n" not in str(info.value)
    assert json.loads((out / "checkpoint.json").read_text()) == {"latest": "checkpoints/iter-10"}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter-10"]
    assert not (out / "summary.json").exists()
    assert max(json.loads(line)["iter"] for line in (out / "log.jsonl").read_text().splitlines()) == 10
    # a run that failed before its first checkpoint may simply be started again
    config["model"]["nan_at"] = 2
    with pytest.raises(TrainingError, match="at iteration 2 .* no checkpoint was written"):
        train(config, tmp_path / "early")
    assert not (tmp_path / "early" / "checkpoint.json").exists()
    config["model"]["nan_at"] = 0
    assert json.loads((train(config, tmp_path / "early") / "summary.json").read_text())["iterations"] == 30


@pytest.mark.parametrize("container", ["raw-pickle", "torch-zip"])
def test_malicious_pickle_in_state_is_refused_without_executing(tmp_path, container):
    out = train(tiny_config(iterations=5), tmp_path / "run")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = {"format_version": 1, "x": Exploit()}
    target = out / "checkpoints/iter-5/state.pt"
    if container == "raw-pickle":
        target.write_bytes(pickle.dumps(state, protocol=2))
    else:
        torch.save(state, target)
    with pytest.raises(CheckpointError, match="state.pt refused") as info:
        train(tiny_config(iterations=10), out, resume=True)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_corrupted_or_foreign_checkpoints_give_one_line_errors(tmp_path):
    out = train(tiny_config(iterations=5), tmp_path / "run")
    weights = out / "checkpoints/iter-5/model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupted"):
        load_run(out)
    weights.write_bytes(good)
    meta_path = out / "checkpoints/iter-5/meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "model": "tiny-adv"}))
    with pytest.raises(CheckpointError, match="checkpoint is of model 'tiny-adv', config says 'tiny'"):
        load_run(out)
    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_run(out)
    meta_path.write_text(json.dumps(meta))
    (out / "checkpoints/iter-5/state.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="state.pt"):
        train(tiny_config(iterations=10), out, resume=True)
    assert load_run(out).iteration == 5


class SignalAt(Callback):
    """Sets the stop request the signal handler would set, after step ``iteration``."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_step_end(self, trainer) -> None:
        if trainer.iteration == self.iteration:
            trainer.stop_signal = signal.SIGTERM


def test_interrupt_writes_a_checkpoint_and_resume_continues(tmp_path):
    """In-process: a stop request (what the signal handler sets) ends the step and checkpoints."""
    out = tmp_path / "run"
    config = tiny_config(iterations=12)
    callbacks = [*default_callbacks(parse_run_config(config), progress=False, out=out), SignalAt(4)]
    with pytest.raises(TrainingInterrupted, match="SIGTERM at iteration 4"):
        train(config, out, callbacks=callbacks)
    assert json.loads((out / "checkpoint.json").read_text()) == {"latest": "checkpoints/iter-4"}
    train(tiny_config(iterations=12), out, resume=True)
    assert load_run(out).iteration == 12


SIGTERM_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import test_training
from factorlens.models import MODELS
for name, entry in test_training.TINY_ENTRIES.items():
    MODELS.register(name)(entry)
from factorlens.cli.main import main
sys.exit(main(["train", "--config", {config!r}, "--out", {out!r}]))
"""


def test_sigterm_in_a_subprocess_checkpoints_and_exits_130(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"model: {{name: tiny}}\ndata: {{spec: '{DATA_SPEC}'}}\n"
        "train: {iterations: 1000000, batch_size: 16, log_every: 1, checkpoint_every: 1000000, "
        "num_threads: 1}\n"
    )
    out = tmp_path / "run"
    script = SIGTERM_SCRIPT.format(tests=str(Path(__file__).parent), config=str(config), out=str(out))
    env = {**os.environ, "FACTORLENS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "log.jsonl").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "training never logged"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "SIGTERM at iteration" in stderr and "Traceback" not in stderr
    latest = json.loads((out / "checkpoint.json").read_text())["latest"]
    iteration = int(latest.removeprefix("checkpoints/iter-"))
    assert 1 <= iteration < 1_000_000
    assert json.loads((out / latest / "meta.json").read_text())["iteration"] == iteration
    assert not (out / "summary.json").exists()


def test_bf16_autocast_trains_and_differs_from_fp32(tmp_path):
    fp32 = train(tiny_config(iterations=10), tmp_path / "fp32")
    bf16 = train(tiny_config(iterations=10, precision="bf16"), tmp_path / "bf16")
    log_32 = [json.loads(line) for line in (fp32 / "log.jsonl").read_text().splitlines()]
    log_16 = [json.loads(line) for line in (bf16 / "log.jsonl").read_text().splitlines()]
    assert log_16[-1]["loss"] < log_16[0]["loss"]
    # same seed and batches: bf16 lands near fp32 but not on it
    assert log_16[-1]["loss"] == pytest.approx(log_32[-1]["loss"], rel=0.05)
    w32 = load_file(str(fp32 / "checkpoints/iter-10/model.safetensors"))["dec.weight"]
    w16 = load_file(str(bf16 / "checkpoints/iter-10/model.safetensors"))["dec.weight"]
    assert w16.dtype == torch.float32 and not torch.equal(w32, w16)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    real_write = rundir.atomic_write_bytes

    def full_disk_at_iteration_20(path, data):
        if "iter-20" in str(path) and Path(path).name == rundir.STATE_FILE:
            real_write(Path(path).with_name(".partial"), data[: len(data) // 2])  # a torn write...
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(rundir, "atomic_write_bytes", full_disk_at_iteration_20)
    out = tmp_path / "run"
    with pytest.raises(CheckpointError) as error:
        train(tiny_config(iterations=30, checkpoint_every=10), out)
    message = str(error.value)
    assert "iteration 20" in message and "No space left on device" in message
    assert "checkpoints/iter-10 is intact" in message
    assert json.loads((out / "checkpoint.json").read_text())["latest"] == "checkpoints/iter-10"
    assert load_run(out).iteration == 10
    monkeypatch.setattr(rundir, "atomic_write_bytes", real_write)
    # ...is harmless: the resumed run rewrites iter-20 and ends where an uninterrupted run ends.
    resumed = train(tiny_config(iterations=30, checkpoint_every=10), out, resume=True)
    straight = train(tiny_config(iterations=30, checkpoint_every=10), tmp_path / "straight")
    a = load_file(str(straight / "checkpoints/iter-30/model.safetensors"))
    b = load_file(str(resumed / "checkpoints/iter-30/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


KILL_SCRIPT = SIGTERM_SCRIPT.replace('"--out", {out!r}]', '"--out", {out!r}, "--resume"]')


def test_kill_9_at_any_moment_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    """SIGKILL (no handler runs) three times at random moments; every time the run resumes from an intact
    checkpoint, and the final weights equal those of a run that was never killed."""
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"model: {{name: tiny}}\ndata: {{spec: '{DATA_SPEC}'}}\n"
        "train: {iterations: 400, batch_size: 16, lr: 3.0e-3, log_every: 1, checkpoint_every: 1, "
        "num_threads: 1, seed: 3}\n"
    )
    out = tmp_path / "run"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), config=str(config), out=str(out))
    env = {**os.environ, "FACTORLENS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1",
           "FACTORLENS_CACHE": str(tmp_path / "cache")}
    def pointer_iteration() -> int:
        # Only the pointer while the trainer runs: it prunes old checkpoint folders as it goes.
        if not (out / "checkpoint.json").exists():
            return 0
        latest = json.loads((out / "checkpoint.json").read_text())["latest"]
        return int(latest.removeprefix("checkpoints/iter-"))

    rng = random.Random(0)
    killed_at = []
    for _ in range(3):
        start = pointer_iteration()
        proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            # Wait until this session has checkpointed past where it started, then a random extra delay.
            while pointer_iteration() <= start:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "training never checkpointed"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        killed_at.append(load_run(out).iteration)  # the checkpoint the pointer names is complete
    assert killed_at == sorted(killed_at) and killed_at[-1] < 400, killed_at
    final = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                           timeout=300)
    assert final.returncode == 0, final.stderr
    assert json.loads((out / "summary.json").read_text())["iterations"] == 400
    straight = train(tiny_config(iterations=400, checkpoint_every=400, log_every=1), tmp_path / "straight")
    a = load_file(str(straight / "checkpoints/iter-400/model.safetensors"))
    b = load_file(str(out / "checkpoints/iter-400/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
