"""The napari dock widgets under a real (virtual) display.

A 32×32 cylinder phantom and a tiny network keep each training run to a few seconds on a
loaded 2-core machine. Waiting is done with ``qtbot.waitUntil`` (polling), never with a
``waitSignal`` opened after ``start()``, which can miss a signal that already fired.
"""

import os
import time

import imageio.v3 as imageio
import numpy as np
import pytest
from qtpy.QtCore import QThread, QTimer

from napari_mrepinn import _layers, simulate, training
from napari_mrepinn._widget import InversionWidget, TrainingWidget
from napari_mrepinn.data import MREExample

pytestmark = pytest.mark.gui

PLUGIN = "napari-mrepinn"
RESULTS = ("wave_pred", "mu_pred", "pde_residual")


@pytest.fixture(scope="module")
def phantom() -> MREExample:
    return simulate.cylinder(shape=(32, 32), seed=0)


def _add_example(viewer, example: MREExample) -> None:
    """Add an example's layers the way the reader and the sample data do."""
    from napari.layers import Layer

    for data, kwargs, layer_type in _layers.example_to_layer_data(example):
        viewer.add_layer(Layer.create(data, kwargs, layer_type))


def _small(w: TrainingWidget, n_iters: int = 200, refresh: int = 10) -> None:
    """Settings for a run of a few seconds: a tiny network, few points."""
    w.n_iters.value = n_iters
    w.n_points.value = 256
    w.refresh_period.value = refresh
    w.resample_period.value = 1
    w.n_layers.value = 2
    w.n_hidden.value = 16
    w.pde_warmup_iters.value = 20
    w.pde_step_iters.value = 20
    w.seed.value = 0
    w.device.value = "cpu"


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Messages passed to napari's show_error (the widget looks it up at call time)."""
    import napari.utils.notifications as notifications

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda msg, *a, **k: seen.append(msg))
    return seen


def _make_dock(make_napari_viewer, example: MREExample, show: bool = False):
    viewer = make_napari_viewer(show=show)
    _add_example(viewer, example)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "MRE-PINN training")
    assert isinstance(widget, TrainingWidget)
    _small(widget)
    return viewer, widget


@pytest.fixture
def dock(make_napari_viewer, phantom):
    viewer, widget = _make_dock(make_napari_viewer, phantom)
    yield viewer, widget
    widget.shutdown()  # never leave a thread behind a failed test


@pytest.fixture
def shown_dock(make_napari_viewer, phantom):
    # a shown window: the canvas really paints (screenshots, realistic GUI load)
    viewer, widget = _make_dock(make_napari_viewer, phantom, show=True)
    yield viewer, widget
    widget.shutdown()


def _layer_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


