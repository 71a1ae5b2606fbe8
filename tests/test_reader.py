"""The napari reader: which paths it claims, the layers it makes, and how errors reach the user."""

from __future__ import annotations

import re
import traceback

import numpy as np
import pytest

from napari_mrepinn import io
from napari_mrepinn._reader import napari_get_reader
from napari_mrepinn.data import MREExample, MREInputError

PLUGIN = "napari-mrepinn"


def small_example(rng: np.random.Generator) -> MREExample:
    nx, ny, nz = 6, 5, 3
    w = rng.normal(size=(nx, ny, nz, 3)) + 1j * rng.normal(size=(nx, ny, nz, 3))
    mask = np.ones((nx, ny, nz), int)
    mask[0] = 0
    return MREExample.from_numpy(
        w,
        frequency=90.0,
        spacing=(1e-3, 1.5e-3, 2e-3),
        mre=np.full((nx, ny, nz), 3000 + 300j),
        mre_mask=mask,
        anat=rng.random((nx, ny, nz)),
        components=["y", "x", "z"],
    )


def _write(kind: str, ex: MREExample, tmp_path):
    if kind == "nc":
        return ex.save(tmp_path / "ex.nc")
    if kind == "nifti_real_imag":
        return io.save_nifti_folder(ex, tmp_path / "mre_ri")
    if kind == "nifti_mag_phase":
        return io.save_nifti_folder(ex, tmp_path / "mre_mp", parts="mag_phase")
    if kind == "nifti_file":
        return io.save_nifti_folder(ex, tmp_path / "mre_f") / "wave_real.nii.gz"
    if kind == "mat5":
        return io.save_mat(ex, tmp_path / "ex5.mat", version="5")
    if kind == "mat73":
        return io.save_mat(ex, tmp_path / "ex73.mat", version="7.3")
    raise ValueError(kind)


KINDS = ["nc", "nifti_real_imag", "nifti_mag_phase", "nifti_file", "mat5", "mat73"]


# ---------------------------------------------------------------------- claiming
def test_get_reader_claims_only_mre_paths(tmp_path, rng):
    ex = small_example(rng)
    for kind in KINDS:
        assert callable(napari_get_reader(str(_write(kind, ex, tmp_path)))), kind
    (tmp_path / "image.tif").write_bytes(b"II*\x00")
    assert napari_get_reader(str(tmp_path / "image.tif")) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(plain / "t1.nii.gz"))
    # a folder or a NIfTI file without wave*.nii is someone else's (napari's builtins)
    assert napari_get_reader(str(plain)) is None
    assert napari_get_reader(str(plain / "t1.nii.gz")) is None
    assert napari_get_reader(str(tmp_path / "missing_folder")) is None
    # one example per path: a stack of two files is not ours
    assert napari_get_reader([str(tmp_path / "ex.nc"), str(tmp_path / "ex5.mat")]) is None
    assert callable(napari_get_reader([str(tmp_path / "ex.nc")]))


# ---------------------------------------------------------------------- viewer.open
@pytest.mark.parametrize("kind", KINDS)
def test_open_each_kind(make_napari_viewer, tmp_path, rng, kind):
    ex = small_example(rng)
    path = _write(kind, ex, tmp_path)
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin=PLUGIN)
    assert [lyr.name for lyr in layers] == ["anat", "wave", "mre", "mre_mask"]
    wave = viewer.layers["wave"]
    # napari order (component, z, y, x); scale in mm; real part as float32
    assert wave.data.shape == (3, 3, 5, 6)
    assert wave.data.dtype == np.float32
    np.testing.assert_allclose(wave.scale, [1.0, 2.0, 1.5, 1.0])
    assert tuple(wave.axis_labels) == ("component", "z", "y", "x")
    got = wave.metadata["mre_example"]
    assert isinstance(got, MREExample)
    np.testing.assert_allclose(got.ds["wave"].values, ex.ds["wave"].values, atol=1e-5)
    assert got.frequency == 90.0
    np.testing.assert_allclose(
        wave.data, np.real(ex.ds["wave"].transpose("component", "z", "y", "x").values), atol=1e-5
    )
    mre = viewer.layers["mre"]
    assert mre.data.dtype == np.float32
    np.testing.assert_allclose(mre.data, abs(3000 + 300j) / 1e3, rtol=1e-5)  # kPa
    assert viewer.layers["mre_mask"].data.dtype == np.int32
    assert viewer.layers["mre_mask"].metadata["mre_example"] is got
    assert viewer.dims.axis_labels[-2:] == ("y", "x")


