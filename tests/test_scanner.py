"""Importing scanner data: DICOM and raw phase NIfTI to a wave field, and bad input."""

import json

import numpy as np
import pydicom
import pytest

from napari_mrepinn import acquisition as aq
from napari_mrepinn import dicom_frames, scanner, simulate
from napari_mrepinn.cli import main
from napari_mrepinn.data import MREExample, MREInputError


def correlation(a, b):
    """|<a, b>| / (|a| |b|): 1 when equal up to one complex factor."""
    a, b = np.ravel(a), np.ravel(b)
    return abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.fixture(scope="module")
def phantom():
    # coarse voxels so that the small grid holds the targets
    return simulate.four_target(60, shape=(20, 24, 4), spacing=(4e-3, 4e-3, 2e-3),
                                n_components=3)


@pytest.fixture(scope="module")
def acq(phantom):
    # neighbour phase steps stay below π (wave ≤ 1.2 rad, background 0.5 rad per voxel)
    return aq.acquire(phantom, n_offsets=4, phase_amplitude=1.0, background=10.0)


@pytest.fixture(scope="module")
def exam(acq, tmp_path_factory):
    """Classic DICOM, one folder per direction (z, y, x), magnitude in the same series."""
    return aq.write_dicom(acq, tmp_path_factory.mktemp("exam"))


def assert_recovers(imported: MREExample, phantom: MREExample, acq, min_corr=0.99):
    assert imported.spatial_shape == phantom.spatial_shape
    for d in ("x", "y", "z"):
        np.testing.assert_allclose(imported.ds[d].values, phantom.ds[d].values, atol=1e-9)
    assert list(imported.ds["component"].values) == list(phantom.ds["component"].values)
    for c in phantom.ds["component"].values:
        got = imported.wave.sel(component=c).values
        assert correlation(got, phantom.wave.sel(component=c).values) >= min_corr
    # and voxel by voxel the encoded harmonic (12-bit stored phase)
    if min_corr >= 0.99:
        want = acq.wave if len(acq.frequencies) > 1 else acq.wave[0]
        np.testing.assert_allclose(imported.wave.values, want, atol=0.01)


# ---------------------------------------------------------------------- DICOM
@pytest.mark.parametrize("unwrap", ["laplacian", "skimage"])
def test_dicom_import_recovers_the_phantom_wave(exam, acq, phantom, unwrap):
    ex = scanner.load_dicom(exam, frequency=60, directions=["z", "y", "x"], unwrap=unwrap)
    assert_recovers(ex, phantom, acq)
    assert ex.frequency == 60
    assert ex.ds.attrs["wraps_found"] > 100 and ex.ds.attrs["wraps_left"] == 0
    assert "anat" in ex and "mre_mask" in ex
    # the targets are darker in the magnitude: the anatomy shows them
    anat, lab = ex.anat.values, phantom.mre_mask.values
    assert anat[lab == 1].mean() > anat[lab == 2].mean()
    steps = [s["step"] for s in json.loads(ex.ds.attrs["preprocessing_json"])]
    assert steps[:2] == ["read", "phase_to_radians"] and "first_harmonic" in steps
    text = scanner.summary_text(ex)
    assert "20 × 24 × 4" in text and "z=2 mm" in text and "x=4 mm" in text and "60 Hz" in text
    assert "wraps found" in text and "left 0" in text


def test_without_unwrapping_the_wave_is_wrong(exam, phantom):
    ex = scanner.load_dicom(exam, frequency=60, directions=["z", "y", "x"], unwrap="none")
    assert correlation(ex.wave.values, phantom.wave.values) < 0.9


def test_one_folder_of_several_frequencies_told_apart_by_the_sidecar(tmp_path):
    ph = simulate.four_target(shape=(16, 20, 3), n_components=2, frequency=[60, 90])
    acq = aq.acquire(ph, n_offsets=3)
    aq.write_dicom(acq, tmp_path, one_folder=True, sidecar=True)
    ex = scanner.import_exam(tmp_path)  # no options: the sidecar says it all
    np.testing.assert_allclose(ex.frequencies, [60, 90])
    assert_recovers(ex, ph, acq)
    # options override in the same order
    ex = scanner.import_exam(tmp_path, frequency=[60, 90], directions=["z", "y"])
    assert_recovers(ex, ph, acq)


