"""What both docks share: notifications and watching the dock's lifetime."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QObject

__all__ = ["JOINT", "CloseWatcher", "show_error", "show_info"]

#: the training dock's frequency choice for a joint fit of every frequency
#: (:mod:`napari_mrepinn.multifreq`)
JOINT = "all"


def show_error(message: str) -> None:
    """An error notification (looked up at call time, so tests can monkeypatch napari's)."""
    from napari.utils import notifications

    notifications.show_error(message)


def show_info(message: str) -> None:
    from napari.utils import notifications

    notifications.show_info(message)


class CloseWatcher(QObject):
    """Calls ``callback`` when a watched widget closes or is un-parented (an event filter).

    napari's ``remove_dock_widget`` un-parents the dock's widget rather than closing it;
    the main window's close event comes before napari tears its canvas down.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback
        self._window: weakref.ref[Any] | None = None

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # Qt API name
        etype = event.type()
        if etype == QEvent.Type.Close or (
            etype == QEvent.Type.ParentChange and obj.parent() is None
        ):
            self._callback()
        return False

    def watch_window(self, widget: Any) -> None:
        """Also watch the top-level window ``widget`` is in now (once per window)."""
        win = widget.window()
        watched = self._window() if self._window is not None else None
        if win is not widget and win is not watched:
            win.installEventFilter(self)
            self._window = weakref.ref(win)
