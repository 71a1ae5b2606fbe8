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


# ---------------------------------------------------------------------- example factories
def make_plane_example(n: int = 20, scale: float = 1.0, noise: float = 0.0, freq: float = 60.0):
    """Two crossing closed-form plane shear waves in a homogeneous Voigt medium (3 kPa,
    η = 1 Pa·s) on an ``n × n`` grid of 1 mm, with the true modulus and a full mask."""
    from napari_mrepinn.data import MREExample

    g = complex(3000.0, 2 * np.pi * freq)
    k = 2 * np.pi * freq * np.sqrt(1000 / g)
    ax = np.arange(n) * 1e-3
    xx, yy = np.meshgrid(ax, ax, indexing="ij")
    u = scale * (np.exp(-1j * k * xx) + 0.5 * np.exp(-1j * k * (0.6 * xx + 0.8 * yy)))
    ex = MREExample.from_numpy(u, freq, 1e-3, mre=np.full((n, n), g),
                               mre_mask=np.ones((n, n), int), source="plane waves")
    return ex.add_gaussian_noise(noise, seed=1) if noise else ex


@pytest.fixture
def plane_example():
    """A small closed-form single-frequency example (see :func:`make_plane_example`)."""
    return make_plane_example(16)
#: fixtures that open a napari viewer or drive Qt: a test using one is a ``gui`` test
GUI_FIXTURES = frozenset({"make_napari_viewer", "qtbot", "qapp", "viewer"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a viewer, qtbot or the Qt application (directly or through
    another fixture) as ``gui``, so that ``-m "not gui"`` deselects it without a
    hand-written marker."""
    for item in items:
        if GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)
