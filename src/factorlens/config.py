"""Run configuration: YAML with three sections, validated strictly.

```yaml
model: {name: btcvae, latent_dim: 32, beta: 6.0}   # params validated by factorlens.models.build_model
train: {iterations: 100000, batch_size: 256, lr: 1.0e-4, precision: bf16, ...}
data:  {spec: synthetic-lesions, test_fraction: 0.2, split_seed: 0}
```

Every problem (unknown key, wrong type, NaN, out-of-range value) is a one-line
:class:`~factorlens.errors.ConfigError` naming ``section.key`` and the file it came from. ``train`` and
``data`` are checked here; the ``model`` section is only required to have a ``name`` here, its parameters
are checked by :func:`factorlens.models.build_model` (the model owns its config dataclass).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factorlens.errors import ConfigError

SECTIONS = ("model", "train", "data")
DEFAULT_DATA_SPEC = "synthetic-lesions"


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-4``); ``lr: 1e-4`` would silently become
    the *string* ``"1e-4"``. Everyone writes learning rates that way, so accept the YAML 1.2 form.
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text with the project's loader; a syntax error is a one-line ConfigError."""
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - _YamlLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source}{where}: invalid YAML ({problem})") from None


# --- field checkers --------------------------------------------------------------------------------------
# Each checker takes (value, key, source), returns the normalised value or raises a ConfigError naming
# ``section.key`` and the source file.


def _int(minimum: int | None = None) -> Callable[[Any, str, str], int]:
    def check(value: Any, key: str, source: str) -> int:
        where = f"{key} in {source}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{where} must be >= {minimum}, got {value}")
        return value

    return check


def _float(*, positive: bool = False, lo: float | None = None, hi: float | None = None):
    def check(value: Any, key: str, source: str) -> float:
        where = f"{key} in {source}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value}")
        if positive and value <= 0:
            raise ConfigError(f"{where} must be > 0, got {value}")
        if lo is not None and value < lo:
            raise ConfigError(f"{where} must be >= {lo}, got {value}")
        if hi is not None and value >= hi:
            raise ConfigError(f"{where} must be < {hi}, got {value}")
        return value

    return check


