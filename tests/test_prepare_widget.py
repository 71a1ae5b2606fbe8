"""The "Prepare MRE data" dock: a simulated DICOM exam to layers the other docks use."""

import numpy as np
import pytest

from napari_mrepinn import acquisition as aq
from napari_mrepinn import simulate
from napari_mrepinn._prepare_widget import PrepareWidget
from napari_mrepinn._widget import InversionWidget, example_layers

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def exam(tmp_path_factory):
    ph = simulate.cylinder(shape=(24, 20))
    acq = aq.acquire(ph, n_offsets=4)
    folder = tmp_path_factory.mktemp("dock_exam")
    aq.write_dicom(acq, folder)
    return folder, ph


def test_prepare_dock_shows_the_steps_and_feeds_the_inversion(make_napari_viewer, exam, errors):
    folder, ph = exam
    viewer = make_napari_viewer()
    w = PrepareWidget(viewer)
    w.folder.value = str(folder)
    w.frequency.value = "60"
    w.directions.value = "z"
    ex = w.run()
    assert ex is not None and not errors
    names = [layer.name for layer in viewer.layers]
    for name in ("wrapped phase", "unwrapped phase", "anat", "wave", "mre_mask"):
        assert name in names
    # (series, offset, z, y, x)
    assert viewer.layers["wrapped phase"].data.shape == (1, 4, 1, 20, 24)
    assert "wraps found" in w.summary.value
    a, b = ex.wave.values[:, :, 0, 0].ravel(), ph.wave.values[..., 0].ravel()
    assert abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.999
    # the training and inversion docks find the example
    assert [layer.name for layer in example_layers(viewer)] == ["wave"]
    inv = InversionWidget(viewer)
    assert inv.run() is not None and "mu_ahi" in [layer.name for layer in viewer.layers]

    # other options, same dock: the layers are replaced, not duplicated
    w.unwrap.value = "skimage"
    w.show_steps.value = False
    assert w.run() is not None
    names = [layer.name for layer in viewer.layers]
    assert names.count("wave") == 1 and "wrapped phase" not in names


def test_prepare_dock_reports_bad_input(make_napari_viewer, exam, errors, qtbot):
    folder, _ = exam
    viewer = make_napari_viewer()
    w = PrepareWidget(viewer)
    w.folder.value = str(folder)
    w.directions.value = "z"
    assert w.start()  # in a worker thread
    qtbot.waitUntil(lambda: not w.is_running, timeout=60_000)
    assert len(errors) == 1 and "frequency is missing" in errors[0]
    assert w.status.value == "failed" and len(viewer.layers) == 0
