"""io.load_example: every supported file kind round-trips; every bad input is one clear error."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from napari_mrepinn import io
from napari_mrepinn.data import FREQUENCY_KEYS, MREExample, MREInputError


def small_example(rng: np.random.Generator, *, multi: bool = False, anat: bool = True):
    """A 6 × 5 × 3 example with 3 components, anisotropic spacing and an off-zero origin."""
    nx, ny, nz = 6, 5, 3
    w = rng.normal(size=(nx, ny, nz, 3)) + 1j * rng.normal(size=(nx, ny, nz, 3))
    mre = np.full((nx, ny, nz), 3000 + 300j)
    mre[2:4, 2:4] = 9000 + 500j
    mask = np.ones((nx, ny, nz), int)
    mask[2:4, 2:4] = 2
    mask[0] = 0
    kw = dict(
        spacing=(1e-3, 1.5e-3, 2e-3),
        mre_mask=mask,
        anat=rng.random((nx, ny, nz)) if anat else None,
        origin=(0.01, -0.02, 0.0),
        components=["y", "x", "z"],
    )
    if multi:
        return MREExample.from_numpy(
            np.stack([w, 0.5 * w]), frequency=[60.0, 90.0], mre=np.stack([mre, mre]), **kw
        )
    return MREExample.from_numpy(w, frequency=90.0, mre=mre, **kw)


def _digest(path: Path) -> dict[str, str]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def assert_same(a: MREExample, b: MREExample, *, atol: float = 1e-6, origin: bool = True):
    assert a.spatial_shape == b.spatial_shape
    np.testing.assert_allclose(a.frequencies, b.frequencies)
    for d in a.spatial_dims:
        assert a.spacing[d] == pytest.approx(b.spacing[d], rel=1e-6)
        if origin:
            np.testing.assert_allclose(a.ds[d].values, b.ds[d].values, atol=1e-9)
    scale = np.abs(a.ds["wave"].values).max()
    np.testing.assert_allclose(b.ds["wave"].values, a.ds["wave"].values, atol=atol * scale)
    assert list(b.ds["component"].values) == list(a.ds["component"].values)
    for name in ("mre", "mre_mask", "anat"):
        assert (name in a) == (name in b), name
        if name in a:
            np.testing.assert_allclose(
                np.asarray(b.ds[name].values), np.asarray(a.ds[name].values), rtol=1e-5
            )


# ---------------------------------------------------------------------- round trips
def test_netcdf_round_trip(tmp_path, rng):
    ex = small_example(rng)
    ex.save(tmp_path / "ex.nc")
    back = io.load_example(tmp_path / "ex.nc")
    assert_same(ex, back)
    assert back.source == str(tmp_path / "ex.nc")


@pytest.mark.parametrize("parts", ["real_imag", "mag_phase"])
def test_nifti_folder_round_trip(tmp_path, rng, parts):
    ex = small_example(rng)
    folder = io.save_nifti_folder(ex, tmp_path / "mre", parts=parts)
    names = sorted(p.name for p in folder.iterdir())
    wave_files = (
        ["wave_imag.nii.gz", "wave_real.nii.gz"]
        if parts == "real_imag"
        else ["wave_mag.nii.gz", "wave_phase.nii.gz"]
    )
    assert set(wave_files) <= set(names)
    before = _digest(folder)
    back = io.load_example(folder)
    assert_same(ex, back)  # float32 on disk: relative 1e-6 of the largest value
    assert back.frequency == 90.0
    assert back.source == str(folder)
    # a single file of the folder (drag-and-drop of one file) opens the folder
    assert_same(ex, io.load_example(folder / wave_files[0]))
    assert _digest(folder) == before, "reading must not touch the input files"


def test_nifti_multi_frequency_and_sequences(tmp_path, rng):
    ex = small_example(rng, multi=True)
    folder = io.save_nifti_folder(ex, tmp_path / "multi")
    back = io.load_example(folder)
    assert back.ds["wave"].dims == ("frequency", "x", "y", "z", "component")
    assert_same(ex, back)
    # two anatomical images become a sequence axis labelled by file name
    import nibabel as nib

    img = nib.load(str(folder / "anat.nii.gz"))
    nib.save(
        nib.Nifti1Image(np.asarray(img.dataobj) * 2, img.affine), str(folder / "anat_t2.nii.gz")
    )
    back = io.load_example(folder)
    assert back.ds["anat"].dims == ("x", "y", "z", "sequence")
    assert list(back.ds["sequence"].values) == ["anat", "anat_t2"]


def test_nifti_header_units_and_overrides(tmp_path, rng):
    """Spacing comes from the header zooms in mm; keywords override the files."""
    ex = small_example(rng)
    folder = io.save_nifti_folder(ex, tmp_path / "mre")
    (folder / "mre.json").unlink()
    with pytest.raises(MREInputError, match=r"frequency is missing.*mre\.json"):
        io.load_example(folder)
    back = io.load_example(folder, frequency=45, spacing=2e-3)
    assert back.frequency == 45.0
    assert back.spacing == pytest.approx({"x": 2e-3, "y": 2e-3, "z": 2e-3})
    # any *.json with "frequency" will do
    (folder / "acquisition.json").write_text(json.dumps({"Frequency": 60}))
    assert io.load_example(folder).frequency == 60.0


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_round_trip(tmp_path, rng, version):
    ex = small_example(rng)
    path = io.save_mat(ex, tmp_path / f"phantom_v{version}.mat", version=version)
    if version == "7.3":
        import h5py

        assert h5py.is_hdf5(path)
        assert path.read_bytes()[:10] == b"MATLAB 7.3"
    before = _digest(path)
    back = io.load_example(path)
    # BIOQIC files have no origin: the grid starts at 0
    assert_same(ex, back, atol=1e-12, origin=False)
    assert _digest(path) == before


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_round_trip_of_a_slice_with_components(tmp_path, rng, version):
    # (y, x, 3) in MATLAB is a volume of 3 slices or one slice with 3 components: the
    # file must say which, or the slice comes back as a mask/grid mismatch
    ex = small_example(rng)
    ex = MREExample(ex.ds.isel(z=0, drop=True))
    assert ex.ds["wave"].dims == ("x", "y", "component")
    back = io.load_example(io.save_mat(ex, tmp_path / "s.mat", version=version))
    assert back.ds["wave"].dims == ("x", "y", "component")
    np.testing.assert_allclose(back.ds["wave"].values, ex.ds["wave"].values, atol=1e-12)
    np.testing.assert_array_equal(back.ds["mre_mask"].values, ex.ds["mre_mask"].values)


@pytest.mark.parametrize("version", ["5", "7.3"])
@pytest.mark.parametrize("shape", [(6, 5, 1), (6, 5, 3, 1), (6, 5, 1, 1)],
                         ids=["slice", "volume", "one-z-slice"])
def test_mat_round_trip_of_one_component(tmp_path, rng, version, shape):
    # MATLAB drops trailing size-1 axes: the component axis of a one-component wave must
    # come back from the file's own description, not be lost
    wave = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    ex = MREExample.from_numpy(wave, frequency=60, spacing=1e-3, components=["y"],
                               spatial_ndim=len(shape) - 1,
                               mre_mask=np.ones(shape[:-1], int))
    back = io.load_example(io.save_mat(ex, tmp_path / "one.mat", version=version))
    assert back.ds["wave"].dims == ex.ds["wave"].dims
    assert back.ds["wave"].shape == ex.ds["wave"].shape
    assert list(back.ds["component"].values) == ["y"]
    np.testing.assert_allclose(back.ds["wave"].values, ex.ds["wave"].values, atol=1e-12)
    np.testing.assert_array_equal(back.ds["mre_mask"].values, ex.ds["mre_mask"].values)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_round_trip_keeps_component_labels(tmp_path, rng, version):
    # the default labels of three components (z, y, x) are not BIOQIC's u_ft order (y, x, z)
    wave = rng.normal(size=(6, 5, 2, 3)) + 1j * rng.normal(size=(6, 5, 2, 3))
    ex = MREExample.from_numpy(wave, frequency=60, spacing=1e-3)
    assert list(ex.ds["component"].values) == ["z", "y", "x"]
    back = io.load_example(io.save_mat(ex, tmp_path / "zyx.mat", version=version))
    assert list(back.ds["component"].values) == ["z", "y", "x"]
    np.testing.assert_allclose(back.ds["wave"].values, ex.ds["wave"].values, atol=1e-12)


def test_mat_component_labels_that_do_not_fit_the_wave(tmp_path):
    import scipy.io

    info = {"dx_m": 1e-3, "dy_m": 1e-3, "frequencies_Hz": 60.0, "spatial_ndim": 2.0,
            "components": "z,y"}
    scipy.io.savemat(tmp_path / "bad.mat", {"u_ft": np.ones((6, 5, 3), complex), "info": info})
    with pytest.raises(MREInputError, match=r"bad\.mat: info\.components names 2 component"):
        io.load_example(tmp_path / "bad.mat")


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_multi_frequency(tmp_path, rng, version):
    ex = small_example(rng, multi=True, anat=False)
    back = io.load_example(io.save_mat(ex, tmp_path / "m.mat", version=version))
    assert back.ds["wave"].dims == ("frequency", "x", "y", "z", "component")
    assert_same(ex, back, atol=1e-12, origin=False)


def test_mat_bioqic_layout(tmp_path, rng):
    """A file like BIOQIC's four_target_phantom.mat: u_ft (y, x, z, component, frequency)."""
    import scipy.io

    u = rng.normal(size=(10, 8, 2, 3, 2)) + 1j * rng.normal(size=(10, 8, 2, 3, 2))
    info = {"dx_m": 1e-3, "dy_m": 1e-3, "dz_m": 1e-3, "frequencies_Hz": np.array([50.0, 60.0])}
    scipy.io.savemat(tmp_path / "fem.mat", {"u_ft": u, "info": info})
    ex = io.load_example(tmp_path / "fem.mat")
    assert ex.spatial_shape == (8, 10, 2)  # x = MATLAB columns, y = MATLAB rows
    assert list(ex.ds["component"].values) == ["y", "x", "z"]
    np.testing.assert_allclose(ex.frequencies, [50, 60])
    np.testing.assert_allclose(ex.ds["wave"].values[1, 3, 7, 1, 2], u[7, 3, 1, 2, 1])


