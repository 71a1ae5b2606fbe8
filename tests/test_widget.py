"""The napari dock widgets under a real (virtual) display.

A 32×32 cylinder phantom and a tiny network keep each training run to a few seconds on a
loaded 2-core machine. Waiting is done with ``qtbot.waitUntil`` (polling), never with a
``waitSignal`` opened after ``start()``, which can miss a signal that already fired.
Every test here uses a viewer or qtbot, so conftest marks it ``gui``.
"""

import dataclasses
import json
import os
import time

import imageio.v3 as imageio
import numpy as np
import pytest
from qtpy.QtCore import QThread, QTimer

from conftest import add_example_layers
from napari_mrepinn import simulate, training, uncertainty
from napari_mrepinn._widget import InversionWidget, TrainingWidget
from napari_mrepinn.config import TrainingConfig
from napari_mrepinn.data import MREExample, MREInputError

PLUGIN = "napari-mrepinn"
RESULTS = ("wave_pred", "mu_pred", "pde_residual")


@pytest.fixture(scope="module")
def phantom() -> MREExample:
    return simulate.cylinder(shape=(32, 32), seed=0)


def _small(w: TrainingWidget, n_iters: int = 200, refresh: int = 10) -> None:
    """Settings for a run of a few seconds: a tiny network, few points."""
    w.iters.value = n_iters
    w.n_points.value = 256
    w.refresh_every.value = refresh
    w.resample_every.value = 1
    w.n_layers.value = 2
    w.n_hidden.value = 16
    w.pde_warmup_iters.value = 20
    w.pde_step_iters.value = 20
    w.seed.value = 0
    w.device.value = "cpu"


def _make_dock(make_napari_viewer, example: MREExample, show: bool = False):
    viewer = make_napari_viewer(show=show)
    add_example_layers(viewer, example)
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
    w.iters.value = 100_000  # stopped by hand below
    w.stop_tol.value = 0.0  # no converged stop: this run ends by hand
    assert w.start()
    assert w.is_running
    # two live refreshes, with a prediction that changes between them
    qtbot.waitUntil(lambda: w.n_refreshes >= 1 and "mu_pred" in viewer.layers, timeout=60_000)
    first_wave = np.array(viewer.layers["wave_pred"].data, copy=True)
    first_mu = np.array(viewer.layers["mu_pred"].data, copy=True)

    # steady state (layers exist): the shown window stays responsive (10 ms timer); this
    # includes napari's own software-GL repaints, so the strict bound is in the next test.
    # A live refresh swaps data: it must cost less than napari adding a layer (1.5x for
    # the scatter of single gaps).
    qtbot.waitUntil(lambda: w.n_refreshes >= 3, timeout=60_000)  # first paints done
    longest, n_ticks = _longest_gap(qtbot, w)
    load = _load_per_core()
    its = w.its
    unit = _layer_add_gap(qtbot, viewer, first_mu.shape)  # slows training meanwhile
    print(f"\nshown window: longest GUI gap {longest * 1e3:.0f} ms over {n_ticks} ticks "
          f"(one layer addition: {unit * 1e3:.0f} ms), {its:.0f} it/s, "
          f"load per core {load:.1f}")
    assert longest < max(_busy_bound(load), 1.5 * unit), f"load per core {load:.1f}"

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
    w.iters.value = 30
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


def _load_per_core() -> float:
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def _busy_bound(load: float) -> float:
    """Longest event-loop gap allowed beside other work: the issue's 250 ms beside a busy
    process (load per core up to ~1.5, the training thread included), stretched in
    proportion when a machine shared with more jobs gives the GUI thread less of a core."""
    return 0.25 * max(1.0, load / 1.5)


