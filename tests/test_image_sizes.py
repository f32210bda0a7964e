"""Image size and channels from the dataset, end to end: 32 px and 128 px synthetic lesions (RGB) and a
1-channel 32 px NIfTI volume train, evaluate (Table 1), traverse and discover at their own size."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from _image_sizes import check_size_end_to_end, tiny_run

from factorlens.data import load_dataset
from factorlens.evaluation import METRICS, EvaluationOptions, score_images
from factorlens.training import load_run
from factorlens.viz import traversal


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


def test_synthetic_lesions_size_option_resizes_the_64px_rendering():
    big = load_dataset("synthetic-lesions:n=20,size=128", progress=False)
    base = load_dataset("synthetic-lesions:n=20", progress=False)
    small = load_dataset("synthetic-lesions:n=20,size=32", progress=False)
    assert big.images.shape == (20, 3, 128, 128) and small.images.shape == (20, 3, 32, 32)
    means = base.images.astype(np.float64).reshape(20, 3, 32, 2, 32, 2).mean(axis=(3, 5))
    np.testing.assert_array_equal(small.images, np.rint(means))
    np.testing.assert_array_equal(big.masks, base.masks.repeat(2, axis=1).repeat(2, axis=2))
    np.testing.assert_array_equal(big.handcrafted, base.handcrafted)  # measured on the 64 px masks
    np.testing.assert_array_equal(big.factors, base.factors)
    assert big.sampler.render(big.factors[:2]).shape == (2, 3, 128, 128)


def test_train_evaluate_traverse_discover_at_32_px(tmp_path):
    check_size_end_to_end(tmp_path, 32)  # 128 px: tests/test_image_size_128.py (each file < 30 s)


def test_one_channel_volume_trains_a_one_channel_model(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(24, 24, 50)).cumsum(axis=2)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(tmp_path / "v.nii.gz"))
    spec = f"nifti:{tmp_path / 'v.nii.gz'}:size=32,group=slice"
    run_path = tiny_run(spec, tmp_path / "run")
    run = load_run(run_path)
    assert run.model.channels == 1
    images = run.images("all")
    assert images.shape == (50, 1, 32, 32)
    assert run.model.decode(torch.zeros(1, 4)).shape == (1, 1, 32, 32)
    # the columns a slice dataset has (one factor: DCI, which needs two, is not among them)
    inputs = score_images(run.model, run.load_dataset())
    for name in ("psnr", "mig_factors"):  # mig_factors: the position factor
        assert np.isfinite(METRICS.get(name).compute(inputs, EvaluationOptions()).value)
    assert traversal(run, images[:1], steps=3).data.images.shape == (4, 3, 1, 32, 32)
