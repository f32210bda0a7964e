"""Run configuration: YAML with three sections, parsed into typed, frozen dataclasses.

```yaml
model: {name: btcvae, network: conv, latent_dim: 32, beta: 6.0}   # the objective's config dataclass
train: {iterations: 100000, batch_size: 256, lr: 1.0e-4, precision: bf16, ...}          # TrainConfig
data:  {spec: synthetic-lesions, test_fraction: 0.2, split_seed: 0}                     # DataConfig
```

:func:`parse_run_config` gives a :class:`RunConfig` (``config.train.lr``, ``config.model.params.beta``);
every option goes through :func:`factorlens.schema.parse`, so every problem (unknown key, wrong type, NaN,
out-of-range value) is the same one-line :class:`~factorlens.errors.ConfigError` naming ``section.key``
and the file it came from. The dict-level functions (:func:`validate_config`, :func:`load_config`,
:func:`apply_overrides`) work on the YAML mapping and check it with the same parser.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from factorlens.errors import ConfigError
from factorlens.schema import (
    as_dict,
    boolean,
    choice,
    fields_of,
    integer,
    nonempty_text,
    number,
    number_pair,
    option,
    parse,
)

SECTIONS = ("model", "train", "data")
DEFAULT_DATA_SPEC = "synthetic-lesions"
# Keys of the model section that are not options of the objective's config dataclass.
MODEL_SECTION_KEYS = ("name", "network")


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


# --- the sections ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrthogonalityConfig:
    """``train.orthogonality``: Song et al.'s treatments of the latent-reading layer's update."""

    method: str = option("none", choice("none", "nog", "olr", "nog+olr"),
                         "nog: nearest orthogonal gradient; olr: optimal learning rate (SGD on that layer)")
    layer: str = option("first-decoder", choice("first-decoder"),
                        "the layer treated: the decoder's/generator's latent-reading first layer")


@dataclass(frozen=True)
class TrainConfig:
    """``train:``: how long, how fast and with which optimiser the model is trained."""

    iterations: int = option(100_000, integer(1), "generator steps (one batch each)")
    batch_size: int = option(256, integer(2),
                             "images per step (the last incomplete batch of an epoch is dropped)")
    optimizer: str = option("adam", choice("adam", "adamw", "sgd"), "optimiser of the model (generator/VAE)")
    lr: float = option(1e-4, number(positive=True), "learning rate of the model (generator/VAE)")
    betas: list = option([0.9, 0.999], number_pair(lo=0.0, hi=1.0), "Adam/AdamW betas of the model")
    momentum: float = option(0.0, number(lo=0.0, hi=1.0), "SGD momentum of the model")
    weight_decay: float = option(0.0, number(lo=0.0), "weight decay of the model's optimiser")
    adv_lr: float = option(1e-4, number(positive=True), "Adam learning rate of the adversary, if any")
    adv_betas: list = option([0.5, 0.9], number_pair(lo=0.0, hi=1.0), "Adam betas of the adversary")
    seed: int = option(0, integer(0), "seeds weights, batch order and sampling noise")
    log_every: int = option(100, integer(1), "iterations between log.jsonl records (and the only host syncs)")
    checkpoint_every: int = option(5000, integer(1),
                                   "iterations between checkpoints (one is always written last)")
    precision: str = option("fp32", choice("fp32", "bf16", "auto"),
                            "bf16 = autocast of the loss computation; auto = bf16 on CUDA and on CPUs with "
                            "AMX-BF16 or AVX512-BF16, fp32 elsewhere (the choice is in summary.json)")
    device: str = option("auto", choice("auto", "cpu", "cuda"), "auto = cuda when available")
    compile: bool = option(False, boolean, "torch.compile the loss computation")
    num_threads: int = option(0, integer(0), "torch intra-op threads; 0 = torch default")
    malloc_tuning: bool = option(True, boolean, "raise glibc mmap/trim thresholds (fewer page faults)")
    ema: float = option(0.0, number(lo=0.0, hi=1.0),
                        "decay of an exponential moving average of the model's weights; 0 = off")
    orthogonality: OrthogonalityConfig = field(default_factory=OrthogonalityConfig,
                                               metadata={"help": "NOG / OLR on the latent-reading layer"})
    tensorboard: bool = option(False, boolean,
                               "TensorBoard scalars (and a traversal per checkpoint) in RUN/tensorboard")


@dataclass(frozen=True)
class DataConfig:
    """``data:``: which images, and how they are split."""

    spec: str = option(DEFAULT_DATA_SPEC, nonempty_text, "dataset spec, see `factorlens data info`")
    test_fraction: float = option(0.2, number(positive=True, hi=1.0), "fraction of images (groups) held out")
    split_seed: int = option(0, integer(0), "seed of the train/test split")
    skip_bad: bool = option(False, boolean,
                            "skip undecodable images with a counted warning instead of an error")


@dataclass(frozen=True)
class ModelSection:
    """``model:``: the registered model ``name``, its network family and the objective's options."""

    name: str
    network: str | None  # None: the model's default family (or a model without networks)
    params: Any  # an instance of the model's config dataclass

    def to_dict(self) -> dict:
        network = {"network": self.network} if self.network is not None else {}
        return {"name": self.name, **network, **as_dict(self.params)}


