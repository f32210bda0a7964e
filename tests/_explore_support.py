"""Shared by the explorer's tests: a tiny real run (btcvae, 6-d, 6 iterations on 64 synthetic lesions,
one thread) with a hand-made direction set, and the server on a free port in a thread."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from factorlens.directions import DirectionSet
from factorlens.explore import Explorer, ExplorerServer, make_server
from factorlens.training import train

LATENT_DIM = 6
FACTOR_NAMES = ["size", "tone"]


def train_tiny_run(out: Path) -> Path:
    config = {
        "model": {"name": "btcvae", "latent_dim": LATENT_DIM, "beta": 6.0},
        "train": {
            # 40, not 6: after 6 iterations the decoder was nearly constant, and on an Intel Xeon a
            # slider at 3 moved no pixel by 1/255 (the PNG did not change; 17-32/255 at 40)
            "iterations": 40,
            "batch_size": 16,
            "log_every": 20,
            "checkpoint_every": 40,
            "seed": 0,
            "num_threads": 1,  # 2 shared cores: one thread is several times faster under load
        },
        "data": {"spec": "synthetic-lesions:n=64", "test_fraction": 0.2, "split_seed": 0},
    }
    train(config, out, progress=False)
    # a direction set saved as `factorlens discover` would: two unit directions, scales, labels, scores
    matrix = np.zeros((2, LATENT_DIM), np.float32)
    matrix[0, 0] = 1.0
    matrix[1, 1] = matrix[1, 2] = 2**-0.5
    folder = out / "directions" / "handmade"
    DirectionSet(matrix, np.array([0.5, 2.0], np.float32), "axes", labels=["first", ""]).save(folder)
    scores = {"factor_names": FACTOR_NAMES, "effect": [[0.1, -0.7], [0.3, 0.2]], "direction_mig": 0.25}
    (folder / "scores.json").write_text(json.dumps(scores))
    return out


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def serving(explorer: Explorer) -> Iterator[ExplorerServer]:
    server = make_server(explorer, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
