"""Every bad input of the catalogue in ``docs/errors.md``, through the CLI entry point.

Each user error must give exit code 2 and ONE stderr line ``error: ...`` naming the file, row or option,
no traceback, and leave no partial output (no cache file, no run directory, an existing run untouched).
Decodable-but-odd inputs (CMYK, 16-bit, RGBA, greyscale, tiny images; odd masks) must load, and their
converted pixel values are checked.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factorlens.cli.main import main
from factorlens.data import load_dataset

CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
GT_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"
IDS = [f"ISIC_{i:07d}" for i in range(3)]
DATA = "synthetic-lesions:n=64"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


# --- helpers -------------------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(capsys, *argv: str) -> Result:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_user_error(result: Result, *needles: str) -> str:
    """Exit 2, one stderr line ``error: ...`` containing every needle, no traceback, nothing on stdout."""
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert str(needle) in line, (needle, line)
    assert result.out == ""
    return line


def cache_files(tmp_path: Path) -> list[Path]:
    cache = tmp_path / "cache"
    return sorted(cache.rglob("*")) if cache.exists() else []


def data_error(capsys, tmp_path: Path, spec: str, *needles: str, skip_bad: bool = False) -> str:
    """``data info SPEC`` must fail cleanly and leave nothing in the cache."""
    args = ["data", "info", spec, *(["--skip-bad"] if skip_bad else [])]
    line = assert_user_error(cli(capsys, *args), *needles)
    assert cache_files(tmp_path) == []
    return line


def data_ok(capsys, spec: str, *, skip_bad: bool = False) -> tuple[Result, object]:
    """``data info SPEC`` must succeed; returns the result and the (now cached) dataset."""
    result = cli(capsys, "data", "info", spec, *(["--skip-bad"] if skip_bad else []))
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    return result, load_dataset(spec, skip_bad=skip_bad, progress=False)


def write_rgb(path: Path, colour=(200, 150, 120), size=(96, 72)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)
    return path


def write_gt(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header or ["image", *CLASSES])
        writer.writerows(rows)
    return path


def one_hot(image_id: str, label: int = 1) -> list[str]:
    return [image_id, *["1.0" if c == label else "0.0" for c in range(7)]]


def isic(tmp_path: Path, ids=IDS, rows=None, masks: dict[str, Image.Image] | None = None) -> Path:
    """``ROOT/images/ID.jpg`` for ``ids``, ``ROOT/<GT_CSV>`` with ``rows`` (default one-hot of ``ids``),
    and ``ROOT/masks/ID_segmentation.png`` for the given masks."""
    root = tmp_path / "isic"
    for image_id in ids:
        write_rgb(root / "images" / f"{image_id}.jpg")
    write_gt(root / GT_CSV, rows if rows is not None else [one_hot(i) for i in ids])
    if masks is not None:
        (root / "masks").mkdir(parents=True, exist_ok=True)
        for image_id, mask in masks.items():
            mask.save(root / "masks" / f"{image_id}_segmentation.png")
    return root


def ham(tmp_path: Path, rows: list[list[str]], ids=IDS) -> Path:
    root = tmp_path / "ham"
    for image_id in ids:
        write_rgb(root / "HAM10000_images_part_1" / f"{image_id}.jpg")
    write_gt(root / "HAM10000_metadata.csv", rows, header=["lesion_id", "image_id", "dx"])
    return root


def folder(tmp_path: Path, files: dict[str, bytes | Image.Image]) -> Path:
    """``ROOT/<name>`` for each file: raw bytes, or a PIL image saved in the format of its extension."""
    root = tmp_path / "imgs"
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            content.save(root / name)
    return root


def good_jpeg() -> bytes:
    path_free = Image.new("RGB", (96, 72), (10, 20, 30))
    import io

    buffer = io.BytesIO()
    path_free.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (to prove a refused command changed nothing)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- dataset paths ---------------------------------------------------------------------------------------


def test_dataset_path_missing(capsys, tmp_path):
    data_error(capsys, tmp_path, f"isic2018:{tmp_path}/nowhere", "nowhere", "does not exist")


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    data_error(capsys, tmp_path, f"folder:{tmp_path}/empty", "no image files", "empty")


def test_empty_isic_folder_has_no_labels_csv(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    data_error(capsys, tmp_path, f"isic2018:{tmp_path}/empty", "no labels CSV", "empty")


def test_no_image_matches_the_csv(capsys, tmp_path):
    root = isic(tmp_path, ids=[], rows=[one_hot(i) for i in IDS])
    data_error(capsys, tmp_path, f"isic2018:{root}", GT_CSV, "row 2", IDS[0])


def test_malformed_spec_names_the_spec(capsys, tmp_path):
    data_error(capsys, tmp_path, "folder", "folder:PATH[:CSV]")
    data_error(capsys, tmp_path, "imagenet:/x", "imagenet")


# --- CSV problems ----------------------------------------------------------------------------------------


def test_csv_missing_required_columns(capsys, tmp_path):
    root = isic(tmp_path, rows=[one_hot(i)[:-1] for i in IDS])
    write_gt(root / GT_CSV, [one_hot(i)[:-1] for i in IDS], header=["image", *CLASSES[:-1]])
    data_error(capsys, tmp_path, f"isic2018:{root}", GT_CSV, "missing column(s) VASC")


def test_csv_unknown_class_name(capsys, tmp_path):
    root = ham(tmp_path, [["HAM_1", IDS[0], "nv"], ["HAM_2", IDS[1], "melanoma"], ["HAM_3", IDS[2], "nv"]])
    data_error(capsys, tmp_path, f"ham10000:{root}", "HAM10000_metadata.csv", "row 3", "'melanoma'")


def test_csv_duplicate_image_id(capsys, tmp_path):
    root = ham(tmp_path, [["HAM_1", IDS[0], "nv"], ["HAM_2", IDS[1], "mel"], ["HAM_3", IDS[0], "nv"]])
    data_error(capsys, tmp_path, f"ham10000:{root}", "row 4", "duplicate image id", IDS[0], "row 2")


def test_csv_row_whose_image_file_is_missing(capsys, tmp_path):
    root = isic(tmp_path, rows=[one_hot(i) for i in [*IDS, "ISIC_9999999"]])
    data_error(capsys, tmp_path, f"isic2018:{root}", GT_CSV, "row 5", "ISIC_9999999")


def test_image_without_csv_row_is_counted_not_fatal(capsys, tmp_path):
    root = isic(tmp_path, rows=[one_hot(i) for i in IDS[:2]])
    with pytest.warns(UserWarning, match="1 image files .* have no row"):
        result, dataset = data_ok(capsys, f"isic2018:{root}")
    assert "unlabelled_images=1" in result.out
    assert len(dataset) == 2


def test_csv_row_not_one_hot(capsys, tmp_path):
    rows = [one_hot(IDS[0]), [IDS[1], "1.0", "1.0", "0", "0", "0", "0", "0"], one_hot(IDS[2])]
    data_error(capsys, tmp_path, f"isic2018:{isic(tmp_path, rows=rows)}", GT_CSV, "row 3", "not one-hot")


def test_csv_row_non_numeric_one_hot(capsys, tmp_path):
    rows = [one_hot(IDS[0]), [IDS[1], "yes", "0", "0", "0", "0", "0", "0"], one_hot(IDS[2])]
    data_error(capsys, tmp_path, f"isic2018:{isic(tmp_path, rows=rows)}", GT_CSV, "row 3", "non-numeric")


def test_csv_not_utf8(capsys, tmp_path):
    root = isic(tmp_path)
    (root / GT_CSV).write_bytes(b"image,MEL\n\xff\xfe\x00bad\n")
    data_error(capsys, tmp_path, f"isic2018:{root}", GT_CSV, "not a UTF-8 CSV")


def test_csv_path_escaping_the_root(capsys, tmp_path):
    root = isic(tmp_path, rows=[one_hot(IDS[0]), one_hot("../../etc/passwd")])
    data_error(capsys, tmp_path, f"isic2018:{root}", "row 3", "'../../etc/passwd'", "escapes the dataset")


def test_folder_csv_path_escaping_the_root(capsys, tmp_path):
    root = folder(tmp_path, {"a.jpg": good_jpeg()})
    labels = write_gt(tmp_path / "labels.csv", [["a", "nv"], ["../../etc/passwd", "mel"]], ["image", "label"])
    data_error(capsys, tmp_path, f"folder:{root}:{labels}", "labels.csv row 3", "escapes the dataset root")


def test_folder_csv_missing_column_duplicate_and_missing_file(capsys, tmp_path):
    root = folder(tmp_path, {"a.jpg": good_jpeg(), "b.jpg": good_jpeg()})
    labels = tmp_path / "labels.csv"
    write_gt(labels, [["a", "nv"]], ["image", "diagnosis"])
    data_error(capsys, tmp_path, f"folder:{root}:{labels}", "labels.csv", "missing column(s) label")
    write_gt(labels, [["a", "nv"], ["a.jpg", "mel"]], ["image", "label"])
    data_error(capsys, tmp_path, f"folder:{root}:{labels}", "row 3", "duplicate image 'a.jpg'", "row 2")
    write_gt(labels, [["a", "nv"], ["c", "mel"]], ["image", "label"])
    data_error(capsys, tmp_path, f"folder:{root}:{labels}", "row 3", "no image file for 'c'")


def test_folder_csv_not_utf8(capsys, tmp_path):
    root = folder(tmp_path, {"a.jpg": good_jpeg()})
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"image,label\na,\xff\xfe\n")
    data_error(capsys, tmp_path, f"folder:{root}:{labels}", "labels.csv", "not a UTF-8 CSV")


# --- broken images ---------------------------------------------------------------------------------------


BROKEN = {
    "truncated": good_jpeg()[:300],
    "zero-byte": b"",
    "not-an-image": b"lesion_id,image_id,dx\nHAM_1,ISIC_0000000,nv\n",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_image_is_named(capsys, tmp_path, kind):
    root = folder(tmp_path, {"good.jpg": good_jpeg(), "bad.jpg": BROKEN[kind]})
    data_error(capsys, tmp_path, f"folder:{root}", "cannot decode image", str(root / "bad.jpg"))


def test_skip_bad_turns_broken_images_into_a_count(capsys, tmp_path):
    root = folder(tmp_path, {"good.jpg": good_jpeg(), **{f"{k}.jpg": v for k, v in BROKEN.items()}})
    with pytest.warns(UserWarning, match="skipped unreadable image"):
        result, dataset = data_ok(capsys, f"folder:{root}", skip_bad=True)
    assert "skipped_bad_images=3" in result.out
    assert dataset.ids == ["good"]


def test_skip_bad_with_nothing_readable(capsys, tmp_path):
    root = folder(tmp_path, {"bad.jpg": b""})
    with pytest.warns(UserWarning):
        data_error(capsys, tmp_path, f"folder:{root}", "has no readable images", skip_bad=True)


# --- exported datasets (data export, npz:) -----------------------------------------------------------------


def _export_with(tmp_path: Path, name: str, **replaced: np.ndarray) -> Path:
    """A ``--compress`` export of DATA rewritten with some arrays replaced."""
    source = tmp_path / "source.npz"
    if not source.exists():
        assert main(["data", "export", DATA, "--out", str(source), "--compress"]) == 0
        shutil.rmtree(tmp_path / "cache")  # the source's cache entry: the checks below expect none
    with np.load(source) as stored:
        arrays = {key: stored[key] for key in stored.files}
    np.savez(tmp_path / name, **{**arrays, **replaced})
    return tmp_path / name


def test_export_missing_or_not_an_export(capsys, tmp_path):
    data_error(capsys, tmp_path, f"npz:{tmp_path / 'missing.npz'}",
               f"dataset export '{tmp_path / 'missing.npz'}'", "does not exist")
    (tmp_path / "junk.npz").write_text("junk")
    data_error(capsys, tmp_path, f"npz:{tmp_path / 'junk.npz'}",
               f"{tmp_path / 'junk.npz'} is not a factorlens dataset export (not an .npz archive)")
    np.savez(tmp_path / "plain.npz", images=np.zeros((2, 3, 64, 64), np.uint8))
    data_error(capsys, tmp_path, f"npz:{tmp_path / 'plain.npz'}",
               f"{tmp_path / 'plain.npz'} is not a factorlens dataset export (no 'meta' entry)")


def test_export_truncated_copy(capsys, tmp_path):
    whole = _export_with(tmp_path, "whole.npz")
    (tmp_path / "trunc.npz").write_bytes(whole.read_bytes()[:1000])
    capsys.readouterr()
    data_error(capsys, tmp_path, f"npz:{tmp_path / 'trunc.npz'}", "is not a factorlens dataset export",
               "(not an .npz archive)")


def test_export_with_a_damaged_webp_image_or_offsets(capsys, tmp_path):
    stored = np.load(_export_with(tmp_path, "whole.npz"))
    stream, offsets = stored["images_webp"].copy(), stored["images_webp_offsets"]
    stream[offsets[5] : offsets[5] + 12] = 0
    broken = _export_with(tmp_path, "broken.npz", images_webp=stream)
    cut = _export_with(tmp_path, "cut.npz", images_webp=stream[:-10])
    capsys.readouterr()
    data_error(capsys, tmp_path, f"npz:{broken}", f"{broken}: image 5 of images_webp cannot be decoded",
               "(not a WebP file)")
    data_error(capsys, tmp_path, f"npz:{cut}", f"{cut}: images_webp_offsets", "do not cut images_webp")


def test_export_out_must_be_npz(capsys, tmp_path):
    assert_user_error(cli(capsys, "data", "export", DATA, "--out", tmp_path / "x.txt"),
                      f"--out {tmp_path / 'x.txt'}: the export is an .npz file")
    assert not (tmp_path / "x.txt").exists()


# --- decodable but odd images: converted, values checked ---------------------------------------------------


def test_cmyk_jpeg_is_converted(capsys, tmp_path):
    root = folder(tmp_path, {"cmyk.jpg": Image.new("CMYK", (80, 80), (0, 255, 255, 0))})
    _, dataset = data_ok(capsys, f"folder:{root}")
    pixel = dataset.images[0, :, 32, 32].astype(int)
    assert np.all(np.abs(pixel - [255, 0, 0]) <= 3), pixel


@pytest.mark.parametrize(("value", "expected"), [(65535, 255), (32768, 128), (200, 1), (0, 0)])
def test_16bit_png_is_rescaled(capsys, tmp_path, value, expected):
    grey16 = Image.fromarray(np.full((70, 70), value, dtype=np.uint16))
    assert grey16.mode.startswith("I")
    root = folder(tmp_path, {"deep.png": grey16})
    _, dataset = data_ok(capsys, f"folder:{root}")
    assert np.all(dataset.images[0] == expected), np.unique(dataset.images[0])


def test_rgba_png_is_composited_on_white(capsys, tmp_path):
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[:, :32] = (255, 0, 0, 255)  # opaque red
    rgba[:, 32:] = (255, 0, 0, 0)  # transparent: white paper
    root = folder(tmp_path, {"alpha.png": Image.fromarray(rgba, "RGBA")})
    _, dataset = data_ok(capsys, f"folder:{root}")
    assert dataset.images[0, :, 10, 10].tolist() == [255, 0, 0]
    assert dataset.images[0, :, 10, 50].tolist() == [255, 255, 255]


def test_greyscale_is_replicated_to_rgb(capsys, tmp_path):
    root = folder(tmp_path, {"grey.png": Image.new("L", (90, 90), 100)})
    _, dataset = data_ok(capsys, f"folder:{root}")
    assert dataset.images.shape == (1, 3, 64, 64)
    assert np.all(dataset.images[0] == 100)


def test_tiny_image_is_upsampled_and_counted(capsys, tmp_path):
    root = folder(tmp_path, {"tiny.png": Image.new("RGB", (16, 12), (10, 200, 30))})
    with pytest.warns(UserWarning, match="smaller than 64 px"):
        result, dataset = data_ok(capsys, f"folder:{root}")
    assert "upsampled_images=1" in result.out
    assert dataset.images.shape == (1, 3, 64, 64)
    assert np.all(np.abs(dataset.images[0].reshape(3, -1).T.astype(int) - [10, 200, 30]) <= 1)


# --- masks -----------------------------------------------------------------------------------------------


def disc_mask(size=(96, 72), mode="L") -> Image.Image:
    width, height = size
    y, x = np.mgrid[:height, :width]
    inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 <= (height / 4) ** 2
    grey = Image.fromarray(inside.astype(np.uint8) * 255)
    return grey if mode == "L" else grey.convert(mode)


def test_mask_missing_for_an_image(capsys, tmp_path):
    root = isic(tmp_path, masks={IDS[0]: disc_mask(), IDS[1]: disc_mask()})
    result, dataset = data_ok(capsys, f"isic2018:{root}")
    assert dataset.notes["missing_masks"] == 1
    assert "missing_masks=1" in result.out
    assert np.isnan(dataset.handcrafted[2]).all() and not np.isnan(dataset.handcrafted[:2]).any()


def test_all_zero_mask_is_counted_and_excluded(capsys, tmp_path):
    empty = Image.new("L", (96, 72), 0)
    root = isic(tmp_path, masks={IDS[0]: empty, IDS[1]: disc_mask(), IDS[2]: disc_mask()})
    result, dataset = data_ok(capsys, f"isic2018:{root}")
    assert "empty masks: 1" in result.out and "(2 measured)" in result.out
    assert np.isnan(dataset.handcrafted[0]).all()


def test_all_one_mask_covers_the_image(capsys, tmp_path):
    full = Image.new("L", (96, 72), 255)
    root = isic(tmp_path, masks={i: full for i in IDS})
    _, dataset = data_ok(capsys, f"isic2018:{root}")
    assert np.all(dataset.masks == 1)
    assert np.allclose(dataset.handcrafted[:, 2], 1.0)  # size = whole image


@pytest.mark.parametrize("mode", ["P", "1", "RGB", "I;16"])
def test_palette_and_other_mask_encodings_match_greyscale(capsys, tmp_path, mode):
    if mode == "I;16":
        mask = Image.fromarray((np.asarray(disc_mask()) > 0).astype(np.uint16) * 65535)
    else:
        mask = disc_mask(mode=mode)
    root = isic(tmp_path, masks={IDS[0]: mask, IDS[1]: disc_mask()}, ids=IDS[:2],
                rows=[one_hot(i) for i in IDS[:2]])
    _, dataset = data_ok(capsys, f"isic2018:{root}")
    assert dataset.masks[0].sum() > 0
    np.testing.assert_array_equal(dataset.masks[0], dataset.masks[1])
    np.testing.assert_allclose(dataset.handcrafted[0], dataset.handcrafted[1])


def test_mask_of_another_resolution_same_aspect_is_rescaled(capsys, tmp_path):
    large = disc_mask().resize((288, 216), Image.Resampling.NEAREST)  # the same mask at 3x
    root = isic(tmp_path, masks={IDS[0]: large, IDS[1]: disc_mask()}, ids=IDS[:2],
                rows=[one_hot(i) for i in IDS[:2]])
    _, dataset = data_ok(capsys, f"isic2018:{root}")
    # Cut by the same fractional crop: only boundary pixels may round differently.
    assert np.mean(dataset.masks[0] != dataset.masks[1]) < 0.02
    np.testing.assert_allclose(dataset.handcrafted[0], dataset.handcrafted[1], rtol=1e-6)


def test_mask_of_another_aspect_ratio_is_refused(capsys, tmp_path):
    root = isic(tmp_path, masks={IDS[0]: disc_mask((72, 72)), IDS[1]: disc_mask()})
    mask = root / "masks" / f"{IDS[0]}_segmentation.png"
    data_error(capsys, tmp_path, f"isic2018:{root}", "cannot decode mask", str(mask), "72x72", "96x72")


def test_unreadable_mask_is_named_or_counted_with_skip_bad(capsys, tmp_path):
    root = isic(tmp_path, masks={IDS[0]: disc_mask(), IDS[1]: disc_mask()})
    mask = root / "masks" / f"{IDS[1]}_segmentation.png"
    mask.write_bytes(mask.read_bytes()[:40])
    data_error(capsys, tmp_path, f"isic2018:{root}", "cannot decode mask", str(mask))
    with pytest.warns(UserWarning, match="ignored unreadable mask"):
        result, dataset = data_ok(capsys, f"isic2018:{root}", skip_bad=True)
    assert "bad_masks=1" in result.out and len(dataset) == 3


# --- configs (train) -------------------------------------------------------------------------------------


def write_config(tmp_path: Path, model: str = "{name: btcvae, latent_dim: 4}", train: str = "",
                 name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    train_section = "{batch_size: 8, device: cpu, log_every: 1, malloc_tuning: false" + (
        f", {train}}}" if train else "}"
    )
    path.write_text(f"model: {model}\ntrain: {train_section}\ndata: {{spec: '{DATA}'}}\n")
    return path


def train_error(capsys, tmp_path: Path, config: Path, *needles: str, extra: tuple[str, ...] = ()) -> str:
    out = tmp_path / "run"
    line = assert_user_error(
        cli(capsys, "train", "--config", config, "--out", out, "--iters", "1", *extra), *needles
    )
    assert not out.exists()
    return line


@pytest.mark.parametrize(
    ("model", "train", "needles"),
    [
        ("{name: btcvae, latent_dim: 4}", "bogus: 1", ("unknown key train.bogus", "cfg.yaml")),
        ("{name: btcvae, latent_dim: 4, bogus: 1}", "", ("model.bogus", "unknown option")),
        ("{name: btcvae, latent_dim: 4}", "lr: fast", ("train.lr", "cfg.yaml", "must be a number")),
        ("{name: btcvae, latent_dim: four}", "", ("model.latent_dim", "must be an integer")),
        ("{name: btcvae, latent_dim: 4, beta: .nan}", "", ("model.beta", "must be finite")),
        ("{name: btcvae, latent_dim: 4, beta: -1.0}", "", ("model.beta", ">= 0", "-1.0")),
        ("{name: btcvae, latent_dim: 0}", "", ("model.latent_dim", ">= 1", "got 0")),
        ("{name: btcvae, latent_dim: 4}", "batch_size: 1", ("train.batch_size", ">= 2", "got 1")),
        ("{name: btcvae, latent_dim: 4}", "iterations: 0", ("train.iterations", ">= 1", "got 0")),
        ("{name: resnet9000}", "", ("resnet9000",)),
    ],
    ids=["unknown-key", "unknown-model-key", "wrong-type", "wrong-type-model", "nan-beta",
         "negative-beta", "latent-dim-0", "batch-size-1", "iterations-0", "unknown-model"],
)
def test_bad_config_is_named(capsys, tmp_path, model, train, needles):
    train_error(capsys, tmp_path, write_config(tmp_path, model, train), *needles)


def test_bad_command_line_overrides(capsys, tmp_path):
    config = write_config(tmp_path)
    train_error(capsys, tmp_path, config, "train.iterations", "command line", extra=("--iters", "0"))
    train_error(capsys, tmp_path, config, "train.batch_size", "command line", extra=("--batch-size", "1"))
    train_error(capsys, tmp_path, config, "train.nope", extra=("--set", "train.nope=3"))
    train_error(capsys, tmp_path, config, "model.beta", extra=("--set", "model.beta=-2"))


def test_model_errors_name_the_file_and_come_before_loading_data(capsys, tmp_path):
    config = tmp_path / "cfg.yaml"
    # The data spec is broken too: the model error must win, without touching the (missing) data.
    config.write_text("model: {name: btcvae, latent_dim: 4, beta: -1.0}\n"
                      f"data: {{spec: 'folder:{tmp_path / 'nowhere'}'}}\n")
    train_error(capsys, tmp_path, config, "model.beta", ">= 0", str(config))


def test_train_skip_bad_trains_on_the_readable_images(capsys, tmp_path):
    images = {f"good{i}.jpg": good_jpeg() for i in range(12)}
    root = folder(tmp_path, {**images, "bad.jpg": BROKEN["truncated"]})
    config = write_config(tmp_path)
    out = tmp_path / "run"
    train_error(capsys, tmp_path, config, str(root / "bad.jpg"), extra=("--data", f"folder:{root}"))
    with pytest.warns(UserWarning, match="skipped unreadable image"):
        result = cli(capsys, "train", "--config", config, "--out", out, "--iters", "1",
                     "--data", f"folder:{root}", "--skip-bad")
    assert result.code == 0, result.err
    split = json.loads((out / "split.json").read_text())
    assert split["n"] == 12
    assert "skip_bad: true" in (out / "config.yaml").read_text()


def test_batch_larger_than_training_split(capsys, tmp_path):
    train_error(capsys, tmp_path, write_config(tmp_path, train="batch_size: 512"), "train.batch_size 512")


def test_invalid_yaml_and_missing_config(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: btcvae\ntrain: [\n")
    train_error(capsys, tmp_path, bad, "bad.yaml", "invalid YAML")
    train_error(capsys, tmp_path, tmp_path / "missing.yaml", "missing.yaml", "not found")


# --- run directories and checkpoints ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One complete 1-iteration btcvae run (trained once per module, copied by each test)."""
    base = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACTORLENS_CACHE", str(base / "cache"))
        patch.setenv("FACTORLENS_NO_PROGRESS", "1")
        assert main(["train", "--config", str(write_config(base)), "--out", str(base / "run"),
                     "--iters", "1"]) == 0
    return base / "run"


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    shutil.copytree(trained_run, tmp_path / "run")
    return tmp_path / "run"


