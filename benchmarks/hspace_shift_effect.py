"""How much an h-space shift changes a diffusion run's samples: the mean absolute pixel change (images in
[0, 1]) of DDIM decodes shifted along h-space directions, against the shift in units of r (h's RMS
deviation from its timestep mean, ``DiffusionAdapter.h_unit``), for the top principal directions of h
(``hspace-pca``) and random unit directions. The unit r and the training range of ``hspace`` should give
visible but not destructive changes; this measures which shifts do.

    python -m benchmarks.hspace_shift_effect RUN --codes 16 --shifts 0.5 1 2 3 6 --threads 2 [--t-edit 500]

Prints one JSON object (also written with --out).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--codes", type=int, default=16, help="initial noises x_T per shift")
    parser.add_argument("--shifts", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 3.0, 6.0])
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--directions", type=int, default=3, help="principal and random directions each")
    parser.add_argument("--t-edit", type=int, default=0,
                        help="shifts act (and hspace-pca reads h) at steps with t >= this")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from factorlens.directions import GeneratorAdapter, discover_directions
    from factorlens.directions.hspace import DiffusionAdapter
    from factorlens.environment import machine_line
    from factorlens.training import load_run

    started = time.perf_counter()
    adapter = GeneratorAdapter.from_model(load_run(args.run).model, None)
    if not isinstance(adapter, DiffusionAdapter):
        parser.exit(2, f"error: {args.run} is not a diffusion run\n")
    adapter.configure(ddim_steps=args.ddim_steps, t_edit=args.t_edit)  # r is measured at the edited steps
    sets = {"hspace-pca": discover_directions(adapter, "hspace-pca", k=args.directions, seed=0,
                                              ddim_steps=args.ddim_steps, t_edit=args.t_edit),
            "random": discover_directions(adapter, "random", k=args.directions, seed=0)}
    base = adapter.sample_base(args.codes, torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = adapter.decode_batched(base, 64)
    result: dict = {"run": args.run, "machine": machine_line(), "h_unit_r": float(adapter.h_unit),
                    "ddim_steps": args.ddim_steps, "t_edit": args.t_edit, "codes": args.codes,
                    "mean_abs_pixel_change": {}}
    for name, directions in sets.items():
        vectors = torch.as_tensor(directions.shift_vectors()).float()  # [K, d]: one unit (r) along each
        table = {}
        for shift in args.shifts:
            codes = (base[None] + shift * vectors[:, None]).reshape(-1, adapter.latent_dim)
            with torch.no_grad():
                moved = adapter.decode_batched(codes, 64).reshape(len(vectors), args.codes, *plain.shape[1:])
            change = (moved - plain[None]).abs().mean(dim=(1, 2, 3, 4)).numpy()  # [K]
            table[f"{shift:g}"] = np.round(change, 4).tolist()
        result["mean_abs_pixel_change"][name] = table
    result["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
