"""The QThread training worker, driven by a fake model that follows the training contract.

No viewer here: these tests check the threading (signals, pause, stop, errors, clean
thread end) quickly and independently of the PINN core.
"""

import gc
import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr

from napari_mrepinn._loss_plot import LossPlot, loss_components, loss_label
from napari_mrepinn._worker import TrainingRunner, TrainingWorker, describe_exception


class FakeModel:
    """Follows the ``MREPINNModel`` contract the worker relies on."""

    def __init__(self, delay: float = 0.002, fail_at: int | None = None) -> None:
        self.iteration = 0
        self.history: list[dict] = []
        self.stop_training = False
        self.delay = delay
        self.fail_at = fail_at
        self.threads: set[str] = set()
        self.torch_threads: set[int] = set()
        self.example = None
        self._mu = np.zeros((4, 4), complex)

    def train(self, n_iters, display_every=10, test_every=100, callbacks=()):
        self.stop_training = False
        for _ in range(n_iters):
            if self.stop_training:
                break
            self.threads.add(threading.current_thread().name)
            self.torch_threads.add(torch.get_num_threads())
            if self.iteration == 0:  # (counting walks the frozen objects: once)
                self.frozen = gc.get_freeze_count()
            time.sleep(self.delay)
            self.iteration += 1
            self._mu += 1  # the buffer the loop keeps mutating
            if self.fail_at is not None and self.iteration >= self.fail_at:
                raise FloatingPointError(f"loss is NaN at iteration {self.iteration}")
            if self.iteration % display_every == 0:
                rec = {"iteration": self.iteration, "loss": 1.0 / self.iteration,
                       "wave_loss": 0.5 / self.iteration}
                self.history.append(rec)
                for cb in callbacks:
                    cb.on_display(self, rec)
            for cb in callbacks:
                cb.on_iteration_end(self)
            if self.stop_training:
                break

    def results(self) -> xr.Dataset:
        # deliberately returns a view of the live buffer: the worker must copy
        return xr.Dataset({"mu_pred": (("x", "y"), self._mu)})


def _run(qtbot, model, n_iters=40, **kw):
    runner = TrainingRunner()
    events = {"progress": [], "snapshot": [], "record": [], "failed": [], "finished": 0}
    runner.progress.connect(events["progress"].append)
    runner.snapshot.connect(events["snapshot"].append)
    runner.record.connect(events["record"].append)
    runner.failed.connect(lambda m, tb: events["failed"].append(m))

    def _fin():
        events["finished"] += 1

    runner.finished.connect(_fin)
    kw.setdefault("min_refresh_interval", 0.0)
    worker = TrainingWorker(lambda: model, n_iters, **kw)
    runner.start(worker)
    return runner, events


def test_worker_runs_in_thread_and_emits_copies(qtbot):
    model = FakeModel()
    runner, ev = _run(qtbot, model, n_iters=40, display_every=5, refresh_every=10)
    assert runner.is_running
    qtbot.waitUntil(lambda: not runner.is_running, timeout=20_000)
    assert ev["finished"] == 1 and not ev["failed"]
    assert model.iteration == 40
    assert threading.main_thread().name not in model.threads
    # snapshots are copies: each still shows its own iteration
    its = [s["iteration"] for s in ev["snapshot"]]
    assert its and its[-1] == 40
    for s in ev["snapshot"]:
        assert np.all(s["results"]["mu_pred"].values == s["iteration"])
    assert [r["iteration"] for r in ev["record"]] == list(range(5, 41, 5))
    assert ev["progress"] and ev["progress"][-1]["its"] > 0


class SlowSnapshotModel(FakeModel):
    def results(self) -> xr.Dataset:
        time.sleep(0.03)  # a full-grid evaluation
        return super().results()


@pytest.mark.parametrize("share", [0.04, 1.0])
def test_snapshots_keep_to_their_share_of_the_run(qtbot, share):
    # 200 iterations of 2 ms: about 0.4 s of training; each snapshot costs 30 ms. With 4 %
    # the snapshots may take ~16 ms of it (the first one is free); with 100 % they are
    # limited only by the GUI consuming them
    model = SlowSnapshotModel(delay=0.002)
    runner, ev = _run(qtbot, model, n_iters=200, refresh_every=1, max_refresh_share=share)
    qtbot.waitUntil(lambda: not runner.is_running, timeout=30_000)
    live = [s for s in ev["snapshot"] if not s["final"]]
    if share < 1:
        assert 1 <= len(live) <= 2
    else:
        assert len(live) >= 5
    assert ev["snapshot"][-1]["final"]


