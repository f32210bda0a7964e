"""Training throughput of every model: images/s, ms/iteration and peak memory per model x batch x precision.

Runs the real training step of ``factorlens.training`` (the same ``_Loop.step`` that ``factorlens train``
uses: uint8 images held in memory, per-batch conversion, channels_last, optional bf16 autocast, the
adversary's update for ``btcvae-adv``) on random 64x64 RGB images, so data decoding is not measured.

    python -m benchmarks.train_throughput                       # every model, batch 64 and 256, fp32 and bf16
    python -m benchmarks.train_throughput --models btcvae --batch-sizes 64 --precisions fp32 bf16
    python -m benchmarks.train_throughput --device cuda --batch-sizes 256 1024 --steps 50   # on a GPU
    python -m benchmarks.train_throughput --models btcvae --batch-sizes 64 --precisions bf16 \
        --steps 60 --repeat 6 --fused-adam-ab     # median (range) of 6 interleaved runs, foreach vs fused

Not a test: it prints a table (markdown) and asserts nothing. Run it on a quiet machine; a second process
on a 2-core machine halves every figure.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from factorlens.config import validate_config
from factorlens.environment import machine_line
from factorlens.training import trainer as trainer_module
from factorlens.training._malloc import tune_glibc_malloc
from factorlens.training.rundir import instantiate_model

DEFAULT_MODELS = ("vae", "btcvae", "btcvae-resnet", "btcvae-adv", "gan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model_name: str, batch_size: int, precision: str, *, warmup: int, steps: int,
            dataset_size: int = 4096, compile_loss: bool = False, device: str = "cpu",
            fused_adam: bool = False) -> dict:
    """Time ``steps`` training steps after ``warmup`` untimed ones; returns the figures of one row.

    On ``cuda`` the dataset lives on the GPU (as in training) and the peak column is the GPU's peak
    allocated memory of this row, not the process's RSS."""
    config = validate_config({
        "model": {"name": model_name, "latent_dim": 32},
        "train": {"iterations": warmup + steps, "batch_size": batch_size, "precision": precision,
                  "device": device, "log_every": 10_000, "checkpoint_every": 10_000, "seed": 0,
                  "compile": compile_loss},
        "data": {"spec": "synthetic-lesions"},
    }, "benchmark")
    torch.manual_seed(0)
    model, section = instantiate_model(config["model"], channels=3)
    config = {**config, "model": section}
    images = np.random.default_rng(0).integers(0, 256, size=(dataset_size, 3, 64, 64), dtype=np.uint8)
    on_gpu = device == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        torch.backends.cudnn.benchmark = True  # as `factorlens train` sets it on CUDA
    with tempfile.TemporaryDirectory() as tmp:
        loop = trainer_module._Loop(model=model, config=config, out=Path(tmp), train_images=images,
                                    device=torch.device(device), progress=False)
        if fused_adam:  # the trainer's Adam is the default (foreach) one; this swaps in the fused kernel
            loop.optimizer = torch.optim.Adam(loop.generator_params, lr=config["train"]["lr"],
                                              betas=tuple(config["train"]["betas"]), fused=True)
        for _ in range(warmup):
            loop.step()
        if on_gpu:
            torch.cuda.synchronize()  # the warm-up's queued kernels are not part of the timed steps
        start = time.perf_counter()
        for _ in range(steps):
            loop.step()
        # The step accumulates loss terms on the device; reading them forces the last step to finish.
        float(loop.term_sums.sum())
        elapsed = time.perf_counter() - start
    return {
        "model": model_name,
        "batch": batch_size,
        "precision": "".join([precision, " + compile" * compile_loss, " + fused Adam" * fused_adam]),
        "images_per_s": steps * batch_size / elapsed,
        "ms_per_iter": 1000 * elapsed / steps,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the loss computation (train.compile); warm-up includes compiling")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each row this many times, interleaved across rows; "
                        "print the median (range)")
    parser.add_argument("--fused-adam-ab", action="store_true",
                        help="also measure each row with Adam(fused=True) instead of the trainer's "
                        "foreach Adam")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    # The trainer applies the same settings (train.malloc_tuning, train.num_threads).
    tune_glibc_malloc()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    day = time.strftime("%Y-%m-%d")
    # CPU model and ISA level, GPU, torch/oneDNN/numpy versions (precision is per row).
    print(f"# {machine_line()}; {torch.get_num_threads()} threads; device {args.device}; {day}")
    peak = "peak GPU memory (MiB)" if args.device == "cuda" else "peak RSS (MiB, process so far)"
    speed = "images/s" if args.repeat == 1 else f"images/s, median (range) of {args.repeat}"
    print(f"| model | batch | precision | {speed} | ms/iter | {peak} |")
    print("|---|---:|---|---:|---:|---:|")
    rows = [(name, batch, precision, fused) for name in args.models for batch in args.batch_sizes
            for precision in args.precisions for fused in ((False, True) if args.fused_adam_ab else (False,))]
    measured: dict[tuple, list[dict]] = {row: [] for row in rows}
    for repeat in range(args.repeat):
        # Alternate the order so that a drift of the machine's speed does not favour one row.
        for row in rows if repeat % 2 == 0 else rows[::-1]:
            name, batch, precision, fused = row
            measured[row].append(measure(name, batch, precision, warmup=args.warmup, steps=args.steps,
                                         compile_loss=args.compile, device=args.device, fused_adam=fused))
            if args.repeat == 1:
                print_row(measured[row])
    if args.repeat > 1:
        for row in rows:
            print_row(measured[row])


def print_row(runs: list[dict]) -> None:
    """One table line: the median over ``runs`` (and the range when there are several)."""
    speeds = [run["images_per_s"] for run in runs]
    speed = f"{np.median(speeds):.0f}" + (f" ({min(speeds):.0f}-{max(speeds):.0f})" if len(runs) > 1 else "")
    first = runs[0]
    ms_per_iter = np.median([run["ms_per_iter"] for run in runs])
    peak = max(run["peak_mib"] for run in runs)
    print(f"| {first['model']} | {first['batch']} | {first['precision']} | {speed} | {ms_per_iter:.1f} | "
          f"{peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
