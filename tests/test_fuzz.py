"""Property tests: whatever bytes, CSV text or config a user hands over, the loaders and the config parser
either succeed or raise the project's own ``FactorlensError`` (one line) -- never another exception.

Deterministic (``derandomize=True``) and small, so they run in a few seconds in ``make test``.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from factorlens.cli.main import build_parser
from factorlens.cli.train import config_from_args
from factorlens.config import apply_overrides, load_config, validate_config
from factorlens.data import load_dataset
from factorlens.errors import FactorlensError
from factorlens.models import MODELS, parse_model_params

FUZZ = settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Skipped files, unlabelled images and upsampling are reported as warnings: expected here, not noise.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
GT_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


@contextmanager
def workspace() -> Iterator[Path]:
    """A fresh folder and a private, empty dataset cache for one example."""
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        previous = os.environ.get("FACTORLENS_CACHE")
        os.environ["FACTORLENS_CACHE"] = str(root / "cache")
        try:
            yield root
        finally:
            if previous is None:
                del os.environ["FACTORLENS_CACHE"]
            else:
                os.environ["FACTORLENS_CACHE"] = previous


def expect_clean(call, *args, **kwargs):
    """Run ``call``: success, or a FactorlensError with a non-empty one-line message."""
    try:
        return call(*args, **kwargs)
    except FactorlensError as error:
        message = " ".join(str(error).split())
        assert message, "empty error message"
        return error


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


VALID_FILES = [
    encoded(Image.new("RGB", (80, 70), (120, 60, 30)), "JPEG"),
    encoded(Image.new("RGB", (80, 70), (120, 60, 30)), "PNG"),
    encoded(Image.new("L", (70, 70), 90), "PNG"),
    encoded(Image.fromarray(np.full((70, 70), 40000, dtype=np.uint16)), "PNG"),
    encoded(Image.new("CMYK", (70, 70), (0, 50, 100, 0)), "JPEG"),
    encoded(Image.new("RGBA", (70, 70), (10, 20, 30, 128)), "PNG"),
    encoded(Image.new("P", (20, 20), 3), "PNG"),
]


@st.composite
def file_bytes(draw) -> bytes:
    """Random bytes, or a valid image truncated / with bytes overwritten (what disks and copies do)."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "valid"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    base = draw(st.sampled_from(VALID_FILES))
    if kind == "truncated":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "flipped":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255))
        return bytes(data)
    return base


@FUZZ
@given(content=file_bytes(), suffix=st.sampled_from([".jpg", ".png", ".tif", ".bmp"]),
       skip_bad=st.booleans())
def test_random_image_files(content, suffix, skip_bad):
    with workspace() as root:
        (root / "imgs").mkdir()
        (root / "imgs" / f"x{suffix}").write_bytes(content)
        (root / "imgs" / "ok.png").write_bytes(VALID_FILES[1])
        result = expect_clean(load_dataset, f"folder:{root / 'imgs'}", skip_bad=skip_bad, progress=False)
        if not isinstance(result, FactorlensError):
            assert result.images.dtype == np.uint8 and result.images.shape[1:] == (3, 64, 64)


def isic_root(root: Path, ids: list[str]) -> Path:
    data = root / "isic"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for image_id in ids:
        (data / "images" / f"{image_id}.jpg").write_bytes(VALID_FILES[0])
    return data


@FUZZ
@given(content=file_bytes(), skip_bad=st.booleans())
def test_random_mask_files(content, skip_bad):
    with workspace() as root:
        data = isic_root(root, ["ISIC_0000001"])
        (data / GT_CSV).write_text("image," + ",".join(CLASSES) + "\nISIC_0000001,0,1,0,0,0,0,0\n")
        (data / "masks" / "ISIC_0000001_segmentation.png").write_bytes(content)
        result = expect_clean(load_dataset, f"isic2018:{data}", skip_bad=skip_bad, progress=False)
        if not isinstance(result, FactorlensError):
            assert result.masks.shape == (1, 64, 64) and set(np.unique(result.masks)) <= {0, 1}


# CSV-ish text: the separators, quotes and tokens that matter, plus anything else.
CSV_TOKENS = st.sampled_from([
    ",", "\n", "\r\n", '"', " ", "\x00", "\ufeff", "image", "label", "image_id", "lesion_id", "dx",
    *CLASSES, "nv", "mel", "1", "0", "1.0", "0.0", "nan", "-1", "ISIC_0000001", "ISIC_0000002",
    "ISIC_0000001.jpg", "../", "../../etc/passwd", "/etc/passwd", "images/", "HAM_1",
])
csv_text = st.one_of(
    st.lists(CSV_TOKENS, max_size=40).map("".join),
    st.text(max_size=200),
)
csv_content = st.one_of(csv_text.map(lambda text: text.encode("utf-8")), st.binary(max_size=200))