def test_worker_pause_resume_stop(qtbot):
    model = FakeModel(delay=0.005)
    runner, ev = _run(qtbot, model, n_iters=100_000, refresh_every=50)
    qtbot.waitUntil(lambda: model.iteration > 5, timeout=10_000)
    runner.pause()
    qtbot.waitUntil(lambda: runner.is_paused, timeout=5_000)
    frozen = model.iteration
    qtbot.wait(200)
    assert model.iteration == frozen
    runner.resume()
    qtbot.waitUntil(lambda: model.iteration > frozen + 3, timeout=5_000)
    assert not runner.is_paused
    runner.stop()
    at_stop = model.iteration
    qtbot.waitUntil(lambda: not runner.is_running, timeout=5_000)
    assert model.iteration <= at_stop + 1  # within one iteration
    assert ev["finished"] == 1


def test_training_seconds_leave_the_pause_out(qtbot):
    # a single run reports its model too: the dock records its training time from it
    model = FakeModel(delay=0.005)
    runner = TrainingRunner()
    done: list[dict] = []
    runner.member_finished.connect(done.append)
    t0 = time.perf_counter()
    runner.start(TrainingWorker(lambda: model, 100_000, refresh_every=50))
    try:
        qtbot.waitUntil(lambda: model.iteration > 5, timeout=10_000)
        runner.pause()
        qtbot.waitUntil(lambda: runner.is_paused, timeout=5_000)
        qtbot.wait(1500)
        runner.resume()
        qtbot.waitUntil(lambda: not runner.is_paused, timeout=5_000)
        runner.stop()
        assert runner.wait(10)
    finally:
        runner.shutdown()
    wall = time.perf_counter() - t0
    assert [(d["member"], d["members"], d["completed"]) for d in done] == [(0, 1, False)]
    assert done[0]["model"] is model
    assert 0 < done[0]["seconds"] < wall - 1.4  # the 1.5 s pause is not training time


def test_worker_stop_while_paused(qtbot):
    model = FakeModel()
    runner, _ = _run(qtbot, model, n_iters=100_000)
    qtbot.waitUntil(lambda: model.iteration > 2, timeout=10_000)
    runner.pause()
    qtbot.waitUntil(lambda: runner.is_paused, timeout=5_000)
    runner.stop()
    qtbot.waitUntil(lambda: not runner.is_running, timeout=5_000)


def test_worker_error_is_reported(qtbot):
    model = FakeModel(fail_at=7)
    runner, ev = _run(qtbot, model, n_iters=100, refresh_every=5)
    qtbot.waitUntil(lambda: not runner.is_running, timeout=10_000)
    assert len(ev["failed"]) == 1 and "NaN" in ev["failed"][0]
    assert "FloatingPointError" in ev["failed"][0]
    assert ev["finished"] == 1
    # the last good snapshot is the one before the failure
    assert ev["snapshot"][-1]["iteration"] == 5


def test_build_failure_is_reported(qtbot):
    def build():
        raise ValueError("bad input: wave is empty")

    runner = TrainingRunner()
    failed = []
    runner.failed.connect(lambda m, tb: failed.append(m))
    runner.start(TrainingWorker(build, 10))
    assert runner.wait(10)
    assert failed == ["ValueError: bad input: wave is empty"]


def test_ensemble_members_train_one_after_the_other_and_stop_together(qtbot):
    # the napari dock's ensemble: several model factories, one thread, one member at a time
    models = [FakeModel(delay=0.001), FakeModel(delay=0.01), FakeModel()]
    built: list[int] = []

    def factory(i):
        def build():
            built.append(i)
            return models[i]
        return build

    runner = TrainingRunner()
    members, progress = [], []
    runner.member_finished.connect(members.append)
    runner.progress.connect(progress.append)
    runner.start(TrainingWorker([factory(i) for i in range(3)], 20, refresh_every=5,
                                min_refresh_interval=0.0))
    assert runner.wait(20)
    assert built == [0, 1, 2] and [m.iteration for m in models] == [20, 20, 20]
    assert len({t for m in models for t in m.threads}) == 1  # the same worker thread
    assert [(m["member"], m["members"], m["completed"]) for m in members] == \
        [(0, 3, True), (1, 3, True), (2, 3, True)]
    for m, model in zip(members, models, strict=True):
        assert m["model"] is model and m["seconds"] > 0
        assert np.all(m["results"]["mu_pred"].values == 20)  # its final state, a copy
    assert {p["member"] for p in progress} == {0, 1, 2}  # each member reports itself

    # a stop during member 2 (200 iterations of 50 ms) ends it and builds no member 3
    models = [FakeModel(delay=0.001), FakeModel(delay=0.05), FakeModel()]
    built.clear()
    members.clear()
    runner.start(TrainingWorker([factory(i) for i in range(3)], 200))
    try:
        qtbot.waitUntil(lambda: models[1].iteration > 2, timeout=10_000)
        runner.stop()
        assert runner.wait(10)
    finally:
        runner.shutdown()
    assert built == [0, 1] and models[2].iteration == 0
    assert [(m["member"], m["completed"]) for m in members] == [(0, True), (1, False)]