def _layer_add_gap(qtbot, viewer, shape: tuple[int, ...]) -> float:
    """The event loop's longest gap (s) while napari adds one image layer of ``shape`` to
    ``viewer`` and paints it, median of three: the unit of GUI-thread work on this machine
    now. The dock cannot make one step shorter than napari's own layer addition, and a
    fixed bound in ms fails on a slower or shared machine (CI ran this suite at half the
    speed of an idle run: 1253 s against 617 s), so the bounds below are ratios to it taken
    in the same test, as the benchmarks' are."""
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    gaps = []
    for i in range(3):
        qtbot.wait(100)
        before = len(ticks)
        layer = viewer.add_image(np.zeros(shape, np.float32), name=f"reference {i}")
        qtbot.wait(250)
        gaps.append(np.diff(ticks[before - 1 :]).max())  # from the last tick before it
        viewer.layers.remove(layer)
    timer.stop()
    qtbot.wait(100)
    return float(np.median(gaps))


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
    w.iters.value = 100_000
    w.stop_tol.value = 0.0  # no converged stop: this run ends by hand
    assert w.start()
    qtbot.waitUntil(lambda: w.n_refreshes >= 3, timeout=60_000)  # layers created
    longest, n_ticks = _longest_gap(qtbot, w)
    w.stop()
    qtbot.waitUntil(lambda: not w.is_running, timeout=20_000)
    print(f"\nlongest GUI gap {longest * 1e3:.0f} ms over {n_ticks} ticks, {w.its:.0f} it/s")
    # well below 0.1 s on a quiet machine (30-60 ms here); a machine oversubscribed by other
    # jobs (load per core > 1.5) stretches every GUI-thread operation, hence the relaxed bound
    load = _load_per_core()
    assert longest < (0.1 if load < 1.5 else _busy_bound(load)), f"load per core {load:.1f}"


def test_checkpoint_resume_continues_run(dock, qtbot, tmp_path):
    _, w = dock
    w.iters.value = 20
    w.refresh_every.value = 10
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
    w.iters.value = 40
    assert w.resume()  # continues the same run and loss curve
    assert w.wait(60)
    assert w.model.iteration == 40
    assert _curve(w.history[: len(hist)]) == _curve(hist) and len(w.history) > len(hist)
    assert max(w.loss_plot.series["loss"][0]) == 40


def test_training_error_is_notified(dock, qtbot, monkeypatch, errors):
    viewer, w = dock
    real_step = training.MREPINNModel.step

    def flaky_step(self, **kwargs):
        if self.iteration >= 25:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, **kwargs)

    monkeypatch.setattr(training.MREPINNModel, "step", flaky_step)
    w.iters.value = 100
    assert w.start()
    qtbot.waitUntil(lambda: not w.is_running, timeout=60_000)
    assert len(errors) == 1
    assert "CUDA out of memory" in errors[0] and "n_points" in errors[0]
    assert "failed" in w.status.value
    assert w.start_button.enabled and not w.stop_button.enabled
    # the last good prediction (a refresh before iteration 25) stays on screen
    qtbot.waitUntil(lambda: "mu_pred" in viewer.layers, timeout=10_000)
    assert w.results.attrs["iteration"] in (10, 20)
    assert np.isfinite(viewer.layers["mu_pred"].data).any()


def test_invalid_inputs_refused_before_start(make_napari_viewer, phantom, qtbot, errors):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "MRE-PINN training")
    _small(w)
    assert not w.start()
    assert "example layer" in errors[-1]

    add_example_layers(viewer, phantom)
    assert w.example_layer.value is viewer.layers["wave"]
    # the options are refused by TrainingConfig.check, with its messages
    checks = [
        (lambda: setattr(w.lr, "value", 0.0), "learning rate (lr) must be a positive"),
        (lambda: [setattr(w[f"{t}_weight"], "value", 0.0)
                  for t in ("wave", "elast", "pde", "anat")], "all loss weights are 0"),
        (lambda: setattr(w.anat_weight, "value", 1.0), "no anatomical image ('anat')"),
    ]
    for change, text in checks:
        _small(w)
        w.lr.value = 1e-3
        w.wave_weight.value, w.pde_weight.value, w.anat_weight.value = 1.0, 1.0, 0.0
        change()
        assert not w.start()
        assert text in errors[-1], errors[-1]
        assert not w.is_running
    _small(w)
    w.lr.value = 1e-3
    w.wave_weight.value, w.pde_weight.value, w.anat_weight.value = 1.0, 1.0, 0.0
    # more points than voxels in the mask is fine: the recipe then takes them all
    w.n_points.value = 5000
    example, config, err = w.validate()
    assert err is None and config.n_points == 5000
    w.n_points.value = 256
    w.device.choices = ["auto", "cpu", "cuda:7"]
    w.device.value = "cuda:7"
    assert not w.start()
    assert "cuda:7" in errors[-1]
    w.device.value = "cpu"

    # a multi-frequency example: a joint fit of all frequencies by default, or one of them
    wave = np.stack([phantom.wave.values, phantom.wave.values])
    multi = MREExample.from_numpy(wave, frequency=[50.0, 60.0], spacing=1e-3)
    viewer.layers.clear()
    add_example_layers(viewer, multi)
    assert w.frequency.value == "all"
    example, config, err = w.validate()
    assert err is None and list(example.frequencies) == [50.0, 60.0]
    w.frequency.value = None
    assert not w.start()
    assert "frequencies" in errors[-1] and "50, 60" in errors[-1]
    w.frequency.value = 60.0
    example, config, err = w.validate()
    assert err is None and example.frequency == 60.0
    assert not w.is_running


