"""The MRE-PINN training dock.

:class:`TrainingWidget` trains the Qt-free ``MREPINNModel`` (built by
:func:`napari_mrepinn.recipe.build_model`, the recipe of ``mrepinn fit``) in a QThread
worker (:mod:`napari_mrepinn._worker`) and shows its predictions live in the viewer. With
``ensemble members`` above 1 it trains that many members one after the other in the same
worker and shows their mean and uncertainty maps (:mod:`._ensemble`).
Everything napari-side (layers, the plot, notifications) happens in the GUI thread, in slots
fed by the worker's signals.

The viewer parameter is annotated ``"napari.viewer.Viewer"`` on purpose: napari only
injects the viewer into dock widgets for that exact annotation (or a parameter named
``napari_viewer``). This module therefore avoids ``from __future__ import annotations``.
"""

import functools
import json
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import torch
from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton, SpinBox
from napari.utils import progress
from qtpy.QtCore import QCoreApplication
from qtpy.QtWidgets import QSizePolicy

from .. import _layers
from .._loss_plot import LossPlot, loss_components, loss_label
from .._worker import TrainingRunner, TrainingWorker
from ..config import TrainingConfig
from ..data import MREExample, MREInputError
from ..recipe import FIT_RESULTS, build_model, drop_earlier_run, result_attrs, schedule_callbacks
from ._checkpoints import CheckpointActions
from ._common import JOINT, CloseWatcher, show_error
from ._controls import make_controls, read_config, warmup_note
from ._ensemble import ENSEMBLE_MAPS, EnsembleRun
from ._results import ResultLayers

if TYPE_CHECKING:  # pragma: no cover
    import napari
    import xarray as xr

    from ..training import Callback, MREPINNModel

__all__ = ["TrainingWidget"]

log = logging.getLogger(__name__)

#: default of the widget-only "refresh every" control (iterations)
REFRESH_EVERY = 100