def checkpoint_of(run: Path) -> Path:
    return run / json.loads((run / "checkpoint.json").read_text())["latest"]


def resume_error(capsys, tmp_path: Path, run: Path, *needles: str, config: Path | None = None,
                 resume: bool = True) -> str:
    before = snapshot(run)
    args = ["train", "--out", run, "--iters", "2", *(["--resume"] if resume else [])]
    if config is not None:
        args += ["--config", config]
    line = assert_user_error(cli(capsys, *args), *needles)
    assert snapshot(run) == before, "a refused command changed the run directory"
    return line


def test_out_dir_holding_a_different_run(capsys, tmp_path, run_copy):
    other = write_config(tmp_path, "{name: vae, latent_dim: 4}", name="other.yaml")
    resume_error(capsys, tmp_path, run_copy, "already holds a run", "--resume", "--force",
                 config=other, resume=False)
    resume_error(capsys, tmp_path, run_copy, "--resume", "model.name", "config.yaml", config=other)
    result = cli(capsys, "train", "--config", other, "--out", run_copy, "--iters", "1", "--force")
    assert result.code == 0, result.err
    assert "name: vae" in (run_copy / "config.yaml").read_text()


def test_out_dir_not_empty_without_a_run(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    line = assert_user_error(
        cli(capsys, "train", "--config", write_config(tmp_path), "--out", out, "--iters", "1"),
        str(out), "not empty",
    )
    assert line and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_checkpoint_from_another_model(capsys, tmp_path, run_copy):
    meta = checkpoint_of(run_copy) / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "model": "vae"}))
    resume_error(capsys, tmp_path, run_copy, "checkpoint is of model 'vae'", "'btcvae'")