def test_closing_dock_while_training_stops_thread(dock, qtbot):
    viewer, w = dock
    w.iters.value = 100_000
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
    w.iters.value = 100_000
    assert w.start()
    qtbot.waitUntil(lambda: w.model is not None and w.model.iteration > 0, timeout=30_000)
    thread = w._runner._thread
    w.close()
    assert not w.is_running and thread.isFinished()


def test_programmatic_viewer_and_close_while_training(qtbot, phantom):
    import napari

    viewer = napari.Viewer(show=False)
    try:
        add_example_layers(viewer, phantom)
        _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "MRE-PINN training")
        _small(w, n_iters=30, refresh=10)
        assert w.start()
        assert w.wait(timeout=120)
        assert not w.is_running and w.last_error is None
        mu = viewer.layers["mu_pred"].data
        assert mu.shape[-2:] == (32, 32) and np.isfinite(mu).any()
        assert w.result_example["mu_pred"].attrs.get("units") == "Pa"

        # closing the viewer mid-run joins the thread (no dangling thread, no crash)
        w.iters.value = 100_000
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
    add_example_layers(viewer, phantom)
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


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_mismatch_refused_and_warm_start(dock, qtbot, tmp_path, errors):
    viewer, w = dock
    w.iters.value = 20
    assert w.start() and w.wait(60)
    path = w.save_checkpoint(tmp_path / "cyl32.pt")
    trained = {k: v.clone() for k, v in w.model.net.named_parameters()}

    # another grid: refused, with the checkpoint module's message shown
    viewer.layers.clear()
    add_example_layers(viewer, simulate.cylinder(shape=(24, 24), seed=1))
    with pytest.raises(MREInputError, match="trained on something else") as info:
        w.load_checkpoint(path)
    assert errors[-1] == str(info.value)
    assert "grid shape" in errors[-1] and "warm start" in errors[-1]

    # a warm start takes the network weights and begins a fresh run on this example
    w.warm_start.value = True
    model = w.load_checkpoint(path)
    assert model.iteration == 0 and model.history == []
    assert model.example.spatial_shape == (24, 24)
    for name, value in model.net.named_parameters():
        assert bool((value.detach().cpu() == trained[name].cpu()).all()), name
    w.iters.value = 10
    assert w.resume() and w.wait(60)
    assert w.model is model and model.iteration == 10 and w.last_error is None


# ---------------------------------------------------------------------- controls
@pytest.fixture
def bare(qtbot) -> TrainingWidget:
    """A training dock without a viewer: enough for its controls."""
    w = TrainingWidget(None)
    qtbot.addWidget(w.native)
    return w


