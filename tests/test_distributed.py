"""Data-parallel training under torchrun with 2 gloo processes on CPU.

Each launch runs a small script that registers *probe* models (the real models, or a noise-free
autoencoder, whose factory keeps a reference to the instance) and calls ``factorlens.training.train``;
after training every rank dumps its parameters and the dataset size its loss was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

pytest.importorskip("torch.distributed")
import torch.distributed as dist  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch was built without gloo", allow_module_level=True)

SCRIPT = textwrap.dedent('''
    import json, os, sys
    from dataclasses import dataclass
    import numpy as np
    import torch
    from torch import nn
    from factorlens.models import MODELS, ModelEntry, build_model
    from factorlens.models.base import LatentModel, StepOutput
    from factorlens.training import train

    built = []

    @dataclass
    class PlainAEConfig:
        latent_dim: int = 4
        def validate(self):
            pass

    class PlainAE(LatentModel):
        """Deterministic autoencoder: the loss is a per-image mean, so 2 x half batches == 1 batch."""
        def __init__(self, config, channels):
            super().__init__()
            self.latent_dim, self.channels = config.latent_dim, channels
            self.enc = nn.Sequential(nn.Conv2d(channels, 4, 4, 4), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(4 * 16 * 16, config.latent_dim))
            self.dec = nn.Linear(config.latent_dim, channels * 64 * 64)
        def encode(self, x):
            mu = self.enc(x)
            return mu, torch.zeros_like(mu)
        def decode(self, z):
            return torch.sigmoid(self.dec(z)).view(-1, self.channels, 64, 64)
        def compute_loss(self, x, *, dataset_size):
            x_hat = self.decode(self.encode(x)[0])
            loss = (x_hat - x).pow(2).flatten(1).sum(1).mean()
            return StepOutput(loss=loss, terms={"rec": loss.detach()}, x_hat=x_hat)

    # PROBE_SIGTERM="RANK:CALL": that rank sends itself SIGTERM during its CALL-th loss computation.
    signal_rank, signal_call = map(int, os.environ.get("PROBE_SIGTERM", "-1:-1").split(":"))

    def keep(model):
        forward_loss = model.compute_loss
        model.calls = 0
        def recording(x, *, dataset_size):
            model.seen_dataset_size = dataset_size
            model.calls += 1
            if int(os.environ.get("RANK", "0")) == signal_rank and model.calls == signal_call:
                import signal
                os.kill(os.getpid(), signal.SIGTERM)
            return forward_loss(x, dataset_size=dataset_size)
        model.compute_loss = recording
        built.append(model)
        return model

    MODELS.register("probe-plain-ae")(ModelEntry(PlainAEConfig, lambda c, ch: keep(PlainAE(c, ch)), "test"))
    for name in ("btcvae", "btcvae-adv"):
        entry = MODELS.get(name)
        MODELS.register("probe-" + name)(ModelEntry(
            entry.config_class, (lambda factory: lambda c, nets: keep(factory(c, nets)))(entry.factory),
            "test", entry.network))

    out, model, resume = sys.argv[1], sys.argv[2], sys.argv[5]
    iters, batch = int(sys.argv[3]), int(sys.argv[4])
    config = {"model": {"name": model, "latent_dim": 4},
              "train": {"iterations": iters, "batch_size": batch, "lr": 1e-3, "device": "cpu",
                        "log_every": 1, "checkpoint_every": 2, "seed": 3, "num_threads": 1},
              "data": {"spec": "synthetic-lesions:n=96,seed=1"}}
    train(config, out, resume=resume == "resume", progress=False)
    model_obj = built[-1]
    rank = int(os.environ.get("RANK", "0"))
    from safetensors.numpy import save_file
    save_file({k: v.detach().contiguous().numpy().copy() for k, v in model_obj.state_dict().items()},
              os.path.join(out, f"probe-rank{rank}.safetensors"))
    with open(os.path.join(out, f"probe-rank{rank}.json"), "w") as f:
        json.dump({"seen_dataset_size": getattr(model_obj, "seen_dataset_size", None)}, f)
''')


def launch(tmp_path: Path, out: Path, model: str, iters: int, batch: int, *, processes: int,
           resume: bool = False, sigterm: str | None = None) -> subprocess.CompletedProcess:
    """Run the probe script (under torchrun when ``processes > 1``); asserts success unless ``sigterm``
    ("RANK:CALL", see the script) interrupts it, then returns the result for the caller to check."""
    script = tmp_path / "probe_train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "FACTORLENS_CACHE": str(tmp_path / "cache"), "FACTORLENS_NO_PROGRESS": "1",
           "OMP_NUM_THREADS": "1"}
    if sigterm is not None:
        env["PROBE_SIGTERM"] = sigterm
    args = [str(out), model, str(iters), str(batch), "resume" if resume else "fresh"]
    if processes == 1:
        command = [sys.executable, str(script), *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", str(script), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if sigterm is None:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def rank_weights(out: Path, rank: int) -> dict[str, np.ndarray]:
    return load_file(str(out / f"probe-rank{rank}.safetensors"))


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    launch(tmp_path, single, "probe-plain-ae", iters=5, batch=16, processes=1)
    launch(tmp_path, double, "probe-plain-ae", iters=5, batch=16, processes=2)
    reference = rank_weights(single, 0)
    rank0, rank1 = rank_weights(double, 0), rank_weights(double, 1)
    assert reference.keys() == rank0.keys() == rank1.keys()
    moved = 0.0
    for key in reference:
        # Identical across ranks: the same averaged gradient and the same Adam state on every rank.
        np.testing.assert_array_equal(rank0[key], rank1[key])
        # The same trajectory as one process on the global batch, up to fp summation order.
        np.testing.assert_allclose(rank0[key], reference[key], rtol=1e-4, atol=1e-5)
        moved = max(moved, float(np.abs(reference[key]).max()))
    assert moved > 0
    # Only rank 0 wrote the run directory; its checkpoint holds the same weights.
    summary = json.loads((double / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["iterations"] == 5 and summary["batch_size"] == 16
    log = [json.loads(line) for line in (double / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [1, 2, 3, 4, 5]
    single_log = [json.loads(line) for line in (single / "log.jsonl").read_text().splitlines()]
    # The logged term is the mean over both ranks' halves == the single-process batch mean.
    np.testing.assert_allclose([r["rec"] for r in log], [r["rec"] for r in single_log], rtol=1e-4)


@pytest.mark.parametrize("model", ["probe-btcvae", "probe-btcvae-adv"])
def test_torchrun_keeps_ranks_identical_uses_global_n_and_resumes(tmp_path, model):
    out = tmp_path / "run"
    launch(tmp_path, out, model, iters=3, batch=8, processes=2)
    launch(tmp_path, out, model, iters=4, batch=8, processes=2, resume=True)
    rank0, rank1 = rank_weights(out, 0), rank_weights(out, 1)
    for key in rank0:  # generator and discriminator alike
        np.testing.assert_array_equal(rank0[key], rank1[key])
    split = json.loads((out / "split.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 4 and summary["processes"] == 2
    assert summary["dataset_size"] == len(split["train"])
    for rank in (0, 1):  # the TC estimator got the global training-set size, not the per-rank share
        seen = json.loads((out / f"probe-rank{rank}.json").read_text())["seen_dataset_size"]
        assert seen == len(split["train"])
    checkpoint = load_file(str(out / json.loads((out / "checkpoint.json").read_text())["latest"]
                               / "model.safetensors"))
    for key in rank0:
        np.testing.assert_array_equal(checkpoint[key], rank0[key])


def test_sigterm_on_one_rank_stops_every_rank_after_the_same_step_and_resume_finishes(tmp_path):
    # Without agreement, rank 0 would wait forever in the next all-reduce for the rank that stopped.
    out = tmp_path / "run"
    result = launch(tmp_path, out, "probe-plain-ae", iters=8, batch=16, processes=2, sigterm="1:3")
    assert result.returncode != 0
    assert "SIGTERM at iteration 3: checkpoint written" in result.stderr, result.stderr[-3000:]
    assert json.loads((out / "checkpoint.json").read_text()) == {"latest": "checkpoints/iter-3"}
    assert not (out / "summary.json").exists()
    launch(tmp_path, out, "probe-plain-ae", iters=8, batch=16, processes=2, resume=True)
    assert json.loads((out / "summary.json").read_text())["iterations"] == 8
    rank0, rank1 = rank_weights(out, 0), rank_weights(out, 1)
    for key in rank0:
        np.testing.assert_array_equal(rank0[key], rank1[key])
