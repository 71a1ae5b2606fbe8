"""Sample data: simulated phantoms with ground truth, through napari's open_sample."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mrepinn._layers import example_from_layers
from napari_mrepinn.data import MREExample

PLUGIN = "napari-mrepinn"


def test_four_target_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "four_target")
    names = [lyr.name for lyr in viewer.layers]
    assert names == ["wave", "mre", "mre_mask"]
    ex = example_from_layers(viewer)
    assert isinstance(ex, MREExample)
    assert ex.frequency == 90.0
    wave = viewer.layers["wave"]
    assert wave.data.dtype == np.float32
    nx, ny, nz = ex.spatial_shape
    assert wave.data.shape == (ex.n_components, nz, ny, nx)
    np.testing.assert_allclose(wave.scale[-3:], [ex.spacing[d] * 1e3 for d in ("z", "y", "x")])
    assert wave.opacity == 1.0  # no anatomy: the wave is the background
    mre = viewer.layers["mre"]
    # ground truth |G*| in kPa: 3 kPa background, 10 kPa targets (plus the viscous part)
    assert float(np.nanmin(mre.data)) == pytest.approx(3.0, rel=0.05)
    assert float(np.nanmax(mre.data)) == pytest.approx(10.0, rel=0.05)
    assert mre.contrast_limits[0] == 0 and mre.contrast_limits[1] >= 10
    assert viewer.layers["mre_mask"].data.max() >= 1


def test_liver_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "liver")
    names = [lyr.name for lyr in viewer.layers]
    assert names == ["anat", "wave", "mre", "mre_mask"]
    ex = viewer.layers["anat"].metadata["mre_example"]
    assert ex.frequency == 60.0
    assert viewer.layers["anat"].colormap.name == "gray"
    # every layer's sliders line up with the wave's (right-aligned napari axes)
    wave_labels = tuple(viewer.layers["wave"].axis_labels)
    for layer in viewer.layers:
        labels = tuple(layer.axis_labels)
        assert wave_labels[-len(labels) :] == labels[-len(wave_labels) :], layer.name
