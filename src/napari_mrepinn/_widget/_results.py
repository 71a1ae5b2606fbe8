"""The training dock's result layers: created ahead of the predictions, one per event-loop
turn, and refreshed by swapping data in.

Why: adding a napari layer costs 45–70 ms of GUI-thread time on a small machine (the
vispy visual, the layer controls, the layer list's selection), two to three times that
while the training thread competes for the GIL. The dock used to add its six result layers
at once at the first live refresh: one 0.4–1.5 s freeze. Now :meth:`ResultLayers.prepare`
queues transparent (NaN) placeholders when a run starts, a zero-delay timer adds them one
per event-loop turn (the GUI paints and takes input in between) while the worker waits
for :attr:`ResultLayers.ready` (so that it does not compete for the GIL), and a live
refresh only replaces the data of existing, visible layers. A layer that is missing when a
refresh comes (one the user deleted) joins the queue with that refresh's data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from qtpy.QtCore import QCoreApplication, QElapsedTimer, QObject, QTimer

from .. import _layers
from ..data import MREExample

__all__ = ["ResultLayers"]

LayerDataTuple = tuple[Any, dict[str, Any], str]


class ResultLayers(QObject):
    """The result layers of one viewer, fed from the GUI thread.

    Parameters
    ----------
    viewer : napari.viewer.Viewer or None
        The viewer (None: nothing is shown, e.g. a widget made without one).
    """

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self.viewer = viewer
        self._pending: dict[str, LayerDataTuple] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._add_next)
        self.n_added = 0  # layers added (tests, profiling)
        #: set while no layer waits to be added (a worker may wait for it before starting)
        self.ready = threading.Event()
        self.ready.set()

    @property
    def pending(self) -> list[str]:
        """Names of the layers waiting to be added."""
        return list(self._pending)

    def prepare(self, example: MREExample, *, ahi: bool = False) -> dict[str, Any]:
        """Queue placeholders for the results of a run on ``example`` that the viewer lacks
        (with ``ahi``: also for the AHI map the run will compute).

        Returns
        -------
        dict
            The display geometry (:func:`napari_mrepinn._layers.result_geometry`) the
            run's layer data must be computed with to fit these layers.
        """
        placeholders = _layers.empty_results(example, ahi=ahi)
        if self.viewer is None:
            return _layers.result_geometry(None, placeholders)
        geometry = _layers.result_geometry(_layers.example_from_layers(self.viewer),
                                           placeholders)
        for item in _layers.result_layer_data(placeholders, **geometry):
            if item[1]["name"] not in self._pending and not self._fits(item):
                self._queue(item)
        return geometry

    def show_live(self, tuples: Iterable[LayerDataTuple]) -> None:
        """A refresh during training: swap the data of the visible layers, queue the rest."""
        if self.viewer is None:
            return
        for item in tuples:
            if self._fits(item):
                _layers.put_layer(self.viewer, *item, live=True)
            else:
                self._queue(item)

    def show_now(self, tuples: Iterable[LayerDataTuple]) -> None:
        """Update these layers in full now, or replace their queued data."""
        if self.viewer is None:
            return
        for item in tuples:
            if self._fits(item):
                _layers.put_layer(self.viewer, *item)
            else:
                self._queue(item)

    def show_final(self, example: MREExample) -> None:
        """The results of ``example`` in full (data, metadata, geometry of every layer),
        as :func:`napari_mrepinn._layers.update_result_layers` shows them."""
        if self.viewer is not None:
            self.show_now(_layers.result_layer_tuples(self.viewer, example))

    def flush(self, timeout: float | None = None) -> bool:
        """Process events until every queued layer is added; False on timeout (seconds)."""
        clock = QElapsedTimer()
        clock.start()
        app = QCoreApplication.instance()
        while self._pending:
            if timeout is not None and clock.elapsed() > timeout * 1000:
                return False
            if app is None:  # no event loop: add them here
                self._add_next()
            else:
                app.processEvents()
        return True

    def cancel(self) -> None:
        """Forget the queue (the viewer is closing)."""
        self._pending.clear()
        self._timer.stop()
        self.ready.set()

    # ------------------------------------------------------------------ internals
    def _fits(self, item: LayerDataTuple) -> bool:
        """Whether a layer of that name and shape is in the viewer."""
        data, kwargs, _ = item
        name = kwargs["name"]
        return name in self.viewer.layers and self.viewer.layers[name].data.shape == data.shape

    def _queue(self, item: LayerDataTuple) -> None:
        self._pending[item[1]["name"]] = item  # a newer refresh replaces the queued data
        self.ready.clear()
        if not self._timer.isActive():
            self._timer.start()

    def _add_next(self) -> None:
        if self._pending and self.viewer is not None:
            name = next(iter(self._pending))
            item = self._pending.pop(name)
            _layers.put_layer(self.viewer, *item)
            self.n_added += 1
        if self._pending:
            self._timer.start()  # the next one after the event loop had its turn
        else:
            self.ready.set()