def test_controls_are_made_from_the_option_table(bare, monkeypatch):
    from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

    from napari_mrepinn import config as cfg
    from napari_mrepinn._widget import _controls

    shown = [opt for opt in cfg.options() if opt.widget]
    assert {"pde", "iters", "lr", "pde_warmup_iters", "device"} <= {o.name for o in shown}
    for opt in shown:
        if opt.type is cfg.LossWeights:
            for term in cfg.LOSS_TERMS:
                control = bare[f"{term.name}_weight"]
                assert control.value == opt.default[term.name]
                assert term.label in control.label
            continue
        control = bare[opt.name]
        assert control.value == opt.default or (opt.default is None and control.value == -1)
        assert opt.help[1:20] in control.tooltip
        if opt.choices:
            assert isinstance(control, ComboBox) and tuple(control.choices) == opt.choices
        elif opt.type is int:
            assert isinstance(control, SpinBox)
            assert opt.minimum is None or control.min == opt.minimum
        elif opt.type is float:
            assert isinstance(control, FloatSpinBox)
    hidden = [opt.name for opt in cfg.options() if not opt.widget]
    assert hidden and not any(name in [c.name for c in bare] for name in hidden)
    assert bare.config() == cfg.TrainingConfig()

    # a new TrainingConfig field with widget=True gets its control, by type, and is read
    # back; one with widget=False does not
    @dataclasses.dataclass(frozen=True)
    class Extended(cfg.TrainingConfig):
        new_count: int = cfg._opt(7, "a new count", unit="it", minimum=1, maximum=99)
        new_flag: bool = cfg._opt(True, "a new switch", label="new flag")
        new_hidden: float = cfg._opt(1.0, "not shown", widget=False)

    monkeypatch.setattr(cfg, "TrainingConfig", Extended)
    monkeypatch.setattr(_controls, "TrainingConfig", Extended)
    made = {c.name: c for c in _controls.make_controls(Extended())}
    assert isinstance(made["new_count"], SpinBox) and made["new_count"].value == 7
    assert (made["new_count"].min, made["new_count"].max) == (1, 99)
    assert isinstance(made["new_flag"], CheckBox) and made["new_flag"].value is True
    assert "new_hidden" not in made
    made["new_count"].value, made["new_flag"].value = 12, False
    read = _controls.read_config(made, Extended(new_hidden=2.0))
    assert (read.new_count, read.new_flag, read.new_hidden) == (12, False, 2.0)


def test_config_round_trip_through_the_controls(bare, qtbot):
    from napari_mrepinn.config import TrainingConfig

    # every shown option away from its default, including values a spin box with few
    # decimals would round (1e-10) and a seed of None
    config = TrainingConfig(
        pde="helmholtz", loss_weights=(1.0, 0.5, 1e-4, 0.0), pde_warmup_iters=10,
        pde_step_iters=7, pde_init_weight=1e-10, pde_step_factor=3.5, iters=1234,
        n_points=300, lr=3e-5, lr_decay=0.25, optimizer="L-BFGS", resample_every=3,
        n_layers=3, n_hidden=24, seed=None, device="cpu", mu_tv_weight=0.5, activ="tanh",
    )
    from napari_mrepinn._widget._controls import read_config, set_controls

    set_controls(bare, config)
    assert bare.seed.value == -1 and bare.pde_init_weight.value == 1e-10
    assert read_config(bare, config) == config
    # the options without a control come from the base
    assert read_config(bare).mu_tv_weight == TrainingConfig().mu_tv_weight
    # controls -> config -> controls of another dock -> the same config
    other = TrainingWidget(None)
    qtbot.addWidget(other.native)
    set_controls(other, read_config(bare, config))
    assert read_config(other, config) == config


def test_warmup_label_shows_what_will_run(bare):
    bare.pde_warmup_iters.value = 2500
    bare.iters.value = 1200
    assert bare.warmup_note.value == "600 of 1200 iterations: capped at half the run"
    assert bare.config().warmup_iters == 600
    bare.iters.value = 6000  # not capped: nothing to say
    assert bare.warmup_note.value == ""
    bare.pde_warmup_iters.value = 4000
    assert bare.warmup_note.value == "3000 of 6000 iterations: capped at half the run"


