"""Shared by test_image_sizes.py and test_image_size_128.py: a tiny run and the end-to-end size check."""

from __future__ import annotations

import json

import numpy as np
import torch

from factorlens.directions.pipeline import discover_for_model
from factorlens.evaluation import METRICS, EvaluationOptions, evaluate_runs, score_images
from factorlens.training import load_run, train
from factorlens.viz import traversal


def tiny_run(spec: str, out, *, latent_dim: int = 4):
    config = {
        "model": {"name": "btcvae", "latent_dim": latent_dim},
        "data": {"spec": spec},
        "train": {"iterations": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "num_threads": 1,
                  "seed": 0},
    }
    return train(config, out)


IMAGE_COLUMNS = ("psnr", "mig_hf", "mig_p", "mig_factors")


def check_size_end_to_end(tmp_path, size: int, *, full_table: bool = True) -> None:
    run_path = tiny_run(f"synthetic-lesions:n=150,size={size}", tmp_path / "run")
    split = json.loads((run_path / "split.json").read_text())
    assert (split["channels"], split["image_size"]) == (3, size)
    run = load_run(run_path)
    images = run.images("test")
    assert images.shape[1:] == (3, size, size)
    assert run.model.decode(torch.zeros(1, 4)).shape == (1, 3, size, size)

    if full_table:  # Table 1 as `factorlens evaluate` makes it
        evaluate_runs([run_path], out_dir=tmp_path / "results", dci_model="random-forest")
        metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())["runs"][0]["metrics"]
        values = {name: metrics[name]["value"] for name in IMAGE_COLUMNS}
    else:  # the columns that see images or masks (the classifiers on the codes do not depend on the size)
        inputs = score_images(run.model, run.load_dataset().subset(split["test"]))
        options = EvaluationOptions()
        values = {name: METRICS.get(name).compute(inputs, options).value for name in IMAGE_COLUMNS}
    assert all(np.isfinite(value) for value in values.values()), values

    figure = traversal(run, images[:2], steps=3)
    assert figure.data.images.shape == (2 * 4, 3, 3, size, size)
    figure.save(tmp_path / "traversal.png")
    assert (tmp_path / "traversal.png").stat().st_size > 0

    # direction discovery and its oracle scoring read the images at their size
    discover_for_model(run.model, run.images("train")[:16], tmp_path / "sefa", method="sefa",
                       dataset_name="synthetic-lesions", rca_steps=0, score_codes=4)
    scores = json.loads((tmp_path / "sefa" / "scores.json").read_text())
    assert scores["method"] == "sefa" and np.asarray(scores["effect"]).shape[0] == 4
