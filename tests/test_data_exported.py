"""``factorlens data export`` and the ``npz:`` dataset: a lossless round trip, and clean refusals."""

from __future__ import annotations

import numpy as np
import pytest

from factorlens.cli.main import main
from factorlens.data import export_dataset, load_dataset, split_indices
from factorlens.errors import DataError

SPEC = "synthetic-lesions:n=96,seed=2"
FIELDS = ("images", "labels", "factors", "handcrafted", "masks", "groups")


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
    for name in FIELDS:
        a, b = getattr(source, name), getattr(loaded, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
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
    dataset.images = dataset.images[:, :, :32, :32].copy()
    small = export_dataset(dataset, tmp_path / "small.npz")
    with pytest.raises(DataError, match=r"images must be uint8 \[N, C, 64, 64\]"):
        load_dataset(f"npz:{small}", progress=False)
    assert main(["data", "export", SPEC, "--out", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out") and not (tmp_path / "x.txt").exists()