def test_checkpoint_weights_of_another_architecture(capsys, tmp_path, run_copy):
    config = run_copy / "config.yaml"
    config.write_text(config.read_text().replace("latent_dim: 4", "latent_dim: 6"))
    resume_error(capsys, tmp_path, run_copy, "model.safetensors", "shape")


def test_checkpoint_of_an_incompatible_version(capsys, tmp_path, run_copy):
    meta = checkpoint_of(run_copy) / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format_version": 99}))
    resume_error(capsys, tmp_path, run_copy, "meta.json", "format version 99")


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt", "meta.json"])
def test_corrupted_checkpoint_file(capsys, tmp_path, run_copy, name):
    path = checkpoint_of(run_copy) / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    resume_error(capsys, tmp_path, run_copy, str(path))


def test_corrupted_checkpoint_through_encode(capsys, tmp_path, run_copy):
    path = checkpoint_of(run_copy) / "model.safetensors"
    path.write_bytes(b"\x00" * 16)
    codes = tmp_path / "codes.npz"
    assert_user_error(cli(capsys, "encode", run_copy, "--out", codes), str(path), "corrupted")
    assert not codes.exists() and not list(tmp_path.glob("codes*"))


def test_checkpoint_pointer_escaping_the_run(capsys, tmp_path, run_copy):
    (run_copy / "checkpoint.json").write_text(json.dumps({"latest": "../../etc"}))
    resume_error(capsys, tmp_path, run_copy, "checkpoint.json", "relative path")


