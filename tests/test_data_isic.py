"""ISIC 2018 / HAM10000 loaders on small generated datasets: layouts, masks, errors, skip_bad, cache."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factorlens.data import collection, handcrafted_factors, imaging, load_dataset
from factorlens.data.handcrafted import wrap_half_turn
from factorlens.errors import ConfigError, DataError

CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
IMAGE_W, IMAGE_H = 120, 80  # non-square, so the centre crop matters
MASK_SCALE = 3  # masks are 360x240, like HAM10000's 600x450 masks of 200x150 images


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))


def ellipse_mask(width: int, height: int, i: int) -> np.ndarray:
    """A tilted ellipse whose centre, axes and angle depend on ``i`` (coordinates scale with the size)."""
    s = width / IMAGE_W
    cx, cy = (40 + 3 * i) * s, (28 + 2 * i) * s
    a, b, theta = (18 + i) * s, 9 * s, 0.3 * i
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dx, dy = x - cx, cy - y
    u, v = dx * np.cos(theta) + dy * np.sin(theta), -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def write_image(path: Path, i: int) -> None:
    """Dark lesion on light skin, drawn from the same ellipse as the mask."""
    lesion = ellipse_mask(IMAGE_W, IMAGE_H, i)
    rgb = np.where(lesion[..., None], [40, 25, 20], [230, 190, 170]).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95)


def write_mask(path: Path, i: int, encoding: str = "L") -> None:
    lesion = ellipse_mask(IMAGE_W * MASK_SCALE, IMAGE_H * MASK_SCALE, i)
    grey = Image.fromarray(lesion.astype(np.uint8) * 255)
    image = {"L": grey, "P": grey.convert("P"), "RGB": grey.convert("RGB"), "1": grey.convert("1")}[encoding]
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_ground_truth(path: Path, ids: list[str], labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *CLASSES])
        for image_id, label in zip(ids, labels, strict=True):
            writer.writerow([image_id, *["1.0" if c == label else "0.0" for c in range(7)]])


def write_metadata(path: Path, ids: list[str], labels: list[int], lesions: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        for image_id, label, lesion in zip(ids, labels, lesions, strict=True):
            writer.writerow([lesion, image_id, CLASSES[label].lower(), "histo", "50.0", "male", "back"])


IDS = [f"ISIC_{i:07d}" for i in range(6)]
LABELS = [1, 0, 1, 6, 4, 2]
LESIONS = ["HAM_1", "HAM_1", "HAM_2", "HAM_3", "HAM_3", "HAM_4"]


def official_layout(root: Path, mask_encoding: str = "L") -> Path:
    for i, image_id in enumerate(IDS):
        write_image(root / "ISIC2018_Task3_Training_Input" / f"{image_id}.jpg", i)
        write_mask(root / "masks_task1" / f"{image_id}_segmentation.png", i, mask_encoding)
    write_ground_truth(
        root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv", IDS, LABELS
    )
    return root


def flat_layout(root: Path, mask_encodings=("L", "P", "RGB", "1", "P", "L")) -> Path:
    for i, image_id in enumerate(IDS):
        write_image(root / "images" / f"{image_id}.jpg", i)
        write_mask(root / "masks" / f"{image_id}_segmentation.png", i, mask_encodings[i])
    write_ground_truth(root / "ISIC2018_Task3_Training_GroundTruth.csv", IDS, LABELS)
    write_metadata(root / "HAM10000_metadata.csv", IDS, LABELS, LESIONS)
    return root


def check_geometry(dataset) -> None:
    """Masks follow the images' crop (despite 3x size) and handcrafted factors use full-size masks."""
    for row, image_id in enumerate(dataset.ids):
        i = IDS.index(image_id)
        dark = dataset.images[row].astype(float).mean(axis=0) < 128
        assert (dark == dataset.masks[row].astype(bool)).mean() > 0.97
        full = ellipse_mask(IMAGE_W * MASK_SCALE, IMAGE_H * MASK_SCALE, i)
        np.testing.assert_allclose(dataset.handcrafted[row], handcrafted_factors(full))
        # ... and those equal the drawn ellipse's analytic values.
        a, b = 18 + i, 9
        assert abs(dataset.handcrafted[row, 0] - np.sqrt(1 - (b / a) ** 2)) < 0.01
        assert abs(wrap_half_turn(dataset.handcrafted[row, 1] - (0.3 * i - np.pi / 2))) < 0.01
        np.testing.assert_allclose(
            dataset.handcrafted[row, 2], np.pi * a * b / (IMAGE_W * IMAGE_H), rtol=0.01
        )


