"""``factorlens export-tensorboard``: a run's ``log.jsonl`` as TensorBoard scalars."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-tensorboard",
        help="convert a run's log.jsonl into TensorBoard event files",
        description="Writes every record of RUN/log.jsonl as TensorBoard scalars (loss/<term>, "
        "speed/images_per_s) into --out (default RUN/tensorboard), for runs trained without "
        "train.tensorboard. Needs the extra factorlens[tensorboard].",
    )
    parser.add_argument("run", help="run directory")
    parser.add_argument("--out", default=None, help="event-file folder (default RUN/tensorboard)")
    parser.set_defaults(func=run)


def export_tensorboard(run_dir: Path, out: Path | None = None) -> tuple[Path, int]:
    """Write ``run_dir``'s log records as scalars; returns the folder and the number of records."""
    from factorlens.training import rundir
    from factorlens.training.callbacks import TensorBoard, write_record_scalars

    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG_FILE).exists():
        from factorlens.errors import CheckpointError

        raise CheckpointError(f"{run_dir} is not a factorlens run directory (no {rundir.CONFIG_FILE})")
    records = rundir.read_log(run_dir)
    out = Path(out) if out is not None else run_dir / "tensorboard"
    writer = TensorBoard(out).open_writer(purge_step=None)
    try:
        for record in records:
            write_record_scalars(writer, record)
    finally:
        writer.close()
    return out, len(records)


def run(args: argparse.Namespace) -> int:
    out, count = export_tensorboard(Path(args.run), None if args.out is None else Path(args.out))
    print(f"{out}: {count} log records written as TensorBoard scalars")
    return 0
