"""``factorlens import-unet STATE --config ARGS.json --out RUN``: a MONAI DiffusionModelUNet trained
elsewhere as a ``ddpm`` run directory (for ``sample``, ``discover``, ``traverse``, ``report``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-unet",
        help="import a MONAI DiffusionModelUNet state dict as a ddpm run",
        description="Reads STATE (a .safetensors file, or a torch.save state dict loaded with "
        "weights_only=True; pickles of objects are refused) and the U-Net's constructor arguments "
        "(JSON: MONAI's keys plus image_size, schedule, num_train_timesteps) and writes a run directory.",
    )
    parser.add_argument("state", type=Path, help="the U-Net's state dict (.safetensors or a torch.save file)")
    parser.add_argument("--config", type=Path, required=True, help="JSON object of constructor arguments")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument("--data", default="synthetic-lesions",
                        help="dataset spec of the run (inversions, scoring); default synthetic-lesions")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorlens.models.unet_import import import_unet

    out = import_unet(args.state, args.config, args.out, data_spec=args.data, force=args.force)
    print(out)
    return 0
