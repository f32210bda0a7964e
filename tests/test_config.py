"""Config validation: every error is one line naming section.key and the file; overrides."""

from __future__ import annotations

import pytest

from factorlens.config import (
    TRAIN_OPTIONS,
    apply_overrides,
    config_differences,
    dump_config,
    load_config,
    parse_yaml,
    resolve_config_path,
    validate_config,
)
from factorlens.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_filled_and_yaml_1_2_floats_read_as_numbers(tmp_path):
    text = "model: {name: btcvae, beta: 6}\ntrain: {lr: 1e-4, iterations: 7}\n"
    config = load_config(write(tmp_path, text))
    assert config["model"] == {"name": "btcvae", "beta": 6}
    assert config["train"]["lr"] == 1e-4 and isinstance(config["train"]["lr"], float)
    assert config["train"]["iterations"] == 7
    assert config["train"]["batch_size"] == TRAIN_OPTIONS["batch_size"].default == 256
    assert config["data"] == {"spec": "synthetic-lesions", "test_fraction": 0.2, "split_seed": 0,
                              "skip_bad": False}
    # round trip through the YAML written into run directories
    assert load_config(write(tmp_path, dump_config(config))) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {name: vae}\ntrain: {iterationz: 5}\n", r"unknown key train\.iterationz in .*run\.yaml"),
        ("model: {name: vae}\ntrain: {iterations: 0}\n", r"train\.iterations in .*run\.yaml must be >= 1"),
        ("model: {name: vae}\ntrain: {batch_size: 1}\n", r"train\.batch_size .* must be >= 2"),
        ("model: {name: vae}\ntrain: {batch_size: 3.5}\n", r"train\.batch_size .* must be an integer"),
        ("model: {name: vae}\ntrain: {iterations: true}\n", r"train\.iterations .* must be an integer"),
        ("model: {name: vae}\ntrain: {lr: .nan}\n", r"train\.lr .* must be finite"),
        ("model: {name: vae}\ntrain: {lr: -1e-3}\n", r"train\.lr .* must be > 0"),
        ("model: {name: vae}\ntrain: {lr: fast}\n", r"train\.lr .* must be a number, got 'fast'"),
        ("model: {name: vae}\ntrain: {betas: [0.9]}\n", r"train\.betas .* list of two numbers"),
        ("model: {name: vae}\ntrain: {adv_betas: [0.5, 1.0]}\n", r"train\.adv_betas\[1\] .* must be < 1"),
        ("model: {name: vae}\ntrain: {precision: fp16}\n", r"train\.precision .* one of fp32, bf16"),
        ("model: {name: vae}\ntrain: {device: tpu}\n", r"train\.device .* one of auto, cpu, cuda"),
        ("model: {name: vae}\ntrain: {compile: yes please}\n", r"train\.compile .* true or false"),
        ("model: {name: vae}\ndata: {test_fraction: 1.0}\n", r"data\.test_fraction .* must be < 1"),
        ("model: {name: vae}\ndata: {spec: ''}\n", r"data\.spec .* non-empty string"),
        ("model: {name: vae}\ndata: {seed: 1}\n", r"unknown key data\.seed"),
        ("model: {name: vae, beta: .inf}\n", r"model\.beta in .* must be finite"),
        ("model: {beta: 4}\n", r"model\.name missing in .*run\.yaml"),
        ("train: {iterations: 4}\n", r"section 'model' must be a mapping"),
        ("model: {name: vae}\noptim: {}\n", r"unknown section 'optim'"),
        ("model: {name: vae}\ntrain: [1, 2]\n", r"section 'train' must be a mapping"),
        ("model: {name: vae\n", r"run\.yaml line \d+: invalid YAML"),
    ],
)
def test_bad_configs_give_one_line_errors_naming_key_and_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file /nonexistent/x.yaml not found"):
        load_config("/nonexistent/x.yaml")


def test_overrides_are_dotted_yaml_scalars_and_revalidated():
    base = validate_config({"model": {"name": "btcvae"}})
    updated = apply_overrides(base, ["train.lr=3e-4", "train.betas=[0.5, 0.99]", "model.beta=4",
                                     "data.spec=synthetic-lesions:n=64", "train.compile=true"])
    assert updated["train"]["lr"] == 3e-4
    assert updated["train"]["betas"] == [0.5, 0.99]
    assert updated["model"] == {"name": "btcvae", "beta": 4}
    assert updated["data"]["spec"] == "synthetic-lesions:n=64"
    assert updated["train"]["compile"] is True
    assert base["train"]["lr"] == 1e-4  # the input is not modified
    assert config_differences(base, updated) == ["model.beta", "train.betas", "train.compile", "train.lr",
                                                 "data.spec"]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.lrr=1", r"unknown key train\.lrr"),
        ("optim.lr=1", r"unknown section 'optim'"),
        ("lr=1", r"expected section\.key=value"),
        ("train.lr", r"expected section\.key=value"),
        ("train.batch_size=1", r"train\.batch_size in --set must be >= 2"),
        ("train.lr=[", r"--set train\.lr.*invalid YAML"),
    ],
)
def test_bad_overrides(assignment, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(validate_config({"model": {"name": "vae"}}), [assignment])


def test_parse_yaml_keeps_strings_and_yaml_1_2_floats():
    assert parse_yaml("a: 1e-4\nb: '1e-4'\nc: 3\nd: 1.5e3\n", "x") == {"a": 1e-4, "b": "1e-4", "c": 3,
                                                                     "d": 1500.0}


def test_presets_resolve_and_validate():
    names = ["vae", "beta-vae", "btcvae", "btcvae-resnet", "btcvae-adv", "gan"]
    for kind in ("paper", "cpu"):
        for name in names:
            config = load_config(resolve_config_path(f"{kind}/{name}"))
            assert config["model"]["name"] == name
            assert config["data"]["spec"] == "synthetic-lesions"
    paper = load_config(resolve_config_path("paper/btcvae"))
    assert paper["train"]["iterations"] == 100_000 and paper["train"]["batch_size"] == 256
    assert paper["train"]["lr"] == 1e-4 and paper["train"]["precision"] == "bf16"
    assert paper["model"]["latent_dim"] == 32 and paper["model"]["beta"] == 6
    with pytest.raises(ConfigError, match="neither a file nor a preset; presets: cpu/beta-vae"):
        resolve_config_path("cpu/nope")
