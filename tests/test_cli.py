"""The command line: discovery of subcommands, exit codes, and the train / data / encode commands."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from test_training import DATA_SPEC, register_tiny_models

import factorlens.cli.main as cli_main
from factorlens.cli.main import main
from factorlens.data import load_dataset, to_float
from factorlens.training import load_run


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path_factory):
    stack = contextlib.ExitStack()
    register_tiny_models(stack)
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")
    with stack:
        yield


def write_config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"model: {{name: tiny}}\ndata: {{spec: '{DATA_SPEC}'}}\n"
        f"train: {{iterations: 10, batch_size: 16, lr: 3.0e-3, log_every: 5, num_threads: 1{extra}}}\n"
    )
    return str(path)


def assert_one_line_error(captured, fragment: str) -> None:
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err


def test_subcommands_are_discovered_from_the_package():
    names = cli_main.command_modules()
    assert {"train", "data", "encode", "models", "demo"} <= set(names)
    assert "main" not in names and not any(n.startswith("_") for n in names)
    parser = cli_main.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    assert set(names) <= set(commands)


def test_a_command_module_without_register_is_a_programming_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "factorlens.cli.broken", types.ModuleType("factorlens.cli.broken"))
    monkeypatch.setattr(cli_main, "command_modules", lambda: ["broken"])
    with pytest.raises(TypeError, match=r"factorlens\.cli\.broken defines no register"):
        cli_main.build_parser()


def test_train_cli_with_overrides_then_refuses_the_same_out_dir(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--config", write_config(tmp_path), "--out", str(out), "--iters", "6",
                 "--batch-size", "8", "--seed", "5", "--set", "train.lr=1e-3"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "tiny 6 iterations" in stdout
    config = load_run(out).config
    assert config.train.iterations == 6 and config.train.batch_size == 8
    assert config.train.seed == 5 and config.train.lr == 1e-3
    assert main(["train", "--config", write_config(tmp_path), "--out", str(out)]) == 2
    assert_one_line_error(capsys.readouterr(), "already holds a run; pass --resume")
    # --resume without --config continues from the run's own config
    assert main(["train", "--out", str(out), "--resume", "--iters", "9"]) == 0
    assert load_run(out).iteration == 9


@pytest.mark.parametrize(
    ("argv_tail", "fragment"),
    [
        (["--set", "train.lrr=1"], "unknown key train.lrr"),
        (["--iters", "0"], "train.iterations in command line must be >= 1"),
        (["--data", "no-such-data"], "unknown dataset 'no-such-data'"),
        (["--batch-size", "1000"], "train.batch_size 1000 exceeds the"),
    ],
)
def test_train_cli_user_errors_exit_2_with_one_line(tmp_path, capsys, argv_tail, fragment):
    out = tmp_path / "run"
    assert main(["train", "--config", write_config(tmp_path), "--out", str(out), *argv_tail]) == 2
    assert_one_line_error(capsys.readouterr(), fragment)
    assert not (out / "checkpoint.json").exists()


def test_bad_config_file_exits_2(tmp_path, capsys):
    config = write_config(tmp_path, ", precision: fp8")
    assert main(["train", "--config", config, "--out", str(tmp_path / "run")]) == 2
    assert_one_line_error(capsys.readouterr(), f"train.precision in {config} must be one of fp32, bf16")


def test_usage_errors_exit_2_from_argparse(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", "x", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    import factorlens.cli.data as data_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_cli, "run_info", interrupted)
    assert main(["data", "info", DATA_SPEC]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_data_info_in_a_subprocess(tmp_path):
    env = {**os.environ, "FACTORLENS_CACHE": str(tmp_path / "cache"), "FACTORLENS_NO_PROGRESS": "1",
           "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-m", "factorlens", "data", "info", "synthetic-lesions:n=200"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    expected = load_dataset("synthetic-lesions:n=200", progress=False)
    assert "images: 200 x (3, 64, 64) uint8" in ok.stdout
    counts = np.bincount(expected.labels, minlength=len(expected.class_names))
    assert all(f"{name} {count}" in ok.stdout
               for name, count in zip(expected.class_names, counts, strict=True) if count)
    bad = subprocess.run([sys.executable, "-m", "factorlens", "data", "info", "synthetic-lesions:n=abc"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


def test_encode_writes_means_logvars_and_dataset_arrays(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--config", write_config(tmp_path), "--out", str(run_dir)]) == 0
    codes = tmp_path / "codes.npz"
    assert main(["encode", str(run_dir), "--out", str(codes), "--batch-size", "7"]) == 0
    assert "images (test split" in capsys.readouterr().out
    run = load_run(run_dir)
    dataset = run.load_dataset()
    test_idx = np.asarray(run.split["test"])
    with torch.no_grad():
        mu, logvar = run.model.encode(to_float(dataset.images[test_idx]))
    with np.load(codes) as arrays:
        assert arrays["mu"].shape == (len(test_idx), 4) and arrays["mu"].dtype == np.float32
        np.testing.assert_allclose(arrays["mu"], mu.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(arrays["logvar"], logvar.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(arrays["indices"], test_idx)
        np.testing.assert_array_equal(arrays["labels"], dataset.labels[test_idx])
        np.testing.assert_array_equal(arrays["factors"], dataset.factors[test_idx])
        np.testing.assert_array_equal(arrays["handcrafted"], dataset.handcrafted[test_idx])
        assert list(arrays["ids"]) == [dataset.ids[i] for i in test_idx]
        assert list(arrays["class_names"]) == dataset.class_names
    all_codes = tmp_path / "all.npz"
    assert main(["encode", str(run_dir), "--out", str(all_codes), "--split", "all"]) == 0
    with np.load(all_codes) as arrays:
        assert arrays["mu"].shape == (128, 4)
        np.testing.assert_allclose(arrays["mu"][test_idx], mu.numpy(), rtol=1e-5, atol=1e-6)
    capsys.readouterr()
    assert main(["encode", str(run_dir), "--out", str(tmp_path / "x.npz"), "--data",
                 "synthetic-lesions:n=64", "--split", "test"]) == 2
    assert_one_line_error(capsys.readouterr(), "use --split all with --data")
    assert main(["encode", str(tmp_path / "missing"), "--out", str(tmp_path / "y.npz")]) == 2
    assert_one_line_error(capsys.readouterr(), "run directory")
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 10


@pytest.mark.parametrize(("preset", "batch", "lr"), [("cpu", 64, 1e-3), ("paper", 256, 1e-4)])
def test_demo_trains_the_chosen_presets(tmp_path, monkeypatch, preset, batch, lr):
    import factorlens.training
    from factorlens.cli.demo import DEMO_MODELS, train_demo_runs

    seen = []

    def fake_train(config, out, *, resume, force):
        seen.append((config, out, resume, force))
        return out

    monkeypatch.setattr(factorlens.training, "train", fake_train)
    runs = train_demo_runs(tmp_path, list(DEMO_MODELS), data="synthetic-lesions:n=600", iters=3,
                           force=False, preset=preset, seed=5)
    assert runs == [tmp_path / name for name in DEMO_MODELS]
    assert [c["model"]["name"] for c, *_ in seen] == list(DEMO_MODELS)
    for config, _, resume, force in seen:
        assert config["train"]["batch_size"] == batch and config["train"]["lr"] == lr
        assert config["train"]["iterations"] == 3 and config["data"]["spec"] == "synthetic-lesions:n=600"
        assert config["model"]["latent_dim"] == 32 and config["train"]["seed"] == 5 and resume and not force


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ("kindd=axial", "unknown key option.kindd in --option (unknown option of direction method kmeans); "
                        "allowed: num_samples, kind"),
        ("restarts=many", "option.restarts in --option must be an integer, got 'many'"),
        ("kind", "--option 'kind': expected KEY=VALUE"),
    ],
)
def test_discover_option_errors_are_one_line_before_any_loading(tmp_path, capsys, option, fragment):
    # The run does not exist: the option is checked first, so its error is the one reported.
    code = main(["discover", str(tmp_path / "missing"), "--method", "kmeans", "--option", option])
    assert code == 2
    assert_one_line_error(capsys.readouterr(), fragment)
    assert not (tmp_path / "missing").exists()


def test_discover_passes_method_options_through(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", write_config(tmp_path), "--out", str(out)]) == 0
    capsys.readouterr()
    code = main(["discover", str(out), "--method", "kmeans", "-k", "2", "--rca-steps", "0",
                 "--option", "kind=spherical", "--option", "restarts=2"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((out / "directions" / "kmeans" / "directions.json").read_text())
    assert meta["params"]["kind"] == "spherical" and meta["params"]["restarts"] == 2
