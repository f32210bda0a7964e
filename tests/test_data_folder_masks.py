"""``folder:`` with users' own masks and CSV column names, on a folder built like PH2 (BMP images and
lesion masks, a ``Name,Clinical Diagnosis`` spreadsheet export with a BOM, CRLF and a legend under it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.measure import regionprops

from factorlens.cli.main import main
from factorlens.data import load_dataset
from factorlens.errors import ConfigError, DataError

NAMES = ["IMD002", "IMD003", "IMD004"]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


def lesion(shape: tuple[int, int], centre: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (((rows - centre[0]) / axes[0]) ** 2 + ((cols - centre[1]) / axes[1]) ** 2 <= 1).astype(np.uint8)


def ph2(tmp_path: Path, legend: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """images/IMDxxx.bmp (RGB 120x90), masks/IMDxxx_lesion.bmp (0/255), ph2.csv."""
    root = tmp_path / "PH2"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    masks = {}
    for i, name in enumerate(NAMES):
        image = np.full((90, 120, 3), 200, dtype=np.uint8)
        mask = lesion((90, 120), (45, 60), (10 + 5 * i, 30 - 5 * i))
        image[mask == 1] = (90, 50, 30)
        Image.fromarray(image).save(root / "images" / f"{name}.bmp")
        Image.fromarray(mask * 255).save(root / "masks" / f"{name}_lesion.bmp")
        masks[name] = mask
    rows = ["\ufeffName,Histological Diagnosis,Clinical Diagnosis", "IMD002,,0", "IMD003,,2",
            "IMD004,Melanoma,2"]
    if legend:
        rows += [",,", "Legend:,,", ",Clinical Diagnosis: 0 - Common Nevus; 2 - Melanoma,"]
    (root / "ph2.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-8"))
    return root, masks


def test_ph2_like_folder_with_masks_and_column_names(tmp_path):
    root, masks = ph2(tmp_path)
    with pytest.warns(UserWarning, match="no image; row skipped"):
        ds = load_dataset(f"folder:{root}:ph2.csv:masks=masks,image=Name,label=Clinical Diagnosis",
                          progress=False)
    assert ds.ids == [f"images/{name}" for name in NAMES]
    assert ds.class_names == ["0", "2"] and ds.labels.tolist() == [0, 1, 1]
    assert ds.notes["rows_without_image"] == 2 and ds.notes["masks_used"] == 3
    for row, name in enumerate(NAMES):
        # the mask at full resolution, measured independently with regionprops
        props = regionprops(masks[name])[0]
        expected = [props.eccentricity, props.orientation, props.area / masks[name].size]
        np.testing.assert_allclose(ds.handcrafted[row], expected, atol=1e-12)
        # the 64x64 mask: the centre 90x90 crop, area-averaged, >= 0.5
        crop = masks[name][:, 15:105].astype(float)
        small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize((64, 64), Image.BOX))
        np.testing.assert_array_equal(ds.masks[row], small >= 0.5)


def test_masks_without_csv_and_masks_next_to_images(tmp_path):
    root, _ = ph2(tmp_path, legend=False)
    for name in NAMES:  # PH2 keeps IMD002_lesion.bmp in the image tree: with masks=<root> it is a mask
        (root / "masks" / f"{name}_lesion.bmp").rename(root / "images" / f"{name}_lesion.bmp")
    ds = load_dataset(f"folder:{root}/images:masks={root}/images", progress=False)
    assert ds.ids == NAMES and ds.masks.shape == (3, 64, 64) and not np.isnan(ds.handcrafted).any()
    plain = load_dataset(f"folder:{root}/images", progress=False)  # without masks= they are images
    assert len(plain) == 6 and plain.masks is None


def test_missing_mask_is_counted(tmp_path):
    root, _ = ph2(tmp_path, legend=False)
    (root / "masks" / "IMD003_lesion.bmp").unlink()
    ds = load_dataset(f"folder:{root}/images:masks={root}/masks", progress=False)
    assert ds.notes["missing_masks"] == 1 and np.isnan(ds.handcrafted[1]).all()


def test_unknown_column_is_one_line_exit_2(tmp_path, capsys):
    root, _ = ph2(tmp_path)
    spec = f"folder:{root}:ph2.csv:image=Name,label=Diagnosis"
    assert main(["data", "info", spec]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {root / 'ph2.csv'}: missing column(s) Diagnosis "
                   "(header: Name,Histological Diagnosis,Clinical Diagnosis)"]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_bad_folder_options(tmp_path):
    root, _ = ph2(tmp_path)
    with pytest.raises(DataError, match="masks folder 'nowhere' .* does not exist"):
        load_dataset(f"folder:{root}:masks=nowhere", progress=False)
    with pytest.raises(ConfigError, match="unknown key folder.mask in dataset spec"):
        load_dataset(f"folder:{root}:ph2.csv:mask=masks", progress=False)
    with pytest.raises(ConfigError, match="must be folder:PATH"):
        load_dataset(f"folder:{root}:a.csv:b.csv", progress=False)


def test_size_and_greyscale_channels(tmp_path):
    root, masks = ph2(tmp_path, legend=False)
    spec = f"folder:{root}/images:masks={root}/masks,size=32,channels=1"
    ds = load_dataset(spec, progress=False)
    assert ds.images.shape == (3, 1, 32, 32) and ds.masks.shape == (3, 32, 32)
    rgb = load_dataset(f"folder:{root}/images:masks={root}/masks,size=32", progress=False)
    assert rgb.images.shape == (3, 3, 32, 32)
    # channels=1 is the luminance (ITU-R 601-2, PIL's 'L') of the same resized RGB image
    luma = np.asarray(Image.fromarray(rgb.images[0].transpose(1, 2, 0)).convert("L"))
    np.testing.assert_array_equal(ds.images[0, 0], luma)
    np.testing.assert_array_equal(ds.masks, rgb.masks)
    with pytest.raises(ConfigError, match="folder.channels in dataset spec .* must be one of 1, 3, got 2"):
        load_dataset(f"folder:{root}/images:channels=2", progress=False)