def test_mat_without_info_asks_for_it(tmp_path, rng):
    import scipy.io

    u = rng.normal(size=(10, 8, 2)) + 1j * rng.normal(size=(10, 8, 2))
    scipy.io.savemat(tmp_path / "bare.mat", {"data": u, "notes": "x"})
    with pytest.raises(MREInputError, match=r"bare\.mat: the vibration frequency is missing"):
        io.load_example(tmp_path / "bare.mat")
    with pytest.raises(MREInputError, match=r"bare\.mat: the voxel spacing is missing"):
        io.load_example(tmp_path / "bare.mat", frequency=60)
    ex = io.load_example(tmp_path / "bare.mat", frequency=60, spacing=1.5e-3)
    assert ex.spatial_shape == (8, 10, 2)  # the first complex array was used
    assert ex.spacing["x"] == pytest.approx(1.5e-3)


# ---------------------------------------------------------------------- frequency keys
def test_frequency_keys_are_one_ordered_list():
    assert FREQUENCY_KEYS[:2] == ("frequencies_hz", "frequency_hz")
    assert {"frequency", "frequencies", "mre_frequency", "vibration_frequency", "freq_hz",
            "freq"} <= set(FREQUENCY_KEYS)
    assert len(set(FREQUENCY_KEYS)) == len(FREQUENCY_KEYS)
    assert all(k == k.lower() for k in FREQUENCY_KEYS)


