"""The notebook examples (``examples/*.py``, Jupyter percent format) run end to end as scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACTORLENS_CACHE": str(cwd / "cache"), "FACTORLENS_NO_PROGRESS": "1"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("examples")


def test_train_evaluate_traverse_example(workdir):
    result = run_example("01_train_evaluate_traverse.py", workdir)
    out = workdir / "example-runs"
    assert (out / "btcvae" / "checkpoint.json").is_file()
    assert (out / "traversal.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "traversal.gif").read_bytes()[:6] == b"GIF89a"
    for name in ("MIG_p", "MIG_hf", "MIG (factors)", "PSNR dB"):
        assert f"{name}: " in result.stdout
    assert "Latent traversals (Fig. 1a)" in result.stdout


def test_discover_directions_example(workdir):
    # after the first example: it reuses that run (same config) instead of training again
    result = run_example("02_discover_directions.py", workdir)
    out = workdir / "example-runs"
    scores = json.loads((out / "directions.json").read_text())
    assert set(scores) == {"sefa", "pca"}
    for method in ("sefa", "pca"):
        assert len(scores[method]["effect"]) == 4 and 0.0 <= scores[method]["direction_mig"] <= 1.0
        assert (out / f"{method}_traversal.png").is_file()
        assert f"{method}: direction-MIG" in result.stdout