@dataclass(frozen=True)
class RunConfig:
    """A complete, checked run config. ``to_dict()`` is what ``config.yaml`` holds."""

    model: ModelSection
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": as_dict(self.train), "data": as_dict(self.data)}

    def replace(self, section: str, **changes: Any) -> RunConfig:
        """A copy with ``train`` or ``data`` options changed (checked like any other source)."""
        current = getattr(self, section)
        where = "replace()"
        updated = parse(type(current), {**as_dict(current), **changes}, where=where, prefix=section)
        return replace(self, **{section: updated})


SECTION_CLASSES = {"train": TrainConfig, "data": DataConfig}
TRAIN_OPTIONS = fields_of(TrainConfig)  # name -> dataclasses.Field (``.default``, ``.metadata["help"]``)
DATA_OPTIONS = fields_of(DataConfig)

# Keys of a run's config that may differ when it is resumed (they change how long / where it runs, not
# what is learned).
RESUMABLE_CHANGES = frozenset(
    {"train.iterations", "train.log_every", "train.checkpoint_every", "train.device", "train.num_threads",
     "train.compile", "train.malloc_tuning", "train.tensorboard"}
)


def _check_sections(raw: Any, source: str) -> dict:
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
    nonempty_text(model["name"], f"model.name in {source}")
    for key, value in model.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"model.{key} in {source} must be finite, got {value}")
    for section in SECTION_CLASSES:
        given = raw.get(section)
        if given is not None and not isinstance(given, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {given!r}")
    return model


def parse_model_section(model: Mapping[str, Any], source: str) -> ModelSection:
    """The typed ``model:`` section; the objective's options are checked by its config dataclass."""
    from factorlens.models import MODELS, model_network, parse_model_params

    name = model["name"]
    network = model.get("network")
    try:
        MODELS.get(name)
        if network is not None:
            nonempty_text(network, f"model.network in {source}")
            model_network(name, network)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {source})" if source not in str(exc) else str(exc)) from None
    params = {k: v for k, v in model.items() if k not in MODEL_SECTION_KEYS}
    return ModelSection(name=name, network=network, params=parse_model_params(name, params, where=source))


def parse_run_config(raw: Any, source: str = "config") -> RunConfig:
    """Check ``raw`` (a parsed YAML mapping; ``train``/``data`` may be partial or missing) and return the
    typed config with every default filled in."""
    if isinstance(raw, RunConfig):
        return raw
    model = _check_sections(raw, source)
    return RunConfig(
        model=parse_model_section(model, source),
        **{section: parse(cls, raw.get(section), where=source, prefix=section)
           for section, cls in SECTION_CLASSES.items()},
    )


def default_config(model_name: str) -> dict:
    """A complete config for ``model_name`` with every train/data option at its default."""
    return {
        "model": {"name": model_name},
        "train": as_dict(TrainConfig()),
        "data": as_dict(DataConfig()),
    }


def validate_config(raw: Any, source: str = "config") -> dict:
    """Check ``raw`` (a parsed YAML mapping) and return a new dict with every train/data default filled
    in; the ``model`` section is returned as given (checked; :func:`resolve_model_section` fills it).

    Args:
        raw: ``{"model": {"name": ..., ...}, "train": {...}, "data": {...}}``; ``train`` and ``data``
            may be partial or missing. A :class:`RunConfig` is accepted too.
        source: the file (or ``--set``) named in error messages.
    """
    if isinstance(raw, RunConfig):
        return raw.to_dict()
    typed = parse_run_config(raw, source)
    config = typed.to_dict()
    config["model"] = copy.deepcopy(raw["model"])
    return config


def resolve_model_section(model: Mapping[str, Any]) -> dict:
    """The model section with every option of the objective and the network family filled in: what a
    run's ``config.yaml`` records. Two sections that resolve equal describe the same model."""
    from factorlens.models import model_network

    section = parse_model_section(model, "config")
    resolved = ModelSection(section.name, model_network(section.name, section.network), section.params)
    return resolved.to_dict()


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
        value = parse_yaml(text, f"{source} {dotted}") if text.strip() else None
        target = updated.setdefault(section, {})
        *parents, leaf = key.split(".")  # train.orthogonality.method=nog sets a nested section's key
        for parent in parents:
            nested = target.get(parent)
            target[parent] = nested = dict(nested) if isinstance(nested, dict) else {}
            target = nested
        target[leaf] = value
    return validate_config(updated, source)


def dump_config(config: dict | RunConfig) -> str:
    """YAML text of a config (sections in the canonical order)."""
    if isinstance(config, RunConfig):
        config = config.to_dict()
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