def test_nifti_sidecar_frequency_aliases_and_precedence(tmp_path, rng):
    folder = io.save_nifti_folder(small_example(rng), tmp_path / "mre")
    (folder / "mre.json").write_text(json.dumps({"Vibration_Frequency": 55}))
    assert io.load_example(folder).frequency == 55.0  # an alias the reader did not know
    # two keys: the one that states its unit wins (FREQUENCY_KEYS order), whatever the file order
    (folder / "mre.json").write_text(json.dumps({"frequency": 50, "frequency_hz": 60}))
    assert io.load_example(folder).frequency == 60.0
    (folder / "mre.json").write_text(json.dumps({"notes": "no frequency"}))
    with pytest.raises(MREInputError, match=r"frequency is missing.*vibration_frequency"):
        io.load_example(folder)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_mat_frequency_aliases_and_precedence(tmp_path, rng, version):
    import scipy.io

    u = rng.normal(size=(10, 8, 2)) + 1j * rng.normal(size=(10, 8, 2))

    def written(info: dict) -> Path:
        info = {"dx_m": 1e-3, "dy_m": 1e-3, **info}
        path = tmp_path / f"f_v{version}.mat"
        if version == "5":
            scipy.io.savemat(path, {"u_ft": u, "info": info})
        else:
            from napari_mrepinn.io_matlab import _mat73_bytes

            path.write_bytes(_mat73_bytes({"u_ft": u}, info))
        return path

    assert io.load_example(written({"Vibration_Frequency": 55.0})).frequency == 55.0
    assert io.load_example(written({"freq_Hz": 45.0})).frequency == 45.0
    assert io.load_example(written({"frequency": 50.0, "frequency_Hz": 60.0})).frequency == 60.0
    with pytest.raises(MREInputError, match=r"frequency is missing.*mre_frequency"):
        io.load_example(written({}))


def test_netcdf_overrides(tmp_path, rng):
    ex = small_example(rng)
    ex.ds.attrs.pop("frequency")
    from napari_mrepinn.netcdf import _encode_complex

    _encode_complex(ex.ds).to_netcdf(tmp_path / "nofreq.nc", engine="h5netcdf")
    with pytest.raises(MREInputError, match=r"nofreq\.nc.*frequency is missing"):
        io.load_example(tmp_path / "nofreq.nc")
    assert io.load_example(tmp_path / "nofreq.nc", frequency=70).frequency == 70.0


