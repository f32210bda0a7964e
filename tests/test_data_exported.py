"""``factorlens data export`` and the ``npz:`` dataset: a lossless round trip, and clean refusals."""

from __future__ import annotations

import numpy as np
import pytest

from factorlens.cli.main import main
from factorlens.data import export_dataset, load_dataset, split_indices
from factorlens.errors import DataError

SPEC = "synthetic-lesions:n=96,seed=2"
FIELDS = ("images", "labels", "factors", "handcrafted", "masks", "groups")


def assert_same_arrays(source, loaded) -> None:
    """Every array field present in both or neither, with equal dtype and values."""
    for name in FIELDS:
        a, b = getattr(source, name), getattr(loaded, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


def test_export_round_trip_keeps_every_array_and_the_split(tmp_path, capsys):
    source = load_dataset(SPEC, progress=False)
    out = tmp_path / "lesions.npz"
    assert main(["data", "export", SPEC, "--out", str(out)]) == 0
    assert "96 images of synthetic-lesions" in capsys.readouterr().out
    loaded = load_dataset(f"npz:{out}", progress=False)
    assert loaded.name == source.name and loaded.spec == f"npz:{out}"
    assert loaded.ids == source.ids and loaded.class_names == source.class_names
    assert loaded.factor_names == source.factor_names and loaded.factor_sizes == source.factor_sizes
    assert_same_arrays(source, loaded)
    assert source.masks is not None and source.handcrafted is not None  # the round trip covered them
    for a, b in zip(split_indices(source, test_fraction=0.25, seed=1),
                    split_indices(loaded, test_fraction=0.25, seed=1), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_exports_are_refused_with_one_line(tmp_path, capsys):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}", progress=False)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="is not a factorlens dataset export"):
        load_dataset(f"npz:{junk}", progress=False)
    plain = tmp_path / "plain.npz"
    np.savez(plain, images=np.zeros((2, 3, 64, 64), np.uint8))  # no ids / meta
    with pytest.raises(DataError, match="is not a factorlens dataset export"):
        load_dataset(f"npz:{plain}", progress=False)
    dataset = load_dataset(SPEC, progress=False)
    dataset.images = dataset.images[:, :, :32, :32].copy()  # 32 px: a size the networks build
    small = export_dataset(dataset, tmp_path / "small.npz")
    np.testing.assert_array_equal(load_dataset(f"npz:{small}", progress=False).images, dataset.images)
    dataset.images = dataset.images[:, :, :32, :30].copy()
    odd = export_dataset(dataset, tmp_path / "odd.npz")
    with pytest.raises(DataError, match=r"images must be uint8 \[N, C, S, S\] \(S = 32, 64 or 128\)"):
        load_dataset(f"npz:{odd}", progress=False)
    assert main(["data", "export", SPEC, "--out", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out") and not (tmp_path / "x.txt").exists()


def test_compressed_export_is_bit_identical_and_smaller(tmp_path, capsys):
    source = load_dataset(SPEC, progress=False)
    plain = export_dataset(source, tmp_path / "plain.npz")
    out = tmp_path / "small.npz"
    assert main(["data", "export", SPEC, "--out", str(out), "--compress"]) == 0
    assert "96 images of synthetic-lesions" in capsys.readouterr().out
    with np.load(out) as stored:
        assert "images" not in stored.files and stored["images_webp"].dtype == np.uint8
        offsets = stored["images_webp_offsets"]
    assert offsets.shape == (97,) and offsets[0] == 0 and (np.diff(offsets) > 0).all()
    assert out.stat().st_size < 0.6 * plain.stat().st_size
    loaded = load_dataset(f"npz:{out}", progress=False)
    assert loaded.ids == source.ids and loaded.notes["exported_from"] == source.name
    assert_same_arrays(source, loaded)


def test_compressed_export_of_grey_images_keeps_them_raw_under_zlib(tmp_path):
    dataset = load_dataset(SPEC, progress=False)
    dataset.images = np.ascontiguousarray(dataset.images[:, :1])
    out = export_dataset(dataset, tmp_path / "grey.npz", compress=True)
    with np.load(out) as stored:
        assert "images" in stored.files and "images_webp" not in stored.files
    np.testing.assert_array_equal(load_dataset(f"npz:{out}", progress=False).images, dataset.images)


def test_damaged_webp_stream_is_one_line_error_naming_the_image(tmp_path):
    out = export_dataset(load_dataset(SPEC, progress=False), tmp_path / "c.npz", compress=True)
    with np.load(out) as stored:
        arrays = {name: stored[name] for name in stored.files}
    stream = arrays["images_webp"].copy()
    offsets = arrays["images_webp_offsets"]
    stream[offsets[5] : offsets[5] + 12] = 0  # the RIFF header of image 5
    np.savez(tmp_path / "broken.npz", **{**arrays, "images_webp": stream})
    with pytest.raises(DataError, match=r"broken\.npz: image 5 of images_webp cannot be decoded"):
        load_dataset(f"npz:{tmp_path / 'broken.npz'}", progress=False)
    np.savez(tmp_path / "cut.npz", **{**arrays, "images_webp": stream[:-10]})
    with pytest.raises(DataError, match=r"cut\.npz: images_webp_offsets .* do not cut images_webp"):
        load_dataset(f"npz:{tmp_path / 'cut.npz'}", progress=False)
    np.savez(tmp_path / "float.npz", **{**arrays, "images_webp_offsets": offsets.astype(float)})
    with pytest.raises(DataError, match=r"float\.npz: images_webp_offsets .* do not cut images_webp"):
        load_dataset(f"npz:{tmp_path / 'float.npz'}", progress=False)


def test_webp_images_of_another_size_or_format_are_refused_before_decoding(tmp_path):
    import io

    from PIL import Image

    from factorlens.data.exported import decode_images_webp

    def coded(image: Image.Image, file_format: str) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=file_format, lossless=True) if file_format == "WEBP" else image.save(
            buffer, format=file_format)
        return buffer.getvalue()

    cases = [(coded(Image.new("RGB", (64, 32)), "WEBP"), "RGB 64x32, not RGB 64x64"),
             (coded(Image.new("RGB", (64, 64)), "PNG"), r"cannot be decoded \(not a WebP file\)")]
    for blob, reason in cases:
        stream = np.frombuffer(blob, dtype=np.uint8)
        with pytest.raises(DataError, match=rf"x\.npz: image 0 of images_webp .*{reason}"):
            decode_images_webp(stream, np.array([0, stream.size]), source="x.npz")


def test_export_refuses_a_webp_coding_that_is_not_lossless(tmp_path, monkeypatch, capsys):
    from factorlens.data import exported

    lossy = {**exported._WEBP_OPTIONS, "lossless": False, "quality": 50}
    monkeypatch.setattr(exported, "_WEBP_OPTIONS", lossy)
    out = tmp_path / "lossy.npz"
    assert main(["data", "export", SPEC, "--out", str(out), "--compress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not give image 0 back bit-identical" in err[0]
    assert not out.exists()