def test_enhanced_oblique_reversed_and_trigger_ordered(acq, phantom, tmp_path):
    # an oblique stack, files numbered from the last slice, offsets only by trigger time,
    # magnitude in its own series: the geometry follows the slice normal
    c, s = np.cos(0.4), np.sin(0.4)
    iop = (c, s, 0.0, 0.0, 0.0, -1.0)
    paths = aq.write_dicom(acq, tmp_path, enhanced=True, orientation=iop, temporal="trigger",
                           magnitude="separate")
    assert all(p.is_file() for p in paths)  # one multi-frame file per series
    # each folder holds a phase and a magnitude series
    ex = scanner.load_dicom([p.parent for p in paths], frequency=60, directions=["z", "y", "x"])
    np.testing.assert_allclose(ex.wave.values, acq.wave[0], atol=0.01)
    assert ex.spacing == pytest.approx({"x": 4e-3, "y": 4e-3, "z": 2e-3}, rel=1e-5)
    assert "anat" in ex
    steps = json.loads(ex.ds.attrs["preprocessing_json"])
    assert steps[0]["series"][0]["offsets_ordered_by"] == "TriggerTime"


def test_offsets_ordered_by_instance_number(acq, phantom, tmp_path):
    paths = aq.write_dicom(acq, tmp_path, temporal="instance", rescale="siemens")
    ex = scanner.load_dicom(paths, frequency=60, directions=["z", "y", "x"])
    np.testing.assert_allclose(ex.wave.values, acq.wave[0], atol=0.01)


def test_single_slice_cylinder(tmp_path):
    ph = simulate.cylinder(shape=(32, 28))
    acq = aq.acquire(ph, n_offsets=8)
    paths = aq.write_dicom(acq, tmp_path)
    ex = scanner.import_exam(paths, frequency=60, directions=["z"])
    assert ex.spatial_shape == (32, 28, 1)
    assert correlation(ex.wave.values[:, :, 0, 0], ph.wave.values[..., 0]) > 0.999


def test_noisy_acquisition_still_recovers_the_wave(phantom, tmp_path):
    acq = aq.acquire(phantom, n_offsets=4, background=10.0, noise=0.03, seed=3)
    paths = aq.write_dicom(acq, tmp_path)
    ex = scanner.load_dicom(paths, frequency=60, directions=["z", "y", "x"])
    assert_recovers(ex, phantom, acq, min_corr=0.98)


@pytest.fixture(scope="module")
def slice_acq():
    """A one-slice, one-direction cylinder: the cheapest phase series."""
    return aq.acquire(simulate.cylinder(shape=(16, 14)), n_offsets=4)


@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_sidecar_frequency_aliases_and_precedence(slice_acq, tmp_path, fmt):
    if fmt == "dicom":
        paths = aq.write_dicom(slice_acq, tmp_path)
        sidecars = [paths[0] / "mre.json"]
    else:
        paths = aq.write_nifti(slice_acq, tmp_path, magnitude=False)
        sidecars = [tmp_path / p.name.replace(".nii.gz", ".json") for p in paths]

    def imported(keys: dict) -> MREExample:
        for f in sidecars:
            meta = json.loads(f.read_text()) if fmt == "nifti" else {}
            meta = {k: v for k, v in meta.items() if "freq" not in k.lower()}
            f.write_text(json.dumps(meta | keys | {"direction": "z"}))
        return scanner.import_exam(paths)

    assert imported({"freq": 55}).frequency == 55.0  # an alias the reader did not know
    # two keys: the one that states its unit wins (FREQUENCY_KEYS order)
    assert imported({"frequency": 50, "frequency_hz": 60}).frequency == 60.0
    with pytest.raises(MREInputError, match=r"frequency is missing.*vibration_frequency"):
        imported({})


