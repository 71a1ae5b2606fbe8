"""The QThread training worker of the napari dock.

Design
------
* :class:`TrainingWorker` is a ``QObject`` moved to its own ``QThread``. Its ``run`` slot
  builds the model (through a factory, so a slow set-up never blocks the GUI) and runs the
  Qt-free ``MREPINNModel.train`` loop of :mod:`napari_mrepinn.training`, listening to it
  through a ``training.Callback``, with torch's CPU threads set by the one thread policy
  (:func:`napari_mrepinn.recipe.torch_threads`). It uses the model's public API only
  (``train``, ``results``, ``iteration``, ``history``, ``stop_training``, ``example``).
  Given several factories (the members of an ensemble), it builds and trains them one
  after the other in the same thread, each like a single run; a stop ends them all.
* The callback runs in the worker thread. It emits *copies* only: ``progress`` (iteration,
  losses, it/s; throttled to ~10 Hz), ``record`` (each history record) and ``snapshot``
  (the full-grid ``results()`` as a numpy-backed ``xarray.Dataset`` every refresh period).
  While paused it blocks on a ``threading.Event``; on stop it sets ``model.stop_training``.
* :class:`TrainingRunner` lives in the GUI thread. It owns the thread and the worker and
  re-emits the worker's signals from GUI-thread slots, so whoever listens to the runner
  (the widget: layers and plot) runs in the GUI thread. Nothing here touches napari.

The training module never imports Qt; this module is the only bridge.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtCore import QCoreApplication, QElapsedTimer, QObject, QThread, Signal, Slot

from ._loss_plot import loss_components
from .recipe import torch_threads
from .training import Callback, Resampler

__all__ = ["TrainingRunner", "TrainingWorker", "describe_exception"]

# seconds between two progress signals: the GUI needs a few updates per second, not one per
# iteration (queued signals faster than the GUI consumes them pile up)
PROGRESS_INTERVAL = 0.25
# Python's GIL switch interval while training (seconds; Python's default is 0.005)
GIL_SWITCH_INTERVAL = 0.001


def describe_exception(exc: BaseException) -> str:
    """A one-line cause of a training failure, with a hint for the usual suspects."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = f"{name}: {text}" if text else name
    low = msg.lower()
    if "out of memory" in low:
        msg += " (lower n_points or the network size, or train on the CPU)"
    elif "nan" in low or "non-finite" in low or "not finite" in low:
        msg += " (lower the learning rate or the PDE weight)"
    return msg


