"""Shared test configuration.

GUI tests run under a real virtual X display (pytest-xvfb starts Xvfb when DISPLAY is unset);
napari's ``make_napari_viewer`` fixture comes from napari's own pytest plugin.
"""

import os

os.environ.setdefault("QT_API", "pyqt6")
os.environ.setdefault("PYTEST_QT_API", "pyqt6")

import numpy as np
import pytest
import torch

# 2 CPU cores: one intra-op thread keeps the GUI thread and torch from fighting
torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


#: fixtures that open a napari viewer or drive Qt: a test using one is a ``gui`` test
GUI_FIXTURES = frozenset({"make_napari_viewer", "qtbot", "qapp", "viewer"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a viewer, qtbot or the Qt application (directly or through
    another fixture) as ``gui``, so that ``-m "not gui"`` deselects it without a
    hand-written marker."""
    for item in items:
        if GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)