# ---------------------------------------------------------------------- NIfTI
def test_nifti_4d_per_direction(acq, phantom, tmp_path):
    paths = aq.write_nifti(acq, tmp_path)
    ex = scanner.import_exam(paths, frequency=60, directions=["z", "y", "x"])
    assert_recovers(ex, phantom, acq)
    assert "anat" in ex


def test_nifti_5d_with_its_sidecar(acq, phantom, tmp_path):
    aq.write_nifti(acq, tmp_path, five_d=True, rescale="siemens", sidecar_mre=True)
    ex = scanner.import_exam(tmp_path)  # a folder of dcm2niix files
    assert_recovers(ex, phantom, acq)
    assert scanner.is_phase_nifti(next(tmp_path.glob("*_ph.nii.gz")))


# ---------------------------------------------------------------------- bad input
def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def copy_exam(acq, tmp_path, **kw):
    return aq.write_dicom(acq, tmp_path, **kw)


def dicom_error(paths) -> str:
    """The one-line message refusing the z, y, x exam at ``paths`` (60 Hz)."""
    with pytest.raises(MREInputError) as e:
        scanner.load_dicom(paths, frequency=60, directions=["z", "y", "x"])
    return one_line(e)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.dat").write_text("not an image")
    with pytest.raises(MREInputError) as e:
        scanner.load_dicom(tmp_path, frequency=60, directions=["z"])
    msg = one_line(e)
    assert "no DICOM files" in msg and "DICM" in msg


def test_several_series_without_options_are_listed(acq, tmp_path):
    aq.write_dicom(acq, tmp_path, one_folder=True)
    with pytest.raises(MREInputError) as e:
        scanner.import_exam(tmp_path)
    msg = one_line(e)
    assert "3 phase series" in msg and "series #10" in msg and "series #12" in msg
    assert "--directions" in msg
    with pytest.raises(MREInputError, match="2 direction"):
        scanner.import_exam(tmp_path, frequency=60, directions=["x", "y"])


def test_missing_slice(acq, tmp_path):
    paths = copy_exam(acq, tmp_path)
    for f in paths[0].glob("*.dcm"):
        if abs(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
               - 5.0) < 1e-6:
            f.unlink()
    assert "1 slice(s) missing between positions 3 and 7 mm" in dicom_error(paths)


def test_missing_offset(acq, tmp_path):
    paths = copy_exam(acq, tmp_path)
    files = sorted(paths[1].glob("*_ph_*.dcm"))
    pydicom_ds = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    # one phase image of one slice
    files[5].unlink()
    msg = dicom_error(paths)
    assert "phase image is missing" in msg and "series #11" in msg
    # a whole offset, every slice
    for f, ds in zip(files, pydicom_ds, strict=True):
        if ds.TemporalPositionIdentifier == 2 and f.exists():
            f.unlink()
    assert "phase offset(s) 2 missing" in dicom_error(paths)


def test_unequal_slice_spacing(acq, tmp_path):
    paths = copy_exam(acq, tmp_path)
    for p in paths:
        for f in p.glob("*.dcm"):
            ds = pydicom.dcmread(f)
            if abs(float(ds.ImagePositionPatient[2]) - 7.0) < 1e-6:
                ds.ImagePositionPatient = [ds.ImagePositionPatient[0],
                                           ds.ImagePositionPatient[1], "7.6"]
                ds.save_as(f, enforce_file_format=True)
    msg = dicom_error(paths)
    assert "unequal slice spacing" in msg and "--spacing" in msg
    # the user may impose a spacing
    ex = scanner.load_dicom(paths, frequency=60, directions=["z", "y", "x"],
                            spacing=(4e-3, 4e-3, 2e-3))
    assert ex.spacing["z"] == pytest.approx(2e-3)


