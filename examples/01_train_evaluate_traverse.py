# %% [markdown]
# # Train a tiny model, evaluate it, draw a traversal
#
# A β-TCVAE with 6 latent dimensions trained for a few dozen steps on 400 synthetic lesions (whose true
# factors are known), then three of Table 1's metrics on its test split and a latent traversal. Tiny
# settings, so it runs in well under a minute on 2 CPU cores; the numbers mean little at this budget.
# Outputs go to `example-runs/` in the working directory. Open it in Jupyter (jupytext) or run it as a
# script: `python examples/01_train_evaluate_traverse.py`.

# %%
from pathlib import Path

import factorlens as fl

OUT = Path("example-runs")

# %% [markdown]
# ## Train
# `fl.train` takes the same config as `factorlens train --config` (a dict here).

# %%
config = {
    "model": {"name": "btcvae", "latent_dim": 6, "beta": 4.0},
    "train": {"iterations": 40, "batch_size": 32, "lr": 2e-3, "log_every": 10, "checkpoint_every": 40,
              "seed": 0},
    "data": {"spec": "synthetic-lesions:n=400", "test_fraction": 0.25, "split_seed": 0},
}
run = fl.load_run(fl.train(config, OUT / "btcvae", force=True, progress=False))
print(run.model_name, "trained for", run.iteration, "iterations")

# %% [markdown]
# ## Evaluate
# `run.images("test")` are the images Table 1 is computed on (the run's test split) and `run.encode` the
# one encoder pass every command uses; the metrics are pure functions of arrays.

# %%
test = fl.evaluation.evaluation_images(run).subset()  # the test images with their labels and factors
posterior = run.encode(test.images)
codes = posterior.mean
scores = {
    "MIG_p": fl.metrics.mig_pathology(codes, test.labels, len(test.class_names)).score,
    "MIG_hf": fl.metrics.mig_handcrafted(codes, test.handcrafted).score,
    "MIG (factors)": fl.metrics.mig(codes, test.factors, factor_names=test.factor_names).score,
}
reconstruction = fl.evaluation.score_images(run.model, test)  # posterior + PSNR of the decoded means
scores["PSNR dB"] = float(reconstruction.psnr_per_image.mean())
for name, value in scores.items():
    print(f"{name}: {value:.4f}")

# %% [markdown]
# ## Traversal (Fig. 1a)
# A `Figure` displays itself in Jupyter; `.save()` writes the PNG (or `.gif`, the animation).

# %%
figure = fl.viz.traversal(run, test.images[:2], image_ids=test.ids[:2], max_dims=4)
figure.save(OUT / "traversal.png")
figure.save(OUT / "traversal.gif")
print(figure.caption)
figure  # noqa: B018 - the last expression of a cell: Jupyter shows the figure inline