@FUZZ
@given(content=csv_content, header=st.sampled_from(["gt", "meta", "folder", "none"]))
def test_random_csv_contents(content, header):
    """Random CSV bodies behind a valid header (or none) for the three CSV readers."""
    prefix = {
        "gt": ("image," + ",".join(CLASSES) + "\n").encode(),
        "meta": b"lesion_id,image_id,dx\n",
        "folder": b"image,label\n",
        "none": b"",
    }[header]
    with workspace() as root:
        data = isic_root(root, ["ISIC_0000001", "ISIC_0000002"])
        (data / GT_CSV).write_bytes(prefix + content)
        (data / "HAM10000_metadata.csv").write_bytes(prefix + content)
        (root / "labels.csv").write_bytes(prefix + content)
        folder_spec = f"folder:{data / 'images'}:{root / 'labels.csv'}"
        for spec in (f"isic2018:{data}", f"ham10000:{data}", folder_spec):
            expect_clean(load_dataset, spec, progress=False)


# --- configs ---------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["fp32", "bf16", "cpu", "auto", "btcvae", "vae", "1e-4", "mws"]),
)
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=3)),
    max_leaves=6,
)
KNOWN_KEYS = ["iterations", "batch_size", "lr", "adv_lr", "betas", "adv_betas", "seed", "log_every",
              "checkpoint_every", "precision", "device", "compile", "num_threads", "malloc_tuning", "spec",
              "test_fraction", "split_seed", "latent_dim", "beta", "alpha", "gamma", "estimator", "name"]
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10), st.integers(-2, 2), st.none())
sections = st.dictionaries(keys, values, max_size=5)
raw_configs = st.one_of(
    values,
    st.fixed_dictionaries(
        {"model": st.one_of(st.fixed_dictionaries({"name": st.sampled_from(MODELS.names())}, optional={
            "latent_dim": values, "beta": values, "gamma": values, "alpha": values, "estimator": values,
        }), sections, values)},
        optional={"train": st.one_of(sections, values), "data": st.one_of(sections, values),
                  "extra": values},
    ),
)


def validate_everything(raw) -> None:
    """What ``train`` checks before touching data: the config, then the model's parameters."""
    config = validate_config(raw, "fuzz.yaml")
    model = dict(config["model"])
    name = model.pop("name")
    parse_model_params(name, model, where="fuzz.yaml")


@FUZZ
@given(raw=raw_configs)
def test_random_config_dicts(raw):
    expect_clean(validate_everything, raw)


yaml_tokens = st.sampled_from([
    "model:", "train:", "data:", " ", "  ", "\n", "\t", "{", "}", "[", "]", ",", ":", "-", "name: btcvae",
    "latent_dim:", "beta:", "iterations:", "batch_size:", "lr:", "1e-4", ".nan", ".inf", "-1", "0", "1",
    "true", "null", "'", '"', "&a", "*a", "!!python/object:os.system", "? ", "<<: *a", "%YAML 1.1", "---",
    "...", "#", "\x00", "\ufeff", "é",
])
yaml_text = st.one_of(st.lists(yaml_tokens, max_size=30).map("".join), st.text(max_size=120))


@FUZZ
@given(text=yaml_text)
def test_random_yaml_text(text):
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = expect_clean(load_config, path)
        if not isinstance(result, FactorlensError):
            expect_clean(validate_everything, result)


assignment = st.one_of(
    st.text(max_size=30),
    st.builds(lambda section, key, value: f"{section}.{key}={value}",
              st.sampled_from(["model", "train", "data", "other", ""]), st.sampled_from(KNOWN_KEYS),
              st.one_of(yaml_text, st.sampled_from(["-1", "0", ".nan", "[1,2]", "{a: 1}", "''"]))),
)
int_flag = st.one_of(st.none(), st.integers(-5, 5).map(str))


@FUZZ
@given(assignments=st.lists(assignment, max_size=3), iters=int_flag, batch=int_flag, seed=int_flag)
def test_random_train_command_lines(assignments, iters, batch, seed):
    """``train`` argument parsing and overrides (validation only: nothing is trained)."""
    with tempfile.TemporaryDirectory() as name:
        config = Path(name) / "cfg.yaml"
        config.write_text("model: {name: btcvae, latent_dim: 4}\ndata: {spec: 'synthetic-lesions:n=64'}\n")
        argv = ["train", "--config", str(config), "--out", str(Path(name) / "run")]
        for flag, value in (("--iters", iters), ("--batch-size", batch), ("--seed", seed)):
            if value is not None:
                argv += [flag, value]
        for item in assignments:
            argv += [f"--set={item}"]
        args = build_parser().parse_args(argv)
        result = expect_clean(config_from_args, args)
        if not isinstance(result, FactorlensError):
            expect_clean(validate_everything, result)
        assert not (Path(name) / "run").exists()


@FUZZ
@given(assignments=st.lists(assignment, max_size=4))
def test_random_overrides(assignments):
    base = validate_config({"model": {"name": "btcvae"}})
    expect_clean(apply_overrides, base, assignments)