def test_only_magnitude_images(acq, tmp_path):
    paths = copy_exam(acq, tmp_path)
    for f in paths[0].glob("*_ph_*.dcm"):
        f.unlink()
    with pytest.raises(MREInputError) as e:
        scanner.load_dicom(paths[0], frequency=60, directions=["z"])
    assert "only magnitude images" in one_line(e)


def test_missing_frequency_and_direction(exam):
    with pytest.raises(MREInputError) as e:
        scanner.load_dicom(exam[0], directions=["z"])
    msg = one_line(e)
    assert "frequency is missing" in msg and "--frequency" in msg
    with pytest.raises(MREInputError) as e:
        scanner.load_dicom(exam[0], frequency=60)
    assert "--directions" in one_line(e)


def test_truncated_file(acq, tmp_path):
    paths = copy_exam(acq, tmp_path)
    f = sorted(paths[2].glob("*_ph_*.dcm"))[3]
    f.write_bytes(f.read_bytes()[:1200])
    msg = dicom_error(paths)
    assert f.name in msg and "truncated" in msg


def test_series_mixing_acquisitions_is_refused(acq, tmp_path):
    # two directions written into one series (same SeriesInstanceUID)
    paths = copy_exam(acq, tmp_path)
    uid = pydicom.dcmread(next(paths[0].glob("*.dcm"))).SeriesInstanceUID
    for f in paths[1].glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(MREInputError, match="mixes several acquisitions"):
        scanner.load_dicom(tmp_path, frequency=60, directions=["z", "y", "x"])