def test_live_training_pause_resume_stop_restart(shown_dock, qtbot, tmp_path):
    viewer, w = shown_dock
    assert w.example_layer.value is viewer.layers["wave"]
    w.n_iters.value = 100_000  # stopped by hand below
    assert w.start()
    assert w.is_running
    # two live refreshes, with a prediction that changes between them
    qtbot.waitUntil(lambda: w.n_refreshes >= 1 and "mu_pred" in viewer.layers, timeout=60_000)
    first_wave = np.array(viewer.layers["wave_pred"].data, copy=True)
    first_mu = np.array(viewer.layers["mu_pred"].data, copy=True)

    # steady state (layers exist): the shown window stays responsive (10 ms timer); this
    # includes napari's own software-GL repaints, so the strict bound is in the next test
    qtbot.waitUntil(lambda: w.n_refreshes >= 3, timeout=60_000)  # first paints done
    longest, n_ticks = _longest_gap(qtbot, w)
    print(f"\nshown window: longest GUI gap {longest * 1e3:.0f} ms over {n_ticks} ticks, "
          f"{w.its:.0f} it/s")
    assert longest < 0.25

    assert not np.allclose(viewer.layers["mu_pred"].data, first_mu, equal_nan=True)
    assert viewer.layers["wave_pred"].data.shape == first_wave.shape
    assert w.iteration >= 20 and w.its > 0
    assert "it/s" in w.status.value
    assert 0 < w.progress_bar.value <= w.iteration

    # pause: the iteration stops advancing
    w.pause()
    qtbot.waitUntil(lambda: w.is_paused, timeout=10_000)
    frozen = w.model.iteration
    qtbot.wait(300)
    assert w.model.iteration == frozen and w.is_running
    assert "paused" in w.status.value
    # a checkpoint while paused
    path = w.save_checkpoint(tmp_path / "mid.pt")
    # resume
    w.resume()
    qtbot.waitUntil(lambda: w.model.iteration > frozen + 2, timeout=20_000)
    # stop: takes effect within one iteration
    w.stop()
    at_stop = w.model.iteration
    qtbot.waitUntil(lambda: not w.is_running, timeout=20_000)
    assert w.model.iteration <= at_stop + 1
    assert w.loss_plot.n_draws >= 1 and w.loss_plot.series
    assert len(w.history) >= 2
    assert w.result_example is not None and "mu_pred" in w.result_example

    # restart from scratch: same layers, no duplicates
    before = _layer_names(viewer)
    w.n_iters.value = 30
    assert w.start()
    qtbot.waitUntil(lambda: not w.is_running, timeout=60_000)
    assert w.model.iteration == 30 and w.progress_bar.value == 30
    names = _layer_names(viewer)
    assert sorted(names) == sorted(before)
    assert len(names) == len(set(names))
    for name in RESULTS:
        assert name in names

    # the overlay on screen: a non-empty image with coloured pixels in the masked region
    img = viewer.screenshot(canvas_only=True, flash=False)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    rgb = img[..., :3].astype(int)
    coloured = (np.abs(rgb[..., 0] - rgb[..., 1]) > 20) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 20)
    h, wd = coloured.shape
    centre = coloured[h // 3 : 2 * h // 3, wd // 3 : 2 * wd // 3]
    assert centre.mean() > 0.2  # the cylinder phantom's mask covers the whole grid
    # kept as evidence of what was drawn (MREPINN_TEST_ARTIFACTS=dir keeps it after the run)
    out_dir = os.environ.get("MREPINN_TEST_ARTIFACTS", str(tmp_path))
    os.makedirs(out_dir, exist_ok=True)
    shot = os.path.join(out_dir, "training_overlay.png")
    imageio.imwrite(shot, img)
    np.testing.assert_array_equal(imageio.imread(shot), img)
    assert path.endswith("mid.pt")


def _curve(history: list[dict]) -> list[tuple[float, float]]:
    return [(r["iteration"], r["loss"]) for r in history]


def _longest_gap(qtbot, w: TrainingWidget) -> tuple[float, int]:
    """Longest interval between ticks of a 10 ms QTimer over >= 1.5 s and 3 refreshes."""
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    n0 = w.n_refreshes
    qtbot.wait(1500)
    qtbot.waitUntil(lambda: w.n_refreshes >= n0 + 3, timeout=60_000)
    timer.stop()
    gaps = np.diff(ticks)
    assert len(gaps) > 10
    return float(gaps.max()), len(gaps)


def test_gui_responsive_while_training(dock, qtbot):
    """The worker never blocks the GUI thread: layer and plot updates are all it does."""
    _, w = dock
    w.n_iters.value = 100_000
    assert w.start()
    qtbot.waitUntil(lambda: w.n_refreshes >= 3, timeout=60_000)  # layers created
    longest, n_ticks = _longest_gap(qtbot, w)
    w.stop()
    qtbot.waitUntil(lambda: not w.is_running, timeout=20_000)
    print(f"\nlongest GUI gap {longest * 1e3:.0f} ms over {n_ticks} ticks, {w.its:.0f} it/s")
    # well below 0.1 s on a quiet machine (30-60 ms here); a machine oversubscribed by other
    # jobs (load per core > 1.5) stretches every GUI-thread operation, hence the relaxed bound
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    assert longest < (0.1 if load < 1.5 else 0.25), f"load per core {load:.1f}"


def test_checkpoint_resume_continues_run(dock, qtbot, tmp_path):
    _, w = dock
    w.n_iters.value = 20
    w.refresh_period.value = 10
    assert w.start()
    assert w.wait(60)
    assert w.model.iteration == 20
    hist = w.history
    path = w.save_checkpoint(tmp_path / "run.pt")

    w.n_hidden.value = 8  # the checkpoint's own architecture must win
    model = w.load_checkpoint(path)
    assert w.n_hidden.value == 16
    assert model.iteration == 20 and w.model is model
    assert _curve(w.history) == _curve(hist)
    w.n_iters.value = 40
    assert w.resume()  # continues the same run and loss curve
    assert w.wait(60)
    assert w.model.iteration == 40
    assert _curve(w.history[: len(hist)]) == _curve(hist) and len(w.history) > len(hist)
    assert max(w.loss_plot.series["loss"][0]) == 40


def test_training_error_is_notified(dock, qtbot, monkeypatch, errors):
    viewer, w = dock
    real_step = training.MREPINNModel._step

    def flaky_step(self):
        if self.iteration >= 25:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self)

    monkeypatch.setattr(training.MREPINNModel, "_step", flaky_step)
    w.n_iters.value = 100
    assert w.start()
    qtbot.waitUntil(lambda: not w.is_running, timeout=60_000)
    assert len(errors) == 1
    assert "CUDA out of memory" in errors[0] and "n_points" in errors[0]
    assert "failed" in w.status.value
    assert w.start_button.enabled and not w.stop_button.enabled
    # the last good prediction (a refresh before iteration 25) stays on screen
    assert "mu_pred" in viewer.layers
    assert w.results.attrs["iteration"] in (10, 20)
    assert np.isfinite(viewer.layers["mu_pred"].data).any()