class TrainingWidget(CheckpointActions, Container):
    """Train an MRE-PINN on an example layer, with live predictions and loss curves.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer holding the example layers (injected by napari).

    Notes
    -----
    One control per training option (:func:`napari_mrepinn.config.options`), named after
    it and settable by name (``w.iters.value = 200``), plus ``example_layer``,
    ``frequency`` and ``refresh_every``. Scriptable API: :meth:`start`, :meth:`pause`,
    :meth:`resume`, :meth:`stop`, :meth:`wait`, :meth:`config`, :meth:`validate`,
    :meth:`save_checkpoint`, :meth:`load_checkpoint`, :attr:`is_running`,
    :attr:`is_paused`, :attr:`model`, :attr:`history`, :attr:`results`,
    :attr:`result_example`.

    Examples
    --------
    >>> viewer = napari.Viewer(show=False)                      # doctest: +SKIP
    >>> viewer.open_sample("napari-mrepinn", "four_target")     # doctest: +SKIP
    >>> _, w = viewer.window.add_plugin_dock_widget(            # doctest: +SKIP
    ...     "napari-mrepinn", "MRE-PINN training")
    >>> w.iters.value = 500                                     # doctest: +SKIP
    >>> w.start(); w.wait()                                     # doctest: +SKIP
    >>> mu = viewer.layers["mu_pred"].data                      # doctest: +SKIP
    """

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        # not scrollable: napari docks ``.native``, which would drop magicgui's scroll area
        super().__init__()
        self.viewer = viewer
        self._base_config = TrainingConfig()  # the options without a control
        self._add_controls()
        self._add_run_area()
        self._init_state()
        self._connect_runner()
        self._watch_lifetime()
        self.example_layer.reset_choices()
        self._example_changed()
        self._update_warmup_note()
        self._update_buttons()

    # ------------------------------------------------------------------ construction
    def _add_controls(self) -> None:
        self.example_layer = ComboBox(
            name="example_layer", label="example layer", choices=self._example_layer_choices,
            tooltip="A layer that carries an MRE example (opened .nc file or sample data).",
        )
        self.frequency_choice = ComboBox(
            name="frequency", label="frequency (Hz)", choices=self._frequency_choices,
            nullable=True, tooltip="Vibration frequency to fit, for multi-frequency examples "
            "(or all of them in one joint fit: a springpot modulus, see "
            "napari_mrepinn.multifreq).",
        )
        self.warmup_label = Label(name="warmup_note", label=" ")
        self.extend([self.example_layer, self.frequency_choice])
        for control in make_controls(self._base_config):
            self.append(control)
            if control.name == "pde_warmup_iters":
                self.append(self.warmup_label)
        self.append(SpinBox(
            name="refresh_every", label="refresh every (it)", value=REFRESH_EVERY, min=1,
            max=2**31 - 1,
            tooltip="Show the full-grid prediction every N iterations (less often on a "
                    "large grid: the live view takes at most 4 % of the training time).",
        ))
        self.example_layer.changed.connect(self._example_changed)
        for name in ("iters", "pde_warmup_iters"):
            self[name].changed.connect(self._update_warmup_note)

    def _add_run_area(self) -> None:
        self.start_button = PushButton(name="start_button", text="Start")
        self.pause_button = PushButton(name="pause_button", text="Pause")
        self.resume_button = PushButton(name="resume_button", text="Resume")
        self.stop_button = PushButton(name="stop_button", text="Stop")
        self.save_button = PushButton(name="save_button", text="Save checkpoint…")
        self.load_button = PushButton(name="load_button", text="Load checkpoint…")
        self.warm_start = CheckBox(
            name="warm_start", text="warm start",
            tooltip="Load only the network weights, to start a new run from them on the "
                    "selected example (a checkpoint trained on another example or grid).",
        )
        row = {"layout": "horizontal", "labels": False, "label": " "}
        rows = [
            Container(widgets=[self.start_button, self.pause_button, self.resume_button,
                               self.stop_button], name="run_buttons", **row),
            Container(widgets=[self.save_button, self.load_button, self.warm_start],
                      name="file_buttons", **row),
        ]
        for r in rows:
            r.margins = (0, 0, 0, 0)
        self.progress_bar = ProgressBar(name="progress_bar", label="progress", value=0, min=0,
                                        max=max(1, self._base_config.iters))
        self.status = Label(name="status", label="status", value="idle")
        # status text changes ~10×/s: its width must not relayout the dock (and resize the
        # plot, which forces a full matplotlib redraw)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.extend([*rows, self.progress_bar, self.status])
        self.loss_plot = LossPlot()
        self.native.layout().addWidget(self.loss_plot)
        self.start_button.clicked.connect(self._start_clicked)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_clicked)
        self.load_button.clicked.connect(self._load_clicked)

    def _init_state(self) -> None:
        # run state (GUI thread only)
        self._model: MREPINNModel | None = None
        self._example: MREExample | None = None  # the example trained (its results' axes)
        self._results: xr.Dataset | None = None
        self._history: list[dict[str, Any]] = []
        self._iteration = 0
        self._its = 0.0
        self._seconds = 0.0  # training time of self._model in this dock (s, pauses left out)
        self._losses: dict[str, float] = {}
        self._geometry: dict[str, Any] = {}
        self._result_layers = ResultLayers(self.viewer)
        self.n_refreshes = 0  # snapshots shown (tests, profiling)
        self.last_error: str | None = None
        self._pbar: Any = None
        self._pbar_it0 = 0
        self._ensemble: EnsembleRun | None = None  # the ensemble training now
        self._run_iters = 0  # iterations of the run (of each member of an ensemble)
        self._run_total = 0  # the last iteration of the run (of the member) in training
        self._member = (0, 1)  # (member in training from 0, members) of the run
        self._closing = False
        self._display_error_shown = False

    def _connect_runner(self) -> None:
        self._runner = TrainingRunner()
        self._runner.progress.connect(self._on_progress)
        self._runner.record.connect(self._on_record)
        self._runner.snapshot.connect(self._on_snapshot)
        self._runner.model_ready.connect(self._on_model_ready)
        self._runner.member_finished.connect(self._on_member_finished)
        self._runner.paused_changed.connect(self._on_paused_changed)
        self._runner.failed.connect(self._on_failed)
        self._runner.finished.connect(self._on_finished)

    def _watch_lifetime(self) -> None:
        """Stop training cleanly when the dock, the viewer or the application goes away."""
        self._watcher = CloseWatcher(self.shutdown)
        self.native.installEventFilter(self._watcher)
        # weak references: the application outlives viewers and must not keep this widget
        # (and through it the viewer) alive, and a widget collected with its runner (a
        # reference cycle) must not call into the half-destroyed runner
        shutdown = functools.partial(_shutdown_ref, weakref.ref(self._runner))
        self.native.destroyed.connect(shutdown)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(shutdown)
        if self.viewer is not None:
            events = self.viewer.layers.events
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).connect(self._layers_changed)

    # ------------------------------------------------------------------ choices
    def _example_layer_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in _layers.example_layers(self.viewer)]

    def _frequency_choices(self, *_: Any) -> list[tuple[str, Any]]:
        ex = _selected_example(self.example_layer)
        if ex is None:
            return []
        joint = [(f"all {len(ex.frequencies)} (joint fit)", JOINT)] if len(ex.frequencies) > 1 \
            else []
        return joint + [(f"{f:g} Hz", float(f)) for f in ex.frequencies]

    def _layers_changed(self, *_: Any) -> None:
        if self._closing:
            return
        try:
            self.example_layer.reset_choices()
        except RuntimeError:  # the Qt widget was deleted before the viewer: nothing to show
            log.debug("layer change after the training dock was deleted")

    def _example_changed(self, *_: Any) -> None:
        self.frequency_choice.reset_choices()
        ex = _selected_example(self.example_layer)
        if ex is None:
            self.frequency_choice.value = None
        elif len(ex.frequencies) == 1:
            self.frequency_choice.value = float(ex.frequencies[0])
        else:  # several frequencies: one joint fit of all, as napari_mrepinn.fit does
            self.frequency_choice.value = JOINT

    def _update_warmup_note(self, *_: Any) -> None:
        """Say what the warm-up control cannot: the warm-up that will actually run."""
        note = warmup_note(self._base_config.replace(
            iters=self.iters.value, pde_warmup_iters=self.pde_warmup_iters.value))
        self.warmup_label.value = note
        self.warmup_label.native.setVisible(bool(note))

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
    def model(self) -> Optional["MREPINNModel"]:
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
        """The trained example with the last results added as variables, or None.

        Its attrs hold the record :func:`napari_mrepinn.recipe.fit` writes (configuration,
        settings, loss history: :func:`~napari_mrepinn.recipe.result_attrs`), so a result
        saved from the dock says how it was made; ``seconds`` counts the training done in
        this dock, pauses left out.
        """
        if self._example is None or self._results is None:
            return None
        out = self._example.copy()
        for name, var in self._results.data_vars.items():
            out.ds[name] = var
        # an ensemble's result (or its one finished member's) carries its own record
        if self._model is not None and "mrepinn_config_json" not in out.ds.attrs:
            out.ds.attrs.update(result_attrs(self._model, self._model.config, self._seconds))
        out.ds.attrs["mrepinn_iteration"] = int(self._iteration)
        return out

    def config(self) -> TrainingConfig:
        """The training configuration the controls show (not checked)."""
        return read_config(self, self._base_config)

    # ------------------------------------------------------------------ validation
    def validate(self) -> tuple[MREExample | None, TrainingConfig | None, str | None]:
        """Check the controls; return ``(example, config, error message or None)``.

        The options are checked by :meth:`TrainingConfig.check` (as the API and the CLI
        check them); the dock adds only its own checks (an example layer, a frequency).
        The example returned has the chosen frequency selected, or all of them for a joint
        fit (:mod:`napari_mrepinn.multifreq`).
        """
        self.example_layer.reset_choices()
        ex = _selected_example(self.example_layer)
        if ex is None:
            return None, None, (
                "Select an example layer first: open an MRE file (.nc, .mat, NIfTI) or "
                "File › Open Sample › MRE-PINN, then choose it under 'example layer'."
            )
        if len(ex.frequencies) > 1:
            f = self.frequency.value
            if f is None:
                return None, None, (
                    f"{self.example_layer.value.name!r} has {len(ex.frequencies)} "
                    f"frequencies ({', '.join(f'{v:g}' for v in ex.frequencies)} Hz); "
                    "choose one under 'frequency' to train on, or all of them (joint fit)."
                )
            if f != JOINT:
                ex = ex.select_frequency(float(f))
        try:
            config = self.config().check(ex)
        except MREInputError as exc:
            return ex, None, str(exc)
        return ex, config, None

    # ------------------------------------------------------------------ control
    def start(self) -> bool:
        """Validate the controls and start a new run from scratch.

        With ``ensemble_members`` above 1, the members (seeds ``seed, seed + 1, ...``) train
        one after the other, each shown live; at the end ``mu_pred`` is their mean, with
        ``mu_spread`` and ``mu_uncertainty`` (:mod:`napari_mrepinn.uncertainty`). A stop
        keeps the finished members: two or more are shown as their ensemble, one as its fit.

        Returns
        -------
        bool
            True if training started; False if refused (a notification says why).
        """
        if self.is_running:
            show_error("MRE-PINN training is already running; stop it first.")
            return False
        example, config, err = self.validate()
        if err is not None:
            show_error(err)
            return False
        assert example is not None and config is not None
        self._model = None
        self._example = example
        self._history = []
        self._results = None
        self.loss_plot.clear()
        self._drop_earlier_run(example)
        build: Any = functools.partial(build_model, example, config)
        self._ensemble = None
        if config.ensemble_members > 1:
            self._ensemble = EnsembleRun(example, config)
            build = self._ensemble.builds()
        self._launch(build, example, config, config.iters, _run_callbacks(config),
                     ahi=config.ahi)
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
        continues. A model at iteration 0 (a warm start) begins a run with the
        learning-rate decay of :meth:`start`.
        """
        if self.is_running:
            self._runner.resume()
            return True
        model = self._model
        if model is None:
            show_error("Nothing to resume: start a run or load a checkpoint first.")
            return False
        # the model keeps its data, networks and optimiser; the run length and the
        # refresh / resample periods are read from the controls
        config = self.config()
        done = model.iteration
        n = config.iters - done if config.iters > done else config.iters
        callbacks = _run_callbacks(config) if done == 0 else None
        self._ensemble = None  # one model continues, whatever ensemble_members says
        self._launch(lambda: model, model.example, config, n, callbacks)
        return True

    def stop(self) -> None:
        """Stop the run within one iteration (the last prediction stays on screen)."""
        if self.is_running:
            self._runner.stop()
            self.status.value = "stopping…"

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the run is over and its layers are shown.

        Parameters
        ----------
        timeout : float, optional
            Seconds; None waits as long as it takes.

        Returns
        -------
        bool
            False if the timeout passed first.
        """
        t0 = time.perf_counter()
        if not self._runner.wait(timeout):
            return False
        QCoreApplication.processEvents()  # deliver the last signals (finished, layers)
        left = None if timeout is None else max(0.0, timeout - (time.perf_counter() - t0))
        return self._result_layers.flush(left)

    def shutdown(self) -> None:
        """Stop and join the training thread now (the dock or viewer is closing)."""
        if self._closing:
            return
        if self.is_running:
            self._closing = True  # the viewer may be half gone: no more layer updates
            self._result_layers.cancel()
        self._runner.shutdown()
        self._close_pbar()

    def close(self) -> None:
        """Stop training, then close the widget."""
        self.shutdown()
        self._closing = True
        self._result_layers.cancel()
        if self.viewer is not None:
            events = self.viewer.layers.events
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).disconnect(self._layers_changed)
        super().close()

    def _launch(self, build: Callable[[], Any] | list[Callable[[], Any]], example: MREExample,
                config: TrainingConfig, n_iters: int,
                callbacks: Callable[[Any], list[Any]] | None = None, *,
                ahi: bool = False) -> None:
        """Start the worker on ``build`` (a model factory, or one per ensemble member, each
        trained ``n_iters`` iterations)."""
        refresh = int(self.refresh_every.value)
        start_it = self._model.iteration if self._model is not None else 0
        members = 1 if callable(build) else len(build)
        self._run_iters, self._run_total = n_iters, start_it + n_iters
        self._member = (0, members)
        # first: napari's activity bar processes events while it is made, which would run
        # the queued layer additions below in this one event
        self._open_pbar(start_it, start_it + n_iters * members)
        # the result layers are made now, ahead of the first prediction, and the worker
        # waits for them (see _results)
        self._geometry = self._result_layers.prepare(example, ahi=ahi)
        worker = TrainingWorker(
            build,
            n_iters,
            # at least one loss record per refresh, so the curve keeps up with the layers
            display_every=max(1, min(refresh, config.display_every)),
            refresh_every=refresh,
            resample_every=config.resample_every,
            threads=config.threads,
            callbacks=callbacks,
            prepare_snapshot=functools.partial(_prepare_layer_data, geometry=self._geometry),
            ready=self._result_layers.ready,
        )
        self.last_error = None
        self._closing = False
        self._display_error_shown = False
        self._watcher.watch_window(self.native)
        self.progress_bar.max = max(1, start_it + n_iters * members)
        self.progress_bar.value = min(start_it, self.progress_bar.max)
        self.loss_plot.set_x_range(start_it + n_iters)
        self.status.value = "starting…"
        self._runner.start(worker)
        self._update_buttons()

    def _start_clicked(self, *_: Any) -> None:
        self.start()

    # ------------------------------------------------------------------ slots (GUI thread)
    def _on_model_ready(self, model: "MREPINNModel") -> None:
        if model is not self._model:  # a new one (not a resumed run): its time from 0
            self._seconds = 0.0
        self._model = model
        self._example = model.result_example  # with mu_ahi, computed in the worker
        ens = self._ensemble
        if ens is not None:
            ens.started += 1
            if ens.started > 1:  # the next member: its own run from iteration 0, as shown
                self._history = []
                self.loss_plot.clear()
                self.loss_plot.set_x_range(self._run_iters)
                self._update_buttons()
                return  # its AHI map is the one shown already
        if not self._closing and "mu_ahi" in self._example:  # the AHI map, computed now
            self._result_layers.show_now([_layers.variable_layer_data(
                self._example, "mu_ahi", **self._geometry)])
        self._update_buttons()

    def _on_progress(self, info: dict[str, Any]) -> None:
        if self._closing:
            return
        self._iteration = int(info["iteration"])
        self._its = float(info["its"])
        if info.get("losses"):
            self._losses = dict(info["losses"])
        total = int(info["total"])
        member, members = int(info.get("member", 0)), int(info.get("members", 1))
        self._member, self._run_total = (member, members), total
        # the bars count the iterations of the whole ensemble (members of equal length)
        done = member * total + self._iteration
        self.progress_bar.max = max(1, total * members)
        self.progress_bar.value = min(done, self.progress_bar.max)
        self.status.value = self._status_text(total)
        if self._pbar is not None:
            self._pbar.n = done - self._pbar_it0
            self._pbar.refresh()

    def _status_text(self, total: int) -> str:
        parts = [f"it {self._iteration}/{total}"]
        member, members = self._member
        if members > 1:
            parts.insert(0, f"member {member + 1}/{members}")
        if "loss" in self._losses:
            parts.append(f"loss {self._losses['loss']:.3g}")
        parts += [f"{loss_label(k)} {v:.2g}" for k, v in self._losses.items()
                  if k.startswith("loss_")][:4]
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
        self._show_results(snap["results"], prepared=snap.get("prepared"),
                           live=not snap.get("final", False))

    def _show_results(self, results: "xr.Dataset", prepared: Any = None,
                      live: bool = False) -> None:
        """Show ``results`` in the result layers (GUI thread).

        During a run (``live``) the layer data was computed in the worker (``prepared``)
        and only swapped into the visible layers; the final state updates every layer.
        """
        self._results = results
        self.n_refreshes += 1
        if self.viewer is None:
            return
        try:
            if live and prepared is not None:
                self._result_layers.show_live(prepared)
            else:
                self._result_layers.show_final(self.result_example)
        except (ValueError, TypeError) as exc:  # napari refused the data: training goes on
            # say it once per run rather than at every refresh
            if not self._display_error_shown:
                self._display_error_shown = True
                show_error(f"Could not show the MRE-PINN results: {type(exc).__name__}: {exc}")

    def _on_paused_changed(self, paused: bool) -> None:
        if self._closing:
            return
        member, members = self._member
        where = f" of member {member + 1}/{members}" if members > 1 else ""
        self.status.value = (
            f"paused at iteration {self._iteration}{where}" if paused
            else self._status_text(self._run_total)
        )
        self._update_buttons()

    def _on_failed(self, message: str, tb: str) -> None:
        self.last_error = message
        # the traceback goes to the console; the user gets the cause
        log.error("MRE-PINN training failed:\n%s", tb)
        if not self._closing:
            show_error(f"MRE-PINN training failed: {message}")

    def _on_member_finished(self, info: dict[str, Any]) -> None:
        if self._ensemble is not None:
            self._ensemble.member_finished(info)
        elif info["model"] is self._model:  # a single run, or one continued by Resume
            self._seconds += float(info["seconds"])

    def _on_finished(self) -> None:
        self._close_pbar()
        if self._closing:
            return
        ensemble, self._ensemble = self._ensemble, None
        if ensemble is not None:
            self._finish_ensemble(ensemble)
        else:
            if self._model is not None:
                self._iteration = self._model.iteration
                self.progress_bar.value = min(self._iteration, self.progress_bar.max)
            if self.last_error:
                self.status.value = f"failed at iteration {self._iteration}: {self.last_error}"
            else:
                self.status.value = f"done: iteration {self._iteration} ({self._its:.1f} it/s)"
        self._update_buttons()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _finish_ensemble(self, ensemble: EnsembleRun) -> None:
        """Show what an ensemble run leaves: the ensemble of its finished members, the one
        finished fit, or (none finished) the last state of the member stopped, as a
        stopped single run leaves it."""
        result, model, text = ensemble.outcome(self.last_error)
        if result is None:
            if self._model is not None:
                self._iteration = self._model.iteration
                text += (f" (the last state of member {max(1, ensemble.started)}, at "
                         f"iteration {self._iteration}, is shown)")
        else:
            # an ensemble has no one network to save or continue (model None)
            self._model = model
            if model is not None:  # the one finished member: Resume adds to its time
                self._iteration = model.iteration
                self._seconds = float(json.loads(
                    result.ds.attrs["mrepinn_settings_json"])["seconds"])
            if len(ensemble.results) == ensemble.size:
                self.progress_bar.value = self.progress_bar.max
            self._example = result
            self._show_results(result.ds[[n for n in _layers.RESULT_NAMES if n in result.ds]])
        self.status.value = text

    def _drop_earlier_run(self, example: MREExample) -> None:
        """Remove what an earlier run left in ``example`` (the viewer's, about to be
        trained; :func:`~napari_mrepinn.recipe.drop_earlier_run`), and the layers of the
        maps this run does not refill (an ensemble's, a joint fit's per-frequency ones).

        Kept, they would be shown and saved beside the new mu_pred as if they described
        it, and the run's placeholders (made from ``example``) would bring them back.
        """
        drop_earlier_run(example)
        if self.viewer is None:
            return
        for name in (*FIT_RESULTS, *ENSEMBLE_MAPS):
            if name not in _layers.LIVE_RESULTS and name in self.viewer.layers:
                self.viewer.layers.remove(self.viewer.layers[name])

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
        self._pbar = progress(total=total - it0, desc="MRE-PINN training")
        self._pbar_it0 = it0

    def _close_pbar(self) -> None:
        if self._pbar is not None:
            try:
                self._pbar.close()
            except RuntimeError:  # its Qt item went with the viewer: nothing left to close
                log.debug("progress bar closed after the viewer")
            self._pbar = None


def _selected_example(combo: ComboBox) -> MREExample | None:
    layer = combo.value
    return None if layer is None else _layers.example_from_layers(layer)


def _shutdown_ref(ref: "weakref.ref[TrainingRunner]", *_: Any) -> None:
    runner = ref()
    if runner is not None:
        runner.shutdown()


def _prepare_layer_data(model: "MREPINNModel", results: "xr.Dataset", *,
                        geometry: dict[str, Any]) -> list[Any]:
    """Layer data tuples of a live snapshot, computed in the worker thread (numpy only),
    with the display geometry of the layers the dock made for the run."""
    example = model.result_example.copy()
    for name, var in results.data_vars.items():
        example.ds[name] = var
    return _layers.result_layer_data(example, **geometry)


def _run_callbacks(config: TrainingConfig) -> Callable[["MREPINNModel"], list["Callback"]]:
    """Callbacks of a fresh run besides the resampler, as ``recipe.fit`` adds them (the
    factory is called in the worker with the built model)."""

    def make(model: "MREPINNModel") -> list["Callback"]:
        return schedule_callbacks(model, config)

    return make