# ---------------------------------------------------------------------- errors
def _malformed(kind: str, tmp_path, rng):
    ex = small_example(rng)
    if kind == "nc":
        good = ex.save(tmp_path / "good.nc").read_bytes()
        (tmp_path / "bad.nc").write_bytes(good[: len(good) // 3])
        return tmp_path / "bad.nc", r"bad\.nc: not a readable NetCDF"
    if kind == "mat5":
        (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage" + b"\x00" * 200)
        return tmp_path / "bad.mat", r"bad\.mat: not a readable MATLAB file"
    if kind == "mat73":
        good = io.save_mat(ex, tmp_path / "good73.mat", version="7.3").read_bytes()
        (tmp_path / "bad73.mat").write_bytes(good[:2000])
        return tmp_path / "bad73.mat", r"bad73\.mat"
    if kind == "nifti_no_frequency":
        folder = io.save_nifti_folder(ex, tmp_path / "nofreq")
        (folder / "mre.json").unlink()
        return folder, r"nofreq: the vibration frequency is missing"
    if kind == "nifti_shapes":
        import nibabel as nib

        folder = io.save_nifti_folder(ex, tmp_path / "shapes")
        nib.save(
            nib.Nifti1Image(np.ones((4, 4, 3), np.int16), np.eye(4)), str(folder / "mask.nii.gz")
        )
        return folder, r"mask\.nii\.gz: shape \(4, 4, 3\) does not match"
    raise ValueError(kind)


MALFORMED = ["nc", "mat5", "mat73", "nifti_no_frequency", "nifti_shapes"]


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_file_raises_clear_error(make_napari_viewer, tmp_path, rng, kind):
    """viewer.open(..., plugin=...) in a script raises our MREInputError unchanged."""
    path, message = _malformed(kind, tmp_path, rng)
    assert callable(napari_get_reader(str(path)))  # ours: claimed, then reported
    viewer = make_napari_viewer()
    with pytest.raises(MREInputError, match=message):
        viewer.open(path, plugin=PLUGIN)
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("kind", ["mat5", "nifti_no_frequency"])
def test_malformed_file_in_gui_becomes_notification(
    make_napari_viewer, tmp_path, rng, monkeypatch, kind
):
    """Drag-and-drop and File › Open go through ``QtViewer._qt_open`` with plugin=None.

    A .mat file has only our reader: napari re-raises a ReaderPluginError. A folder is
    also claimed by napari's builtins, so napari asks which reader to use (we answer
    "MRE-PINN" in place of the user) and then raises our MREInputError. In the GUI the Qt
    exception hook hands it to napari's notification manager; we make that hand-off and
    check that the user gets an error notification with our message.
    """
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.errors import ReaderPluginError
    from napari.utils.notifications import NotificationSeverity, notification_manager

    asked: list[str] = []

    def choose_us(self):
        asked.append(self._current_file)
        return "MRE-PINN", False

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", choose_us)
    path, message = _malformed(kind, tmp_path, rng)
    viewer = make_napari_viewer()
    # .mat: napari wraps our error in a ReaderPluginError; folder: after the choice napari
    # opens with plugin="napari-mrepinn", which lets our MREInputError through unchanged
    expected = MREInputError if kind.startswith("nifti") else ReaderPluginError
    with pytest.raises(expected) as info:
        viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    # only the folder (two candidate readers) asks for a choice
    assert len(asked) == (1 if kind.startswith("nifti") else 0)
    records: list = []
    notification_manager.notification_ready.connect(records.append)
    try:
        err = info.value
        notification_manager.receive_error(type(err), err, err.__traceback__)
    finally:
        notification_manager.notification_ready.disconnect(records.append)
    assert records, "the error must reach the user as a notification"
    severity, text = records[-1].severity, records[-1].message
    # the exception chain holds frames that reference the QtViewer: release them so the
    # fixture's leak check passes
    _release(err)
    del err, info, records
    assert severity == NotificationSeverity.ERROR
    assert re.search(message, text), text
    assert len(viewer.layers) == 0


def _release(exc: BaseException | None) -> None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
            exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def test_foreign_paths_not_opened(make_napari_viewer, tmp_path):
    """Files and folders that are not MRE data are refused, not opened as empty."""
    import nibabel as nib

    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(plain / "t1.nii.gz"))
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match=r"not a compatible reader"):
        viewer.open(tmp_path / "notes.csv", plugin=PLUGIN)
    # our patterns match a folder, but get_reader declines one without wave*.nii
    with pytest.raises(ValueError, match=r"refused the file"):
        viewer.open(plain, plugin=PLUGIN)
    assert len(viewer.layers) == 0


def test_the_manifest_lists_every_registered_reader_pattern():
    """Adding a format is one registry entry and the manifest (and this test says so)."""
    from pathlib import Path

    import yaml

    from napari_mrepinn.io import READERS

    manifest = yaml.safe_load((Path(__file__).parents[1] / "napari.yaml").read_text())
    patterns = set(manifest["contributions"]["readers"][0]["filename_patterns"])
    for reader in READERS:
        assert set(reader.patterns) <= patterns, reader.name
