"""Direction methods' typed options: one dataclass per method, parsed by ``factorlens.schema.parse``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from factorlens.cli.main import main
from factorlens.directions import DIRECTION_METHODS, GeneratorAdapter, discover_directions
from factorlens.directions.methods import describe_methods, parse_options
from factorlens.directions.phantom import PlantedPhantom
from factorlens.errors import ConfigError
from factorlens.schema import as_dict, help_of

METHODS = DIRECTION_METHODS.names()


@pytest.fixture(scope="module")
def posterior_adapter(adapter: GeneratorAdapter) -> GeneratorAdapter:
    return adapter


@pytest.fixture(scope="module")
def prior_adapter(phantom: PlantedPhantom) -> GeneratorAdapter:
    weight = phantom.first_decoder_layer_weight()
    return GeneratorAdapter(
        phantom.decode, phantom.latent_dim, first_layer_weight=weight,
        features=lambda z: torch.relu(z @ weight.T),
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_parses_its_defaults(method: str) -> None:
    options_class = DIRECTION_METHODS.get(method).options_class
    assert dataclasses.is_dataclass(options_class)
    defaults = options_class()
    assert parse_options(method, None) == defaults
    assert parse_options(method, {}) == defaults
    # The defaults pass their own checks, written out explicitly too.
    assert parse_options(method, as_dict(defaults), where="--option") == defaults
    for field in dataclasses.fields(options_class):
        assert field.metadata.get("check") is not None, f"{method}.{field.name} has no check"
        assert help_of(field) and "\n" not in help_of(field), f"{method}.{field.name} needs one help line"
    assert options_class.__dataclass_params__.frozen


@pytest.mark.parametrize(
    ("method", "key", "value", "message"),
    [
        # bool
        ("sefa", "normalize_units", "yes",
         "option.normalize_units in --option must be true or false, got 'yes'"),
        # int with a minimum
        ("kmeans", "restarts", "many", "option.restarts in --option must be an integer, got 'many'"),
        ("kmeans", "restarts", 0, "option.restarts in --option must be >= 1, got 0"),
        ("pca", "num_samples", 2.5, "option.num_samples in --option must be an integer, got 2.5"),
        ("sfvq", "bits", 1, "option.bits in --option must be >= 2, got 1"),
        # choice
        ("kmeans", "kind", "cubic", "option.kind in --option must be one of axial, spherical, got 'cubic'"),
        ("voynov", "deformator", "nope",
         "option.deformator in --option must be one of identity, linear, ortho, proj, random, got 'nope'"),
        # float (positive, >= 0, in [0, 1] / (0, 1])
        ("voynov", "lr", 0, "option.lr in --option must be > 0, got 0.0"),
        ("voynov", "shift_weight", -1, "option.shift_weight in --option must be >= 0, got -1.0"),
        ("voynov", "lr", True, "option.lr in --option must be a number, got True"),
        ("voynov", "active_threshold", 1.5, "option.active_threshold in --option must be <= 1, got 1.5"),
        ("sfvq", "max_abs_cos", 0, "option.max_abs_cos in --option must be > 0, got 0.0"),
        ("sfvq", "max_abs_cos", 2, "option.max_abs_cos in --option must be <= 1, got 2.0"),
        # relation between fields (validate)
        ("voynov", "shift_min", 3.0,
         "option.shift_min must be < option.shift_max, got 3.0 and 3.0 (in --option)"),
    ],
)
def test_a_bad_value_of_each_kind_is_a_one_line_error_naming_the_key(method, key, value, message) -> None:
    with pytest.raises(ConfigError) as error:
        parse_options(method, {key: value}, where="--option")
    assert str(error.value) == message


@pytest.mark.parametrize("method", METHODS)
def test_every_field_rejects_a_value_of_the_wrong_kind(method: str) -> None:
    for field in dataclasses.fields(DIRECTION_METHODS.get(method).options_class):
        with pytest.raises(ConfigError) as error:
            parse_options(method, {field.name: [1, 2]}, where="--option")
        message = str(error.value)
        assert message.startswith(f"option.{field.name} in --option must be ") and "\n" not in message


@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_key_lists_the_allowed_ones(method: str) -> None:
    fields = [f.name for f in dataclasses.fields(DIRECTION_METHODS.get(method).options_class)]
    with pytest.raises(ConfigError) as error:
        parse_options(method, {"bogus": 1}, where="--option")
    assert str(error.value) == (
        f"unknown key option.bogus in --option (unknown option of direction method {method}); "
        f"allowed: {', '.join(fields) or '(none)'}"
    )


def test_discover_directions_names_itself_as_the_source(posterior_adapter) -> None:
    with pytest.raises(ConfigError, match=r"^option\.normalize_units in discover_directions\(\) must be"):
        discover_directions(posterior_adapter, "sefa", normalize_units=1)


@pytest.mark.parametrize(
    ("method", "adapter_name"),
    [("sefa", "posterior_adapter"), ("pca", "posterior_adapter"), ("pca", "prior_adapter")],
)
def test_explicit_default_options_give_the_same_directions(method, adapter_name, request) -> None:
    adapter = request.getfixturevalue(adapter_name)
    defaults = as_dict(DIRECTION_METHODS.get(method).options_class())
    assert defaults  # sefa and pca have options of their own
    plain = discover_directions(adapter, method, k=4, seed=3)
    explicit = discover_directions(adapter, method, k=4, seed=3, **defaults)
    np.testing.assert_array_equal(explicit.matrix, plain.matrix)
    np.testing.assert_array_equal(explicit.scales, plain.scales)
    assert explicit.params == plain.params


def test_a_non_default_option_reaches_the_method(posterior_adapter) -> None:
    normalised = discover_directions(posterior_adapter, "sefa", k=4)
    raw = discover_directions(posterior_adapter, "sefa", k=4, normalize_units=False)
    assert normalised.params["normalize_units"] is True and raw.params["normalize_units"] is False


def test_list_methods_prints_every_option_with_its_help(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["discover", "--list-methods"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == describe_methods()
    for method in METHODS:
        entry = DIRECTION_METHODS.get(method)
        assert f"{method}: {entry.description}" in out
        for field in dataclasses.fields(entry.options_class):
            assert f"  {field.name}: " in out and help_of(field) in out


def test_cli_option_errors_name_the_option_flag(tmp_path, capsys) -> None:
    code = main(["discover", str(tmp_path / "missing"), "--method", "sfvq", "--option", "bits=1"])
    assert code == 2
    assert capsys.readouterr().err == "error: option.bits in --option must be >= 2, got 1\n"
    assert not (tmp_path / "missing").exists()


def test_the_docs_table_lists_every_option_with_its_help() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "directions.md").read_text(encoding="utf-8")
    rows = [line for line in docs.splitlines() if line.startswith("| `")]
    for method in METHODS:
        fields = dataclasses.fields(DIRECTION_METHODS.get(method).options_class)
        if not fields:
            assert any(r.startswith(f"| `{method}` | (none) |") for r in rows)
        for field in fields:
            prefix = f"| `{method}` | `{field.name}` | {field.type} | "
            row = next((r for r in rows if r.startswith(prefix)), None)
            assert row is not None, f"docs/directions.md has no row for {method}.{field.name}"
            assert row.endswith(f"| {help_of(field)} |"), row