def test_official_isic_layout_with_separate_mask_folder(tmp_path):
    root = official_layout(tmp_path / "isic")
    dataset = load_dataset(f"isic2018:{root}:{root / 'masks_task1'}", progress=False)
    assert dataset.ids == IDS
    np.testing.assert_array_equal(dataset.labels, LABELS)
    assert dataset.class_names == CLASSES
    assert dataset.images.shape == (6, 3, 64, 64) and dataset.images.dtype == np.uint8
    assert dataset.groups is None  # no metadata CSV, so no lesion ids
    assert dataset.notes["empty_masks"] == 0 and dataset.notes["missing_masks"] == 0
    check_geometry(dataset)


def test_ham10000_part_layout_groups_by_lesion_and_bare_path_has_no_masks(tmp_path):
    root = tmp_path / "ham"
    for i, image_id in enumerate(IDS):
        write_image(root / f"HAM10000_images_part_{1 + i % 2}" / f"{image_id}.jpg", i)
    write_metadata(root / "HAM10000_metadata.csv", IDS, LABELS, LESIONS)
    dataset = load_dataset(f"ham10000:{root}", progress=False)
    order = [IDS.index(image_id) for image_id in dataset.ids]
    np.testing.assert_array_equal(dataset.labels, np.array(LABELS)[order])
    lesions = np.array(LESIONS)[order]
    for a in range(6):
        for b in range(6):
            assert (dataset.groups[a] == dataset.groups[b]) == (lesions[a] == lesions[b])
    assert dataset.masks is None and dataset.handcrafted is None


@pytest.mark.parametrize("name", ["ham10000", "isic2018"])
def test_flat_layout_finds_masks_of_any_png_encoding(tmp_path, name):
    root = flat_layout(tmp_path / "flat")
    dataset = load_dataset(f"{name}:{root}", progress=False)
    assert sorted(dataset.ids) == IDS
    assert len(np.unique(dataset.groups)) == 4
    assert dataset.notes["labels_csv"].endswith(
        "HAM10000_metadata.csv" if name == "ham10000" else "Truth.csv"
    )
    check_geometry(dataset)


def test_missing_and_empty_masks_give_nan_and_are_counted(tmp_path):
    root = flat_layout(tmp_path / "flat")
    (root / "masks" / f"{IDS[1]}_segmentation.png").unlink()
    Image.new("L", (50, 40), 0).save(root / "masks" / f"{IDS[2]}_segmentation.png")
    dataset = load_dataset(f"ham10000:{root}", progress=False)
    nan_rows = {dataset.ids[r] for r in np.flatnonzero(np.isnan(dataset.handcrafted).all(axis=1))}
    assert nan_rows == {IDS[1], IDS[2]}
    assert dataset.notes["missing_masks"] == 1 and dataset.notes["empty_masks"] == 1
    assert dataset.masks[dataset.ids.index(IDS[1])].sum() == 0


