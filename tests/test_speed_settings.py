"""Issue 20's process settings: train.precision auto, the OpenMP wait policy the CLI sets, the anchor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import tiny_config, tiny_models, tiny_registry  # noqa: F401 (fixtures)

from factorlens.environment import bf16_matrix_units, describe_machine, machine_record, resolve_precision
from factorlens.openmp import busy_cpus, openmp_environment
from factorlens.training import train

REPO = Path(__file__).resolve().parents[1]


def cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(("flags", "units", "chosen"), [
    ("avx512f avx512_bf16 amx_bf16 amx_tile", "amx_bf16", "bf16"),
    ("avx512f avx512_bf16", "avx512_bf16", "bf16"),
    ("avx2 fma", None, "fp32"),
])
def test_auto_precision_chooses_bf16_only_where_bf16_instructions_exist(flags, units, chosen):
    info = cpuinfo(flags)
    assert bf16_matrix_units(info) == units
    precision, reason = resolve_precision("auto", "cpu", info)
    assert precision == chosen and reason.startswith("auto: ")
    # an explicit choice is never second-guessed
    assert resolve_precision("fp32", "cpu", info) == ("fp32", "configured")
    assert resolve_precision("bf16", "cpu", info) == ("bf16", "configured")


def test_auto_precision_is_recorded_in_the_summary(tmp_path):
    run = train(tiny_config(iterations=4, precision="auto"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    expected, reason = resolve_precision("auto", "cpu")
    assert summary["precision"] == expected == summary["environment"]["precision"]
    assert summary["precision_reason"] == reason
    assert summary["environment"]["bf16_units"] == bf16_matrix_units()
    # the config keeps what the user asked for
    assert "precision: auto" in (run / "config.yaml").read_text()


def test_auto_precision_trains_like_the_precision_it_chose(tmp_path):
    chosen, _ = resolve_precision("auto", "cpu")
    auto = train(tiny_config(iterations=5, precision="auto"), tmp_path / "auto")
    fixed = train(tiny_config(iterations=5, precision=chosen), tmp_path / "fixed")

    def losses(run: Path) -> list[float]:
        return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]

    assert losses(auto) == losses(fixed)


@pytest.mark.parametrize(("environ", "busy", "added"), [
    ({}, 1.7, {"OMP_WAIT_POLICY": "PASSIVE"}),  # another training is running
    ({}, 0.1, {}),  # idle machine: keep libgomp's spinning, the fastest alone
    ({}, None, {}),  # load unknown
    ({"OMP_WAIT_POLICY": "ACTIVE"}, 1.7, {}),  # the user's choice wins
    ({"GOMP_SPINCOUNT": "300000"}, 1.7, {}),
])
def test_openmp_policy_is_passive_only_on_a_busy_machine(environ, busy, added):
    variables, reason = openmp_environment(environ, busy)
    assert variables == added and reason


def test_busy_cpus_reads_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    lines = iter(["cpu  100 0 100 800 0 0 0 0 0 0\n", "cpu  250 0 150 900 0 0 0 0 0 0\n"])
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: next(lines) if self == stat else "")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # 300 jiffies elapsed, 100 idle: 2/3 of 2 CPUs busy
    assert busy_cpus(0.0, stat) == pytest.approx(4 / 3)
    assert busy_cpus(0.0, tmp_path / "missing") is None


def test_the_factorlens_command_decides_the_wait_policy_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import sys, os\n"
            "import factorlens.cli.main as m\n"
            "import factorlens.openmp as o\n"
            "o.busy_cpus = lambda: 1.5\n"
            "assert 'torch' not in sys.modules\n"
            "m.build_parser = lambda: (_ for _ in ()).throw(SystemExit(os.environ.get('OMP_WAIT_POLICY')))\n"
            "m.main(['--version'])\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            check=False)
    assert result.stderr.strip().splitlines()[-1] == "PASSIVE", result.stderr


def test_machine_record_carries_the_wait_policy(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    record = machine_record("fp32")
    assert record["omp_wait_policy"] == "PASSIVE"
    assert "OMP_WAIT_POLICY=PASSIVE" in describe_machine(record)


def test_anchor_loss_matches_an_independent_loop_computation():
    """The anchor's MSS estimator against a per-pair loop over the batch (Chen et al.'s formulas with the
    reference code's weight matrix), and its FLOP count against the layer arithmetic."""
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.anchor_dvae import _mss_log_weights, anchor_flops_per_image, btcvae_loss
    finally:
        sys.path.remove(str(REPO))
    import math

    torch.manual_seed(0)
    batch, dim, n = 5, 3, 100
    mean, logvar = torch.randn(batch, dim, dtype=torch.float64), torch.randn(batch, dim, dtype=torch.float64)
    z = mean + torch.randn(batch, dim, dtype=torch.float64) * (0.5 * logvar).exp()
    x = torch.rand(batch, 1, 4, 4, dtype=torch.float64)
    x_hat = torch.rand(batch, 1, 4, 4, dtype=torch.float64).clamp(0.01, 0.99)
    weights = _mss_log_weights(batch, n).exp().double()

    def log_normal(v, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (v - m) ** 2 / math.exp(lv))

    mi = tc = dwkl = 0.0
    for i in range(batch):
        qzx = sum(log_normal(z[i, k].item(), mean[i, k].item(), logvar[i, k].item()) for k in range(dim))
        pz = sum(log_normal(z[i, k].item(), 0.0, 0.0) for k in range(dim))
        qz = math.log(sum(weights[i, j].item() * math.exp(sum(
            log_normal(z[i, k].item(), mean[j, k].item(), logvar[j, k].item()) for k in range(dim)))
            for j in range(batch)))
        prod = sum(math.log(sum(weights[i, j].item() * math.exp(
            log_normal(z[i, k].item(), mean[j, k].item(), logvar[j, k].item())) for j in range(batch)))
            for k in range(dim))
        mi, tc, dwkl = mi + (qzx - qz) / batch, tc + (qz - prod) / batch, dwkl + (prod - pz) / batch
    bce = -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum().item() / batch
    loss = btcvae_loss(x, x_hat, mean, logvar, z, n, beta=6.0)
    assert loss.item() == pytest.approx(bce + mi + 6 * tc + dwkl, rel=1e-7)  # fp32 weights
    # 4 convs (3->32 at 32 px, 32->32 at 16, 8, 4 px), 3 encoder + 3 decoder linears, 4 transposed convs
    convs = 2 * 16 * (3 * 32 * 32**2 + 32 * 32 * (16**2 + 8**2 + 4**2))
    linears = 2 * (512 * 256 + 256 * 256 + 256 * 64 + 32 * 256 + 256 * 256 + 256 * 512)
    assert anchor_flops_per_image() == pytest.approx(3 * (2 * convs + linears))


def test_the_diffusion_unet_trains_in_nchw_and_the_vaes_in_channels_last():
    from factorlens.models import build_model
    from factorlens.training.trainer import _use_channels_last

    assert _use_channels_last(build_model("btcvae", {}, channels=3, image_size=64))
    assert not _use_channels_last(build_model("ddpm", {"resolution": 32}, channels=3, image_size=64))
    assert not _use_channels_last(torch.nn.Linear(3, 3))  # no convolutions
