"""folder:PATH[:CSV], grouped splits, describe(), and the handcrafted factors of drawn ellipses."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.measure import label, regionprops

from factorlens.data import ImageDataset, describe, handcrafted_factors, load_dataset, split_indices
from factorlens.data.handcrafted import wrap_half_turn
from factorlens.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))


def _image_folder(root):
    values = {"benign/a": 10, "benign/b": 20, "malignant/a": 30, "malignant/deep/c": 40, "d": 50}
    for name, value in values.items():
        path = root / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 80), (value, value, value)).save(path)
    return values


def test_folder_without_csv_is_recursive_and_unlabelled(tmp_path):
    values = _image_folder(tmp_path / "imgs")
    dataset = load_dataset(f"folder:{tmp_path / 'imgs'}", progress=False)
    assert dataset.ids == sorted(values)
    np.testing.assert_array_equal(dataset.images[:, 0, 0, 0], [values[i] for i in dataset.ids])
    assert dataset.labels is None and dataset.groups is None


def test_folder_with_csv_by_stem_and_relative_path(tmp_path):
    _image_folder(tmp_path / "imgs")
    (tmp_path / "labels.csv").write_text(
        "image,label\nbenign/a.png,nevus\nb,nevus\nmalignant/a,melanoma\nc,melanoma\n"
    )
    with pytest.warns(UserWarning, match="1 images .* have no row"):
        dataset = load_dataset(f"folder:{tmp_path / 'imgs'}:{tmp_path / 'labels.csv'}", progress=False)
    assert dataset.class_names == ["melanoma", "nevus"]
    assert dict(zip(dataset.ids, dataset.labels.tolist(), strict=True)) == {
        "benign/a": 1,
        "benign/b": 1,
        "malignant/a": 0,
        "malignant/deep/c": 0,
    }
    assert dataset.notes["unlabelled_images"] == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("image,label\na,x\n", r"row 2: stem 'a' matches 2 files"),
        ("image,label\nzzz,x\n", r"row 2: no image file for 'zzz'"),
        ("image,label\nb,x\nbenign/b,y\n", r"row 3: duplicate image"),
        ("image,label\n../../etc/passwd,x\n", r"row 2: path '../../etc/passwd' escapes"),
        ("file,label\nb,x\n", r"missing column\(s\) image"),
    ],
)
def test_folder_csv_errors_name_the_row(tmp_path, rows, message):
    _image_folder(tmp_path / "imgs")
    (tmp_path / "labels.csv").write_text(rows)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(f"folder:{tmp_path / 'imgs'}:{tmp_path / 'labels.csv'}", progress=False)
    assert "labels.csv" in str(caught.value)


def _dataset(groups, n: int | None = None) -> ImageDataset:
    n = len(groups) if groups is not None else n
    return ImageDataset(
        name="t",
        spec="t",
        images=np.zeros((n, 1, 64, 64), np.uint8),
        ids=[str(i) for i in range(n)],
        groups=None if groups is None else np.asarray(groups),
    )


def test_split_keeps_groups_together_and_is_deterministic():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 300, 1000)
    dataset = _dataset(groups)
    train, test = split_indices(dataset, test_fraction=0.25, seed=5)
    assert set(groups[train]).isdisjoint(groups[test])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1000))
    assert train.dtype == np.int64 and np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert abs(len(test) - 250) <= np.bincount(groups).max()
    again = split_indices(dataset, test_fraction=0.25, seed=5)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(split_indices(dataset, test_fraction=0.25, seed=6)[1], test)


def test_split_without_groups_is_by_image_and_exact():
    dataset = _dataset(None, n=50)
    train, test = split_indices(dataset, test_fraction=0.2, seed=1)
    assert len(test) == 10 and len(train) == 40
    with pytest.raises(ConfigError, match="test_fraction"):
        split_indices(dataset, test_fraction=1.0)


def test_describe_lists_classes_by_count_and_notes():
    dataset = _dataset(None, n=6)
    dataset.images = np.zeros((6, 3, 64, 64), np.uint8)
    dataset.labels = np.array([1, 1, 1, 0, 2, 2])
    dataset.class_names = ["MEL", "NV", "BCC"]
    dataset.handcrafted = np.array([[0.5, 0.1, 0.2]] * 5 + [[np.nan] * 3])
    dataset.notes = {"empty_masks": 1}
    text = describe(dataset)
    assert "classes: NV 3, BCC 2, MEL 1" in text
    assert "eccentricity 0.500, orientation 0.100, size 0.200 (5 measured)" in text
    assert "empty masks: 1" in text and "images: 6 x (3, 64, 64)" in text


@pytest.mark.parametrize(("a", "b", "theta"), [(120.0, 60.0, 0.4), (90.0, 30.0, -1.2), (70.0, 69.0, 0.0)])
def test_handcrafted_factors_of_a_drawn_ellipse_match_closed_form(a, b, theta):
    width, height = 600, 450
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dx, dy = x - 310, 220 - y
    u, v = dx * np.cos(theta) + dy * np.sin(theta), -dx * np.sin(theta) + dy * np.cos(theta)
    mask = (u / a) ** 2 + (v / b) ** 2 <= 1
    mask[5:15, 5:15] = True  # a small second component must be ignored
    eccentricity, orientation, size = handcrafted_factors(mask)
    assert abs(eccentricity - np.sqrt(1 - (b / a) ** 2)) < 0.005
    if a / b > 1.1:
        # regionprops measures from the row axis: an ellipse at theta from the x axis (y up) is at
        # theta - pi/2 (modulo pi).
        assert abs(wrap_half_turn(orientation - (theta - np.pi / 2))) < 0.005
    assert abs(size - np.pi * a * b / (width * height)) < 0.002 * size


def test_handcrafted_factors_equal_regionprops_on_random_blobs():
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = ndimage.gaussian_filter(rng.random((45, 70)), 3) > 0.51
        if not mask.any():
            continue
        largest = max(regionprops(label(mask, connectivity=2)), key=lambda r: r.area)
        expected = [
            largest.eccentricity,
            largest.orientation,
            largest.area / mask.size,
        ]
        got = handcrafted_factors(mask)
        np.testing.assert_allclose(got, expected, atol=1e-9)  # orientation too: the same convention
    assert np.isnan(handcrafted_factors(np.zeros((5, 5)))).all()
