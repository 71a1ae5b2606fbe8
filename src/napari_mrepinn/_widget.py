"""napari dock widgets: MRE-PINN training and direct inversion (AHI / MDEV).

:class:`TrainingWidget` trains the Qt-free ``MREPINNModel`` of :mod:`napari_mrepinn.training`
in a QThread worker (see :mod:`napari_mrepinn._worker`) and shows its predictions live in
the viewer. Everything napari-side (layers, the plot, notifications) happens in the GUI
thread, in slots fed by the worker's signals.

Scripting::

    viewer = napari.Viewer(show=False)
    viewer.open_sample("napari-mrepinn", "four_target")
    _, w = viewer.window.add_plugin_dock_widget("napari-mrepinn", "MRE-PINN training")
    w.n_iters.value = 500
    w.start()
    w.wait()
    mu = viewer.layers["mu_pred"].data

The viewer parameter is annotated ``"napari.viewer.Viewer"`` on purpose: napari only
injects the viewer into dock widgets for that exact annotation (or a parameter named
``napari_viewer``). This module therefore avoids ``from __future__ import annotations``.
"""

import contextlib
import inspect
import math
import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QCoreApplication, QEvent, QObject

from ._loss_plot import LossPlot, loss_components
from ._worker import TrainingRunner, TrainingWorker
from .data import MREExample, MREInputError

if TYPE_CHECKING:  # pragma: no cover
    import napari
    import xarray as xr

__all__ = ["InversionWidget", "TrainingWidget", "core_defaults", "example_layers"]

PDE_CHOICES = ("helmholtz", "hetero", "general")
OPTIMIZER_CHOICES = ("adam", "L-BFGS")
_RESULT_LAYER_NAMES = {
    "wave_pred", "mu_pred", "pde_residual", "mu_ahi", "mu_mdev", "wave_diff", "mu_diff",
    "kmdev_speed",
}

# used only where the core does not say (its signatures are read at widget creation)
_FALLBACK_DEFAULTS: dict[str, Any] = {
    "pde": "helmholtz",
    "loss_weights": (1.0, 0.0, 1e-4, 0.0),
    "pde_warmup_iters": 10_000,
    "pde_step_iters": 5_000,
    "pde_init_weight": 1e-10,
    "pde_step_factor": 10.0,
    "n_points": 1024,
    "lr": 1e-4,
    "lr_decay": 1.0,
    "optimizer": "adam",
    "n_iters": 100_000,
    "resample_period": 10,
    "test_every": 1_000,
    "display_every": 50,
    "n_layers": 5,
    "n_hidden": 128,
    "seed": None,
    "device": None,
}


# ---------------------------------------------------------------------- helpers
def _error(message: str) -> None:
    # looked up at call time so tests can monkeypatch napari.utils.notifications.show_error
    from napari.utils import notifications

    notifications.show_error(message)


def _info(message: str) -> None:
    from napari.utils import notifications

    notifications.show_info(message)


def _signature_defaults(func: Any) -> dict[str, Any]:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    return {
        name: p.default
        for name, p in params.items()
        if p.default is not inspect.Parameter.empty
    }


def core_defaults() -> dict[str, Any]:
    """The training defaults of the core (those of ``training.fit``), by name.

    Read from ``training.fit``'s signature, ``training.DEFAULTS``, ``DEFAULT_ITERS``,
    ``DEFAULT_LR`` and ``MREPINNModel``'s signature, so the widget follows the core.

    Returns
    -------
    dict
        Keys of ``_FALLBACK_DEFAULTS``.
    """
    out = dict(_FALLBACK_DEFAULTS)
    try:
        from . import training
    except ImportError:  # the core is broken or missing: documented fallbacks
        return out
    fit = _signature_defaults(getattr(training, "fit", None))
    model = _signature_defaults(getattr(training, "MREPINNModel", None))
    opts = dict(getattr(training, "DEFAULTS", {}))
    for key in ("pde", "n_points", "seed", "device"):
        if key in fit:
            out[key] = fit[key]
    if fit.get("loss_weights") is None and "loss_weights" in model:
        out["loss_weights"] = tuple(model["loss_weights"])
    for key in ("pde_warmup_iters", "pde_step_iters", "pde_init_weight", "pde_step_factor",
                "n_layers", "n_hidden", "test_every", "display_every"):
        if key in opts:
            out[key] = opts[key]
    if "resample_every" in opts:
        out["resample_period"] = opts["resample_every"]
    if "lr_decay" in opts:
        out["lr_decay"] = opts["lr_decay"]
    out["n_iters"] = int(getattr(training, "DEFAULT_ITERS", out["n_iters"]))
    out["lr"] = float(getattr(training, "DEFAULT_LR", out["lr"]))
    return out


def example_layers(viewer: Any) -> list[Any]:
    """Input layers of ``viewer`` that carry an :class:`MREExample`, one per example.

    Result layers (``mu_pred``...) also carry an example, but training on them would make no
    sense, so they are skipped; of the layers showing one example, ``wave`` is preferred.
    """
    if viewer is None:
        return []
    chosen: dict[int, Any] = {}
    for layer in viewer.layers:
        ex = layer.metadata.get("mre_example")
        if not isinstance(ex, MREExample):
            continue
        if layer.metadata.get("mre_variable") in _RESULT_LAYER_NAMES:
            continue
        key = id(ex)
        if key not in chosen or layer.metadata.get("mre_variable") == "wave":
            chosen[key] = layer
    return list(chosen.values())


