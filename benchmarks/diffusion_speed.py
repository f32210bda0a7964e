"""Speed of the diffusion U-Net on this machine: training images/s (fp32, bf16), DDIM sampling images/s,
and the time and peak memory of one ``hspace`` step with and without per-step gradient checkpointing.

    python -m benchmarks.diffusion_speed                      # every case, 1 thread, the cpu/ddpm U-Net
    python -m benchmarks.diffusion_speed --cases train-fp32 hspace-ckpt --threads 2

Each case runs in its own process (so that the peak-RSS column is that case's); the U-Net is the one of
``presets/cpu/ddpm.yaml`` (32 px, channels 32/64/64, ~1.1 M parameters) with random weights (speed does
not depend on them). Not a test: prints a markdown table, the machine line and the load average before and
after; asserts nothing. A shared 2-core machine makes every figure depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = ("train-fp32", "train-bf16", "sample-fp32", "sample-bf16", "hspace-plain", "hspace-ckpt")


def _model():
    import torch

    from factorlens.models import build_model

    torch.manual_seed(0)
    model = build_model("ddpm", {"resolution": 32}, channels=3, image_size=64)
    with torch.no_grad():  # MONAI zero-initialises the output conv; give h a path to the output
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    return model


def run_case(case: str, *, batch: int, steps: int, ddim_steps: int, hspace_batch: int) -> dict:
    import torch

    from factorlens.directions.hspace import DiffusionAdapter, ShiftModule, hspace_loss_step

    model = _model()
    x = torch.rand(batch, 3, 64, 64)
    bf16 = case.endswith("bf16")
    if case.startswith("train"):
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def one() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model.compute_loss(x, dataset_size=len(x)).loss
            loss.backward()
            optimizer.step()

        one()  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            one()
        seconds = (time.perf_counter() - start) / steps
        return {"case": case, "batch": batch, "s_per_iter": seconds, "images_per_s": batch / seconds}
    if case.startswith("sample"):
        model.eval()
        noise = torch.randn(batch, 3, 32, 32)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.sample(noise[:2], steps=2)  # warm-up
            start = time.perf_counter()
            model.sample(noise, steps=ddim_steps)
            seconds = time.perf_counter() - start
        return {"case": case, "batch": batch, "ddim_steps": ddim_steps, "s": seconds,
                "images_per_s": batch / seconds}
    adapter = DiffusionAdapter(model, ddim_steps=ddim_steps, h_samples=4)
    adapter.checkpointed = case == "hspace-ckpt"
    module = ShiftModule(adapter.h_dim, 6, "proj", torch.Generator().manual_seed(0))
    x_t = torch.randn(hspace_batch, 3, 32, 32)
    k = torch.arange(hspace_batch) % 6
    eps = torch.full((hspace_batch,), 2.0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with adapter.frozen():
        start = time.perf_counter()
        for _ in range(steps):
            module.zero_grad()
            _, shifted = hspace_loss_step(adapter, module, x_t, k, eps)
            shifted.square().mean().backward()
        seconds = (time.perf_counter() - start) / steps
    return {"case": case, "batch": hspace_batch, "ddim_steps": ddim_steps, "s_per_step": seconds,
            "rss_before_mib": rss_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32, help="training / sampling batch")
    parser.add_argument("--steps", type=int, default=5, help="timed iterations (train, hspace)")
    parser.add_argument("--ddim-steps", type=int, default=10, help="DDIM steps (sampling, hspace)")
    parser.add_argument("--hspace-batch", type=int, default=4)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.case is not None:
        out = run_case(args.case, batch=args.batch, steps=args.steps, ddim_steps=args.ddim_steps,
                       hspace_batch=args.hspace_batch)
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return
    from factorlens.environment import machine_line

    print(machine_line(), f"| threads {args.threads} | load average before {os.getloadavg()}")
    print("| case | batch | DDIM steps | s / iteration | images/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in args.cases:
        command = [sys.executable, "-m", "benchmarks.diffusion_speed", "--case", case, "--threads",
                   str(args.threads), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--ddim-steps", str(args.ddim_steps), "--hspace-batch", str(args.hspace_batch)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True)
                            .stdout.strip().splitlines()[-1])
        seconds = result.get("s_per_iter", result.get("s_per_step", result.get("s")))
        print(f"| {case} | {result['batch']} | {result.get('ddim_steps', '-')} | {seconds:.3f} | "
              f"{result.get('images_per_s', float('nan')):.1f} | {result['peak_rss_mib']:.0f} |", flush=True)
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