# ---------------------------------------------------------------------- the first refresh
def test_first_live_refresh_does_not_freeze_the_gui(make_napari_viewer, qtbot, tmp_path):
    """The event loop's longest gap from Start through the first refresh (issue 10: a
    48 × 48 example opened from .nc froze the GUI for 1.4–1.5 s when the six result layers
    were added at once at the first refresh; 0.45–2.3 s on this machine)."""
    path = simulate.cylinder(shape=(48, 48), seed=0).save(tmp_path / "cyl48.nc")
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "MRE-PINN training")
    w.device.value = "cpu"
    w.iters.value = 100_000  # the recipe's network; stopped below
    qtbot.wait(300)  # the window's first paints are not the dock's doing
    unit = _layer_add_gap(qtbot, viewer, (48, 48))
    n_layers = len(viewer.layers)
    ticks: list[float] = []
    counts: set[int] = set()  # the number of layers each tick saw

    def tick() -> None:
        ticks.append(time.perf_counter())
        counts.add(len(viewer.layers))

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    qtbot.wait(50)
    t_start = time.perf_counter()
    assert w.start()
    qtbot.waitUntil(lambda: w.n_refreshes >= 1 and not w._result_layers.pending,
                    timeout=120_000)
    qtbot.wait(500)  # the paints that follow the first refresh
    timer.stop()
    w.stop()
    assert w.wait(60)
    ticks = [t for t in ticks if t >= t_start - 0.02]
    gaps = np.diff(ticks)
    load = _load_per_core()
    print(f"\nStart → first refresh: longest GUI gap {gaps.max() * 1e3:.0f} ms over "
          f"{len(gaps)} ticks (one layer addition: {unit * 1e3:.0f} ms); "
          f"load per core {load:.1f}")
    for name in (*RESULTS, "mu_ahi", "mu_diff", "wave_diff"):
        assert name in viewer.layers
    assert w._result_layers.n_added == 6
    # one layer per event-loop turn, none at once: the ticks saw every count in between
    assert set(range(n_layers, n_layers + 7)) <= counts
    # The targets: every gap under 100 ms idle and under 250 ms beside a busy
    # process. One layer addition (napari's, with its software-GL paint) is the longest
    # GUI-thread step: 90-150 ms idle here, so the idle target is out of reach while a
    # result layer is added. The old dock added six layers in one step: 0.45-2.3 s, four
    # to twenty layer additions. Bound: the 250 ms, or two layer additions on a
    # machine slow enough that one takes over 125 ms.
    assert gaps.max() < max(_busy_bound(load), 2 * unit), f"load per core {load:.1f}"


def test_joint_fit_of_a_multi_frequency_example(make_napari_viewer, qtbot):
    # the dock's default for several frequencies: one joint fit, shown with a frequency axis
    parts = [simulate.cylinder(frequency=f, shape=(24, 24)) for f in (50.0, 70.0)]
    multi = MREExample.from_numpy(
        np.stack([p.wave.values for p in parts]), frequency=[50.0, 70.0], spacing=1e-3,
        mre=np.stack([p.mre.values for p in parts]), mre_mask=parts[0].ds["mre_mask"].values,
        spatial_ndim=2)
    viewer, w = _make_dock(make_napari_viewer, multi)
    try:
        assert w.frequency.value == "all"
        w.stop_tol.value = 0.0
        _small(w, n_iters=40, refresh=20)
        assert w.start()
        qtbot.waitUntil(lambda: not w.is_running, timeout=120_000)
        assert w.last_error is None
        result = w.result_example
        assert list(result.frequencies) == [50.0, 70.0]
        assert result.ds["wave_pred"].dims == multi.ds["wave"].dims
        assert result.ds["mu_pred"].attrs["frequency"] in (50.0, 70.0)
        assert "mu_pred_f" in result.ds and "mu_alpha" in result.ds
        layer = viewer.layers["wave_pred"]
        assert layer.data.shape[0] == 2  # the frequency axis, as the input's layers have
        assert np.isfinite(viewer.layers["mu_pred"].data).any()
    finally:
        w.shutdown()


# ---------------------------------------------------------------------- ensembles
def _members(w: TrainingWidget) -> list[dict]:
    """What the worker reports after each ensemble member (results, model, completed)."""
    seen: list[dict] = []
    w._runner.member_finished.connect(seen.append)
    return seen


def _shown_kpa(example: MREExample, mu) -> np.ndarray:
    """The mu_pred layer's data for the modulus ``mu`` (|G*| in kPa, NaN outside the mask)."""
    return np.where(np.asarray(example.ds["mre_mask"]) > 0, np.abs(mu) / 1e3, np.nan).T


