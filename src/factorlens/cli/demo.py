"""``factorlens demo``: train the four paper models with the CPU presets, evaluate them, write a report.

What ``make demo`` runs. Each model trains into ``OUT/<model>/`` with the preset ``cpu/<model>``; a run
that is already complete with the same config is reused (the demo can be re-run or resumed after Ctrl-C),
and ``--force`` starts every run over. ``--seeds 0,1,2`` trains every model once per seed into
``OUT/<model>/seed-<s>/`` and evaluates them pooled over seeds (mean ± std, paired differences with
bootstrap intervals: ``OUT/results/seeds.md``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from factorlens.errors import ConfigError
from factorlens.seeds import parse_seeds, seed_run_dir

DEMO_MODELS = ("vae", "btcvae", "btcvae-resnet", "btcvae-adv")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train, evaluate and report the four paper models on synthetic lesions (CPU, ~15 min)",
        description="Trains vae, btcvae, btcvae-resnet and btcvae-adv with the cpu (or --preset "
        "paper) presets into OUT/<model>/, evaluates them into OUT/results/ (Table 1) and writes "
        "OUT/report.html.",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--models", default=",".join(DEMO_MODELS),
                        help=f"comma-separated models (default {','.join(DEMO_MODELS)})")
    parser.add_argument("--data", default=None, help="override the presets' data spec")
    parser.add_argument("--iters", type=int, default=None, help="override the presets' iterations")
    parser.add_argument("--seed", type=int, default=None, help="override the presets' train.seed (weights, "
                        "batch order, noise; the data split stays data.split_seed)")
    parser.add_argument("--seeds", default=None, metavar="S,S,...",
                        help="train every model once per seed into OUT/<model>/seed-<s>/ and report "
                        "mean ± std and paired differences over seeds (e.g. 0,1,2)")
    parser.add_argument("--preset", choices=("cpu", "paper"), default="cpu",
                        help="cpu (default: short CPU runs) or paper (the paper's 100k "
                        "iterations at batch 256: for a GPU)")
    parser.add_argument("--force", action="store_true", help="retrain runs that already exist")
    parser.set_defaults(func=run)


def train_demo_runs(out: Path, models: list[str], *, data: str | None, iters: int | None,
                    force: bool, preset: str = "cpu", seed: int | None = None,
                    seeds: list[int] | None = None) -> list[Path]:
    """Train (or reuse) one preset run per model (``OUT/<model>``), or with ``seeds`` one per model and
    seed (``OUT/<model>/seed-<s>``; every model of one seed before the next seed, so an interrupted
    demo leaves whole seeds); returns the run directories."""
    from factorlens.config import load_config, parse_run_config, resolve_config_path, validate_config
    from factorlens.training import train
    from factorlens.training.trainer import apply_process_settings

    run_dirs = []
    for run_seed in seeds if seeds is not None else [seed]:
        for name in models:
            config = load_config(resolve_config_path(f"{preset}/{name}"))
            if data is not None:
                config["data"]["spec"] = data
            if iters is not None:
                config["train"]["iterations"] = iters
            if run_seed is not None:
                config["train"]["seed"] = run_seed
            config = validate_config(config, f"demo --models {name}")
            apply_process_settings(parse_run_config(config))
            target = out / name if seeds is None else seed_run_dir(out, name, run_seed)
            started = time.perf_counter()
            # resume=True: a finished run with the same config is reused, an interrupted one continues.
            run_dir = train(config, target, resume=not force, force=force)
            print(f"{target.relative_to(out)}: trained in {time.perf_counter() - started:.1f} s -> {run_dir}",
                  flush=True)
            run_dirs.append(run_dir)
    return run_dirs


def run(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise ConfigError("--models is empty")
    if args.seeds is not None and args.seed is not None:
        raise ConfigError("give --seed or --seeds, not both")
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    out = Path(args.out)
    started = time.perf_counter()
    run_dirs = train_demo_runs(out, models, data=args.data, iters=args.iters, force=args.force,
                               preset=args.preset, seed=args.seed, seeds=seeds)

    from factorlens.evaluation import evaluate_runs
    from factorlens.viz import write_report

    results = out / "results"
    # Random-forest DCI: dlib's gradient-boosted trees cost minutes per run on 2 cores (docs/metrics.md).
    print(evaluate_runs(run_dirs, None, results, dci_model="random-forest"), flush=True)
    report = write_report(run_dirs, out / "report.html", results_dir=results)
    print(f"report: {report}", flush=True)
    print(f"demo finished in {time.perf_counter() - started:.1f} s", flush=True)
    print(closing_note(results, seeds), flush=True)
    return 0


def closing_note(results: Path, seeds: list[int] | None) -> str:
    """What the printed table can and cannot say, and where the table over seeds is."""
    from factorlens.environment import machine_line

    if seeds is not None and len(seeds) > 1:
        return (f"over {len(seeds)} seeds: {results / 'seeds.md'} (mean ± std, per seed, paired differences "
                f"with bootstrap intervals); {machine_line()}")
    return (
        "note: the orderings above are ONE training seed's on this machine, and both the seed and the kind "
        f"of CPU move these numbers ({machine_line()}). Mean ± std over seeds with paired intervals: "
        "README.md (the demo table) and docs/results.md; to make it here: "
        "factorlens demo --seeds 0,1,2 --out runs/demo3 (about three times as long)."
    )
