"""Training throughput of every model next to the anchor: images/s, ratio to the anchor, GFLOP/s, peak memory.

Runs the real training step of ``factorlens.training`` (the public ``Trainer.step`` that ``factorlens
train`` uses: uint8 images held in memory, per-batch conversion, channels_last, optional bf16 autocast, the
adversary's update for ``btcvae-adv``) on random 64x64 RGB images, so data decoding is not measured. Each
model is its ``cpu/<model>`` preset with the row's batch size and precision. The first row is the anchor,
disentangling-vae's β-TCVAE loop re-implemented in ``benchmarks/anchor_dvae.py`` (fp32, as that code runs);
the ratio column divides a row's images/s by the anchor's at the same batch size in the same repeat.

    python -m benchmarks.train_throughput           # anchor + every model, batch 64 and 256, fp32 and bf16
    python -m benchmarks.train_throughput --models btcvae --batch-sizes 64 --precisions fp32 bf16 --repeat 5
    python -m benchmarks.train_throughput --device cuda --batch-sizes 256 1024 --steps 50   # on a GPU

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

from benchmarks.anchor_dvae import AnchorLoop, anchor_flops_per_image, train_flops_per_image
from factorlens.config import load_config, parse_run_config, resolve_config_path
from factorlens.environment import machine_line
from factorlens.training._malloc import tune_glibc_malloc
from factorlens.training.rundir import build_run_model
from factorlens.training.trainer import Trainer

DEFAULT_MODELS = ("vae", "btcvae", "btcvae-resnet", "btcvae-adv", "gan", "ddpm")
ANCHOR = "anchor"  # disentangling-vae's β-TCVAE (benchmarks/anchor_dvae.py)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_images(dataset_size: int) -> np.ndarray:
    """``uint8 [N, 3, 64, 64]`` noise images (speed does not depend on the content)."""
    return np.random.default_rng(0).integers(0, 256, size=(dataset_size, 3, 64, 64), dtype=np.uint8)


def build_trainer(model_name: str, batch_size: int, precision: str, *, out: Path, images: np.ndarray,
                  device: str = "cpu", compile_loss: bool = False) -> Trainer:
    """A callback-free :class:`Trainer` of the ``cpu/<model_name>`` preset, this batch size and precision."""
    raw = load_config(resolve_config_path(f"cpu/{model_name}"))
    raw["train"].update({"batch_size": batch_size, "precision": precision, "device": device,
                         "compile": compile_loss, "seed": 0})
    config = parse_run_config(raw, "benchmark")
    torch.manual_seed(0)
    model, _ = build_run_model(config.model, channels=3, image_size=64)
    return Trainer(model=model, config=config, out=out, train_images=images, device=torch.device(device))


def flops_per_image(model_name: str) -> float:
    """Training FLOPs per image (forward conv/linear layers of one generator loss x 3)."""
    if model_name == ANCHOR:
        return anchor_flops_per_image()
    config = parse_run_config(load_config(resolve_config_path(f"cpu/{model_name}")), "benchmark")
    model, _ = build_run_model(config.model, channels=3, image_size=64)
    model.eval()  # batch statistics of BatchNorm do not change the count; eval allows any batch
    x = torch.rand(2, 3, 64, 64)
    return train_flops_per_image(model, lambda: model.compute_loss(x, dataset_size=1000), 2)


def measure(model_name: str, batch_size: int, precision: str, *, warmup: int, steps: int,
            dataset_size: int = 4096, compile_loss: bool = False, device: str = "cpu") -> dict:
    """Time ``steps`` training steps after ``warmup`` untimed ones; returns the figures of one row.

    On ``cuda`` the dataset lives on the GPU (as in training) and the peak column is the GPU's peak
    allocated memory of this row, not the process's RSS."""
    images = random_images(dataset_size)
    on_gpu = device == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        torch.backends.cudnn.benchmark = True  # as `factorlens train` sets it on CUDA
    with tempfile.TemporaryDirectory() as tmp:
        if model_name == ANCHOR:
            loop = AnchorLoop(torch.from_numpy(images).to(device), batch_size)
            finish = lambda: float(loop.last_loss)  # noqa: E731
        else:
            loop = build_trainer(model_name, batch_size, precision, out=Path(tmp), images=images,
                                 device=device, compile_loss=compile_loss)
            # The step accumulates loss terms on the device; reading them forces the last step to finish.
            finish = lambda: float(loop.term_sums.sum())  # noqa: E731
        for _ in range(warmup):
            loop.step()
        finish()
        start = time.perf_counter()
        for _ in range(steps):
            loop.step()
        finish()
        elapsed = time.perf_counter() - start
    return {
        "model": model_name,
        "batch": batch_size,
        "precision": precision + " + compile" * compile_loss,
        "images_per_s": steps * batch_size / elapsed,
        "ms_per_iter": 1000 * elapsed / steps,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--no-anchor", action="store_true", help="leave out the anchor rows")
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
    print(f"| model | batch | precision | {speed} | x anchor | ms/iter | MFLOP/image | GFLOP/s | {peak} |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    rows = [(ANCHOR, batch, "fp32") for batch in args.batch_sizes] if not args.no_anchor else []
    rows += [(name, batch, precision) for name in args.models for batch in args.batch_sizes
             for precision in args.precisions]
    flops = {name: flops_per_image(name) for name in dict.fromkeys(row[0] for row in rows)}
    measured: dict[tuple, list[dict]] = {row: [] for row in rows}
    for repeat in range(args.repeat):
        # Alternate the order so that a drift of the machine's speed does not favour one row.
        for row in rows if repeat % 2 == 0 else rows[::-1]:
            name, batch, precision = row
            measured[row].append(measure(name, batch, precision, warmup=args.warmup, steps=args.steps,
                                         compile_loss=args.compile and name != ANCHOR, device=args.device))
            if args.repeat == 1 and args.no_anchor:
                print_row(measured[row], None, flops[name])
    if args.repeat > 1 or not args.no_anchor:
        for row in rows:
            anchor = measured.get((ANCHOR, row[1], "fp32"))
            print_row(measured[row], anchor, flops[row[0]])


def print_row(runs: list[dict], anchor: list[dict] | None, flops: float) -> None:
    """One table line: the median over ``runs`` (and the range when there are several); the ratio to
    the anchor is the median of the per-repeat ratios (each repeat's row and anchor ran minutes apart)."""
    speeds = [run["images_per_s"] for run in runs]
    median = float(np.median(speeds))
    speed = f"{median:.0f}" + (f" ({min(speeds):.0f}-{max(speeds):.0f})" if len(runs) > 1 else "")
    ratios = [r["images_per_s"] / a["images_per_s"] for r, a in zip(runs, anchor or runs, strict=True)]
    ratio = f"{np.median(ratios):.2f}" if anchor else ""
    first = runs[0]
    ms_per_iter = np.median([run["ms_per_iter"] for run in runs])
    peak = max(run["peak_mib"] for run in runs)
    print(f"| {first['model']} | {first['batch']} | {first['precision']} | {speed} | {ratio} | "
          f"{ms_per_iter:.1f} | {flops / 1e6:.0f} | {median * flops / 1e9:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