def test_ensemble_in_the_dock(dock, qtbot, tmp_path):
    from napari_mrepinn._writer import write_mre_example

    viewer, w = dock
    _small(w, n_iters=30, refresh=10)
    w.stop_tol.value = 0.0
    w.ensemble_members.value = 2
    members, statuses = _members(w), []
    # after the dock's own slot (Qt calls them in order): the status each report set
    w._runner.progress.connect(lambda _: statuses.append(w.status.value))
    assert w.start()
    assert w.wait(120) and w.last_error is None
    assert any(s.startswith("member 2/2 · it ") for s in statuses), statuses
    assert w.status.value.startswith("done: ensemble of 2 fits (seeds 0, 1)")
    assert [(m["member"], m["completed"], m["model"].config.seed) for m in members] == \
        [(0, True, 0), (1, True, 1)]
    result = w.result_example
    # mu_pred is the members' mean, the maps are ensemble_maps of the members' results
    maps = uncertainty.ensemble_maps([m["results"]["mu_pred"] for m in members])
    for name in ("mu_pred", "mu_spread", "mu_uncertainty"):
        np.testing.assert_allclose(result.ds[name].values, maps[name].values, rtol=1e-6)
    assert not np.allclose(result.ds["mu_pred"], members[0]["results"]["mu_pred"])
    np.testing.assert_allclose(viewer.layers["mu_pred"].data, _shown_kpa(result, maps["mu_pred"]),
                               rtol=1e-5)
    for name in ("mu_spread", "mu_uncertainty"):
        data = viewer.layers[name].data
        assert np.isfinite(data).all() and data.max() > 0  # the cylinder's mask is the grid
        assert viewer.layers[name].metadata["unit"] == "%"
    settings = json.loads(result.ds.attrs["mrepinn_settings_json"])
    assert settings["ensemble_members"] == 2 and settings["ensemble_seeds"] == [0, 1]
    assert len(settings["ensemble_seconds"]) == 2 and settings["iters"] == 30
    assert w.model is None and not w.resume_button.enabled  # no one network to continue
    assert not w.save_button.enabled and "no single network to save or resume" in w.status.value

    # File > Save of the layers writes the maps and the seeds
    path = write_mre_example(tmp_path / "ens.nc",
                             [layer.as_layer_data_tuple() for layer in viewer.layers])
    saved = MREExample.load(path[0])
    assert {"mu_spread", "mu_uncertainty"} <= set(saved.ds.data_vars)
    np.testing.assert_allclose(saved.ds["mu_pred"].values, maps["mu_pred"].values, rtol=1e-6)
    assert json.loads(saved.ds.attrs["mrepinn_settings_json"])["ensemble_seeds"] == [0, 1]

    # a single fit next: the ensemble's maps go (they do not describe its mu_pred)
    w.ensemble_members.value = 1
    assert w.start() and w.wait(120)
    assert "mu_spread" not in viewer.layers and "mu_uncertainty" not in viewer.layers
    # nor in the example behind the layers, which File > Save writes
    path = write_mre_example(tmp_path / "single.nc",
                             [layer.as_layer_data_tuple() for layer in viewer.layers])
    assert not {"mu_spread", "mu_uncertainty"} & set(MREExample.load(path[0]).ds.data_vars)
    assert w.status.value.startswith("done: iteration 30")


def test_stopping_an_ensemble_keeps_the_finished_member(dock, qtbot, monkeypatch):
    viewer, w = dock
    real_step = training.MREPINNModel.step

    def slow_after_the_first(self, **kwargs):  # members 2 and 3 outlast any poll
        if self.config.seed > 0:
            time.sleep(0.05)
        return real_step(self, **kwargs)

    monkeypatch.setattr(training.MREPINNModel, "step", slow_after_the_first)
    _small(w, n_iters=30, refresh=10)
    w.stop_tol.value = 0.0
    w.ensemble_members.value = 3
    members = _members(w)
    assert w.start()
    qtbot.waitUntil(lambda: w.model is not None and w.model.config.seed == 1
                    and w.model.iteration >= 2, timeout=60_000)
    assert w.status.value.startswith("member 2/3")
    w.stop()
    assert w.wait(60) and not w.is_running
    assert [(m["member"], m["completed"]) for m in members] == [(0, True), (1, False)]
    assert w.status.value.startswith("stopped in member 2/3: showing member 1 (seed 0)")
    first = members[0]["results"]["mu_pred"]
    result = w.result_example
    np.testing.assert_allclose(result.ds["mu_pred"].values, first.values)
    np.testing.assert_allclose(viewer.layers["mu_pred"].data, _shown_kpa(result, first),
                               rtol=1e-5)
    assert "mu_spread" not in viewer.layers and "mu_uncertainty" not in result.ds
    assert json.loads(result.ds.attrs["mrepinn_config_json"])["seed"] == 0
    assert w.model is members[0]["model"] and w.model.iteration == 30  # Resume continues it