# --- the real process: exit status and stderr as a user sees them ----------------------------------------


def start_process(tmp_path: Path, *argv: str) -> subprocess.Popen:
    env = {**os.environ, "FACTORLENS_CACHE": str(tmp_path / "cache"), "FACTORLENS_NO_PROGRESS": "1",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "factorlens", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_subprocess_truncated_jpeg_and_bad_config(tmp_path):
    """Two real processes (started together: each pays the torch import): exit 2, one stderr line."""
    root = folder(tmp_path, {"good.jpg": good_jpeg(), "bad.jpg": BROKEN["truncated"]})
    config = write_config(tmp_path, "{name: btcvae, latent_dim: 4, beta: .nan}")
    cases = [
        (("data", "info", f"folder:{root}"), str(root / "bad.jpg")),
        (("train", "--config", str(config), "--out", str(tmp_path / "run")), "model.beta"),
    ]
    processes = [(start_process(tmp_path, *argv), needle) for argv, needle in cases]
    for process, needle in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, stderr
        assert "Traceback" not in stderr and stdout == ""
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], stderr
    assert cache_files(tmp_path) == [] and not (tmp_path / "run").exists()
    # After the refusals (this one may write its cache). Warnings are one line each too,
    # `warning: <message>`, not Python's two-line format.
    skipping = start_process(tmp_path, "data", "info", f"folder:{root}", "--skip-bad")
    stdout, stderr = skipping.communicate(timeout=120)
    assert skipping.returncode == 0, stderr
    assert stderr.strip().splitlines() == [f"warning: skipped unreadable image {root / 'bad.jpg'}"]
    assert "skipped_bad_images=1" in stdout


def test_folder_csv_path_with_a_nul_byte(capsys, tmp_path):
    root = folder(tmp_path, {"a.jpg": good_jpeg()})
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"image,label\na,nv\nb\x00c,mel\n")
    data_error(capsys, tmp_path, f"folder:{root}:{labels}", "labels.csv")
