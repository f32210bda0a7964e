"""Import a MONAI ``DiffusionModelUNet`` trained elsewhere as a ``ddpm`` run directory.

``import_unet(state, args_json, out, data_spec=...)`` reads the U-Net's state dict from a safetensors file
or a ``torch.save`` file loaded with ``torch.load(weights_only=True)`` (anything else, a pickle of
objects included, is refused with a one-line error), its constructor arguments from a JSON object, and
writes a run directory that ``load_run``, ``sample``, ``discover``, ``traverse`` and ``report`` read like
a trained one (iteration 0, no EMA).

JSON keys: MONAI's constructor arguments (``spatial_dims`` must be 2, ``in_channels`` =
``out_channels``; ``channels``, ``num_res_blocks``, ``attention_levels``, ``norm_num_groups``,
``num_head_channels``, ``resblock_updown``, ``norm_eps``, ``include_fc``; no conditioning), plus
factorlens' ``image_size`` (the size it was trained at, default 64), ``schedule`` (``linear`` or
``cosine``, default linear), ``num_train_timesteps`` (default 1000) and ``prediction_type`` (MONAI's
scheduler names: ``epsilon``, the default, or ``v_prediction``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factorlens.errors import CheckpointError, ConfigError

FACTORLENS_KEYS = {"image_size": "resolution", "schedule": "schedule", "num_train_timesteps": "timesteps"}
PREDICTION_TYPES = {"epsilon": "epsilon", "v_prediction": "v"}  # MONAI scheduler name -> model.prediction
SAME_KEYS = ("norm_num_groups", "resblock_updown", "norm_eps", "include_fc")
REFUSED_IF_SET = ("with_conditioning", "num_class_embeds", "cross_attention_dim")
IGNORED_DEFAULTS = {"transformer_num_layers": 1, "upcast_attention": False, "dropout_cattn": 0.0,
                    "use_combined_linear": False, "use_flash_attention": False}


def _one_value(value: Any, key: str, where: str) -> Any:
    """MONAI takes an int or a per-level list for some keys; factorlens one value for all levels."""
    if isinstance(value, list):
        if not value or any(v != value[0] for v in value):
            raise ConfigError(f"{key} in {where}: per-level values {value} are not supported (one value)")
        return value[0]
    return value


def model_params_from_args(args: Any, where: str) -> tuple[dict[str, Any], int]:
    """``(model params of a ddpm config, image channels)`` from the JSON constructor arguments."""
    if not isinstance(args, dict):
        raise ConfigError(f"{where} must hold a JSON object of DiffusionModelUNet arguments")
    if args.get("spatial_dims", 2) != 2:
        raise ConfigError(f"spatial_dims in {where}: only 2-D U-Nets are supported, "
                          f"got {args['spatial_dims']}")
    channels = args.get("in_channels")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"in_channels in {where} must be a positive integer, got {channels!r}")
    if args.get("out_channels", channels) != channels:
        raise ConfigError(f"out_channels in {where} must equal in_channels ({channels}) (an ε- or "
                          f"v-prediction U-Net), got {args.get('out_channels')!r}")
    for key in REFUSED_IF_SET:
        if args.get(key):
            raise ConfigError(f"{key} in {where}: conditional U-Nets are not supported")
    for key, default in IGNORED_DEFAULTS.items():
        if key in args and args[key] != default:
            raise ConfigError(f"{key} in {where}: only the default {default!r} is supported, "
                              f"got {args[key]!r}")
    known = {"spatial_dims", "in_channels", "out_channels", "channels", "num_res_blocks", "attention_levels",
             "num_head_channels", "prediction_type", *SAME_KEYS, *REFUSED_IF_SET, *IGNORED_DEFAULTS,
             *FACTORLENS_KEYS}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {where}; "
                          f"allowed: {', '.join(sorted(known))}")
    params: dict[str, Any] = {"sample_steps": 50}
    if "channels" in args:
        params["unet_channels"] = args["channels"]
    if "attention_levels" in args:
        params["attention_levels"] = args["attention_levels"]
    if "num_res_blocks" in args:
        params["num_res_blocks"] = _one_value(args["num_res_blocks"], "num_res_blocks", where)
    if "num_head_channels" in args:
        params["num_head_channels"] = _one_value(args["num_head_channels"], "num_head_channels", where)
    for key in SAME_KEYS:
        if key in args:
            params[key] = args[key]
    for key, param in FACTORLENS_KEYS.items():
        if key in args:
            params[param] = args[key]
    if "prediction_type" in args:
        prediction = PREDICTION_TYPES.get(args["prediction_type"])
        if prediction is None:
            raise ConfigError(f"prediction_type in {where} must be one of {', '.join(PREDICTION_TYPES)}, "
                              f"got {args['prediction_type']!r}")
        params["prediction"] = prediction
    params.setdefault("resolution", 64)
    # MONAI's defaults where the JSON leaves a key out (factorlens' own defaults differ).
    params.setdefault("unet_channels", [32, 64, 64, 64])
    params.setdefault("attention_levels", [False, False, True, True])
    params.setdefault("num_res_blocks", 2)
    params.setdefault("num_head_channels", 8)
    return params, channels


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or of a weights-only ``torch.save`` file; anything else is refused."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: "
                                  f"{str(exc).splitlines()[0]}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # UnpicklingError, RuntimeError, ...: torch's multi-line text is not the point
        kind = {b"PK": "a torch.save file holding objects other than tensors",
                b"\x80": "a pickle"}.get(head[:2] if head[:2] == b"PK" else head[:1], "not a state dict")
        raise CheckpointError(f"{path} is {kind}: refused (factorlens loads safetensors files and torch.save "
                              "state dicts of tensors, with weights_only=True)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def import_unet(state_path: str | Path, args_path: str | Path, out: str | Path, *,
                data_spec: str = "synthetic-lesions", force: bool = False) -> Path:
    """Write a ``ddpm`` run directory ``out`` from a MONAI U-Net state dict and its JSON arguments; the
    run's dataset (``data_spec``: every image in the ``train`` split) feeds inversions and scoring."""
    from factorlens.config import dump_config, parse_run_config
    from factorlens.data import load_dataset
    from factorlens.io import atomic_write_json, atomic_write_text
    from factorlens.models import build_model
    from factorlens.training import rundir

    state_path, args_path, out = Path(state_path), Path(args_path), Path(out)
    try:
        args = json.loads(args_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{args_path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{args_path} is not JSON: {str(exc).splitlines()[0]}") from None
    params, channels = model_params_from_args(args, str(args_path))
    state = load_state_dict(state_path)
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} exists and is not empty (use --force to replace it)")
    dataset = load_dataset(data_spec, progress=False)
    if dataset.channels != channels:
        raise ConfigError(f"the U-Net takes {channels}-channel images, {data_spec!r} has {dataset.channels}")
    model = build_model("ddpm", params, channels=channels, image_size=dataset.image_size,
                        where=str(args_path))
    missing, unexpected = [], []
    try:
        result = model.unet.load_state_dict(state, strict=False)
        missing, unexpected = result.missing_keys, result.unexpected_keys
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{state_path} does not fit the U-Net of {args_path}: "
                              f"{' '.join(str(exc).split())[:200]}") from None
    if missing or unexpected:
        raise CheckpointError(f"{state_path} does not fit the U-Net of {args_path}: {len(missing)} "
                              f"missing (e.g. {missing[:1]}), {len(unexpected)} unexpected "
                              f"(e.g. {unexpected[:1]}) keys")
    config = parse_run_config({"model": {"name": "ddpm", **params}, "train": {"iterations": 1},
                               "data": {"spec": data_spec}}, str(args_path))
    if force and out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / rundir.CONFIG_FILE, dump_config(config))
    atomic_write_json(out / rundir.SPLIT_FILE, {
        "train": list(range(len(dataset))), "test": [], "n": len(dataset), "spec": data_spec,
        "channels": dataset.channels, "image_size": dataset.image_size})
    rundir.write_checkpoint(out, iteration=0, model_name="ddpm", weights=model.state_dict(), state={})
    atomic_write_json(out / "imported.json", {
        "state": str(state_path), "sha256": hashlib.sha256(state_path.read_bytes()).hexdigest(),
        "args": args, "parameters": int(np.sum([p.numel() for p in model.parameters()]))})
    return out
