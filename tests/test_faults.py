"""Faults a hostile but realistic user meets (issue 15): each is one clear error or a right
answer, never a traceback, a crash or silent nonsense.

The property-based tests throw damaged files at every reader and random arrays at
``from_numpy``: the only acceptable outcomes are a valid example or ``MREInputError``.
"""

from __future__ import annotations

import gc
import gzip
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from napari_mrepinn import baselines, io
from napari_mrepinn.cli import main
from napari_mrepinn.data import MREExample, MREInputError, MREPlausibilityWarning

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _wave(shape=(10, 8), k=2.0):
    x = np.arange(shape[0])[:, None] * np.ones(shape)
    return np.exp(-1j * k * x * 0.5) * (1 + 0.05 * np.arange(np.prod(shape)).reshape(shape))


def _example(**kw):
    return MREExample.from_numpy(_wave(), 60.0, 1e-3, **kw)


def _one_line_exit_2(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mrepinn: error:") and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


# ---------------------------------------------------------------------- frequency values
def _with_frequency_attr(tmp_path, value) -> Path:
    ds = _example().ds.copy()
    ds.attrs["frequency"] = value
    path = tmp_path / "text_freq.nc"
    from napari_mrepinn.netcdf import _encode_complex

    _encode_complex(ds).to_netcdf(path, engine="h5netcdf")
    return path


def test_frequency_attribute_as_text_names_the_file(tmp_path, capsys):
    path = _with_frequency_attr(tmp_path, "sixty")
    with pytest.raises(MREInputError, match=r"text_freq\.nc: .*frequency.*'sixty'"):
        io.load_example(path)
    _one_line_exit_2(capsys, ["baseline", "ahi", str(path), "-o", str(tmp_path / "o.nc")],
                     "text_freq.nc", "frequency")


@pytest.mark.parametrize("text", ["60", " 60.0 ", "60 Hz"])
def test_numeric_text_frequency_is_read_as_a_number(tmp_path, text):
    ex = io.load_example(_with_frequency_attr(tmp_path, text))
    assert ex.frequency == 60.0 and isinstance(ex.ds.attrs["frequency"], float)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -60.0, 0.0])
def test_select_frequency_refuses_non_finite(bad):
    ex = MREExample.from_numpy(np.stack([_wave(), 2 * _wave()]), [30.0, 60.0], 1e-3)
    with pytest.raises(MREInputError, match="positive number of Hz"):
        ex.select_frequency(bad)


def test_cli_frequency_nan_is_refused(tmp_path, capsys):
    path = MREExample.from_numpy(np.stack([_wave(), 2 * _wave()]), [30.0, 60.0], 1e-3).save(
        tmp_path / "two.nc")
    out = tmp_path / "o.nc"
    _one_line_exit_2(capsys, ["baseline", "ahi", str(path), "-o", str(out), "--frequency", "nan"],
                     "Hz")
    assert not out.exists()


def test_density_nan_in_a_file_is_refused(tmp_path):
    ds = _example().ds.copy()
    ds.attrs["density"] = float("nan")
    with pytest.raises(MREInputError, match="density"):
        MREExample(ds, source="scan.nc")


# ---------------------------------------------------------------------- wave values
@pytest.mark.parametrize("method", [baselines.ahi, baselines.mdev])
def test_zero_wave_is_refused_not_zero_pascal(method):
    zero = MREExample.from_numpy(np.zeros((10, 8), complex), 60.0, 1e-3)
    with pytest.raises(MREInputError, match="wave is zero everywhere"):
        method(zero)
    # zero in the region of interest (motion only outside it) is no better
    wave = np.zeros((10, 8), complex)
    wave[0] = 1.0
    mask = np.zeros((10, 8), int)
    mask[3:7, 2:6] = 1
    with pytest.raises(MREInputError, match="wave is zero in the mask"):
        method(MREExample.from_numpy(wave, 60.0, 1e-3, mre_mask=mask))


def test_nan_outside_the_mask_is_accepted_inside_refused():
    wave = _wave()
    mask = np.zeros(wave.shape, int)
    mask[2:8, 2:6] = 1
    wave[0, :] = np.nan  # no tissue there: scanner exports write NaN
    wave[9, 0] = np.inf
    ex = MREExample.from_numpy(wave, 60.0, 1e-3, mre_mask=mask)
    assert np.all(np.isfinite(ex.wave.values))
    assert ex.wave.attrs["n_nonfinite_outside_mask"] == wave.shape[1] + 1
    np.testing.assert_array_equal(ex.wave.values[mask > 0], wave[mask > 0])
    mu = baselines.ahi(ex)
    assert np.all(np.isfinite(mu.values[mask > 0]))
    wave[4, 3] = np.nan
    with pytest.raises(MREInputError, match="1 NaN or infinite voxels inside the mask"):
        MREExample.from_numpy(wave, 60.0, 1e-3, mre_mask=mask)
    with pytest.raises(MREInputError, match="NaN"):
        MREExample.from_numpy(wave, 60.0, 1e-3)  # no mask: every voxel counts