def test_second_load_decodes_nothing_and_file_changes_invalidate(tmp_path, monkeypatch):
    root = flat_layout(tmp_path / "flat")
    calls = []
    original = imaging.decode_item
    monkeypatch.setattr(imaging, "decode_item", lambda task: calls.append(task) or original(task))
    first = load_dataset(f"ham10000:{root}", progress=False)
    assert len(calls) == 6
    second = load_dataset(f"ham10000:{root}", progress=False)
    assert len(calls) == 6
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.groups, second.groups)
    np.testing.assert_allclose(first.handcrafted, second.handcrafted)
    assert first.notes == second.notes and first.ids == second.ids
    stat = (root / "images" / f"{IDS[0]}.jpg").stat()
    os.utime(root / "images" / f"{IDS[0]}.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_dataset(f"ham10000:{root}", progress=False)
    assert len(calls) == 12


def test_corrupted_cache_is_rebuilt(tmp_path):
    root = flat_layout(tmp_path / "flat")
    first = load_dataset(f"ham10000:{root}", progress=False)
    (cache_file,) = (tmp_path / "cache").glob("ham10000-*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="unreadable"):
        again = load_dataset(f"ham10000:{root}", progress=False)
    np.testing.assert_array_equal(again.images, first.images)
    assert cache_file.stat().st_size > 1000


def test_process_pool_gives_the_same_result(tmp_path, monkeypatch):
    root = flat_layout(tmp_path / "flat")
    serial = load_dataset(f"ham10000:{root}", progress=False)
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setattr(collection, "PARALLEL_MIN_FILES", 0)
    parallel = load_dataset(f"ham10000:{root}", progress=False)
    np.testing.assert_array_equal(parallel.images, serial.images)
    np.testing.assert_array_equal(parallel.masks, serial.masks)


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_bad_image_names_the_file_or_is_skipped(tmp_path, damage):
    root = flat_layout(tmp_path / "flat")
    bad = root / "images" / f"{IDS[3]}.jpg"
    content = {"truncated": bad.read_bytes()[:300], "empty": b"", "text": b"not an image"}[damage]
    bad.write_bytes(content)
    with pytest.raises(DataError, match=IDS[3]):
        load_dataset(f"ham10000:{root}", progress=False)
    with pytest.warns(UserWarning, match="skipped unreadable image"):
        dataset = load_dataset(f"ham10000:{root}", skip_bad=True, progress=False)
    assert IDS[3] not in dataset.ids and len(dataset) == 5
    assert dataset.notes["skipped_bad_images"] == 1


def test_bad_mask_names_the_file_or_is_ignored(tmp_path):
    root = flat_layout(tmp_path / "flat")
    (root / "masks" / f"{IDS[0]}_segmentation.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=f"mask .*{IDS[0]}_segmentation.png"):
        load_dataset(f"ham10000:{root}", progress=False)
    with pytest.warns(UserWarning, match="unreadable mask"):
        dataset = load_dataset(f"ham10000:{root}", skip_bad=True, progress=False)
    assert dataset.notes["bad_masks"] == 1 and np.isnan(dataset.handcrafted[dataset.ids.index(IDS[0])]).all()


def _rewrite_csv(path: Path, edit) -> None:
    rows = list(csv.reader(open(path, newline="")))
    edit(rows)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _set(rows, r, c, value):
    rows[r][c] = value


@pytest.mark.parametrize(
    ("csv_name", "edit", "message"),
    [
        (
            "ISIC2018_Task3_Training_GroundTruth.csv",
            lambda rows: [r.pop(3) for r in rows],
            "missing column.*BCC",
        ),
        (
            "HAM10000_metadata.csv",
            lambda rows: _set(rows, 3, 2, "psoriasis"),
            "row 4: unknown class 'psoriasis'",
        ),
        (
            "ISIC2018_Task3_Training_GroundTruth.csv",
            lambda rows: _set(rows, 5, 0, IDS[0]),
            "row 6: duplicate",
        ),
        (
            "ISIC2018_Task3_Training_GroundTruth.csv",
            lambda rows: _set(rows, 3, 1, "1.0"),
            "row 4: .* not one-hot",
        ),
        (
            "ISIC2018_Task3_Training_GroundTruth.csv",
            lambda rows: _set(rows, 4, 0, "ISIC_9999999"),
            "row 5: no image",
        ),
        (
            "HAM10000_metadata.csv",
            lambda rows: _set(rows, 2, 1, "../../../etc/passwd"),
            "row 3: path .* escapes",
        ),
    ],
)
def test_csv_problems_name_the_file_and_row(tmp_path, csv_name, edit, message):
    root = flat_layout(tmp_path / "flat")
    _rewrite_csv(root / csv_name, edit)
    name = "isic2018" if csv_name.startswith("ISIC") else "ham10000"
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(f"{name}:{root}", progress=False)
    assert csv_name in str(caught.value) and "\n" not in str(caught.value)


def test_images_without_rows_are_counted_not_fatal(tmp_path):
    root = flat_layout(tmp_path / "flat")
    write_image(root / "images" / "ISIC_0000077.jpg", 1)
    with pytest.warns(UserWarning, match="no row"):
        dataset = load_dataset(f"isic2018:{root}", progress=False)
    assert dataset.notes["unlabelled_images"] == 1 and "ISIC_0000077" not in dataset.ids


def test_spec_errors():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'; choose one of: dicom, dsprites, folder"):
        load_dataset("mnist", progress=False)
    with pytest.raises(DataError, match="/no/such/folder.* does not exist"):
        load_dataset("ham10000:/no/such/folder", progress=False)
    with pytest.raises(ConfigError, match="ham10000:PATH"):
        load_dataset("ham10000", progress=False)
    with pytest.raises(ConfigError, match="empty argument"):
        load_dataset("ham10000::x", progress=False)


def test_missing_mask_folder_and_missing_csv(tmp_path):
    root = flat_layout(tmp_path / "flat")
    with pytest.raises(DataError, match="mask folder 'nowhere'"):
        load_dataset(f"ham10000:{root}:nowhere", progress=False)
    (root / "HAM10000_metadata.csv").unlink()
    (root / "ISIC2018_Task3_Training_GroundTruth.csv").unlink()
    with pytest.raises(DataError, match="no labels CSV in"):
        load_dataset(f"ham10000:{root}", progress=False)


def test_image_modes_are_converted_to_rgb():
    grey = Image.fromarray(np.full((64, 64), 77, np.uint8))
    np.testing.assert_array_equal(imaging.preprocess_image(grey)[0], 77)
    sixteen = Image.fromarray(np.full((64, 64), 32896, np.uint16))  # 128 * 257
    assert sixteen.mode.startswith("I")
    np.testing.assert_array_equal(imaging.preprocess_image(sixteen)[0], 128)
    cmyk = Image.new("CMYK", (64, 64), (0, 0, 0, 0))
    np.testing.assert_array_equal(imaging.preprocess_image(cmyk)[0], 255)
    rgba = Image.new("RGBA", (64, 64), (10, 20, 30, 255))
    np.testing.assert_array_equal(imaging.preprocess_image(rgba)[0][:, 0, 0], [10, 20, 30])


def test_crop_resize_is_an_area_average_and_tiny_images_are_upsampled():
    # 128x192 (W x H): the centre 128x128 square is rows 32..159; 2x2 blocks average exactly.
    pixels = np.random.default_rng(0).integers(0, 256, (192, 128, 3)).astype(np.uint8)
    out, crop, upsampled = imaging.preprocess_image(Image.fromarray(pixels))
    expected = pixels[32:160].reshape(64, 2, 64, 2, 3).astype(float).mean(axis=(1, 3))
    # PIL resamples in fixed point: within one grey level of the exact block mean.
    assert np.abs(out.transpose(1, 2, 0) - expected).max() <= 1.0 and not upsampled
    assert (crop.top, crop.bottom) == (32 / 192, 160 / 192)
    assert imaging.preprocess_image(Image.new("RGB", (20, 30)))[2]


def test_tiny_images_are_noted(tmp_path):
    root = tmp_path / "tiny"
    for i, image_id in enumerate(IDS[:2]):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (10 * i, 0, 0)).save(root / "images" / f"{image_id}.png")
    write_ground_truth(root / "ISIC2018_Task3_Training_GroundTruth.csv", IDS[:2], LABELS[:2])
    with pytest.warns(UserWarning, match="upsampled"):
        dataset = load_dataset(f"isic2018:{root}", progress=False)
    assert dataset.notes["upsampled_images"] == 2
    np.testing.assert_array_equal(dataset.images[1, 0], 10)


def write_lesion_groupings(path: Path, ids: list[str], lesions: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "lesion_id", "diagnosis_confirm_type"])
        for image_id, lesion in zip(ids, lesions, strict=True):
            writer.writerow([image_id, lesion, "histopathology"])


def test_official_layout_reads_the_lesion_groupings_csv(tmp_path):
    root = official_layout(tmp_path / "isic")
    without = load_dataset(f"isic2018:{root}")
    assert without.notes["images_without_lesion_id"] == 6
    write_lesion_groupings(
        root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_LesionGroupings.csv",
        IDS, LESIONS,
    )
    grouped = load_dataset(f"isic2018:{root}")
    assert "images_without_lesion_id" not in grouped.notes
    by_id = dict(zip(grouped.ids, grouped.groups, strict=True))
    assert by_id["ISIC_0000000"] == by_id["ISIC_0000001"] != by_id["ISIC_0000002"]
    assert len(set(grouped.groups)) == 4


def test_official_validation_layout_loads_and_a_second_ground_truth_is_named(tmp_path):
    root = tmp_path / "isic"
    validation_ids = [f"ISIC_{i:07d}" for i in range(100, 103)]
    for i, image_id in enumerate(validation_ids):
        write_image(root / "ISIC2018_Task3_Validation_Input" / f"{image_id}.jpg", i)
    write_ground_truth(
        root / "ISIC2018_Task3_Validation_GroundTruth" / "ISIC2018_Task3_Validation_GroundTruth.csv",
        validation_ids, LABELS[:3],
    )
    validation = load_dataset(f"isic2018:{root}")
    assert sorted(validation.ids) == validation_ids
    official_layout(root)  # now Training is there too: it is preferred, and the other CSV is named
    with pytest.warns(UserWarning, match="ISIC2018_Task3_Validation_GroundTruth.csv"):
        both = load_dataset(f"isic2018:{root}")
    assert sorted(both.ids) == IDS
    assert both.notes["unlabelled_images"] == 3  # the validation images, counted


def test_mask_suffix_in_upper_case_is_found(tmp_path):
    root = official_layout(tmp_path / "isic")
    masks = root / "masks_task1"
    for path in masks.iterdir():
        path.rename(masks / path.name.replace("_segmentation.png", "_Segmentation.PNG"))
    dataset = load_dataset(f"isic2018:{root}:{masks}")
    assert dataset.notes.get("missing_masks", 0) == 0 and dataset.masks is not None


def test_a_csv_replaced_with_the_same_size_and_mtime_is_not_served_from_the_cache(tmp_path):
    root = flat_layout(tmp_path / "flat")
    first = load_dataset(f"isic2018:{root}")
    csv_path = root / "ISIC2018_Task3_Training_GroundTruth.csv"
    stat = csv_path.stat()
    text = csv_path.read_text()
    # Relabel one row (NV -> MEL): same size, and the old mtime put back (as `cp -p` would).
    swapped = text.replace("ISIC_0000000,0.0,1.0", "ISIC_0000000,1.0,0.0", 1)
    assert len(swapped) == len(text) and swapped != text
    csv_path.write_text(swapped)
    os.utime(csv_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_dataset(f"isic2018:{root}")
    row = second.ids.index("ISIC_0000000")
    assert first.labels[first.ids.index("ISIC_0000000")] == 1 and second.labels[row] == 0
