"""factorlens works installed from its wheel, outside the checkout (issue 18, item 6).

Builds the wheel from a copy of the sources (no build isolation, no index: nothing is downloaded),
installs it without dependencies into a fresh venv that sees this environment's site-packages
(torch, numpy, ...) through a plain ``.pth`` path line (so the editable install's own ``.pth`` is not
processed), then trains a preset by name from a folder outside the repository.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRESETS = {f"{kind}/{name}" for kind in ("cpu", "paper")
           for name in ("vae", "beta-vae", "btcvae", "btcvae-resnet", "btcvae-adv", "gan", "ddpm",
                        "diffae")}


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(FACTORLENS_CACHE=str(tmp_path / "cache"), FACTORLENS_NO_PROGRESS="1",
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return env


def test_wheel_installs_and_trains_a_preset_outside_the_checkout(tmp_path):
    try:
        setuptools_version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        setuptools_version = "none"
    major = setuptools_version.split(".")[0]
    if not major.isdigit() or int(major) < 77:
        pytest.fail(f"building the wheel offline needs setuptools>=77 in this environment (found "
                    f"{setuptools_version}); it is in the dev extra: pip install -e '.[dev]'")
    assert not tmp_path.resolve().is_relative_to(REPO), f"{tmp_path} lies inside the checkout {REPO}"
    env = _clean_env(tmp_path)

    # 1. the wheel, from a copy of what it is built from (keeps build/ and egg-info out of the checkout)
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", wheels, source], cwd=tmp_path, env=env, timeout=180)
    (wheel,) = wheels.glob("factorlens-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    shipped = {n.removeprefix("factorlens/presets/").removesuffix(".yaml")
               for n in names if n.startswith("factorlens/presets/")}
    assert shipped == PRESETS
    assert "Requires-Dist: torch>=2.6" in metadata

    # 2. a venv with only the wheel installed; dependencies come from this environment's site-packages
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q",
          wheel], cwd=tmp_path, env=env)
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              cwd=tmp_path, env=env).strip())
    dev_paths = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    # plain path lines: the folders join sys.path after the venv's own site-packages, and their .pth
    # files (the editable install's among them) are not processed
    (site_packages / "_dev_dependencies.pth").write_text("".join(f"{p}\n" for p in dev_paths))

    # 3. from a folder outside the checkout: the installed package, its presets, the console script
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run([python, "-c", "import factorlens, factorlens.config as c; "
                  "print(factorlens.__file__); print(c.configs_dir())"], cwd=outside, env=env).split("\n")
    package_file, presets_dir = Path(where[0]).resolve(), Path(where[1]).resolve()
    assert package_file.is_relative_to(venv.resolve()), f"imported {package_file}, not the wheel's copy"
    assert presets_dir.is_relative_to(venv.resolve()) and (presets_dir / "cpu" / "btcvae.yaml").is_file()

    _run([venv / "bin" / "factorlens", "train", "--config", "cpu/btcvae", "--iters", "2", "--batch-size", "8",
          "--data", "synthetic-lesions:n=64", "--out", "RUN"], cwd=outside, env=env)
    assert (outside / "RUN" / "config.yaml").is_file()
    assert (outside / "RUN" / "summary.json").is_file()
