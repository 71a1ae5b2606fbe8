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


# ---------------------------------------------------------------------- torch fields
def constant_field(value: complex):
    """A field ``x -> value`` (one complex column per point), e.g. a homogeneous modulus for
    :class:`~napari_mrepinn.physics.WaveEquation`; it depends on ``x`` (times 0) so that
    derivatives through it exist."""

    def mu(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1), value, dtype=torch.complex128) + 0 * x[:, :1]

    return mu


# ---------------------------------------------------------------------- napari
def add_example_layers(viewer, example) -> None:
    """Add an example's layers the way the reader and the sample data do."""
    from napari.layers import Layer

    from napari_mrepinn import _layers

    for data, kwargs, layer_type in _layers.example_to_layer_data(example):
        viewer.add_layer(Layer.create(data, kwargs, layer_type))


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Messages passed to napari's show_error (the widgets look it up at call time)."""
    import napari.utils.notifications as notifications

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda msg, *a, **k: seen.append(msg))
    return seen


#: fixtures that open a napari viewer or drive Qt: a test using one is a ``gui`` test
GUI_FIXTURES = frozenset({"make_napari_viewer", "qtbot", "qapp", "viewer"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a viewer, qtbot or the Qt application (directly or through
    another fixture) as ``gui``, so that ``-m "not gui"`` deselects it without a
    hand-written marker."""
    for item in items:
        if GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)