# ---------------------------------------------------------------------- bad inputs
def test_missing_and_unknown(tmp_path):
    with pytest.raises(MREInputError, match=r"nothere\.nc: no such file"):
        io.load_example(tmp_path / "nothere.nc")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(MREInputError, match=r"notes\.txt: unsupported file type"):
        io.load_example(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MREInputError, match=r"empty: no wave\*\.nii"):
        io.load_example(tmp_path / "empty")
    assert not io.is_mre_folder(tmp_path / "empty")


def test_corrupt_files(tmp_path, rng):
    ex = small_example(rng)
    ex.save(tmp_path / "good.nc")
    data = (tmp_path / "good.nc").read_bytes()
    (tmp_path / "cut.nc").write_bytes(data[: len(data) // 3])
    with pytest.raises(MREInputError, match=r"cut\.nc: not a readable NetCDF"):
        io.load_example(tmp_path / "cut.nc")
    (tmp_path / "junk.mat").write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(MREInputError, match=r"junk\.mat: not a readable MATLAB file"):
        io.load_example(tmp_path / "junk.mat")
    mat73 = io.save_mat(ex, tmp_path / "v73.mat", version="7.3").read_bytes()
    (tmp_path / "cut73.mat").write_bytes(mat73[:2000])
    with pytest.raises(MREInputError, match=r"cut73\.mat"):
        io.load_example(tmp_path / "cut73.mat")
    folder = io.save_nifti_folder(ex, tmp_path / "mre")
    raw = gzip.decompress((folder / "wave_imag.nii.gz").read_bytes())
    (folder / "wave_imag.nii.gz").write_bytes(gzip.compress(raw[:400]))
    with pytest.raises(MREInputError, match=r"wave_imag\.nii\.gz: not a readable NIfTI"):
        io.load_example(folder)


def test_nifti_folder_problems(tmp_path, rng):
    import nibabel as nib

    ex = small_example(rng)
    folder = io.save_nifti_folder(ex, tmp_path / "mre")
    img = nib.load(str(folder / "mask.nii.gz"))
    # a mask on another grid
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.int16), img.affine), str(folder / "mask.nii.gz"))
    with pytest.raises(MREInputError, match=r"mask\.nii\.gz: shape \(4, 4, 3\) does not match"):
        io.load_example(folder)
    (folder / "mask.nii.gz").unlink()
    # parts of different shapes
    nib.save(
        nib.Nifti1Image(np.ones((6, 5, 2, 3), np.float32), img.affine),
        str(folder / "wave_imag.nii.gz"),
    )
    with pytest.raises(
        MREInputError, match=r"wave_imag\.nii\.gz: shape .* does not match wave_real"
    ):
        io.load_example(folder)
    # only one part
    (folder / "wave_imag.nii.gz").unlink()
    with pytest.raises(MREInputError, match=r"needs two parts .* found only wave_real\.nii\.gz"):
        io.load_example(folder)
    # a phase in scanner units, not radians
    ex2 = small_example(rng)
    f2 = io.save_nifti_folder(ex2, tmp_path / "mp", parts="mag_phase")
    ph = nib.load(str(f2 / "wave_phase.nii.gz"))
    nib.save(
        nib.Nifti1Image(np.asarray(ph.dataobj) * 1000, ph.affine), str(f2 / "wave_phase.nii.gz")
    )
    with pytest.raises(MREInputError, match=r"wave_phase\.nii\.gz: phase values .* radians"):
        io.load_example(f2)
    # a corrupt sidecar is named when the frequency is missing
    f3 = io.save_nifti_folder(ex2, tmp_path / "js")
    (f3 / "mre.json").write_text("{frequency: 60")
    with pytest.raises(MREInputError, match=r"frequency is missing.*unreadable: .*mre\.json"):
        io.load_example(f3)


def test_mat_problems(tmp_path, rng):
    import scipy.io

    scipy.io.savemat(tmp_path / "nowave.mat", {"magnitude": rng.random((4, 4))})
    with pytest.raises(MREInputError, match=r"nowave\.mat: no complex wave variable .*magnitude"):
        io.load_example(tmp_path / "nowave.mat")
    info = {"dx_m": 1e-3, "dy_m": 1e-3, "frequencies_Hz": 60.0}
    scipy.io.savemat(
        tmp_path / "mism.mat",
        {"u_ft": np.ones((6, 5, 3), complex), "mre_mask": np.ones((4, 4, 3)), "info": info},
    )
    with pytest.raises(MREInputError, match=r"mism\.mat: 'mre_mask' \(4, 4, 3\) does not share"):
        io.load_example(tmp_path / "mism.mat")
    scipy.io.savemat(
        tmp_path / "time.mat", {"cube": np.ones((6, 5, 3, 4, 3, 1), complex), "info": info}
    )
    with pytest.raises(MREInputError, match=r"time\.mat: 'cube' has a time axis"):
        io.load_example(tmp_path / "time.mat")
