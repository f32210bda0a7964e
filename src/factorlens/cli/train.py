"""``factorlens train``: train one model into a run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from factorlens.config import RunConfig, apply_overrides, load_config, parse_run_config, resolve_config_path
from factorlens.errors import ConfigError
from factorlens.seeds import parse_seeds, seed_run_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model into a run directory",
        description="Train the model of a YAML config (or preset such as cpu/btcvae, paper/btcvae-adv) "
        "into --out: config.yaml, split.json, log.jsonl, checkpoints/, summary.json. "
        "SIGINT/SIGTERM write a checkpoint and exit 130; --resume continues it.",
    )
    parser.add_argument("--config", help="YAML file or preset name (default with --resume: OUT/config.yaml)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--iters", type=int, help="override train.iterations")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--seed", type=int, help="override train.seed")
    parser.add_argument("--seeds", metavar="S,S,...",
                        help="train one run per seed into OUT/<model>/seed-<s>/ (each a normal run; "
                        "--resume and --force apply to each); factorlens evaluate pools them")
    parser.add_argument("--data", help="override data.spec, e.g. synthetic-lesions:n=2000")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any option (repeatable), value parsed as YAML, e.g. model.beta=4")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip undecodable images with a counted warning (sets data.skip_bad)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    group.add_argument("--force", action="store_true", help="delete the run in --out and start over")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The config named by ``--config`` (or the run's own with ``--resume``) with overrides applied."""
    if args.config is not None:
        config = load_config(resolve_config_path(args.config))
    elif args.resume and (Path(args.out) / "config.yaml").exists():
        config = load_config(Path(args.out) / "config.yaml")
    else:
        raise ConfigError("--config is required (a YAML file or a preset such as cpu/btcvae)")
    config = apply_overrides(config, args.set)
    flags = {("train", "iterations"): args.iters, ("train", "batch_size"): args.batch_size,
             ("train", "seed"): args.seed, ("data", "spec"): args.data}
    for (section, key), value in flags.items():
        if value is not None:
            config[section][key] = value
    if args.skip_bad:
        config["data"]["skip_bad"] = True
    return parse_run_config(config, "command line")


def run(args: argparse.Namespace) -> int:
    from factorlens.training import train
    from factorlens.training.trainer import apply_process_settings

    if args.seeds is not None and (args.seed is not None or args.config is None):
        raise ConfigError("--seeds needs --config and excludes --seed")
    config = config_from_args(args)
    apply_process_settings(config)
    if args.seeds is None:
        runs = [(config, Path(args.out))]
    else:
        runs = [(config.replace("train", seed=seed), seed_run_dir(args.out, config.model.name, seed))
                for seed in parse_seeds(args.seeds)]
    for run_config, run_dir in runs:
        out = train(run_config, run_dir, resume=args.resume, force=args.force)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        terms = ", ".join(f"{k} {v:.4g}" for k, v in summary["final_terms"].items())
        print(f"{out}: {summary['model']} {summary['iterations']} iterations in "
              f"{summary['wall_time_s']:.1f} s ({summary['images_per_s']:.0f} images/s); {terms}", flush=True)
    return 0