def test_shutdown_joins_thread(qtbot):
    model = FakeModel()
    runner, _ = _run(qtbot, model, n_iters=100_000)
    qtbot.waitUntil(lambda: model.iteration > 2, timeout=10_000)
    thread = runner._thread
    assert runner.shutdown(timeout=5)
    assert not runner.is_running
    assert thread.isFinished()


def test_describe_exception_hints():
    assert "n_points" in describe_exception(RuntimeError("CUDA out of memory. Tried"))
    assert "learning rate" in describe_exception(FloatingPointError("loss is NaN"))
    assert describe_exception(KeyError()) == "KeyError"


def test_loss_components_and_plot(qtbot):
    rec = {"iteration": 10, "loss": 0.5, "wave_loss": 0.25, "pde_weight": 1e-8, "time": 3.0}
    assert loss_components(rec) == {"loss": 0.5, "wave_loss": 0.25}
    plot = LossPlot(min_interval=0.0)
    qtbot.addWidget(plot)
    plot.add_record(rec)
    plot.add_record({**rec, "iteration": 20, "loss": 0.1, "loss_pde": float("nan")})
    qtbot.wait(50)
    assert plot.n_draws == 0  # hidden: nothing drawn
    plot.show()
    qtbot.waitUntil(lambda: plot.n_draws >= 1, timeout=2_000)
    assert plot.series["loss"] == ([10.0, 20.0], [0.5, 0.1])
    assert plot.series["loss_pde"] == ([], [])  # its curve waits for its first value
    full = plot.n_full_draws
    plot.add_record({**rec, "iteration": 30, "loss": 0.09})
    qtbot.waitUntil(lambda: plot.n_draws >= 2, timeout=2_000)
    assert plot.n_full_draws == full  # same decades: only blitted
    assert plot.ax.get_yscale() == "log"
    plot.set_history([rec])
    assert plot.series["loss"] == ([10.0], [0.5])


@pytest.mark.parametrize("threads", [0, 3])
def test_worker_trains_under_the_thread_policy(qtbot, threads):
    from napari_mrepinn.config import default_threads

    before = torch.get_num_threads()
    model = FakeModel()
    runner, _ = _run(qtbot, model, n_iters=5, threads=threads)
    assert runner.wait(10)
    # 0: the one default policy (one thread on two cores or fewer); the caller's after
    assert model.torch_threads == {threads or default_threads()}
    assert torch.get_num_threads() == before


def test_old_objects_are_left_out_of_garbage_collections_during_a_run(qtbot):
    # a full collection over napari's and torch's objects froze the GUI for 0.3-0.7 s
    assert gc.get_freeze_count() == 0
    model = FakeModel()
    runner, _ = _run(qtbot, model, n_iters=5)
    assert runner.wait(10)
    assert model.frozen > 1000  # the objects that existed before the run
    assert gc.get_freeze_count() == 0  # handed back afterwards


def test_legend_names_the_loss_terms(qtbot):
    from napari_mrepinn.config import LOSS_TERMS

    for term in LOSS_TERMS:
        assert loss_label(f"loss_{term.name}") == term.label
    assert loss_label("test_loss_pde") == "PDE (held out)"
    assert loss_label("loss") == "total" and loss_label("other") == "other"
    plot = LossPlot(min_interval=0.0)
    qtbot.addWidget(plot)
    plot.show()
    plot.add_record({"iteration": 1, "loss": 1.0, "loss_wave": 0.5, "loss_pde": 0.1,
                     "test_loss_pde": 0.2})
    qtbot.waitUntil(lambda: plot.n_draws >= 1, timeout=2_000)
    legend = [t.get_text() for t in plot.ax.get_legend().get_texts()]
    assert legend == ["total", "wave", "PDE", "PDE (held out)"]