def _betas(value: Any, key: str, source: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{key} in {source} must be a list of two numbers in [0, 1), got {value!r}")
    check = _float(lo=0.0, hi=1.0)
    return [check(v, f"{key}[{i}]", source) for i, v in enumerate(value)]


def _choice(*choices: str) -> Callable[[Any, str, str], str]:
    def check(value: Any, key: str, source: str) -> str:
        if value not in choices:
            raise ConfigError(f"{key} in {source} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _bool(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} in {source} must be true or false, got {value!r}")
    return value


def _nonempty_str(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} in {source} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class Option:
    default: Any
    check: Callable[[Any, str, str], Any]
    help: str


TRAIN_OPTIONS: dict[str, Option] = {
    "iterations": Option(100_000, _int(1), "generator steps (one batch each)"),
    "batch_size": Option(256, _int(2), "images per step (the last incomplete batch of an epoch is dropped)"),
    "lr": Option(1e-4, _float(positive=True), "Adam learning rate of the model (generator/VAE)"),
    "adv_lr": Option(1e-4, _float(positive=True), "Adam learning rate of the adversary, if any"),
    "betas": Option([0.9, 0.999], _betas, "Adam betas of the model"),
    "adv_betas": Option([0.5, 0.9], _betas, "Adam betas of the adversary"),
    "seed": Option(0, _int(0), "seeds weights, batch order and sampling noise"),
    "log_every": Option(100, _int(1), "iterations between log.jsonl records (and the only host syncs)"),
    "checkpoint_every": Option(5000, _int(1), "iterations between checkpoints (one is always written last)"),
    "precision": Option("fp32", _choice("fp32", "bf16"), "bf16 = autocast of the loss computation"),
    "device": Option("auto", _choice("auto", "cpu", "cuda"), "auto = cuda when available"),
    "compile": Option(False, _bool, "torch.compile the loss computation"),
    "num_threads": Option(0, _int(0), "torch intra-op threads; 0 = torch default"),
    "malloc_tuning": Option(True, _bool, "raise glibc mmap/trim thresholds (fewer page faults)"),
}

DATA_OPTIONS: dict[str, Option] = {
    "spec": Option(DEFAULT_DATA_SPEC, _nonempty_str, "dataset spec, see `factorlens data info`"),
    "test_fraction": Option(0.2, _float(positive=True, hi=1.0), "fraction of images (groups) held out"),
    "split_seed": Option(0, _int(0), "seed of the train/test split"),
    "skip_bad": Option(False, _bool, "skip undecodable images with a counted warning instead of an error"),
}

SECTION_OPTIONS = {"train": TRAIN_OPTIONS, "data": DATA_OPTIONS}

# Keys of a run's config that may differ when it is resumed (they change how long / where it runs, not
# what is learned).
RESUMABLE_CHANGES = frozenset(
    {"train.iterations", "train.log_every", "train.checkpoint_every", "train.device", "train.num_threads",
     "train.compile", "train.malloc_tuning"}
)


def default_config(model_name: str) -> dict:
    """A complete config for ``model_name`` with every train/data option at its default."""
    return {
        "model": {"name": model_name},
        "train": {k: copy.deepcopy(o.default) for k, o in TRAIN_OPTIONS.items()},
        "data": {k: copy.deepcopy(o.default) for k, o in DATA_OPTIONS.items()},
    }


def validate_config(raw: Any, source: str = "config") -> dict:
    """Check ``raw`` (a parsed YAML mapping) and return a new dict with every default filled in.

    Args:
        raw: ``{"model": {"name": ..., ...}, "train": {...}, "data": {...}}``; ``train`` and ``data``
            may be partial or missing.
        source: the file (or ``--set``) named in error messages.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}")
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}; allowed: {', '.join(SECTIONS)}")
    model = raw.get("model")
    if not isinstance(model, dict):
        raise ConfigError(f"{source}: section 'model' must be a mapping with at least 'name'")
    for key in model:
        if not isinstance(key, str):
            raise ConfigError(f"model.{key!r} in {source}: keys must be strings")
    if "name" not in model:
        raise ConfigError(f"model.name missing in {source}")
    _nonempty_str(model["name"], "model.name", source)
    for key, value in model.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"model.{key} in {source} must be finite, got {value}")
    _check_model_params(model, source)
    config = default_config(model["name"])
    config["model"] = copy.deepcopy(model)
    for section, options in SECTION_OPTIONS.items():
        given = raw.get(section, {})
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {given!r}")
        for key, value in given.items():
            if key not in options:
                allowed = ", ".join(options)
                raise ConfigError(f"unknown key {section}.{key} in {source}; allowed: {allowed}")
            config[section][key] = options[key].check(value, f"{section}.{key}", source)
    return config


def _check_model_params(model: dict, source: str) -> None:
    """Check the model section against the model's config dataclass now, before any data is loaded, so a
    typo costs no loading time and the error names the file it came from."""
    from factorlens.models import model_config_class
    from factorlens.models.config import build_config

    params = {k: v for k, v in model.items() if k != "name"}
    try:
        build_config(model_config_class(model["name"]), params)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {source})") from None


def load_config(path: str | Path) -> dict:
    """Read and validate a YAML config file (see :func:`validate_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return validate_config(parse_yaml(text, str(path)), str(path))


def apply_overrides(config: dict, assignments: Iterable[str], source: str = "--set") -> dict:
    """Apply ``section.key=value`` assignments (values parsed as YAML scalars) and re-validate.

    ``model.*`` keys may be new (the model validates them); ``train.*``/``data.*`` keys must exist.
    """
    updated = copy.deepcopy(config)
    for assignment in assignments:
        dotted, sep, text = assignment.partition("=")
        dotted = dotted.strip()
        section, dot, key = dotted.partition(".")
        if not sep or not dot or not key:
            raise ConfigError(f"{source} {assignment!r}: expected section.key=value, e.g. train.lr=3e-4")
        if section not in SECTIONS:
            raise ConfigError(f"{source} {assignment!r}: unknown section {section!r}; allowed: "
                              f"{', '.join(SECTIONS)}")
        if section in SECTION_OPTIONS and key not in SECTION_OPTIONS[section]:
            allowed = ", ".join(SECTION_OPTIONS[section])
            raise ConfigError(f"{source}: unknown key {dotted}; allowed: {allowed}")
        updated[section][key] = parse_yaml(text, f"{source} {dotted}") if text.strip() else None
    return validate_config(updated, source)


def dump_config(config: dict) -> str:
    """YAML text of a config (sections in the canonical order)."""
    ordered = {section: config[section] for section in SECTIONS if section in config}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None)


def config_differences(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two validated configs."""
    differences = []
    for section in SECTIONS:
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                differences.append(f"{section}.{key}")
    return differences


def configs_dir() -> Path:
    """The presets shipped inside the package (``factorlens/presets/{paper,cpu}/<model>.yaml``).

    Found through :mod:`importlib.resources`, so they are there in an installed wheel as well as in a
    checkout (where the top-level ``configs`` is a symlink to the same folder).
    """
    from importlib.resources import files

    # factorlens is a regular package installed as plain files (never zip-imported), so this
    # Traversable is a real directory.
    return Path(str(files("factorlens").joinpath("presets")))


def resolve_config_path(name_or_path: str) -> Path:
    """A config file path, or a preset name such as ``cpu/btcvae`` / ``paper/vae``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    preset = configs_dir() / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    presets = sorted(p.relative_to(configs_dir()).with_suffix("").as_posix()
                     for p in configs_dir().glob("*/*.yaml"))
    listing = ", ".join(presets) if presets else f"none found in {configs_dir()}"
    raise ConfigError(f"config {name_or_path!r} is neither a file nor a preset; presets: {listing}")