class TrainingWorker(QObject):
    """Runs ``model.train`` in a worker thread and reports through Qt signals.

    Parameters
    ----------
    build_model : callable or sequence of callables
        ``build_model() -> MREPINNModel``, called in the worker thread. It may return an
        existing (e.g. restored) model to continue its run. Several: the members of an
        ensemble, built and trained one after the other with the same settings; a stop
        ends the member in training and starts no other. Every model trained (the one of a
        single run too) ends with its final snapshot and ``member_finished``.
    n_iters : int
        Iterations to train in this run (per member).
    display_every : int
        History (loss) record period passed to ``train``.
    refresh_every : int
        Period, in iterations, of the full-grid snapshots.
    resample_every : int
        Period of the collocation-point ``Resampler`` (0: the model's default).
    threads : int
        Torch CPU threads while training (0: the default policy,
        :func:`napari_mrepinn.config.default_threads`: one on machines with two cores or
        fewer, where more would fight the GUI thread); the caller's setting afterwards.
    min_refresh_interval : float
        Shortest time between two snapshots in seconds: a fast run with a short refresh
        period would otherwise spend the GUI thread on layer updates nobody can follow.
    max_refresh_share : float
        Largest share of the run's time spent computing snapshots (a full-grid evaluation
        each): after a snapshot that took ``d`` seconds, the next one waits for at least
        ``d · (1/share − 1)`` seconds of training, so a large grid refreshes less often
        instead of slowing the training down.
    callbacks : callable, optional
        ``callbacks(model) -> list of training.Callback`` added to the run (e.g. the
        learning-rate decay), called in the worker thread once the model is built.
    ready : threading.Event, optional
        Wait for it (in the worker thread, stoppable) before building the model: the GUI
        sets it once its own set-up (the result layers) is done, which then does not
        compete with the worker for the GIL.
    prepare_snapshot : callable, optional
        ``prepare_snapshot(model, results) -> object`` run in the worker thread on each
        live snapshot (e.g. the arrays of the layers, so that the GUI thread only swaps
        them in); its value is the snapshot's ``"prepared"`` entry. Must not touch Qt or
        napari objects.
    """

    progress = Signal(object)  # dict(iteration, total, losses, its, member, members)
    record = Signal(object)  # one history record (a dict copy)
    snapshot = Signal(object)  # dict(iteration, results=xr.Dataset deep copy, final)
    model_ready = Signal(object)  # the model, once built
    # dict(member, members, model, results, seconds, completed): after each model trained,
    # the one of a single run (members 1) or each member of an ensemble (seconds: of
    # training, pauses left out; completed: it was not stopped; results: its final
    # snapshot's, or None)
    member_finished = Signal(object)
    paused_changed = Signal(bool)  # True once the loop actually blocks, False when it goes on
    failed = Signal(str, str)  # one-line cause, full traceback
    finished = Signal()  # always last

    def __init__(
        self,
        build_model: Callable[[], Any] | Sequence[Callable[[], Any]],
        n_iters: int,
        *,
        display_every: int = 10,
        refresh_every: int = 50,
        resample_every: int = 0,
        threads: int = 0,
        min_refresh_interval: float = 0.25,
        max_refresh_share: float = 0.04,
        callbacks: Callable[[Any], list[Any]] | None = None,
        prepare_snapshot: Callable[[Any, Any], Any] | None = None,
        ready: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self._builds = [build_model] if callable(build_model) else list(build_model)
        self._member = 0  # index of the member in training
        self._paused_seconds = 0.0  # of the member in training (not training time)
        self._extra_callbacks = callbacks
        self._prepare_snapshot = prepare_snapshot
        self._ready = ready
        self.n_iters = int(n_iters)
        self.display_every = max(1, int(display_every))
        self.refresh_every = max(1, int(refresh_every))
        self.resample_every = int(resample_every)
        self.threads = int(threads)
        self.model: Any = None
        self._go = threading.Event()  # set = running, cleared = paused
        self._go.set()
        self._stop = threading.Event()
        self._snapshot_free = threading.Event()  # the GUI consumed the last snapshot
        self._snapshot_free.set()
        self.error: str | None = None
        self._start_iteration = 0
        self._times: deque[tuple[int, float]] = deque(maxlen=50)
        self._last_progress = 0.0
        self._last_snapshot_it = -1
        self._last_snapshot_t = 0.0
        self.min_refresh_interval = float(min_refresh_interval)
        self.max_refresh_share = min(max(float(max_refresh_share), 1e-3), 1.0)
        self._refresh_wait = 0.0  # seconds of training owed to the last snapshot's cost

    # ------------------------------------------------------------------ control (any thread)
    def request_pause(self) -> None:
        """Pause at the end of the current iteration."""
        self._go.clear()

    def request_resume(self) -> None:
        """Continue after a pause."""
        self._go.set()

    def request_stop(self) -> None:
        """Stop within one iteration (also releases a pause)."""
        self._stop.set()
        model = self.model
        if model is not None:
            model.stop_training = True  # a plain flag: safe to set from another thread
        self._go.set()

    def snapshot_consumed(self) -> None:
        """Tell the worker that the GUI has shown the last snapshot."""
        self._snapshot_free.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ thread side
    @Slot()
    def run(self) -> None:
        """Build the model and train; always ends with ``finished``."""
        prev_switch = sys.getswitchinterval()
        # The GUI thread gives the GIL up at every Qt call and must win it back from this
        # thread each time; at Python's default 5 ms switch interval a layer update of a few
        # dozen Qt calls then waits ~100s of ms ("convoy effect"). 1 ms while training.
        sys.setswitchinterval(min(prev_switch, GIL_SWITCH_INTERVAL))
        try:
            while self._ready is not None and not self._ready.wait(0.02):
                if self._stop.is_set():
                    break
            if self._stop.is_set():
                return
            with torch_threads(self.threads):
                for i, build in enumerate(self._builds):
                    if self._stop.is_set():
                        break
                    self._member = i
                    self._run_member(build)
        except BaseException as exc:  # reported, not swallowed: every failure must reach the GUI
            self.error = describe_exception(exc)
            self.failed.emit(self.error, traceback.format_exc())
        finally:
            sys.setswitchinterval(prev_switch)
            # hand the object back to the GUI thread, whose event loop outlives this one,
            # so that deleteLater() there really deletes it
            app = QCoreApplication.instance()
            if app is not None:
                self.moveToThread(app.thread())
            self.finished.emit()

    def _run_member(self, build: Callable[[], Any]) -> None:
        """Build one model and train it (the whole run of a single fit)."""
        model = build()
        self.model = model
        self.model_ready.emit(model)
        model.stop_training = self._stop.is_set()
        self._start_iteration = int(model.iteration)
        self._times.clear()  # the it/s of this member only
        self._times.append((self._start_iteration, time.perf_counter()))
        self._last_progress = 0.0  # report at its first iteration (the member changed)
        self._paused_seconds = 0.0
        t0 = time.perf_counter()
        self._train(model)
        seconds = time.perf_counter() - t0 - self._paused_seconds
        # stopped, not finished: its iterations were cut short (a converged stop is not this)
        completed = not self._stop.is_set()
        results = None
        if self.n_iters > 0:
            results = self._emit_snapshot(model, final=True)  # the final state, off the grid too
        self.member_finished.emit({
            "member": self._member, "members": len(self._builds), "model": model,
            "results": results, "seconds": seconds, "completed": completed,
        })

    def _train(self, model: Any) -> None:
        callbacks: list[Callback] = [_QtBridge(self)]
        if self._extra_callbacks is not None:
            callbacks[:0] = list(self._extra_callbacks(model))
        if self.resample_every > 0:
            callbacks.insert(0, Resampler(period=self.resample_every))
        # test_every=0: the snapshots evaluate the grid themselves, once per refresh
        model.train(
            n_iters=self.n_iters,
            display_every=self.display_every,
            test_every=0,
            callbacks=callbacks,
        )

    # hooks called by the bridge callback (worker thread)
    def _on_iteration_end(self, model: Any) -> None:
        it = int(model.iteration)
        now = time.perf_counter()
        self._times.append((it, now))
        if now - self._last_progress >= PROGRESS_INTERVAL:
            self._emit_progress(model)
        if (
            it % self.refresh_every == 0
            and self._snapshot_free.is_set()  # the GUI has shown the previous one
            and now - self._last_snapshot_t >= max(self.min_refresh_interval,
                                                   self._refresh_wait)
        ):
            self._emit_snapshot(model)
        if self._stop.is_set():
            model.stop_training = True
            return
        if not self._go.is_set():
            self._emit_progress(model)
            self.paused_changed.emit(True)
            # poll, so that a stop request also ends the pause
            t_pause = time.perf_counter()
            while not self._go.wait(0.05):
                pass
            self._paused_seconds += time.perf_counter() - t_pause
            # restart the it/s clock: the pause is not training time
            self._times.clear()
            self._times.append((it, time.perf_counter()))
            self.paused_changed.emit(False)
            if self._stop.is_set():
                model.stop_training = True

    def _on_display(self, model: Any, record: Any) -> None:
        self.record.emit(dict(record))

    def _emit_progress(self, model: Any) -> None:
        it = int(model.iteration)
        history = model.history
        losses = loss_components(history[-1]) if history else {}
        its = 0.0
        if len(self._times) >= 2:
            (i0, t0), (i1, t1) = self._times[0], self._times[-1]
            if t1 > t0:
                its = (i1 - i0) / (t1 - t0)
        self._last_progress = time.perf_counter()
        self.progress.emit(
            {
                "iteration": it,
                "total": self._start_iteration + self.n_iters,
                "losses": losses,
                "its": its,
                "member": self._member,
                "members": len(self._builds),
            }
        )

    def _emit_snapshot(self, model: Any, final: bool = False) -> Any:
        # computed here (worker thread), copied so the loop can never tear what the GUI shows
        t0 = time.perf_counter()
        results = model.results()
        results = results.copy(deep=True)
        prepared = None
        if self._prepare_snapshot is not None and not final:
            prepared = self._prepare_snapshot(model, results)
        self._last_snapshot_it = int(model.iteration)
        self._last_snapshot_t = time.perf_counter()
        share = self.max_refresh_share
        self._refresh_wait = (self._last_snapshot_t - t0) * (1.0 / share - 1.0)
        self._snapshot_free.clear()
        self.snapshot.emit(
            {
                "iteration": int(model.iteration),
                "results": results,
                "final": final,
                "prepared": prepared,
            }
        )
        return results


class _QtBridge(Callback):
    """Forwards the training loop's hooks to the worker (in the worker thread)."""

    def __init__(self, worker: TrainingWorker) -> None:
        self.worker = worker

    def on_iteration_end(self, model: Any) -> None:
        self.worker._on_iteration_end(model)

    def on_display(self, model: Any, record: Any) -> None:
        self.worker._on_display(model, record)


class TrainingRunner(QObject):
    """Owns one training thread at a time; its signals are emitted in the GUI thread.

    Signals
    -------
    progress(dict), record(dict), snapshot(dict), model_ready(model), member_finished(dict),
    paused_changed(bool), failed(str, str), finished()
    """

    progress = Signal(object)
    record = Signal(object)
    snapshot = Signal(object)
    model_ready = Signal(object)
    member_finished = Signal(object)
    paused_changed = Signal(bool)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: TrainingWorker | None = None
        self._paused = False

    # ------------------------------------------------------------------ state
    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until the thread has finished."""
        return self._thread is not None

    @property
    def is_paused(self) -> bool:
        """True while the worker is blocked in a pause."""
        return self._paused

    @property
    def worker(self) -> TrainingWorker | None:
        return self._worker

    # ------------------------------------------------------------------ control
    def start(self, worker: TrainingWorker) -> None:
        """Move ``worker`` to a new thread and run it."""
        if self.is_running:
            raise RuntimeError("training is already running; stop it first")
        thread = QThread()
        thread.setObjectName("mrepinn-training")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # queued into this (GUI-thread) object: the slots below run in the GUI thread
        worker.progress.connect(self._relay_progress)
        worker.record.connect(self._relay_record)
        worker.snapshot.connect(self._relay_snapshot)
        worker.model_ready.connect(self._relay_model_ready)
        worker.member_finished.connect(self._relay_member_finished)
        worker.paused_changed.connect(self._relay_paused)
        worker.failed.connect(self._relay_failed)
        worker.finished.connect(thread.quit)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker = thread, worker
        self._paused = False
        # A full garbage collection walks every object of the process (napari, torch, the
        # viewer: 0.3-0.7 s measured on a busy 2-core machine, holding the GIL, so the GUI
        # freezes) and a run's allocations trigger one within seconds. The objects older
        # than the run are left out of the collections while it lasts (gc.freeze) and
        # handed back when it ends (gc.unfreeze; their garbage is collected then).
        gc.freeze()
        thread.start()

    def pause(self) -> None:
        if self._worker is not None:
            self._worker.request_pause()

    def resume(self) -> None:
        if self._worker is not None:
            self._worker.request_resume()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.request_stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the run is over; False on timeout."""
        timer = QElapsedTimer()
        timer.start()
        app = QCoreApplication.instance()
        while self.is_running:
            if timeout is not None and timer.elapsed() > timeout * 1000:
                return False
            if app is not None:
                app.processEvents()
            if self._thread is not None:
                self._thread.wait(10)
        return True

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop and join the thread now (closing the viewer or dock); True if it ended."""
        thread = self._thread
        if thread is None:
            return True
        self.stop()
        thread.quit()
        ended = thread.wait(int(timeout * 1000))
        if ended:
            # deliver what is queued (finished...) so the owner returns to idle
            QCoreApplication.sendPostedEvents(self)
            if self._thread is thread:
                self._on_thread_finished()
        return ended

    # ------------------------------------------------------------------ relays (GUI thread)
    @Slot(object)
    def _relay_progress(self, info: object) -> None:
        self.progress.emit(info)

    @Slot(object)
    def _relay_record(self, rec: object) -> None:
        self.record.emit(rec)

    @Slot(object)
    def _relay_snapshot(self, snap: object) -> None:
        try:
            self.snapshot.emit(snap)
        finally:
            if self._worker is not None:
                self._worker.snapshot_consumed()

    @Slot(object)
    def _relay_model_ready(self, model: object) -> None:
        self.model_ready.emit(model)

    @Slot(object)
    def _relay_member_finished(self, info: object) -> None:
        self.member_finished.emit(info)

    @Slot(bool)
    def _relay_paused(self, paused: bool) -> None:
        self._paused = paused
        self.paused_changed.emit(paused)

    @Slot(str, str)
    def _relay_failed(self, msg: str, tb: str) -> None:
        self.failed.emit(msg, tb)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, worker = self._thread, self._worker
        if thread is None:
            return
        self._thread = None
        self._worker = None
        self._paused = False
        gc.unfreeze()
        if worker is not None:
            worker.deleteLater()
        thread.deleteLater()
        self.finished.emit()
