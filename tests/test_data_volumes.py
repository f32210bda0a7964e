"""``nifti:`` and ``dicom:`` volumes as slices, checked against independent numpy computations.

Volumes are generated here (known spacing, intensities, asymmetry) and written with nibabel / pydicom; the
real files come from the packages' wheels (nibabel's EPI and MR DICOM series, pydicom's CT slice,
nilearn's MNI152 template).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from factorlens.cli.main import main
from factorlens.data import load_dataset, split_indices
from factorlens.data.handcrafted import handcrafted_factors
from factorlens.data.volumes import box_weights, to_canonical
from factorlens.errors import ConfigError, DataError

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
MNI_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
NIBABEL_DICOM = Path(nib.__file__).parent / "nicom" / "tests" / "data"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACTORLENS_NO_PROGRESS", "1")


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    return path


def load(spec: str):
    return load_dataset(spec, progress=False)


# --- orientation ---------------------------------------------------------------------------------------


def test_to_canonical_matches_nibabel_for_every_axis_order():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 4, 5))
    for permutation in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        for signs in ([1, 1, 1], [-1, 1, -1], [-1, -1, -1]):
            affine = np.eye(4)
            affine[:3, :3] = np.eye(3)[:, permutation] * np.array(signs) * [[1.0], [2.0], [3.0]]
            ours, spacing = to_canonical(data, affine)
            theirs = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
            np.testing.assert_array_equal(ours, np.asarray(theirs.dataobj))
            np.testing.assert_allclose(spacing, np.sqrt((theirs.affine[:3, :3] ** 2).sum(axis=0)))


def test_axial_slice_is_radiological_whatever_the_storage_order(tmp_path):
    """A marker at the patient's right-anterior corner is at the image's top-left in the axial view, a marker
    at left-posterior at bottom-right, for a volume stored as (z, y, x) with x flipped."""
    ras = np.zeros((32, 32, 4))  # x right, y anterior, z superior; 1 mm
    ras[31, 31, :] = 100.0  # right, anterior
    ras[0, 0, :] = 50.0  # left, posterior
    stored = np.transpose(ras[::-1], (2, 1, 0))  # stored axes: z, y, -x
    affine = np.array([[0, 0, -1.0, 31], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    path = write_nifti(tmp_path / "marker.nii.gz", stored, affine)
    ds = load(f"nifti:{path}:size=32,window=0,100")
    image = ds.images[0, 0]
    assert image[0, 0] == 255 and image[31, 31] == 128  # rint(0.5 * 255)
    assert np.count_nonzero(image) == 2


def test_coronal_and_sagittal_views(tmp_path):
    ras = np.zeros((32, 32, 32))
    ras[31, 5, 31] = 100.0  # right, posterior-ish, superior
    path = write_nifti(tmp_path / "v.nii", ras, np.eye(4))
    coronal = load(f"nifti:{path}:axis=1,size=32,window=0,100").images[5, 0]
    assert np.argwhere(coronal).tolist() == [[0, 0]]  # superior row 0, right on the left
    sagittal = load(f"nifti:{path}:axis=0,size=32,window=0,100").images[31, 0]
    assert np.argwhere(sagittal).tolist() == [[0, 31 - 5]]  # superior row 0, anterior on the left


# --- intensity -----------------------------------------------------------------------------------------


def test_hu_window(tmp_path):
    values = np.array([-3000.0, -1000, -650, -300, 0, 400, 2000])
    ras = np.zeros((32, 32, 1))
    ras[: len(values), 0, 0] = values  # x = 0..6 -> columns 31..25 of row 31 (posterior)
    path = write_nifti(tmp_path / "ct.nii.gz", ras, np.eye(4))
    image = load(f"nifti:{path}:size=32,window=-1000,400").images[0, 0]
    expected = [0, 0, 64, 128, 182, 255, 255]  # rint(255 * (v + 1000) / 1400), clipped
    assert image[31, 31 - np.arange(len(values))].tolist() == expected


def test_percentile_clipping_is_the_mri_default(tmp_path):
    ras = np.arange(32 * 32, dtype=np.float64).reshape(32, 32, 1)
    path = write_nifti(tmp_path / "mr.nii.gz", ras, np.eye(4))
    image = load(f"nifti:{path}:size=32,percentiles=10,90").images[0, 0].astype(int)
    # numpy's linear percentile of 0..1023: 102.3 and 920.7
    low, high = 0.1 * 1023, 0.9 * 1023
    view = ras[::-1, ::-1, 0].T
    expected = np.rint(255 * np.clip((view - low) / (high - low), 0, 1))
    np.testing.assert_array_equal(image, expected)


# --- geometry ------------------------------------------------------------------------------------------


def test_anisotropic_pixels_are_resampled_to_square(tmp_path):
    rng = np.random.default_rng(1)
    ras = rng.integers(0, 256, size=(16, 32, 1)).astype(np.float64)  # x: 2 mm, y: 1 mm -> 32 x 32 mm
    path = write_nifti(tmp_path / "aniso.nii.gz", ras, np.diag([2.0, 1.0, 5.0, 1.0]))
    image = load(f"nifti:{path}:size=32,window=0,255").images[0, 0]
    expected = np.empty((32, 32))
    for row in range(32):
        for col in range(32):
            expected[row, col] = ras[15 - col // 2, 31 - row, 0]  # radiological view, each x voxel twice
    np.testing.assert_array_equal(image, expected)


def test_shorter_side_is_padded_not_cropped(tmp_path):
    ras = np.full((16, 32, 1), 255.0)  # 16 mm wide, 32 mm high: 8 black columns each side
    path = write_nifti(tmp_path / "narrow.nii.gz", ras, np.eye(4))
    image = load(f"nifti:{path}:size=32,window=0,255").images[0, 0]
    assert (image[:, 8:24] == 255).all() and (image[:, :8] == 0).all() and (image[:, 24:] == 0).all()


def test_downsampling_averages_areas(tmp_path):
    rng = np.random.default_rng(2)
    ras = rng.integers(0, 256, size=(128, 128, 1)).astype(np.float64)
    path = write_nifti(tmp_path / "big.nii.gz", ras, np.eye(4))
    image = load(f"nifti:{path}:size=32,window=0,255").images[0, 0]
    view = ras[::-1, ::-1, 0].T
    means = view.reshape(32, 4, 32, 4).mean(axis=(1, 3))
    assert np.abs(image - means).max() <= 0.5 + 1e-9  # rounded means (ties may go either way)
    assert (np.abs(image - means) < 0.5 - 1e-9).sum() == (np.abs(means - np.rint(means)) < 0.5 - 1e-9).sum()


def test_box_weights_rows_sum_to_the_covered_fraction():
    weights = box_weights(count=10, spacing=3.2, extent=40.0, size=8)  # 32 mm centred in 40 mm
    np.testing.assert_allclose(weights.sum(axis=1), [0.2, 1, 1, 1, 1, 1, 1, 0.2])


# --- slices, factors, groups ---------------------------------------------------------------------------


def test_every_skip_empty_and_position_factor(tmp_path):
    ras = np.zeros((32, 32, 20))
    ras[8:24, 8:24, 5:15] = 500.0  # slices 5..14 have foreground
    path = write_nifti(tmp_path / "p.nii.gz", ras, np.eye(4))
    ds = load(f"nifti:{path}:size=32,every=2,skip-empty=100,position_bins=4")
    kept = [6, 8, 10, 12, 14]
    assert ds.ids == [f"p/z{k:04d}" for k in kept]
    assert ds.factors[:, 0].tolist() == [int((k + 0.5) / 20 * 4) for k in kept]
    assert ds.factor_names == ["position"] and ds.factor_sizes == [4]
    assert ds.images.shape == (5, 1, 32, 32)
    assert ds.notes["slices_in_volumes"] == 20 and ds.notes["slices_kept"] == 5
    everything = load(f"nifti:{path}:size=32")
    assert len(everything) == 20 and everything.channels == 1


def test_groups_never_straddle_the_split(tmp_path):
    folder = tmp_path / "patients"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for patient in range(6):
        write_nifti(folder / f"patient{patient}.nii.gz", rng.normal(size=(8, 8, 5 + patient)), np.eye(4))
    ds = load(f"nifti:{folder}:size=32")
    assert len(ds) == sum(5 + p for p in range(6))
    assert len(np.unique(ds.groups)) == 6
    patient_of = np.array([image_id.split("/")[0] for image_id in ds.ids])
    for seed in range(5):
        train, test = split_indices(ds, test_fraction=0.3, seed=seed)
        assert not set(patient_of[train]) & set(patient_of[test])
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(ds)))


def test_label_volume_gives_masks_and_handcrafted_factors(tmp_path):
    images, labels = tmp_path / "img", tmp_path / "lab"
    images.mkdir()
    labels.mkdir()
    ras = np.full((64, 32, 3), 100.0)  # x 64 voxels of 0.5 mm, y 32 of 1 mm: 32 x 32 mm
    label = np.zeros_like(ras)
    label[10:50, 12:20, 1] = 1  # 20 mm along x, 8 mm along y: elongated along the image's columns
    affine = np.diag([0.5, 1.0, 1.0, 1.0])
    write_nifti(images / "case1.nii.gz", ras, affine)
    write_nifti(labels / "case1_seg.nii.gz", label, affine)
    ds = load(f"nifti:{images}:size=32,labels={labels},skip_empty=mask")
    assert ds.ids == ["case1/z0001"]
    # independent: the label slice in the radiological view, x pairs averaged (0.5 mm -> 1 mm)
    view = label[::-1, ::-1, 1].T
    mask = view.reshape(32, 32, 2).mean(axis=2) >= 0.5
    np.testing.assert_array_equal(ds.masks[0], mask)
    fine = np.repeat(view, 2, axis=0) >= 0.5  # finest spacing 0.5 mm: the 1 mm rows doubled
    np.testing.assert_allclose(ds.handcrafted[0], handcrafted_factors(fine))
    assert abs(abs(ds.handcrafted[0, 1]) - np.pi / 2) < 1e-9  # major axis along the columns
    assert ds.handcrafted[0, 2] == pytest.approx(20 * 8 / (32 * 32))


def test_label_volume_of_another_shape_is_refused(tmp_path):
    write_nifti(tmp_path / "a.nii.gz", np.zeros((8, 8, 4)), np.eye(4))
    write_nifti(tmp_path / "a_seg.nii.gz", np.zeros((8, 8, 5)), np.eye(4))
    with pytest.raises(DataError, match=r"label volume .*a_seg.nii.gz has shape 8x8x5 but its volume"):
        load(f"nifti:{tmp_path / 'a.nii.gz'}:labels={tmp_path / 'a_seg.nii.gz'}")


def test_four_d_volume_needs_a_frame(tmp_path):
    data = np.zeros((32, 32, 2, 3))
    data[..., 2] = 7.0
    path = write_nifti(tmp_path / "dyn.nii.gz", data, np.eye(4))
    with pytest.raises(DataError, match=r"dyn.nii.gz is a 4-D volume 32x32x2x3; choose a frame with frame=K"):
        load(f"nifti:{path}")
    ds = load(f"nifti:{path}:frame=2,size=32,window=0,7")
    assert (ds.images == 255).all()
    with pytest.raises(DataError, match="frame=3 but the volume has 3 frames"):
        load(f"nifti:{path}:frame=3")


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("window=400,-1000", "nifti.window in dataset spec .* must have low < high, got 400,-1000"),
        ("window=400", "nifti.window in dataset spec .* must be two numbers low,high"),
        ("size=100", "nifti.size in dataset spec .* must be one of 32, 64, 128, got 100"),
        ("axis=3", "nifti.axis in dataset spec .* must be one of 0, 1, 2, got 3"),
        ("skip_empty=yes", "nifti.skip_empty .* must be an intensity threshold"),
        ("skip_empty=mask", "skip_empty=mask needs labels=PATH"),
        ("bogus=1", "unknown key nifti.bogus in dataset spec"),
    ],
)
def test_bad_options(tmp_path, options, message):
    path = write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 4, 4)), np.eye(4))
    with pytest.raises(ConfigError, match=message):
        load(f"nifti:{path}:{options}")


def test_cli_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys):
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"this is not a NIfTI file")
    assert main(["data", "info", f"nifti:{fake}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot read NIfTI file {fake}")
    assert main(["data", "info", f"nifti:{fake}:window=1,0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must have low < high" in err[0]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_missing_extra_names_it(tmp_path, monkeypatch):
    path = write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 4, 4)), np.eye(4))
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel -> ImportError
    with pytest.raises(ConfigError) as error:
        load(f"nifti:{path}")
    assert str(error.value) == ("dataset 'nifti' needs the Python package 'nibabel', which is not installed; "
                                "install the extra: pip install 'factorlens[medical]'")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ConfigError, match=r"'pydicom', which is not installed; .*factorlens\[medical\]"):
        load(f"dicom:{tmp_path}")


# --- real files shipped by the packages ----------------------------------------------------------------


def test_nibabel_example_4d_epi():
    path = NIBABEL_DATA / "example4d.nii.gz"
    with pytest.raises(DataError, match="is a 4-D volume 128x96x24x2"):
        load(f"nifti:{path}")
    ds = load(f"nifti:{path}:frame=1,size=64")
    assert ds.images.shape == (24, 1, 64, 64) and ds.notes["slices_in_volumes"] == 24


def test_mni152_template_from_nilearn():
    nilearn = pytest.importorskip("nilearn")
    path = Path(nilearn.__file__).parent / "datasets" / "data" / MNI_T1
    ds = load(f"nifti:{path}:size=32,skip_empty=0,min_fraction=0.02")
    assert ds.notes["slices_in_volumes"] == 189 and ds.notes["spacing_mm"] == "1x1x1"
    assert 100 < len(ds) < 189
    assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (1, 32, 32)


# --- DICOM ---------------------------------------------------------------------------------------------


def write_dicom(path: Path, pixels: np.ndarray, *, position=None, instance=None, series="1.2.3.4",
                orientation=(1, 0, 0, 0, 1, 0), spacing=(0.5, 0.5), slope=1.0, intercept=-1024.0,
                patient="P1") -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = patient, series, 1, "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = list(spacing)
    ds.ImageOrientationPatient = list(orientation)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if position is not None:
        ds.ImagePositionPatient = list(position)
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_dicom_series_ordered_by_position_not_instance_or_name(tmp_path):
    # slice k holds 1024 + 100 k (HU 100 k); positions z = 2.5 k; file names and InstanceNumbers shuffled
    order = [3, 0, 4, 1, 2]
    for name, k in enumerate(order):
        write_dicom(tmp_path / f"f{name}.dcm", np.full((32, 32), 1024 + 100 * k), position=(0, 0, 2.5 * k),
                    instance=10 - k if k % 2 else k)
    (tmp_path / "README.txt").write_text("not DICOM")
    ds = load(f"dicom:{tmp_path}:size=32,window=0,400")
    levels = ds.images[:, 0, 16, 16].tolist()
    assert levels == [0, 64, 128, 191, 255]  # rint(255 * 100 k / 400), inferior to superior
    assert ds.notes["series_ordered_by"] == "ImagePositionPatient 1" and ds.notes["not_dicom_files"] == 1
    assert ds.notes["spacing_mm"] == "0.5x0.5x2.5"


def test_dicom_series_without_positions_uses_instance_number(tmp_path):
    for name, k in enumerate([2, 0, 1]):
        write_dicom(tmp_path / f"f{name}.dcm", np.full((32, 32), 1024 + 100 * k), instance=k + 1)
    ds = load(f"dicom:{tmp_path}:size=32,window=0,200")
    assert ds.images[:, 0, 16, 16].tolist() == [0, 128, 255]
    assert ds.notes["series_ordered_by"] == "InstanceNumber 1"


def test_dicom_orientation_and_patient_groups(tmp_path):
    """A coronal acquisition in the radiological coronal view; two series of one patient are one group."""
    marked = np.full((32, 32), 1024)
    marked[0, 0] = 2024  # row 0, column 0 of the first file only
    # along a row: toward the patient's left (+x LPS); down a column: toward the feet (-z); slices step
    # posterior (+y): row 0 is superior, column 0 the patient's right, file 0 the most anterior slice
    for k in range(4):
        write_dicom(tmp_path / f"c{k}.dcm", marked if k == 0 else np.full((32, 32), 1024), position=(0, k, 0),
                    orientation=(1, 0, 0, 0, 0, -1), spacing=(1, 1), series="1.2.3.9")
    for k in range(2):
        write_dicom(tmp_path / f"a{k}.dcm", np.full((32, 32), 1024), position=(0, 0, k), series="1.2.3.8")
    ds = load(f"dicom:{tmp_path}:axis=1,size=32,window=0,1000")
    assert ds.notes["volumes"] == 2 and len(np.unique(ds.groups)) == 1  # one patient, P1
    hits = [ds.ids[i] for i in range(len(ds)) if ds.images[i, 0].max() == 255]
    assert len(hits) == 1 and hits[0].endswith("/y0003")  # most anterior = last along RAS y
    image = ds.images[ds.ids.index(hits[0]), 0]
    assert np.argwhere(image == 255).tolist() == [[0, 0]]  # superior row, patient right on the left


def test_dicom_mixed_sizes_and_orientations_are_refused(tmp_path, capsys):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_dicom(mixed / "a.dcm", np.zeros((32, 32)), position=(0, 0, 0))
    write_dicom(mixed / "b.dcm", np.zeros((16, 16)), position=(0, 0, 1))
    with pytest.raises(DataError, match=r"b.dcm is 16x16 but .*a.dcm is 32x32 \(mixed sizes in one series\)"):
        load(f"dicom:{mixed}")
    turned = tmp_path / "turned"
    turned.mkdir()
    write_dicom(turned / "a.dcm", np.zeros((32, 32)), position=(0, 0, 0))
    write_dicom(turned / "b.dcm", np.zeros((32, 32)), position=(0, 0, 1), orientation=(0, 1, 0, 0, 0, -1))
    assert main(["data", "info", f"dicom:{turned}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "have different ImageOrientationPatient (two orientations in one series)" in err[0]


def test_nibabel_mr_dicom_series(tmp_path):
    """nibabel's two MR slices: one series, instance 1 at z -75.1 mm and 2 at -72.1 mm (3 mm apart)."""
    for name in ("0.dcm", "1.dcm"):
        (tmp_path / name).write_bytes((NIBABEL_DICOM / name).read_bytes())
    ds = load(f"dicom:{tmp_path}:size=64")
    assert ds.notes["volumes"] == 1 and ds.notes["slices_in_volumes"] == 2
    assert ds.notes["spacing_mm"] == "1.7969x1.7969x3"
    assert ds.ids == ["1234-" + ds.ids[0].split("-", 1)[1].split("/")[0] + f"/z{k:04d}" for k in range(2)]


def test_pydicom_ct_small_hounsfield(tmp_path):
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    (tmp_path / "ct").mkdir()
    (tmp_path / "ct" / "CT_small.dcm").write_bytes(source.read_bytes())
    reference = pydicom.dcmread(source)
    hu = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    ds = load(f"dicom:{tmp_path / 'ct'}:size=128,window=-1000,400")
    assert ds.images.shape == (1, 1, 128, 128)
    # LPS rows/cols of an axial CT: DICOM displays row 0 anterior, column 0 patient right -> unchanged
    orientation = [round(float(v)) for v in reference.ImageOrientationPatient]
    assert orientation == [1, 0, 0, 0, 1, 0]
    exact = 255 * np.clip((hu + 1000) / 1400, 0, 1)
    assert np.abs(ds.images[0, 0] - exact).max() <= 0.5 + 1e-9  # rounded (ties either way)