def _layer_example(layer: Any) -> MREExample | None:
    if layer is None:
        return None
    try:
        from . import _layers

        ex = _layers.example_from_layers(layer)
    except Exception:  # fall back on the metadata convention
        ex = layer.metadata.get("mre_example")
    return ex if isinstance(ex, MREExample) else None


def _device_choices(*_: Any) -> list[str]:
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install still allows the CPU
        n = 0
    return ["cpu", *(f"cuda:{i}" for i in range(n))]


def _default_device(core_default: Any) -> str:
    # the core's default (None) means "CUDA when available, else the CPU"
    choices = _device_choices()
    if core_default:
        name = str(core_default)
        name = "cuda:0" if name == "cuda" else name
        if name in choices:
            return name
    return "cuda:0" if "cuda:0" in choices else "cpu"


def _shutdown_ref(ref: "weakref.ref[TrainingRunner]") -> None:
    runner = ref()
    if runner is not None:
        runner.shutdown()


def _n_masked(example: MREExample) -> int:
    return int(example.mask.values.sum())


class _CloseWatcher(QObject):
    """Stops training when the dock or the viewer window closes (an event filter)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # Qt API name
        etype = event.type()
        if etype == QEvent.Type.Close or (
            etype == QEvent.Type.ParentChange and getattr(obj, "parent", lambda: 1)() is None
        ):
            # ParentChange to no parent: napari's remove_dock_widget un-parents the widget
            self._callback()
        return False


# ---------------------------------------------------------------------- training widget
class TrainingWidget(Container):
    """Train an MRE-PINN on an example layer, with live predictions and loss curves.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer holding the example layers (injected by napari).

    Notes
    -----
    Controls are settable by name (``w.n_iters.value = 200``). Scriptable API:
    :meth:`start`, :meth:`pause`, :meth:`resume`, :meth:`stop`, :meth:`wait`,
    :attr:`is_running`, :attr:`is_paused`, :meth:`save_checkpoint`,
    :meth:`load_checkpoint`, :attr:`model`, :attr:`history`, :attr:`results`,
    :attr:`result_example`.
    """

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        # not scrollable: napari docks ``.native``, which would drop magicgui's scroll area
        super().__init__()
        self.viewer = viewer
        d = core_defaults()
        self._defaults = d
        w_wave, w_elast, w_pde, w_anat = (list(d["loss_weights"]) + [0.0] * 4)[:4]
        big = 10**9

        self.example_layer = ComboBox(
            name="example_layer",
            label="example layer",
            choices=self._example_layer_choices,
            tooltip="A layer that carries an MRE example (opened .nc file or sample data).",
        )
        self.frequency_choice = ComboBox(
            name="frequency",
            label="frequency (Hz)",
            choices=self._frequency_choices,
            nullable=True,
            tooltip="Vibration frequency to fit, for multi-frequency examples.",
        )
        self.pde_choice = ComboBox(
            name="pde", label="PDE", choices=PDE_CHOICES, value=str(d["pde"]).lower()
        )
        # magicgui shows as many decimals as the step has: fine steps keep small weights
        spin = {"min": 0.0, "max": 1e12, "step": 1e-6}
        widgets = [
            self.example_layer,
            self.frequency_choice,
            self.pde_choice,
            FloatSpinBox(name="wave_weight", label="wave loss weight", value=w_wave, **spin),
            FloatSpinBox(
                name="elast_weight", label="elasticity loss weight", value=w_elast, **spin
            ),
            FloatSpinBox(name="pde_weight", label="PDE loss weight", value=w_pde, **spin),
            FloatSpinBox(name="anat_weight", label="anatomy loss weight", value=w_anat, **spin),
            SpinBox(
                name="pde_warmup_iters",
                label="PDE warm-up iterations",
                value=int(d["pde_warmup_iters"]),
                min=0,
                max=big,
            ),
            SpinBox(
                name="pde_step_iters",
                label="PDE step iterations",
                value=int(d["pde_step_iters"]),
                min=1,
                max=big,
            ),
            FloatSpinBox(
                name="pde_init_weight",
                label="PDE initial weight",
                value=float(d["pde_init_weight"]),
                min=0.0,
                max=1e12,
                step=min(1e-8, _step_for(float(d["pde_init_weight"]))),
            ),
            FloatSpinBox(
                name="pde_step_factor",
                label="PDE step factor",
                value=float(d["pde_step_factor"]),
                min=1.0,
                max=1e6,
                step=0.5,
            ),
            SpinBox(name="n_points", label="points per batch", value=int(d["n_points"]),
                    min=1, max=big),
            FloatSpinBox(
                name="lr",
                label="learning rate",
                value=float(d["lr"]),
                min=0.0,
                max=10.0,
                step=min(1e-6, _step_for(float(d["lr"]))),
            ),
            FloatSpinBox(
                name="lr_decay",
                label="final lr factor",
                value=float(d["lr_decay"]),
                min=0.0,
                max=1.0,
                step=0.05,
                tooltip="Cosine decay of the learning rate after the PDE warm-up down to this "
                "factor at the last iteration (1: constant), as in fit().",
            ),
            ComboBox(
                name="optimizer",
                choices=OPTIMIZER_CHOICES,
                value=_match_choice(str(d["optimizer"]), OPTIMIZER_CHOICES),
            ),
            SpinBox(name="n_iters", label="iterations", value=int(d["n_iters"]), min=1,
                    max=big),
            SpinBox(
                name="resample_period",
                label="resample every (it)",
                value=int(d["resample_period"] or 0),
                min=0,
                max=big,
                tooltip="Redraw the collocation points every N iterations (0: never).",
            ),
            SpinBox(
                name="refresh_period",
                label="refresh every (it)",
                value=max(1, min(int(d["test_every"] or 100), 100)),
                min=0,
                max=big,
                tooltip="Show the full-grid prediction every N iterations (less often on a "
                        "large grid: the live view takes at most 4 % of the training time).",
            ),
            SpinBox(name="n_layers", label="hidden layers", value=int(d["n_layers"]), min=1,
                    max=64),
            SpinBox(name="n_hidden", label="hidden units (0 = auto)", value=0, min=0,
                    max=4096,
                    tooltip="0: the recipe's width (64, or 128 for complex wave fields)."),
            ComboBox(
                name="device",
                choices=_device_choices,
                value=_default_device(d["device"]),
                tooltip="Devices PyTorch sees on this machine.",
            ),
            SpinBox(
                name="seed",
                label="seed (-1: random)",
                value=-1 if d["seed"] is None else int(d["seed"]),
                min=-1,
                max=2**31 - 1,
            ),
        ]
        self.extend(widgets)

        self.start_button = PushButton(name="start_button", text="Start")
        self.pause_button = PushButton(name="pause_button", text="Pause")
        self.resume_button = PushButton(name="resume_button", text="Resume")
        self.stop_button = PushButton(name="stop_button", text="Stop")
        self.save_button = PushButton(name="save_button", text="Save checkpoint…")
        self.load_button = PushButton(name="load_button", text="Load checkpoint…")
        run_row = Container(
            widgets=[self.start_button, self.pause_button, self.resume_button, self.stop_button],
            layout="horizontal",
            labels=False,
            name="run_buttons",
            label=" ",
        )
        file_row = Container(
            widgets=[self.save_button, self.load_button],
            layout="horizontal",
            labels=False,
            name="file_buttons",
            label=" ",
        )
        for row in (run_row, file_row):
            row.margins = (0, 0, 0, 0)
        self.progress_bar = ProgressBar(name="progress_bar", label="progress", value=0, min=0,
                                        max=max(1, int(d["n_iters"])))
        self.status = Label(name="status", label="status", value="idle")
        # status text changes ~10×/s: its width must not relayout the dock (and resize the
        # plot, which forces a full matplotlib redraw)
        from qtpy.QtWidgets import QSizePolicy

        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.extend([run_row, file_row, self.progress_bar, self.status])

        self.loss_plot = LossPlot()
        self.native.layout().addWidget(self.loss_plot)

        self.start_button.clicked.connect(self._start_clicked)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_clicked)
        self.load_button.clicked.connect(self._load_clicked)
        self.example_layer.changed.connect(self._example_changed)

        # run state (GUI thread only)
        self._runner = TrainingRunner()
        self._runner.progress.connect(self._on_progress)
        self._runner.record.connect(self._on_record)
        self._runner.snapshot.connect(self._on_snapshot)
        self._runner.model_ready.connect(self._on_model_ready)
        self._runner.paused_changed.connect(self._on_paused_changed)
        self._runner.failed.connect(self._on_failed)
        self._runner.finished.connect(self._on_finished)
        self._model: Any = None
        self._example: MREExample | None = None  # the (single-frequency) example trained
        self._results: xr.Dataset | None = None
        self._history: list[dict[str, Any]] = []
        self._iteration = 0
        self._its = 0.0
        self._losses: dict[str, float] = {}
        self.n_refreshes = 0  # snapshots shown (tests, profiling)
        self.last_error: str | None = None
        self._pbar: Any = None
        self._closing = False
        self._display_error_shown = False

        # stop cleanly when the dock, the viewer or the application goes away
        self._watcher = _CloseWatcher(self.shutdown)
        self.native.installEventFilter(self._watcher)
        self._watched_window: Any = None  # weakref to the main window being watched
        runner = self._runner
        self.native.destroyed.connect(lambda *_: runner.shutdown())
        app = QCoreApplication.instance()
        if app is not None:
            # weak: the application outlives viewers, and must not keep this widget (and
            # through it the viewer) alive
            runner_ref = weakref.ref(runner)
            app.aboutToQuit.connect(lambda: _shutdown_ref(runner_ref))
        if viewer is not None:
            events = viewer.layers.events
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).connect(self._layers_changed)
        self.example_layer.reset_choices()
        self._example_changed()
        self._update_buttons()

    # ------------------------------------------------------------------ choices
    def _example_layer_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in example_layers(self.viewer)]

    def _frequency_choices(self, *_: Any) -> list[tuple[str, Any]]:
        ex = _layer_example(self.example_layer.value) if hasattr(self, "example_layer") else None
        if ex is None:
            return []
        return [(f"{f:g} Hz", float(f)) for f in ex.frequencies]

    def _layers_changed(self, *_: Any) -> None:
        if self._closing:
            return
        with contextlib.suppress(RuntimeError):  # widget deleted before the viewer
            self.example_layer.reset_choices()

    def _example_changed(self, *_: Any) -> None:
        self.frequency_choice.reset_choices()
        ex = _layer_example(self.example_layer.value)
        if ex is not None and len(ex.frequencies) == 1:
            self.frequency_choice.value = float(ex.frequencies[0])
        else:
            # several frequencies: the user must choose one (checked at start)
            self.frequency_choice.value = None

    # ------------------------------------------------------------------ state
    @property
    def is_running(self) -> bool:
        """True while a training thread exists (running or paused)."""
        return self._runner.is_running

    @property
    def is_paused(self) -> bool:
        """True while the worker is blocked in a pause."""
        return self._runner.is_paused

    @property
    def model(self) -> Any:
        """The ``MREPINNModel`` of the current (or last) run, or None."""
        return self._model

    @property
    def iteration(self) -> int:
        """The last iteration reported by the worker."""
        return self._iteration

    @property
    def its(self) -> float:
        """Training speed in iterations per second (last report)."""
        return self._its

    @property
    def history(self) -> list[dict[str, Any]]:
        """The loss history of the run (a copy of the records shown in the plot)."""
        return [dict(r) for r in self._history]

    @property
    def results(self) -> Optional["xr.Dataset"]:
        """The last full-grid results shown (``wave_pred``, ``mu_pred``...), or None."""
        return self._results

    @property
    def result_example(self) -> MREExample | None:
        """The trained example with the last results added as variables, or None."""
        if self._example is None or self._results is None:
            return None
        out = self._example.copy()
        for name, var in self._results.data_vars.items():
            out.ds[name] = var
        out.ds.attrs["mrepinn_iteration"] = int(self._iteration)
        return out

    # ------------------------------------------------------------------ validation
    def _settings(self) -> dict[str, Any]:
        seed = int(self.seed.value)
        return {
            "pde": str(self.pde.value),
            "loss_weights": [
                float(self.wave_weight.value),
                float(self.elast_weight.value),
                float(self.pde_weight.value),
                float(self.anat_weight.value),
            ],
            "pde_warmup_iters": int(self.pde_warmup_iters.value),
            "pde_step_iters": int(self.pde_step_iters.value),
            "pde_init_weight": float(self.pde_init_weight.value),
            "pde_step_factor": float(self.pde_step_factor.value),
            "n_points": int(self.n_points.value),
            "lr": float(self.lr.value),
            "lr_decay": float(self.lr_decay.value),
            "optimizer": str(self.optimizer.value),
            "n_iters": int(self.n_iters.value),
            "resample_period": int(self.resample_period.value),
            "refresh_period": int(self.refresh_period.value),
            "n_layers": int(self.n_layers.value),
            "n_hidden": int(self.n_hidden.value),
            "device": str(self.device.value),
            "seed": None if seed < 0 else seed,
        }

    def validate(self) -> tuple[MREExample | None, dict[str, Any], str | None]:
        """Check the controls; return ``(example, settings, error message or None)``.

        The example returned is single-frequency (the chosen frequency selected).
        """
        s = self._settings()
        self.example_layer.reset_choices()
        layer = self.example_layer.value
        if layer is None:
            return None, s, (
                "Select an example layer first: open an MRE file (.nc, .mat, NIfTI) or "
                "File › Open Sample › MRE-PINN, then choose it under 'example layer'."
            )
        ex = _layer_example(layer)
        if ex is None:
            return None, s, (
                f"Layer {layer.name!r} carries no MRE example; choose a layer opened by "
                "the MRE-PINN reader or sample data."
            )
        freqs = ex.frequencies
        if len(freqs) > 1:
            f = self.frequency.value
            if f is None:
                return None, s, (
                    f"{layer.name!r} has {len(freqs)} frequencies "
                    f"({', '.join(f'{v:g}' for v in freqs)} Hz); choose one under "
                    "'frequency' to train on."
                )
            try:
                ex = ex.select_frequency(float(f))
            except MREInputError as exc:
                return None, s, str(exc)
        n_mask = _n_masked(ex)
        if s["n_points"] > n_mask:
            return None, s, (
                f"points per batch ({s['n_points']}) is larger than the {n_mask} voxels "
                "inside the mask; lower 'points per batch'."
            )
        if s["refresh_period"] < 1:
            return None, s, "'refresh every' must be at least 1 iteration."
        if s["n_iters"] < 1:
            return None, s, "'iterations' must be at least 1."
        if not (s["lr"] > 0 and math.isfinite(s["lr"])):
            return None, s, "The learning rate must be a positive number."
        if not any(w > 0 for w in s["loss_weights"]):
            return None, s, "All loss weights are 0; give at least the wave loss a weight."
        if s["loss_weights"][1] > 0 and "mre" not in ex:
            return None, s, (
                "The elasticity loss weight is > 0 but the example has no ground-truth "
                "modulus ('mre'); set it to 0."
            )
        if s["loss_weights"][3] > 0 and "anat" not in ex:
            return None, s, (
                "The anatomy loss weight is > 0 but the example has no anatomical image; "
                "set it to 0."
            )
        dev = s["device"]
        if dev.startswith("cuda"):
            import torch

            idx = int(dev.split(":")[1]) if ":" in dev else 0
            if not torch.cuda.is_available():
                return None, s, (
                    f"Device {dev!r} was chosen but CUDA is not available to PyTorch here; "
                    "choose 'cpu'."
                )
            if idx >= torch.cuda.device_count():
                return None, s, (
                    f"Device {dev!r} does not exist: PyTorch sees "
                    f"{torch.cuda.device_count()} CUDA device(s)."
                )
        return ex, s, None

    # ------------------------------------------------------------------ control
    def start(self) -> bool:
        """Validate the controls and start a new run from scratch.

        Returns
        -------
        bool
            True if training started; False if refused (a notification says why).
        """
        if self.is_running:
            _error("MRE-PINN training is already running; stop it first.")
            return False
        example, s, err = self.validate()
        if err is not None:
            _error(err)
            return False
        self._model = None
        self._example = example
        self._history = []
        self._results = None
        self.loss_plot.clear()
        self._launch(lambda: _build_model(example, s), s, s["n_iters"], _run_callbacks(s))
        return True

    def pause(self) -> None:
        """Pause at the end of the current iteration (:attr:`is_paused` turns True)."""
        if self.is_running:
            self._runner.pause()
            self.status.value = "pausing…"

    def resume(self) -> bool:
        """Continue a paused run, or continue the last (stopped or loaded) model.

        When idle, the existing model trains for the iterations left to reach
        ``iterations`` (or ``iterations`` more if it is already there); the loss curve
        continues.
        """
        if self.is_running:
            self._runner.resume()
            return True
        if self._model is None:
            _error("Nothing to resume: start a run or load a checkpoint first.")
            return False
        # the model keeps its data, network and optimiser; only the run length and the
        # refresh / resample periods are read from the controls
        s = self._settings()
        if s["refresh_period"] < 1:
            _error("'refresh every' must be at least 1 iteration.")
            return False
        model = self._model
        done = int(getattr(model, "iteration", 0))
        n = s["n_iters"] - done
        if n <= 0:
            n = s["n_iters"]
        self._launch(lambda: model, s, n)
        return True

    def stop(self) -> None:
        """Stop the run within one iteration (the last prediction stays on screen)."""
        if self.is_running:
            self._runner.stop()
            self.status.value = "stopping…"

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the run is over.

        Parameters
        ----------
        timeout : float, optional
            Seconds; None waits as long as it takes.

        Returns
        -------
        bool
            False if the timeout passed first.
        """
        done = self._runner.wait(timeout)
        if done:
            QCoreApplication.processEvents()  # deliver the last signals (finished, layers)
        return done

    def shutdown(self) -> None:
        """Stop and join the training thread now (the dock or viewer is closing)."""
        if self._closing:
            return
        if self.is_running:
            self._closing = True  # the viewer may be half gone: no more layer updates
        self._runner.shutdown()
        self._close_pbar()

    def close(self) -> None:
        """Stop training, then close the widget."""
        self.shutdown()
        self._closing = True
        if self.viewer is not None:
            events = self.viewer.layers.events
            for name in ("inserted", "removed", "reordered"):
                with contextlib.suppress(Exception):
                    getattr(events, name).disconnect(self._layers_changed)
        super().close()

    def _launch(
        self,
        build: Callable[[], Any],
        s: dict[str, Any],
        n_iters: int,
        callbacks: Callable[[Any], list[Any]] | None = None,
    ) -> None:
        refresh = s["refresh_period"]
        worker = TrainingWorker(
            build,
            n_iters,
            # fit's record period (each record also evaluates held-out losses), but at least
            # one record per refresh so the curve keeps up with the layers
            display_every=max(1, min(refresh, int(self._defaults["display_every"]))),
            refresh_every=refresh,
            resample_every=s["resample_period"],
            callbacks=callbacks,
            prepare_snapshot=_prepare_layer_data,
        )
        self.last_error = None
        self._closing = False
        self._display_error_shown = False
        self._watch_window()
        start_it = int(getattr(self._model, "iteration", 0)) if self._model is not None else 0
        self.progress_bar.max = max(1, start_it + n_iters)
        self.progress_bar.value = min(start_it, self.progress_bar.max)
        self.loss_plot.set_x_range(start_it + n_iters)
        self.status.value = "starting…"
        self._open_pbar(start_it, start_it + n_iters)
        self._runner.start(worker)
        self._update_buttons()

    def _watch_window(self) -> None:
        # the main window's close event comes before napari tears its canvas down
        win = self.native.window()
        watched = self._watched_window() if self._watched_window is not None else None
        if win is not self.native and win is not watched:
            win.installEventFilter(self._watcher)
            self._watched_window = weakref.ref(win)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: "str | os.PathLike[str]") -> str:
        """Save the model (weights, optimizer, history) to ``path``.

        While training, the run is paused for the save and then continues.
        """
        if self._model is None:
            raise RuntimeError("no model to save: start a run or load a checkpoint first")
        resume_after = self.is_running and not self.is_paused
        if resume_after:
            self._runner.pause()
            t0 = time.perf_counter()
            while self.is_running and not self.is_paused:
                QCoreApplication.processEvents()
                time.sleep(0.005)
                if time.perf_counter() - t0 > 60:
                    raise TimeoutError("training did not pause for the checkpoint")
        try:
            self._model.save(os.fspath(path))
        finally:
            if resume_after and self.is_running:
                self._runner.resume()
        return os.fspath(path)

    def load_checkpoint(self, path: "str | os.PathLike[str]") -> Any:
        """Restore a model saved by :meth:`save_checkpoint`; :meth:`resume` continues its run.

        The controls are set from the checkpoint's settings (PDE, loss weights, schedule,
        network size...), the model is rebuilt on the selected example and its state
        restored; the loss curve and the prediction layers then show the restored state.
        """
        if self.is_running:
            raise RuntimeError("stop training before loading a checkpoint")
        settings = _checkpoint_settings(path)
        self._apply_settings(settings)
        example, s, err = self.validate()
        if err is not None:
            _error(err)
            raise MREInputError(err)
        prior = settings.get("mu_prior_pa")
        net_options = {
            k[4:]: v for k, v in settings.items()
            if k.startswith("net_")
            and k[4:] in ("omega", "mu_omega", "activ", "dense", "polar_input")
        }
        for key in ("pde_engine", "pde_no_z"):
            if key in settings:
                net_options[key[4:]] = settings[key]
        model = _build_model(
            example,
            s,
            mu_prior=complex(prior[0], prior[1]) if prior else None,
            net_options=net_options,
        )
        # the warm-up was capped on the original run's length; use the saved schedule
        if "pde_warmup_iters" in settings:
            model.pde_warmup_iters = int(settings["pde_warmup_iters"])
        model.restore(os.fspath(path))
        self._model = model
        self._example = model.example
        self._history = [dict(r) for r in getattr(model, "history", [])]
        self.loss_plot.set_history(self._history)
        self.loss_plot.set_x_range(max(1, int(getattr(model, "iteration", 0))))
        self._iteration = int(getattr(model, "iteration", 0))
        self.progress_bar.max = max(self.progress_bar.max, self._iteration, 1)
        self.progress_bar.value = min(self._iteration, self.progress_bar.max)
        self._show_results(model.results().copy(deep=True))
        self.status.value = f"checkpoint loaded at iteration {self._iteration}"
        self._update_buttons()
        return model

    def _apply_settings(self, settings: dict[str, Any]) -> None:
        """Set the controls from a checkpoint's settings (unknown keys are ignored).

        The learning rate is left alone: the checkpoint's is the (decayed) current rate,
        which the restored optimiser keeps anyway.
        """
        simple = {
            "pde": "pde", "pde_warmup_iters": "pde_warmup_iters",
            "pde_step_iters": "pde_step_iters", "pde_init_weight": "pde_init_weight",
            "pde_step_factor": "pde_step_factor", "n_points": "n_points",
            "net_n_layers": "n_layers", "net_n_hidden": "n_hidden",
        }
        for key, name in simple.items():
            if settings.get(key) is not None:
                with contextlib.suppress(ValueError, TypeError):
                    self[name].value = settings[key]
        if settings.get("optimizer"):
            self.optimizer.value = _match_choice(str(settings["optimizer"]), OPTIMIZER_CHOICES)
        weights = settings.get("loss_weights")
        if weights and len(weights) == 4:
            for name, w in zip(
                ("wave_weight", "elast_weight", "pde_weight", "anat_weight"), weights,
                strict=True,
            ):
                self[name].value = float(w)
        if "seed" in settings:
            self.seed.value = -1 if settings["seed"] is None else int(settings["seed"])
        freq = settings.get("frequency_hz")
        if freq is not None and len(self.frequency.choices) > 1:
            with contextlib.suppress(ValueError):
                self.frequency.value = float(freq)

    def _save_clicked(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _filter = QFileDialog.getSaveFileName(
            self.native, "Save MRE-PINN checkpoint", "mrepinn.pt", "Checkpoint (*.pt)"
        )
        if path:
            try:
                self.save_checkpoint(path)
                _info(f"Checkpoint saved to {path}")
            except Exception as exc:  # report, never crash the GUI
                _error(f"Could not save the checkpoint: {exc}")

    def _load_clicked(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _filter = QFileDialog.getOpenFileName(
            self.native, "Load MRE-PINN checkpoint", "", "Checkpoint (*.pt);;All files (*)"
        )
        if path:
            try:
                self.load_checkpoint(path)
            except MREInputError:
                pass  # already notified
            except Exception as exc:
                _error(f"Could not load the checkpoint {path}: {exc}")

    def _start_clicked(self, *_: Any) -> None:
        self.start()

    # ------------------------------------------------------------------ slots (GUI thread)
    def _on_model_ready(self, model: Any) -> None:
        self._model = model
        example = getattr(model, "example", None)
        if isinstance(example, MREExample):
            self._example = example  # with mu_ahi, computed in the worker
        self._update_buttons()

    def _on_progress(self, info: dict[str, Any]) -> None:
        if self._closing:
            return
        self._iteration = int(info["iteration"])
        self._its = float(info["its"])
        if info.get("losses"):
            self._losses = dict(info["losses"])
        total = int(info["total"])
        self.progress_bar.max = max(1, total)
        self.progress_bar.value = min(self._iteration, self.progress_bar.max)
        self.status.value = self._status_text(total)
        if self._pbar is not None:
            with contextlib.suppress(Exception):
                self._pbar.n = self._iteration - self._pbar_it0
                self._pbar.refresh()

    def _status_text(self, total: int) -> str:
        loss = self._losses.get("loss", self._losses.get("total_loss"))
        parts = [f"it {self._iteration}/{total}"]
        if loss is not None:
            parts.append(f"loss {loss:.3g}")
        parts += [
            f"{k.removeprefix('loss_')} {v:.2g}"
            for k, v in self._losses.items()
            if k.startswith("loss_")
        ][:4]
        parts.append(f"{self._its:.1f} it/s")
        if self.is_paused:
            parts.insert(0, "paused")
        return " · ".join(parts)

    def _on_record(self, record: dict[str, Any]) -> None:
        self._history.append(record)
        if self._closing:
            return
        self.loss_plot.add_record(record)
        losses = loss_components(record)
        if losses:
            self._losses = losses

    def _on_snapshot(self, snap: dict[str, Any]) -> None:
        if self._closing:
            return
        self._iteration = max(self._iteration, int(snap["iteration"]))
        self._show_results(
            snap["results"], live=not snap.get("final", False), prepared=snap.get("prepared")
        )

    def _show_results(
        self, results: "xr.Dataset", live: bool = False, prepared: Any = None
    ) -> None:
        """Show ``results`` in the result layers (GUI thread).

        ``update_result_layers`` (of ``_layers``) adds the layers and sets every property;
        during a run (``live``) only the data of the *visible* existing layers is replaced,
        from the same ``_layers.result_layer_data`` tuples: re-setting scale and translate
        costs napari a full extent recomputation per layer, which would stall the GUI at
        every refresh. Those tuples (``prepared``) are computed in the worker thread. Hidden
        layers catch up at the next refresh after they are shown and at the end of the run.
        """
        self._results = results
        self.n_refreshes += 1
        if self.viewer is None:
            return
        from . import _layers

        example = self.result_example
        try:
            if live and self._replace_visible_data(example, prepared):
                return
            _layers.update_result_layers(self.viewer, example)
        except Exception as exc:
            # training goes on; say it once per run rather than at every refresh
            if not self._display_error_shown:
                self._display_error_shown = True
                _error(f"Could not show the MRE-PINN results: {type(exc).__name__}: {exc}")

    def _replace_visible_data(self, example: MREExample | None, prepared: Any = None) -> bool:
        """Fast path of a live refresh; False when a full update is needed."""
        from . import _layers

        if example is None:
            return False
        layers = self.viewer.layers
        todo = []
        tuples = prepared if prepared is not None else _layers.result_layer_data(example)
        for data, kwargs, _type in tuples:
            name = kwargs["name"]
            if name not in layers or layers[name].data.shape != np.shape(data):
                return False  # a new layer or another grid: the full update
            todo.append((layers[name], data, kwargs))
        for layer, data, kwargs in todo:
            if not layer.visible:
                continue
            layer.data = data
            if kwargs["name"] == "pde_residual" and "contrast_limits" in kwargs:
                layer.contrast_limits = kwargs["contrast_limits"]
        return True

    def _on_paused_changed(self, paused: bool) -> None:
        if self._closing:
            return
        self.status.value = (
            f"paused at iteration {self._iteration}" if paused else self._status_text(
                self.progress_bar.max)
        )
        self._update_buttons()

    def _on_failed(self, message: str, tb: str) -> None:
        self.last_error = message
        # the traceback goes to the console; the user gets the cause
        import logging

        logging.getLogger(__name__).error("MRE-PINN training failed:\n%s", tb)
        if not self._closing:
            _error(f"MRE-PINN training failed: {message}")

    def _on_finished(self) -> None:
        self._close_pbar()
        if self._closing:
            return
        if self._model is not None:
            self._iteration = int(getattr(self._model, "iteration", self._iteration))
            self.progress_bar.value = min(self._iteration, self.progress_bar.max)
        if self.last_error:
            self.status.value = f"failed at iteration {self._iteration}: {self.last_error}"
        else:
            self.status.value = f"done: iteration {self._iteration} ({self._its:.1f} it/s)"
        self._update_buttons()
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _update_buttons(self) -> None:
        running, paused = self.is_running, self.is_paused
        self.start_button.enabled = not running
        self.pause_button.enabled = running and not paused
        self.resume_button.enabled = paused or (not running and self._model is not None)
        self.stop_button.enabled = running
        self.save_button.enabled = self._model is not None
        self.load_button.enabled = not running

    # activity-dock progress (napari.utils.progress must live in the GUI thread)
    def _open_pbar(self, it0: int, total: int) -> None:
        self._close_pbar()
        try:
            from napari.utils import progress

            self._pbar = progress(total=total - it0, desc="MRE-PINN training")
            self._pbar_it0 = it0
        except Exception:  # the activity dock is a nicety
            self._pbar = None

    def _close_pbar(self) -> None:
        if self._pbar is not None:
            with contextlib.suppress(Exception):
                self._pbar.close()
            self._pbar = None


def _prepare_layer_data(model: Any, results: "xr.Dataset") -> list[Any]:
    """Layer data tuples of a live snapshot, computed in the worker thread (numpy only)."""
    from . import _layers

    example = model.example.copy()
    for name, var in results.data_vars.items():
        example.ds[name] = var
    return _layers.result_layer_data(example)


def _run_callbacks(s: dict[str, Any]) -> Callable[[Any], list[Any]]:
    """Callbacks of a fresh run besides the resampler, as ``fit`` adds them (the factory is
    called in the worker with the built model)."""

    def make(model: Any) -> list[Any]:
        from . import training

        if s["lr_decay"] >= 1 or not hasattr(training, "LRDecay"):
            return []
        start = int(getattr(model, "pde_warmup_iters", 0))
        return [training.LRDecay(s["n_iters"] - start, final_factor=s["lr_decay"], start=start)]

    return make


def _checkpoint_settings(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """The run settings stored in a checkpoint (empty if it has none)."""
    import json

    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MREInputError(f"{path}: no such checkpoint file.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return dict(json.loads(state.get("settings_json", "{}")))
    except (TypeError, ValueError, AttributeError):
        return {}


def _step_for(value: float) -> float:
    """A spin-box step showing ``value`` with its leading digit (magicgui sizes decimals)."""
    if value <= 0 or not math.isfinite(value):
        return 0.1
    return 10.0 ** math.floor(math.log10(value))


def _match_choice(value: str, choices: tuple[str, ...]) -> str:
    norm = value.lower().replace("-", "")
    for c in choices:
        if c.lower().replace("-", "") == norm:
            return c
    return choices[0]


def _build_model(
    example: MREExample,
    s: dict[str, Any],
    *,
    mu_prior: Any = None,
    net_options: dict[str, Any] | None = None,
) -> Any:
    """Build and compile an ``MREPINNModel`` from widget settings with ``training.build_model``.

    The same recipe as ``training.fit`` (so the widget with default controls reproduces the
    CLI): AHI prior, SIREN input frequencies matched to the prior's wavelength, the recipe's
    network width unless the user set one. Runs in the worker thread (AHI and the set-up
    may take a moment on large data).

    Parameters
    ----------
    example : MREExample
        Single-frequency example (not modified).
    s : dict
        Settings from :meth:`TrainingWidget.validate`.
    mu_prior : optional
        Modulus prior overriding the AHI one (a restored checkpoint's).
    net_options : dict, optional
        Recipe options overriding ``training.DEFAULTS`` (a checkpoint's network).
    """
    from . import training

    options: dict[str, Any] = {
        "pde_warmup_iters": s["pde_warmup_iters"],
        "pde_step_iters": s["pde_step_iters"],
        "pde_init_weight": s["pde_init_weight"],
        "pde_step_factor": s["pde_step_factor"],
        "n_layers": s["n_layers"],
    }
    if s["n_hidden"] > 0:  # 0 = the recipe's width (wider for complex wave fields)
        options["n_hidden"] = s["n_hidden"]
    options.update(net_options or {})
    if mu_prior is not None:
        options["mu_prior"] = mu_prior
    model = training.build_model(
        example,
        s["n_iters"],
        s["device"],
        pde=s["pde"],
        n_points=s["n_points"],
        loss_weights=s["loss_weights"],
        lr=s["lr"],
        seed=s["seed"],
        **options,
    )
    if s["optimizer"] != "adam":
        model.compile(optimizer=s["optimizer"], lr=s["lr"])
    return model


# ---------------------------------------------------------------------- inversion widget
class InversionWidget(Container):
    """Direct inversion (AHI, MDEV or k-MDEV) of an example layer into ``mu_ahi`` /
    ``mu_mdev`` (complex G*) or the ``kmdev_*`` maps (speed shown as ``kmdev_speed``).

    Fast (finite differences on the grid), so it runs in the GUI thread.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer holding the example layers (injected by napari).
    """

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = viewer
        defaults = _inversion_defaults()
        self.example_layer = ComboBox(
            name="example_layer",
            label="example layer",
            choices=lambda *_: [(ly.name, ly) for ly in example_layers(self.viewer)],
        )
        self.method_choice = ComboBox(
            name="method", choices=("AHI", "MDEV", "k-MDEV"), value="AHI"
        )
        self.extend(
            [
                self.example_layer,
                self.method_choice,
                ComboBox(
                    name="smoothing",
                    label="pre-smoothing",
                    choices=("none", "gaussian", "savgol"),
                    value=defaults["smoothing"] or "none",
                    tooltip="Smoothing of the wave before the Laplacian.",
                ),
                FloatSpinBox(
                    name="sigma",
                    label="Gaussian σ (voxels)",
                    value=float(defaults["sigma"]),
                    min=0.0,
                    max=20.0,
                    step=0.05,
                ),
                CheckBox(
                    name="despeckle",
                    label="despeckle",
                    value=bool(defaults["despeckle"]),
                    tooltip="Clamp outliers of the Laplacian before inverting.",
                ),
            ]
        )
        self.run_button = PushButton(name="run_button", text="Run inversion")
        self.status = Label(name="status", label="status", value="idle")
        self.extend([self.run_button, self.status])
        self.run_button.clicked.connect(self._run_clicked)
        if viewer is not None:
            events = viewer.layers.events
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).connect(self._layers_changed)
        self.example_layer.reset_choices()

    def _layers_changed(self, *_: Any) -> None:
        with contextlib.suppress(RuntimeError):  # widget deleted before the viewer
            self.example_layer.reset_choices()

    def _run_clicked(self, *_: Any) -> None:
        self.run()

    def run(self) -> Any:
        """Run the chosen inversion and add or update its layer.

        Returns
        -------
        xarray.DataArray or None
            The modulus map (complex Pa; k-MDEV: the speed map, m/s), or None if refused
            or failed (notified).
        """
        self.example_layer.reset_choices()
        ex = _layer_example(self.example_layer.value)
        if ex is None:
            _error(
                "Select an example layer first: open MRE data or File › Open Sample › "
                "MRE-PINN."
            )
            return None
        method = str(self.method.value).lower()
        smoothing = None if self.smoothing.value == "none" else str(self.smoothing.value)
        t0 = time.perf_counter()
        try:
            from . import baselines

            if method == "k-mdev":
                from .kmdev import kmdev

                # k-MDEV band-passes in k-space; no Laplacian to despeckle, no savgol
                maps = kmdev(ex, smoothing="gaussian" if smoothing == "gaussian" else None,
                             sigma=float(self.sigma.value))
                mu = maps["kmdev_speed"]
            else:
                func = getattr(baselines, method)
                mu = maps = func(
                    ex,
                    smoothing=smoothing,
                    sigma=float(self.sigma.value),
                    despeckle=bool(self.despeckle.value),
                )
        except Exception as exc:  # any failure becomes a notification
            _error(f"{method.upper()} inversion failed: {type(exc).__name__}: {exc}")
            self.status.value = "failed"
            return None
        out = ex.copy()
        if method == "k-mdev":
            out.ds.update(maps)
        else:
            out.ds[mu.name or f"mu_{method}"] = mu
        from . import _layers

        _layers.update_result_layers(self.viewer, out)
        self.status.value = f"{method.upper()} done in {time.perf_counter() - t0:.2f} s"
        return mu


def _inversion_defaults() -> dict[str, Any]:
    out: dict[str, Any] = {"smoothing": None, "sigma": 0.65, "despeckle": True}
    with contextlib.suppress(ImportError):
        from . import baselines

        d = _signature_defaults(baselines.ahi)
        out.update({k: d[k] for k in out if k in d})
    return out
