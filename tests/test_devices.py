"""The registry models on every device this machine has: CPU always, CUDA where torch sees a GPU.

On a CPU-only machine the CUDA cases are skipped; on a GPU machine (``pytest tests/test_devices.py``,
see benchmarks/gpu_session.sh) they check what only a GPU can show: a GPU-trained run loads and encodes
the same on the CPU, the β-TCVAE estimator and the networks agree across devices, and a training step
never makes the host wait for the GPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from factorlens.config import parse_run_config
from factorlens.models import build_model
from factorlens.objectives.tc import decompose_kl
from factorlens.training import Trainer, load_run, train

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))]
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
PAPER_MODELS = ("vae", "btcvae", "btcvae-resnet", "btcvae-adv")
DATA_SPEC = "synthetic-lesions:n=96,seed=4"


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


def _config(model: str, device: str, iterations: int, precision: str = "fp32") -> dict:
    return {
        "model": {"name": model, "latent_dim": 8},
        "train": {"iterations": iterations, "batch_size": 16, "lr": 1e-3, "log_every": iterations,
                  "checkpoint_every": iterations, "seed": 5, "device": device, "precision": precision,
                  "num_threads": 1},
        "data": {"spec": DATA_SPEC},
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", PAPER_MODELS)
def test_a_run_trained_on_the_device_loads_and_encodes_the_same_on_the_cpu(tmp_path, device, model):
    precision = "bf16" if device == "cuda" else "fp32"
    assert not torch.backends.cudnn.benchmark
    out = train(_config(model, device, iterations=4, precision=precision), tmp_path / "run")
    assert not torch.backends.cudnn.benchmark  # switched on for CUDA training only, then put back
    run = load_run(out)  # always on the CPU
    assert run.iteration == 4
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    x = torch.from_numpy(run.load_dataset().images[:8]).float().div(255)
    with torch.no_grad():
        mu_cpu, logvar_cpu = run.model.encode(x)
        mu_dev, logvar_dev = run.model.to(device).encode(x.to(device))
    assert torch.isfinite(mu_cpu).all() and torch.isfinite(logvar_cpu).all()
    # TF32 convolutions on a GPU round inputs to 10 mantissa bits: agreement to ~1e-2, not 1e-6.
    tolerance = 2e-2 if device == "cuda" else 1e-6
    torch.testing.assert_close(mu_dev.cpu(), mu_cpu, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(logvar_dev.cpu(), logvar_cpu, atol=tolerance, rtol=tolerance)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tc_estimator_agrees_between_cpu_and_cuda(dtype):
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 10, generator=generator, dtype=dtype)
    logvar = torch.randn(64, 10, generator=generator, dtype=dtype).mul(0.5)
    z = mu + torch.randn(64, 10, generator=generator, dtype=dtype) * logvar.mul(0.5).exp()
    on_cpu = decompose_kl(z, mu, logvar, dataset_size=8000)
    on_gpu = decompose_kl(z.cuda(), mu.cuda(), logvar.cuda(), dataset_size=8000)
    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    for name in ("mi", "tc", "dwkl"):
        torch.testing.assert_close(getattr(on_gpu, name).cpu(), getattr(on_cpu, name), atol=tolerance,
                                   rtol=tolerance, msg=name)


@needs_cuda
@pytest.mark.parametrize("model", (*PAPER_MODELS, "gan"))
def test_training_steps_never_make_the_host_wait_for_the_gpu(model, monkeypatch):
    """Under ``set_sync_debug_mode("error")`` any device->host synchronisation (``.item()``, a
    data-dependent shape, a pageable copy) inside a step raises; the loop only syncs to log.

    Two steps run first, outside the check: cuDNN's kernel search (on, as in training) synchronises
    through raw CUDA calls the debug mode does not see, and it happens once per shape."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    config = parse_run_config(_config(model, "cuda", iterations=100, precision="bf16"), "test")
    torch.manual_seed(0)
    network = build_model(config.model.name, config.model.params, channels=3)
    images = np.random.default_rng(0).integers(0, 256, size=(64, 3, 64, 64), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        loop = Trainer(model=network, config=config, out=Path(tmp), train_images=images,
                       device=torch.device("cuda"))
        for _ in range(2):
            loop.step()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(10):  # epochs of 4 batches: new permutations at steps 5, 9 and 13
                loop.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert loop.iteration == 12
        assert torch.isfinite(loop.term_sums).all() and (loop.first_bad < 0).all()
