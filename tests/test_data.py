"""MREExample: construction, NetCDF round trip, noise, downsampling and bad input."""

import hashlib

import numpy as np
import pytest
import xarray as xr

from napari_mrepinn import MREExample, MREInputError


def _example(rng, shape=(12, 10, 3), n_comp=3):
    wave = rng.normal(size=(*shape, n_comp)) + 1j * rng.normal(size=(*shape, n_comp))
    mre = np.full(shape, 3000 + 565j)
    mask = np.ones(shape, int)
    mask[4:8, 4:8] = 2
    anat = rng.random((*shape, 2))
    return MREExample.from_numpy(wave, 90.0, 1e-3, mre=mre, mre_mask=mask, anat=anat)


def test_from_numpy_dims_coords_and_units(rng):
    ex = _example(rng)
    assert ex.wave.dims == ("x", "y", "z", "component")
    assert ex.anat.dims == ("x", "y", "z", "sequence")
    assert ex.spatial_dims == ("x", "y", "z")
    assert ex.spacing == pytest.approx({"x": 1e-3, "y": 1e-3, "z": 1e-3})
    assert ex.extent == pytest.approx({"x": 12e-3, "y": 10e-3, "z": 3e-3})
    assert np.isnan(MREExample(ex.ds.isel(z=[0])).extent["z"])  # one slice: no spacing
    assert ex.frequency == 90.0 and ex.density == 1000.0
    assert "anat" in ex and "wave_pred" not in ex
    assert ex.mask.values.sum() == 12 * 10 * 3


def test_netcdf_round_trip_is_exact_and_opens_in_plain_xarray(rng, tmp_path):
    ex = _example(rng)
    ex["mu_pred"] = ex.mre * (1 + 0.1j)
    ex.ds.attrs["settings_json"] = '{"pde": "hetero"}'
    path = ex.save(tmp_path / "ex.nc")
    back = MREExample.load(path)
    for name in ("wave", "mre", "mre_mask", "anat", "mu_pred"):
        np.testing.assert_array_equal(back[name].values, ex[name].values)
        assert back[name].dtype == ex[name].dtype
    assert back.ds.attrs["settings_json"] == '{"pde": "hetero"}'
    # plain xarray, no plugin code: real/imag parts on a `part` dim
    with xr.open_dataset(path) as plain:
        assert plain["wave"].dims[-1] == "part"
        np.testing.assert_array_equal(plain["wave"].sel(part="imag").values, ex.wave.values.imag)


def test_multifrequency_select_and_errors(rng):
    wave = rng.normal(size=(3, 8, 9)) + 0j
    ex = MREExample.from_numpy(wave, [50, 60, 70], 1e-3)
    np.testing.assert_array_equal(ex.frequencies, [50, 60, 70])
    one = ex.select_frequency(60)
    assert one.frequency == 60 and one.wave.dims == ("x", "y")
    np.testing.assert_array_equal(one.wave.values, wave[1])
    with pytest.raises(MREInputError, match="3 frequencies"):
        _ = ex.frequency
    with pytest.raises(MREInputError, match="no 65 Hz"):
        ex.select_frequency(65)


def test_gaussian_noise_power_and_seed(rng):
    ex = _example(rng, shape=(40, 40, 4))
    noisy = ex.add_gaussian_noise(1e-2, seed=3)
    noise = noisy.wave.values - ex.wave.values
    ratio = np.mean(np.abs(noise) ** 2) / np.mean(np.abs(ex.wave.values) ** 2)
    assert ratio == pytest.approx(1e-2, rel=0.05)
    again = ex.add_gaussian_noise(1e-2, seed=3)
    np.testing.assert_array_equal(again.wave.values, noisy.wave.values)
    # the original is untouched
    assert not np.shares_memory(noisy.wave.values, ex.wave.values)
    assert np.all(ex.wave.values != noisy.wave.values)


def test_downsample_means_and_mask_max(rng):
    ex = _example(rng, shape=(12, 10, 3))
    small = ex.downsample(2)
    assert small.spatial_shape == (6, 5, 3)
    np.testing.assert_allclose(
        small.wave.values[0, 0, 0], ex.wave.values[:2, :2, 0].mean(axis=(0, 1))
    )
    assert small.mre_mask.values.max() == 2
    assert small.spacing["x"] == pytest.approx(2e-3)


BAD_CASES = {
    "nan": (lambda w, m: (w * np.nan, m, 60.0, 1e-3), "NaN"),
    "text wave": (lambda w, m: (np.full(w.shape, "a"), m, 60.0, 1e-3), "dtype"),
    "label wave": (lambda w, m: (m, m, 60.0, 1e-3), "integer"),
    "mask shape": (lambda w, m: (w, m[:-1], 60.0, 1e-3), "shape"),
    "empty mask": (lambda w, m: (w, 0 * m, 60.0, 1e-3), "empty"),
    "zero frequency": (lambda w, m: (w, m, 0.0, 1e-3), "frequency"),
    "negative spacing": (lambda w, m: (w, m, 60.0, -1e-3), "spacing"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_arrays_get_one_clear_error(case, rng):
    make, words = BAD_CASES[case]
    wave = rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8))
    mask = np.ones((8, 8), int)
    w, m, f, s = make(wave, mask)
    with pytest.raises(MREInputError, match=words):
        MREExample.from_numpy(w, f, s, mre_mask=m)


def test_bad_files_name_the_file_and_stay_untouched(tmp_path, rng):
    good = _example(rng).save(tmp_path / "good.nc")
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(good.read_bytes()[:2000])
    text = tmp_path / "notes.nc"
    text.write_text("this is not NetCDF")
    no_wave = tmp_path / "nowave.nc"
    xr.Dataset({"mre": (("x", "y"), np.ones((4, 4)))}).to_netcdf(no_wave, engine="h5netcdf")
    no_freq = tmp_path / "nofreq.nc"
    xr.Dataset(
        {"wave": (("x", "y"), np.ones((4, 4)))},
        coords={"x": np.arange(4) * 1e-3, "y": np.arange(4) * 1e-3},
    ).to_netcdf(no_freq, engine="h5netcdf")
    no_spacing = tmp_path / "nospacing.nc"
    xr.Dataset({"wave": (("x", "y"), np.ones((4, 4)))}, attrs={"frequency": 60.0}).to_netcdf(
        no_spacing, engine="h5netcdf"
    )
    cases = {
        truncated: "not a readable",
        text: "not a readable",
        no_wave: "no 'wave'",
        no_freq: "frequency is missing",
        no_spacing: "spacing is missing",
        tmp_path / "absent.nc": "no such file",
    }
    for path, words in cases.items():
        before = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
        with pytest.raises(MREInputError, match=words) as err:
            MREExample.load(path)
        assert str(path) in str(err.value)
        assert "\n" not in str(err.value)
        if before is not None:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_save_never_leaves_a_half_written_file(tmp_path, rng, monkeypatch):
    ex = _example(rng)
    path = ex.save(tmp_path / "ex.nc")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(MREInputError, match="could not be written"):  # one line, exit 2
        ex.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex.nc"]


@pytest.mark.parametrize("frequency", ["sixty", -60.0, [60.0, 60.0]])
def test_bad_frequency_names_the_source(frequency):
    wave = np.ones((2, 8, 8) if np.ndim(frequency) else (8, 8), complex)
    with pytest.raises(MREInputError, match=r"^scan\.nii: frequency") as err:
        MREExample.from_numpy(wave, frequency, 1e-3, source="scan.nii")
    assert "\n" not in str(err.value)