# ---------------------------------------------------------------------- memory and damage
def test_file_too_large_for_memory_is_one_line(tmp_path, monkeypatch):
    ex = _example()
    nc = ex.save(tmp_path / "big.nc")
    folder = io.save_nifti_folder(ex, tmp_path / "nifti")
    mat = io.save_mat(ex, tmp_path / "big.mat")

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(xr.Dataset, "load", no_memory)
    with pytest.raises(MREInputError, match=r"big\.nc: .*memory"):
        io.load_example(nc)
    import nibabel
    import scipy.io

    monkeypatch.setattr(nibabel, "load", no_memory)
    with pytest.raises(MREInputError, match=r"nifti: .*memory"):
        io.load_example(folder)
    monkeypatch.setattr(scipy.io, "loadmat", no_memory)
    with pytest.raises(MREInputError, match=r"big\.mat: .*memory"):
        io.load_example(mat)


def test_damaged_netcdf_leaves_no_exception_ignored(tmp_path, monkeypatch):
    """A damaged file must be one message, not one message plus h5netcdf's "Exception
    ignored" traceback when its half-open handle is collected."""
    rng = np.random.default_rng(0)
    ex = MREExample.from_numpy(rng.normal(size=(64, 64, 16)) + 1j, 60.0, 1e-3)
    good = ex.save(tmp_path / "good.nc").read_bytes()
    bad = tmp_path / "bad.nc"
    # the header survives, the rest of the file (object headers) is zeros
    bad.write_bytes(good[: len(good) // 100].ljust(len(good), b"\0"))
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with pytest.raises(MREInputError, match=r"bad\.nc: not a readable"):
        io.load_example(bad)
    gc.collect()
    assert seen == []
    # the file is closed: it can be replaced and removed at once
    bad.unlink()


@pytest.mark.parametrize("suffix", [".nc", ".mat"])
def test_damaged_global_heap_is_one_clear_error_not_a_hang(tmp_path, suffix):
    """libhdf5 loops forever on a global heap object of index 0 and size 0 (here: the
    header of the first object zeroed, as a zeroed disk block does). The load runs in a
    child process so that a hang fails this test instead of stopping the test run."""
    import subprocess

    import napari_mrepinn

    ex = MREExample.from_numpy(_wave(), 60.0, 1e-3, mre_mask=np.ones((10, 8), int))
    good = tmp_path / f"good{suffix}"
    if suffix == ".nc":
        ex.save(good)
    else:
        import h5py

        io.save_mat(ex, good, version="7.3")
        with h5py.File(good, "r+") as f:  # MATLAB lists a struct's fields, as vlen text
            names = [np.frombuffer(n.encode(), "S1") for n in f["info"]]
            f["info"].attrs.create("MATLAB_fields", names, dtype=h5py.vlen_dtype("S1"))
    data = bytearray(good.read_bytes())
    heap = data.find(b"GCOL")  # netCDF-4 dimension lists, MATLAB's info struct names
    assert heap > 0, "the file has no global heap: the test would test nothing"
    data[heap + 16 : heap + 32] = bytes(16)  # the first object's index, count and size
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(bytes(data))
    code = (
        "import sys; from napari_mrepinn.io import load_example\n"
        "try:\n    load_example(sys.argv[1])\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    src = str(Path(napari_mrepinn.__file__).parents[1])
    try:
        run = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True,
                             text=True, timeout=60, env={"PYTHONPATH": src,
                                                          "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading a {suffix} file with a damaged global heap hung")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("MREInputError"), run.stdout
    assert f"bad{suffix}: a damaged HDF5 file (global heap at byte {heap}" in run.stdout
    assert "copy it again" in run.stdout


# ---------------------------------------------------------------------- units
def test_spacing_in_mm_warns_and_metres_do_not():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex = MREExample.from_numpy(_wave(), 60.0, 1e-3)
        baselines.ahi(ex)
    with pytest.warns(MREPlausibilityWarning, match=r"field of view .* metres") as rec:
        mm = MREExample.from_numpy(_wave(), 60.0, 1.0)
    assert rec[0].filename == __file__  # points at the caller, not inside the library
    with pytest.warns(MREPlausibilityWarning, match=r"mu_ahi: the median \|G\*\| is"):
        baselines.ahi(mm)


# ---------------------------------------------------------------------- NIfTI round trips
@pytest.mark.parametrize("n_comp", [1, 3])
@pytest.mark.parametrize("multi", [False, True])
def test_2d_example_with_components_round_trips_through_nifti(tmp_path, n_comp, multi):
    w = np.stack([_wave()] * n_comp, axis=-1) * np.arange(1, n_comp + 1)
    freqs = [60.0, 90.0] if multi else 60.0
    if multi:
        w = np.stack([w, 0.5 * w])
    labels = list("zyx"[:n_comp])
    ex = MREExample.from_numpy(w, freqs, 1e-3, components=labels)
    assert ex.spatial_dims == ("x", "y")
    folder = io.save_nifti_folder(ex, tmp_path / "mre")
    back = io.load_example(folder)
    assert back.wave.dims == ex.wave.dims
    assert list(back.ds["component"].values) == labels
    np.testing.assert_allclose(back.wave.values, ex.wave.values, rtol=1e-6, atol=1e-6)
    # the arrays of a 2-D example go back in with their labels
    again = MREExample.from_numpy(ex.wave.values, freqs, 1e-3, components=labels)
    assert again.wave.dims == ex.wave.dims


# ---------------------------------------------------------------------- the CLI
def _tiny_input(tmp_path) -> Path:
    return _example(mre=np.full((10, 8), 3e3 + 300j)).save(tmp_path / "in.nc")


def _no_training(*args, **kwargs):
    raise AssertionError("training started although the output cannot be written")


def test_fit_to_a_folder_it_cannot_write_fails_before_training(tmp_path, capsys,
                                                             monkeypatch):
    import napari_mrepinn.training as training

    monkeypatch.setattr(training, "fit", _no_training)
    src = _tiny_input(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()

    def denied(*args, **kwargs):  # a read-only folder, also for root
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    _one_line_exit_2(capsys, ["fit", str(src), "-o", str(locked / "o.nc")],
                     "permission denied")
    monkeypatch.undo()
    monkeypatch.setattr(training, "fit", _no_training)
    _one_line_exit_2(capsys, ["fit", str(src), "-o", str(tmp_path / "missing" / "o.nc")],
                     "does not exist")


def _fake_fit(example, config=None, **kwargs):
    out = example.copy()
    out["mu_pred"] = example.ds["mre"] * 1.01
    return out


def test_ctrl_c_while_drawing_the_figure_says_what_was_written(tmp_path, capsys,
                                                              monkeypatch):
    import napari_mrepinn.figures as figures
    import napari_mrepinn.recipe as recipe

    monkeypatch.setattr(recipe, "fit", _fake_fit)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "save_result_figure", interrupted)
    out = tmp_path / "o.nc"
    assert main(["fit", str(_tiny_input(tmp_path)), "-o", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"mrepinn: stopped by the user; {out} was written; {out.with_suffix('.png')} " \
                  "was not."
    assert "mu_pred" in MREExample.load(out)
    assert not out.with_suffix(".png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nc", "o.nc"]


def test_ctrl_c_before_any_output_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    import napari_mrepinn.recipe as recipe

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "fit", interrupted)
    assert main(["fit", str(_tiny_input(tmp_path)), "-o", str(tmp_path / "o.nc")]) == 130
    assert capsys.readouterr().err.strip() == (
        "mrepinn: stopped by the user; no output was written."
    )


# ---------------------------------------------------------------------- property-based
def _ok_or_input_error(load):
    """The reader's outcome must be a valid example or MREInputError (one line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MREPlausibilityWarning)
            ex = load()
    except MREInputError as exc:
        assert "\n" not in str(exc)
        return None
    assert isinstance(ex, MREExample)
    ex.validate()
    return ex


def _valid_files() -> dict[str, dict[str, bytes]]:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 5, 2, 3)) + 1j * rng.normal(size=(6, 5, 2, 3))
    mask = np.ones((6, 5, 2), int)
    ex = MREExample.from_numpy(w, 60.0, 1e-3, mre=np.full((6, 5, 2), 3e3 + 0j), mre_mask=mask)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {
            "nc": {"x.nc": ex.save(tmp / "x.nc").read_bytes()},
            "mat5": {"x.mat": io.save_mat(ex, tmp / "x.mat").read_bytes()},
            "mat73": {"x.mat": io.save_mat(ex, tmp / "y.mat", version="7.3").read_bytes()},
        }
        folder = io.save_nifti_folder(ex, tmp / "nifti")
        files["nifti"] = {p.name: p.read_bytes() for p in folder.iterdir()}
    return files


VALID = _valid_files()


@st.composite
def damaged(draw, kind: str):
    """A valid file set of ``kind`` with one file truncated, overwritten or padded."""
    files = dict(VALID[kind])
    name = draw(st.sampled_from(sorted(files)))
    data = bytearray(files[name])
    if name.endswith(".gz") and draw(st.booleans()):
        data = bytearray(gzip.decompress(bytes(data)))  # damage the NIfTI, not the gzip
        regz = True
    else:
        regz = False
    how = draw(st.sampled_from(["truncate", "overwrite", "zeros", "insert"]))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    if how == "truncate":
        data = data[:at]
    elif how == "overwrite":
        junk = draw(st.binary(min_size=1, max_size=64))
        data[at : at + len(junk)] = junk
    elif how == "zeros":
        n = draw(st.integers(1, 4096))
        data[at : at + n] = bytes(min(n, len(data) - at))
    else:
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    if regz:
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    files[name] = bytes(data)
    return files


def _load_files(files: dict[str, bytes], kind: str):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        target = root / "nifti" if kind == "nifti" else root / next(iter(files))
        target.parent.mkdir(exist_ok=True) if kind != "nifti" else target.mkdir()
        for name, data in files.items():
            ((target / name) if kind == "nifti" else target).write_bytes(data)
        before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        _ok_or_input_error(lambda: io.load_example(target))
        assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("kind", ["nc", "nifti", "mat5", "mat73"])
def test_damaged_files_are_an_example_or_one_clear_error(kind, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    @FUZZ
    @given(files=damaged(kind))
    def check(files):
        _load_files(files, kind)

    check()
    gc.collect()  # once: a handle left to the collector would complain now
    assert seen == [], [str(u.exc_value) for u in seen]


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".nc", ".mat"]))
def test_random_bytes_are_one_clear_error(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"random{suffix}"
        path.write_bytes(data)
        with pytest.raises(MREInputError):
            io.load_example(path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3), max_leaves=6,
)


@FUZZ
@given(meta=st.dictionaries(
    st.sampled_from(["frequency", "density", "components", "spatial_dims", "Frequency"]),
    _JSON, max_size=4))
# found by this test (each was a raw TypeError/ValueError traceback)
@example(meta={"frequency": [None, []]})
@example(meta={"frequency": 60, "components": 5})
@example(meta={"frequency": 60, "density": "water"})
def test_random_sidecars_are_an_example_or_one_clear_error(meta):
    files = dict(VALID["nifti"])
    files["mre.json"] = json.dumps(meta).encode()
    _load_files(files, "nifti")


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def arrays(draw):
    ndim = draw(st.integers(0, 6))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    kind = draw(st.sampled_from(["complex", "float", "int", "bool", "str", "nan-ish"]))
    n = int(np.prod(shape))
    if kind == "str":
        return np.full(shape, "a")
    if kind == "bool":
        return np.ones(shape, bool)
    if kind == "int":
        return np.arange(n).reshape(shape)
    values = np.array(draw(st.lists(_FLOATS, min_size=n, max_size=n)), float).reshape(shape)
    if kind == "complex":
        return values + 1j * values[::-1] if values.ndim else values + 1j
    if kind == "nan-ish" and n:
        values.flat[draw(st.integers(0, n - 1))] = np.nan
    return values


@FUZZ
@given(
    wave=arrays(),
    frequency=st.one_of(_FLOATS, st.lists(_FLOATS, max_size=3), st.text(max_size=3)),
    spacing=st.one_of(_FLOATS, st.lists(_FLOATS, max_size=4)),
    mask=st.one_of(st.none(), arrays()),
    components=st.one_of(st.none(), st.lists(st.sampled_from("xyz"), max_size=4)),
    density=_FLOATS,
)
# found by this test: an empty spacing list was a raw numpy broadcasting error
@example(wave=np.ones((4, 4), complex), frequency=60.0, spacing=[], mask=None,
         components=None, density=1000.0)
@example(wave=np.ones((4, 4), complex), frequency=60.0, spacing=1e-3, mask=None,
         components=None, density=float("nan"))
def test_from_numpy_random_values_are_an_example_or_one_clear_error(
    wave, frequency, spacing, mask, components, density
):
    _ok_or_input_error(lambda: MREExample.from_numpy(
        wave, frequency, spacing, mre_mask=mask, components=components, density=density,
        source="fuzz",
    ))


def test_the_fuzzers_reach_valid_examples():
    """The strategies are not all-garbage: undamaged inputs load (so the tests above can
    fail by raising the wrong thing, not only pass by refusing everything)."""
    for kind in VALID:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            if kind == "nifti":
                (root / "n").mkdir()
                for name, data in VALID[kind].items():
                    (root / "n" / name).write_bytes(data)
                assert io.load_example(root / "n").n_components == 3
            else:
                path = root / next(iter(VALID[kind]))
                path.write_bytes(next(iter(VALID[kind].values())))
                assert io.load_example(path).n_components == 3