def test_invalid_inputs_refused_before_start(make_napari_viewer, phantom, qtbot, errors):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "MRE-PINN training")
    _small(w)
    assert not w.start()
    assert "example layer" in errors[-1]

    _add_example(viewer, phantom)
    assert w.example_layer.value is viewer.layers["wave"]
    checks = [
        (lambda: setattr(w.n_points, "value", 5000), "larger than the 1024 voxels"),
        (lambda: setattr(w.refresh_period, "value", 0), "refresh"),
        (lambda: setattr(w.lr, "value", 0.0), "learning rate"),
    ]
    for change, text in checks:
        _small(w)
        w.lr.value = 1e-3
        change()
        assert not w.start()
        assert text in errors[-1], errors[-1]
        assert not w.is_running
    _small(w)
    w.lr.value = 1e-3
    w.device.choices = ["cpu", "cuda:7"]
    w.device.value = "cuda:7"
    assert not w.start()
    assert "cuda:7" in errors[-1]
    w.device.value = "cpu"

    # a multi-frequency example needs a frequency
    wave = np.stack([phantom.wave.values, phantom.wave.values])
    multi = MREExample.from_numpy(wave, frequency=[50.0, 60.0], spacing=1e-3)
    viewer.layers.clear()
    _add_example(viewer, multi)
    assert w.frequency.value is None
    assert not w.start()
    assert "frequencies" in errors[-1] and "50, 60" in errors[-1]
    w.frequency.value = 60.0
    example, _, err = w.validate()
    assert err is None and example.frequency == 60.0
    assert not w.is_running


def test_closing_dock_while_training_stops_thread(dock, qtbot):
    viewer, w = dock
    w.n_iters.value = 100_000
    assert w.start()
    qtbot.waitUntil(lambda: w.iteration > 0 or w.model is not None, timeout=30_000)
    thread = w._runner._thread
    assert thread is not None and thread.isRunning()
    viewer.window.remove_dock_widget(w.native)
    assert not w.is_running
    assert thread.isFinished()
    w.close()  # closing the (undocked) widget afterwards is harmless


def test_widget_close_while_training_stops_thread(dock, qtbot):
    _, w = dock
    w.n_iters.value = 100_000
    assert w.start()
    qtbot.waitUntil(lambda: w.model is not None and w.model.iteration > 0, timeout=30_000)
    thread = w._runner._thread
    w.close()
    assert not w.is_running and thread.isFinished()


def test_programmatic_viewer_and_close_while_training(qtbot, phantom):
    import napari

    viewer = napari.Viewer(show=False)
    try:
        _add_example(viewer, phantom)
        _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "MRE-PINN training")
        _small(w, n_iters=30, refresh=10)
        assert w.start()
        assert w.wait(timeout=120)
        assert not w.is_running and w.last_error is None
        mu = viewer.layers["mu_pred"].data
        assert mu.shape[-2:] == (32, 32) and np.isfinite(mu).any()
        assert w.result_example["mu_pred"].attrs.get("units") == "Pa"

        # closing the viewer mid-run joins the thread (no dangling thread, no crash)
        w.n_iters.value = 100_000
        assert w.start()
        qtbot.waitUntil(lambda: w.model is not None and w.model.iteration > 0, timeout=30_000)
        thread = w._runner._thread
        viewer.close()
        assert not w.is_running
        assert thread.isFinished()
        assert isinstance(thread, QThread)
    finally:
        viewer.close()


def test_inversion_widget(make_napari_viewer, phantom, errors):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Direct inversion (AHI/MDEV)")
    assert isinstance(w, InversionWidget)
    assert w.run() is None and errors  # no example yet
    _add_example(viewer, phantom)
    w.method.value = "AHI"
    w.smoothing.value = "gaussian"
    mu = w.run()
    assert mu is not None and "mu_ahi" in viewer.layers
    inside = np.abs(mu.values)
    assert np.median(inside) == pytest.approx(3000, rel=0.5)  # background 3 kPa
    w.method.value = "MDEV"
    w.run()
    w.run()  # again: updated in place
    names = _layer_names(viewer)
    assert names.count("mu_mdev") == 1 and names.count("mu_ahi") == 1
