"""The ROI-statistics dock and k-MDEV in the inversion dock, under a virtual display."""

import numpy as np
import pandas as pd
import pytest

from conftest import add_example_layers
from napari_mrepinn import simulate
from napari_mrepinn._stats_widget import StatsWidget, labels_on_grid
from napari_mrepinn._widget import InversionWidget
from napari_mrepinn.data import MREExample, MREInputError

pytestmark = pytest.mark.gui

PLUGIN = "napari-mrepinn"


@pytest.fixture(scope="module")
def phantom() -> MREExample:
    return simulate.cylinder(shape=(32, 24), radius=6e-3, seed=0)


def test_labels_on_grid_follows_napari_axis_order(phantom):
    # napari shows (y, x): a region painted at napari row 3, column 20 is x = 20, y = 3
    painted = np.zeros((24, 32), int)
    painted[3, 20] = 7
    grid = labels_on_grid(painted, phantom)
    assert grid.shape == (32, 24) and grid[20, 3] == 7
    # slider axes in front are merged
    assert labels_on_grid(painted[None, None], phantom)[20, 3] == 7
    with pytest.raises(MREInputError, match="shape"):
        labels_on_grid(np.zeros((32, 24), int), phantom)


def test_kmdev_in_the_inversion_dock_and_roi_table(make_napari_viewer, phantom, errors,
                                                    tmp_path):
    viewer = make_napari_viewer()
    _, inv = viewer.window.add_plugin_dock_widget(PLUGIN, "Direct inversion (AHI/MDEV)")
    assert isinstance(inv, InversionWidget)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "ROI statistics")
    assert isinstance(w, StatsWidget)
    assert w.compute() is None and errors  # nothing to summarise yet

    add_example_layers(viewer, phantom)
    inv.method.value = "k-MDEV"
    speed = inv.run()
    assert speed is not None and "kmdev_speed" in viewer.layers
    assert speed.attrs["units"] == "m/s"

    # the example's own mask, then a drawn Labels layer
    w.result_layer.value = viewer.layers["kmdev_speed"]
    w.labels_layer.value = viewer.layers["mre_mask"]
    table = w.compute()
    assert table is not None and set(table.region) == {1, 2}
    row = table[(table.readout == "shear_speed") & (table.region == 1)].iloc[0]
    assert row["median"] == pytest.approx(1.74, rel=0.1)  # background ≈ 1.74 m/s
    assert w.table.shape[0] == len(table)

    drawn = viewer.add_labels(np.zeros((24, 32), np.int32), name="my roi")
    drawn.data[2:10, 4:12] = 3
    w.labels_layer.reset_choices()
    w.labels_layer.value = drawn
    table = w.compute()
    assert list(table[table.method == "kmdev"].region.unique()) == [3]
    assert int(table.iloc[0].n) == 64

    out = w.export(tmp_path / "roi.csv")
    back = pd.read_csv(out)
    assert len(back) == len(table) and set(back.region) == {3}

    # a Labels layer on another grid: a notification, not a crash
    other = viewer.add_labels(np.ones((5, 5), np.int32), name="wrong grid")
    w.labels_layer.reset_choices()
    w.labels_layer.value = other
    n_errors = len(errors)
    assert w.compute() is None and len(errors) == n_errors + 1
    assert "shape" in errors[-1]
