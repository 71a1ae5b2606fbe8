"""A live loss-curve plot for the training dock (matplotlib canvas, throttled redraws).

Records arrive from the training worker at every display step. A full matplotlib draw
(text, ticks, legend) costs 30–100 ms of GUI-thread time on a small, busy machine, so:

* redraws are coalesced: at most one every ``min_interval`` seconds;
* the axes limits move in coarse steps (x: the run's length, y: whole decades), so most
  redraws only *blit* the lines onto a cached background (a few milliseconds); a full draw
  happens only when a limit steps or a new curve appears.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from .config import LOSS_TERMS, TV_TERM

__all__ = ["LossPlot", "loss_components", "loss_label"]

# record keys that are not losses (bookkeeping of the training loop)
_NOT_LOSSES = {"iteration", "iter", "step", "time", "elapsed", "lr", "its", "it/s", "n_points"}


def loss_components(record: Mapping[str, Any]) -> dict[str, float]:
    """The loss values of one history record, by name.

    Keys naming bookkeeping (``iteration``, ``time``, ``lr``, weights...) are dropped; when the
    record has keys containing ``"loss"`` only those are kept, otherwise every finite number.

    Parameters
    ----------
    record : mapping
        One entry of ``MREPINNModel.history``.

    Returns
    -------
    dict
        ``{name: value}`` with float values.
    """
    numeric: dict[str, float] = {}
    for key, value in record.items():
        if key in _NOT_LOSSES or "weight" in key:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            numeric[str(key)] = v
    lossy = {k: v for k, v in numeric.items() if "loss" in k}
    return lossy or numeric


def loss_label(key: str) -> str:
    """What the legend calls a history key: ``loss`` is the total, ``loss_<term>`` the
    term's label of :data:`~napari_mrepinn.config.LOSS_TERMS` and ``test_loss_<term>`` the
    same on the held-out points (``"PDE (held out)"``); other keys are shown as they are."""
    labels = {t.name: t.label for t in (*LOSS_TERMS, TV_TERM)}
    if key == "loss":
        return "total"
    for prefix, suffix in (("test_loss_", " (held out)"), ("loss_", "")):
        if key.startswith(prefix) and key[len(prefix):] in labels:
            return labels[key[len(prefix):]] + suffix
    return key


class LossPlot(QWidget):
    """Component losses against iteration on a log scale.

    Parameters
    ----------
    parent : QWidget, optional
        Parent widget.
    min_interval : float
        Shortest time between two redraws, in seconds.
    """

    def __init__(self, parent: QWidget | None = None, min_interval: float = 0.3) -> None:
        super().__init__(parent)
        self.min_interval = float(min_interval)
        # a fixed layout: the constrained layout engine re-measures every text at each draw
        self.figure = Figure(figsize=(3.6, 2.4), dpi=80)
        self.figure.subplots_adjust(left=0.17, right=0.97, bottom=0.19, top=0.96)
        self.canvas = FigureCanvasQTAgg(self.figure)
        # a fixed height: a resize forces a full (slow) draw, and the dock relayouts often
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setFixedHeight(190)
        self.ax = self.figure.add_subplot()
        self._style_axes()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

        self._series: dict[str, tuple[list[float], list[float]]] = {}
        self._lines: dict[str, Any] = {}
        self._x_max = 1.0
        self._y_set = False
        self._background: Any = None
        self._last_draw = 0.0
        self.n_draws = 0  # redraws (full or blitted), for tests and profiling
        self.n_full_draws = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._redraw)
        # any full draw (first show, resize, limit step) refreshes the cached background
        self.canvas.mpl_connect("draw_event", self._on_draw_event)

    # ------------------------------------------------------------------ data
    def clear(self) -> None:
        """Forget all points (a new run)."""
        self._series.clear()
        for line in self._lines.values():
            line.remove()
        self._lines.clear()
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        self._x_max = 1.0
        self._y_set = False
        self._background = None
        self._schedule()

    def set_x_range(self, n_iters: float) -> None:
        """Fix the iteration axis to ``[0, n_iters]`` (the run's length: no rescaling)."""
        self._x_max = max(1.0, float(n_iters))
        self._background = None
        self._schedule()

    def add_record(self, record: Mapping[str, Any], iteration: float | None = None) -> None:
        """Append the losses of one history record and schedule a redraw."""
        it = record.get("iteration", iteration)
        if it is None:
            it = max((len(x) for x, _ in self._series.values()), default=0)
        values = loss_components(record)
        # components not computed yet (NaN: e.g. the PDE loss during its warm-up) get their
        # curve and legend entry now, so their first point does not force a full redraw
        for key, value in record.items():
            if "loss" in str(key) and key not in values and key not in _NOT_LOSSES:
                with contextlib.suppress(TypeError, ValueError):
                    if math.isnan(float(value)):
                        self._series.setdefault(str(key), ([], []))
        for name, value in values.items():
            if value <= 0:  # log scale: nothing to draw
                continue
            xs, ys = self._series.setdefault(name, ([], []))
            xs.append(float(it))
            ys.append(value)
        self._schedule()

    def set_history(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Replace the curves by a whole history (after loading a checkpoint)."""
        self.clear()
        for rec in records:
            self.add_record(rec)

    @property
    def series(self) -> dict[str, tuple[list[float], list[float]]]:
        """The plotted points ``{name: (iterations, values)}`` (read-only use)."""
        return self._series

    # ------------------------------------------------------------------ drawing
    def _style_axes(self) -> None:
        ax = self.ax
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)

    def _schedule(self) -> None:
        # coalesce bursts of records into one draw at most every min_interval
        if self._timer.isActive():
            return
        wait = self.min_interval - (time.perf_counter() - self._last_draw)
        self._timer.start(max(0, int(wait * 1000)))

    def _wanted_limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        xs = [x for x, _ in self._series.values() for x in x]
        ys = [y for _, y in self._series.values() for y in y]
        x_max = self._x_max
        if xs and max(xs) > x_max:
            x_max = max(xs) * 1.5  # past the announced length: grow in big steps
            self._x_max = x_max
        if not ys:
            return (0.0, x_max), (1e-3, 1.0)
        lo, hi = self.ax.get_ylim() if self._y_set else (math.inf, 0.0)
        if min(ys) < lo or max(ys) > hi:
            # expand only, by whole decades with one to spare below (losses go down), so
            # the limits step a couple of times per run, not at every refresh
            lo = min(lo, 10.0 ** (math.floor(math.log10(min(ys))) - 1))
            hi = max(hi, 10.0 ** math.ceil(math.log10(max(ys))))
            self._y_set = True
        return (0.0, x_max), (lo, hi)

    def _redraw(self) -> None:
        if not self.isVisible():
            # nothing to see (hidden dock, headless script): draw when shown again
            self._background = None
            return
        new_line = False
        for name, (xs, ys) in self._series.items():
            line = self._lines.get(name)
            if line is None:
                # animated: left out of full draws, painted over the cached background
                (line,) = self.ax.plot(xs, ys, lw=1.2, label=loss_label(name), animated=True)
                self._lines[name] = line
                new_line = True
            else:
                line.set_data(xs, ys)
        xlim, ylim = self._wanted_limits()
        full = new_line or self._background is None
        if tuple(self.ax.get_xlim()) != xlim or tuple(self.ax.get_ylim()) != ylim:
            self.ax.set_xlim(*xlim)
            self.ax.set_ylim(*ylim)
            full = True
        if new_line and self._lines:
            self.ax.legend(fontsize=6, loc="lower left", framealpha=0.6)
        if full:
            self.canvas.draw()  # emits draw_event: background cached, lines painted
            self.n_full_draws += 1
        else:
            self.canvas.restore_region(self._background)
            self._draw_lines()
            self.canvas.blit(self.figure.bbox)
        self._last_draw = time.perf_counter()
        self.n_draws += 1

    def showEvent(self, event: Any) -> None:  # Qt API name
        super().showEvent(event)
        self._schedule()

    def _on_draw_event(self, event: Any) -> None:
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._draw_lines()

    def _draw_lines(self) -> None:
        for line in self._lines.values():
            self.ax.draw_artist(line)
