"""The evaluation layer (one encoder pass, one rule for the evaluated images, Run.images / Run.encode),
dataset-owned exact-MIG factors, the lazy ``import factorlens as fl`` facade and figures as objects."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from test_viz import SpyLinearModel, expected_means, graded_images

import factorlens as fl
from factorlens.data import ImageDataset, export_dataset, load_dataset
from factorlens.data.dsprites import DSpritesSampler, index_to_factors
from factorlens.errors import ConfigError, DataError, FactorlensError
from factorlens.evaluation import Posterior, encode_images, evaluation_images, evaluation_indices
from factorlens.viz.grid import FigureError, png_bytes
from factorlens.viz.traversals import render_traversal, save_traversal, traverse
from factorlens.viz.walks import manifold_walk, render_walk

SRC = Path(fl.__file__).parent


# --- layering and the facade --------------------------------------------------------------------------


def _run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_metrics_do_not_import_training_nor_evaluation():
    loaded = _run_python(
        "import sys, factorlens.metrics; "
        "print(sorted(m for m in sys.modules\n"
        "             if m.startswith(('factorlens.training', 'factorlens.evaluation'))))"
    )
    assert loaded.strip() == "[]"
    # nor anywhere in their source, at module level or inside a function
    for path in (SRC / "metrics").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            bad = [n for n in names if n.startswith(("factorlens.training", "factorlens.evaluation"))]
            assert not bad, path


def test_import_factorlens_is_lazy_and_the_facade_resolves():
    assert _run_python(
        "import sys, factorlens as fl; print(sorted(m for m in sys.modules if m.startswith('factorlens'))"
        " + [m for m in ('torch', 'sklearn') if m in sys.modules])"
    ).strip() == "['factorlens']"
    import factorlens.data
    import factorlens.training

    assert fl.load_run is factorlens.training.load_run and fl.train is factorlens.training.train
    assert fl.load_dataset is factorlens.data.load_dataset
    assert fl.metrics.mig is not None and fl.evaluation.encode_images is encode_images
    import factorlens.viz.traversals  # noqa: F401 - importing the submodules must not hide the functions
    import factorlens.viz.walks  # noqa: F401

    assert callable(fl.viz.traversal) and callable(fl.viz.walk) and fl.viz.Figure.__name__ == "Figure"
    assert {"load_run", "train", "load_dataset", "metrics", "evaluation", "viz"} <= set(dir(fl))
    with pytest.raises(AttributeError):
        fl.no_such_name  # noqa: B018


# --- the encoder pass ------------------------------------------------------------------------------------


class NoEncoder(torch.nn.Module):
    has_encoder = False
    latent_dim = 2


def test_encode_images_is_batched_eval_mode_no_grad_and_exact_in_both_dtypes():
    model = SpyLinearModel()
    images = graded_images(7)
    seen = []
    original = model.encode

    def spy(x):
        seen.append((len(x), model.training, torch.is_grad_enabled(), x.dtype))
        return original(x)

    model.encode = spy
    model.train()
    posterior = encode_images(model, images, batch_size=3)
    assert model.training  # restored
    assert seen == [(3, False, False, torch.float32), (3, False, False, torch.float32),
                    (1, False, False, torch.float32)]
    assert isinstance(posterior, Posterior) and len(posterior) == 7 and posterior.latent_dim == 4
    assert posterior.mean.dtype == np.float64 and posterior.logvar.shape == (7, 4)
    np.testing.assert_allclose(posterior.mean, expected_means(images), rtol=1e-6)
    single = encode_images(model, torch.as_tensor(images).float() / 255.0, dtype=np.float32)
    assert single.mean.dtype == np.float32
    np.testing.assert_array_equal(single.mean, posterior.mean.astype(np.float32))  # float32 outputs, exactly
    batches = []
    encode_images(model, images, batch_size=4,
                  each_batch=lambda x, mu, logvar: batches.append((x.shape, mu.shape)))
    assert batches == [((4, 1, 64, 64), (4, 4)), ((3, 1, 64, 64), (3, 4))]
    empty = encode_images(model, images[:0])
    assert empty.mean.shape == (0, 4) and empty.logvar.shape == (0, 4)
    with pytest.raises(FactorlensError, match="encoding images needs an encoder"):
        encode_images(NoEncoder(), images)
    with pytest.raises(ConfigError, match="float64 or float32"):
        encode_images(model, images, dtype=np.int64)


# --- which images ----------------------------------------------------------------------------------------


def tiny_dataset(n: int = 10, channels: int = 1, spec: str = "tiny") -> ImageDataset:
    return ImageDataset(name="tiny", spec=spec, images=graded_images(n, channels),
                        ids=[f"i{k}" for k in range(n)], labels=np.arange(n) % 2, class_names=["a", "b"])


def fake_run(dataset: ImageDataset, test: list[int], *, channels: int = 1):
    train = [i for i in range(len(dataset)) if i not in test]
    config = SimpleNamespace(data=SimpleNamespace(spec=dataset.spec))
    return SimpleNamespace(config=config, split={"train": train, "test": test,
                           "n": len(dataset)}, model=SimpleNamespace(channels=channels), path=Path("RUN"),
                           load_dataset=lambda progress=False: dataset)


def test_the_evaluation_images_rule(monkeypatch):
    dataset = tiny_dataset()
    run = fake_run(dataset, [1, 4])
    np.testing.assert_array_equal(evaluation_indices(run), [1, 4])
    np.testing.assert_array_equal(evaluation_indices(run, "train"), [0, 2, 3, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(evaluation_indices(run, "all"), np.arange(10))
    chosen = evaluation_images(run)
    assert chosen.own and chosen.split == "test" and chosen.spec == "tiny" and len(chosen) == 2
    np.testing.assert_array_equal(chosen.images, dataset.images[[1, 4]])
    assert chosen.subset().ids == ["i1", "i4"]
    with pytest.raises(ConfigError, match="unknown split 'valid'"):
        evaluation_indices(run, "valid")
    # a run without a test split: every image, unless the caller keeps the empty split (Table 1, encode)
    no_test = fake_run(dataset, [])
    assert evaluation_images(no_test).split == "all" and len(evaluation_images(no_test)) == 10
    kept = evaluation_images(no_test, all_if_empty=False)
    assert kept.split == "test" and len(kept) == 0
    # another dataset: all of it, and only all of it
    other = tiny_dataset(6, spec="other")
    monkeypatch.setattr("factorlens.data.load_dataset", lambda spec, progress=False: other)
    elsewhere = evaluation_images(run, "other")
    assert not elsewhere.own and elsewhere.split == "all" and list(elsewhere.indices) == list(range(6))
    assert evaluation_images(run, "tiny").own  # the run's own spec is its own dataset
    with pytest.raises(ConfigError, match="split 'test' refers to the run's own dataset"):
        evaluation_images(run, "other", split="test")
    with pytest.raises(DataError, match="1-channel images but run RUN expects 3"):
        evaluation_images(fake_run(dataset, [1], channels=3))


def test_run_images_and_encode_delegate_to_the_evaluation_layer(tmp_path):
    from factorlens.training.rundir import Run

    dataset = tiny_dataset()
    config = SimpleNamespace(data=SimpleNamespace(spec="tiny"))
    run = Run(path=tmp_path, config=config, model=SpyLinearModel(),
              split={"train": [0, 2, 3], "test": [5, 1], "n": 10}, model_name="vae", iteration=1,
              _dataset=dataset)
    np.testing.assert_array_equal(run.images(), dataset.images[[5, 1]])
    np.testing.assert_array_equal(run.images("train"), dataset.images[[0, 2, 3]])
    posterior = run.encode(run.images("all"), batch_size=4)
    np.testing.assert_allclose(posterior.mean, expected_means(dataset.images), rtol=1e-6)
    assert run.encode(dataset.images, dtype="float32").mean.dtype == np.float32


# --- dataset knowledge: which factors exact MIG scores --------------------------------------------------


def test_dsprites_datasets_name_the_factors_exact_mig_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    latents = np.zeros((4, 6), dtype=np.int64)
    latents[:, 1:] = index_to_factors(np.array([0, 5, 77, 1000]))
    imgs = (DSpritesSampler().render(latents[:, 1:])[:, 0] // 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", imgs=imgs, latents_classes=latents)
    dataset = load_dataset(f"dsprites:{tmp_path / 'd.npz'}", progress=False)
    chen = ["scale", "orientation", "posX", "posY"]
    assert dataset.exact_mig_factors == chen and dataset.subset([0, 2]).exact_mig_factors == chen
    exported = export_dataset(dataset, tmp_path / "e.npz")
    assert load_dataset(f"npz:{exported}", progress=False).exact_mig_factors == chen
    # an export written before datasets carried the field: dSprites' factor names still get Chen's four
    with np.load(exported, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["exact_mig_factors"]
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    assert load_dataset(f"npz:{tmp_path / 'old.npz'}", progress=False).exact_mig_factors == chen
    assert tiny_dataset().exact_mig_factors is None


# --- figures as objects ----------------------------------------------------------------------------------


def test_traversal_figure_holds_image_caption_animation_and_saves_what_the_file_functions_write(tmp_path):
    model, images = SpyLinearModel(), graded_images(2)
    figure = fl.viz.traversal(model, images, image_ids=["a", "b"], max_dims=3, source="the tiny set")
    assert figure.caption.startswith(
        "Latent traversals (Fig. 1a): 2 images (a, b) from the tiny set; each row decodes the image's "
        "posterior mean with one latent dimension set to 10 values in [-3, 3]; rows ordered by the "
        "dimension's mean KL to the prior over 2 images; 3 of 4 dimensions have KL >= 0.01 nats"
    )
    assert figure.caption.endswith("; only the 3 dimensions with the most KL are shown.")
    assert figure.animation_caption.startswith("Animated traversal, one frame per step (-3 to 3, looping)")
    assert [row.dim for row in figure.data.rows[:3]] == [1, 3, 2]  # by KL; dimension 0 is inactive
    assert figure.png.startswith(b"\x89PNG") and figure._repr_png_() == figure.png
    pixels = np.asarray(Image.open(io.BytesIO(figure.png)).convert("RGB"))
    assert figure.array.dtype == np.uint8 and np.array_equal(figure.array, pixels)
    assert figure.save(tmp_path / "t.png").read_bytes() == figure.png
    assert figure.save(tmp_path / "t.gif").read_bytes()[:6] == b"GIF89a"
    with pytest.raises(FigureError, match="saved as .png"):
        figure.save(tmp_path / "t.jpg")
    # one code path: the file-writing function draws the same PNG
    data = traverse(model, images, dims=[1, 3, 2], image_ids=["a", "b"])
    save_traversal(data, tmp_path / "s.png", title="x")
    assert (tmp_path / "s.png").read_bytes() == png_bytes(render_traversal(data, title="x"))
    assert fl.viz.traversal_figure(data, title="x").png == (tmp_path / "s.png").read_bytes()


def test_walk_figure(tmp_path):
    model, images = SpyLinearModel(), graded_images(2)
    figure = fl.viz.walk(model, images[0], images[1], frames=3, source_name="a", target_name="b",
                         where="here")
    assert figure.caption.startswith(
        "Manifold walk (Fig. 1b) from image a to image b (here), moving one latent dimension per column "
        "(the 3 largest |mu_target - mu_source| first"
    )
    assert figure.animation_caption == f"Animated manifold walk {figure.description}."
    data = manifold_walk(model, images[0], images[1], frames=3)
    assert figure.png == png_bytes(render_walk(data, source_name="a", target_name="b"))
    assert figure.save(tmp_path / "w.gif").read_bytes()[:6] == b"GIF89a"