# ---------------------------------------------------------------------- CLI
def test_cli_import(exam, tmp_path, capsys):
    out = tmp_path / "exam.nc"
    argv = ["import", *map(str, exam), "--frequency", "60", "--directions", "z", "y", "x",
            "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "wraps found" in text and "wrote" in text
    ex = MREExample.load(out)
    assert ex.frequency == 60 and ex.n_components == 3
    assert json.loads(ex.ds.attrs["preprocessing_json"])[0]["format"] == "DICOM"

    bad = tmp_path / "bad.nc"
    assert main(["import", *map(str, exam), "--directions", "z", "y", "x", "-o", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("mrepinn: error: ") and "frequency is missing" in err
    assert not bad.exists()
    assert main(["import", str(exam[0]), "--frequency", "60", "--directions", "z",
                 "--spacing", "1", "2", "-o", str(bad)]) == 2
    assert not bad.exists()


# ---------------------------------------------------------------------- whole chain
@pytest.mark.slow
@pytest.mark.timeout(3600)  # two full fits: minutes each on 2 cores, longer on a busy machine
def test_dicom_to_fit_matches_fitting_the_phantom(tmp_path):
    """DICOM → import → fit on the four-target slice: R within 0.02 of the direct fit."""
    from napari_mrepinn.metrics import evaluate
    from napari_mrepinn.training import fit

    full = simulate.four_target(frequency=90)
    sl = MREExample(full.ds.isel(z=[full.ds.sizes["z"] // 2]), source="slice")
    acq = aq.acquire(sl, n_offsets=8, background=10.0)
    paths = aq.write_dicom(acq, tmp_path)
    imported = scanner.import_exam(paths, frequency=90, directions=["z", "y", "x"])
    assert correlation(imported.wave.values, sl.wave.values) > 0.999
    # the phantom has no anatomy: fit the same variables (an anatomy adds a network output)
    imported = MREExample(imported.ds.drop_vars("anat"), source="imported")

    direct = fit(sl, progress=False, seed=0)
    via = fit(imported, progress=False, seed=0)
    r_direct = evaluate(direct["mu_pred"], sl["mre"], sl["mre_mask"])["pearson_r"]
    r_via = evaluate(via["mu_pred"], sl["mre"], sl["mre_mask"])["pearson_r"]
    print(f"R direct {r_direct:.3f}, via DICOM {r_via:.3f}")
    assert abs(r_via - r_direct) <= 0.02


def test_reading_in_worker_processes_gives_the_same_example(exam, acq, monkeypatch):
    # enough files to start the worker processes
    monkeypatch.setattr(dicom_frames, "_PARALLEL_MIN_FILES", 10)
    one = scanner.load_dicom(exam, frequency=60, directions=["z", "y", "x"])
    two = scanner.load_dicom(exam, frequency=60, directions=["z", "y", "x"], workers=2)
    np.testing.assert_array_equal(one.wave.values, two.wave.values)
    np.testing.assert_array_equal(one.anat.values, two.anat.values)


@pytest.mark.parametrize("unwrap", ["laplacian", "skimage"])
def test_body_in_air_is_masked_and_recovered(tmp_path_factory, unwrap):
    # the liver phantom: a body in air; the magnitude mask leaves the air (noise) out
    ph = simulate.liver(shape=(64, 64, 2), spacing=5e-3)
    acq = aq.acquire(ph, n_offsets=4, phase_amplitude=1.5, background=8.0, noise=0.05, seed=1)
    paths = aq.write_dicom(acq, tmp_path_factory.mktemp(f"liver_{unwrap}"))
    ex = scanner.import_exam(paths, frequency=60, directions=["z"], unwrap=unwrap)
    mask = ex.mre_mask.values > 0
    body = np.abs(ph.mre.values) > 0  # tissue; air has no modulus
    assert (mask == body).mean() > 0.95
    assert ex.ds.attrs["wraps_left"] == 0
    assert correlation(ex.wave.values[..., 0][mask], acq.wave[0, ..., 0][mask]) > 0.97


@pytest.mark.parametrize("parts", ["real_imag", "ge_real_imag"])
def test_phase_from_real_and_imaginary_images(acq, phantom, tmp_path, parts):
    # ImageType R/I, or only GE's private image-type tag (0043,102F) = 2/3 (magnitude 0)
    paths = aq.write_dicom(acq, tmp_path, parts=parts)
    ds = pydicom.dcmread(next(paths[0].glob("*_re_*.dcm")))
    assert ds.PixelRepresentation == 1
    ex = scanner.load_dicom(paths, frequency=60, directions=["z", "y", "x"])
    assert_recovers(ex, phantom, acq)
    assert "anat" in ex
    steps = json.loads(ex.ds.attrs["preprocessing_json"])
    assert "real and imaginary" in steps[0]["series"][0]["phase_range"]


def test_ge_private_image_type_read_as_raw_bytes():
    # without a private dictionary (implicit VR) the value arrives as two raw bytes
    from pydicom.dataelem import DataElement

    assert dicom_frames._ge_kind(DataElement((0x0043, 0x102F), "UN", b"\x01\x00")) == "P"
    assert dicom_frames._ge_kind(DataElement((0x0043, 0x102F), "SS", 3)) == "I"
    assert dicom_frames._ge_kind(None) == ""


# ---------------------------------------------------------------------- the reader registry
def test_dicom_folder_through_load_example_and_napari(tmp_path, make_napari_viewer):
    """Drag-and-drop: napari's own viewer.open reads a DICOM exam folder through the reader
    registry (frequency and directions from the sidecar), as load_example does."""
    from napari_mrepinn.io import find_reader, load_example

    ph = simulate.four_target(shape=(16, 20, 3), n_components=2, frequency=60)
    acq = aq.acquire(ph, n_offsets=4)
    aq.write_dicom(acq, tmp_path, one_folder=True, sidecar=True)
    assert find_reader(tmp_path).name == "dicom"
    ex = load_example(tmp_path)
    assert correlation(ex.wave.values, ph.wave.values) >= 0.99
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path), plugin="napari-mrepinn")
    names = {layer.name for layer in layers}
    assert any("wave" in n for n in names), names


def test_phase_nifti_is_claimed_by_the_registry(acq, tmp_path):
    from napari_mrepinn.io import find_reader, load_example

    files = aq.write_nifti(acq, tmp_path, sidecar_mre=True)
    phase = [f for f in files if "_ph" in f.name]
    assert find_reader(phase[0]).name == "phase-nifti"
    assert find_reader(tmp_path).name == "phase-nifti"
    assert "wave" in load_example(tmp_path)