def test_one_ensemble_member_is_the_single_fit(dock, qtbot, tmp_path):
    viewer, w = dock
    assert w.ensemble_members.value == 1 and w.config().ensemble_members == 1
    assert "ensemble members" in w.ensemble_members.label
    _small(w, n_iters=30, refresh=10)
    members, statuses = _members(w), []
    # after the dock's own slot (Qt calls them in order): the status each report set
    w._runner.progress.connect(lambda _: statuses.append(w.status.value))
    assert w.start() and w.wait(120) and w.last_error is None
    # the worker reports the one model it trained (its training time), not an ensemble
    assert [(m["member"], m["members"]) for m in members] == [(0, 1)]
    assert not any("member" in s for s in statuses)
    assert w.status.value.startswith("done: iteration 30")
    assert w.model is not None and w.model.config.seed == 0 and w.resume_button.enabled
    result = w.result_example
    assert "mu_spread" not in result.ds and "mu_uncertainty" not in result.ds
    assert "mu_spread" not in viewer.layers and "mu_uncertainty" not in viewer.layers
    assert result.ds.attrs["mrepinn_iteration"] == 30
    np.testing.assert_allclose(result.ds["mu_pred"].values, w.results["mu_pred"].values)
    # the run record fit writes, so a result saved from the dock says how it was made
    assert TrainingConfig.from_json(result.ds.attrs["mrepinn_config_json"]) == w.model.config
    settings = json.loads(result.ds.attrs["mrepinn_settings_json"])
    assert settings["iters"] == 30 and settings["seconds"] == pytest.approx(
        members[0]["seconds"], abs=1e-3)
    assert len(json.loads(result.ds.attrs["mrepinn_history_json"])) == len(w.model.history) > 0
    # File > Save of the layers keeps it
    from napari_mrepinn._writer import write_mre_example
    from napari_mrepinn.recipe import result_config

    path = write_mre_example(tmp_path / "one.nc",
                             [layer.as_layer_data_tuple() for layer in viewer.layers])
    assert result_config(MREExample.load(path[0])) == w.model.config

    # Resume continues the model: its record counts both runs
    w.iters.value = 40
    assert w.resume() and w.wait(120) and w.last_error is None
    assert len(members) == 2 and members[1]["model"] is w.model
    settings = json.loads(w.result_example.ds.attrs["mrepinn_settings_json"])
    assert settings["iters"] == 40 and settings["seconds"] == pytest.approx(
        members[0]["seconds"] + members[1]["seconds"], abs=1e-3)


def test_the_readme_notebook_example_runs(make_napari_viewer, monkeypatch):
    # the README's "from a script or notebook" block, as written (with fewer iterations and
    # the test's viewer): a control renamed in the dock must be renamed there too
    from pathlib import Path

    import napari

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (code,) = [b for b in blocks if "add_plugin_dock_widget" in b]
    assert "widget.iters.value = 2000" in code
    monkeypatch.setattr(napari, "Viewer", lambda show=False: make_napari_viewer(show=show))
    scope: dict = {}
    exec(code.replace("value = 2000", "value = 20"), scope)
    widget, mu = scope["widget"], scope["mu"]
    try:
        assert widget.last_error is None and widget.model.iteration == 20
        assert mu.shape == scope["viewer"].layers["mre"].data.shape and np.nanmax(mu) > 0
    finally:
        widget.shutdown()
