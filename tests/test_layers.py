"""_layers: napari axis order, scale, colormaps and limits; result layers updated in place."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Layer

from napari_mrepinn._layers import (
    LAYER_STYLES,
    display_limits,
    example_from_layers,
    example_to_layer_data,
    update_result_layers,
)
from napari_mrepinn.data import MREExample


def example_3d(rng, *, multi=False, sequences=0) -> MREExample:
    nx, ny, nz = 8, 6, 3
    w = rng.normal(size=(nx, ny, nz, 2)) + 1j * rng.normal(size=(nx, ny, nz, 2))
    mre = np.full((nx, ny, nz), 3000 + 500j)
    mre[3:5, 2:4] = 8000 + 500j
    mask = np.zeros((nx, ny, nz), int)
    mask[1:7, 1:5] = 1
    anat = rng.random((nx, ny, nz, sequences)) if sequences else None
    if sequences == 1:
        anat = anat[..., 0]
    kw = dict(spacing=(1e-3, 2e-3, 4e-3), mre_mask=mask, anat=anat, origin=(0.01, 0.02, -0.004))
    if multi:
        return MREExample.from_numpy(
            np.stack([w, 2 * w, 3 * w]),
            frequency=[50, 60, 70],
            mre=np.stack([mre, 1.1 * mre, 1.2 * mre]),
            **kw,
        )
    return MREExample.from_numpy(w, frequency=60, mre=mre, **kw)


def by_name(tuples):
    return {kw["name"]: (data, kw, kind) for data, kw, kind in tuples}


def test_axis_order_scale_and_styles(rng):
    ex = example_3d(rng, sequences=1)
    layers = by_name(example_to_layer_data(ex))
    assert list(layers) == ["anat", "wave", "mre", "mre_mask"]  # bottom to top
    data, kw, kind = layers["wave"]
    assert kind == "image" and data.dtype == np.float32
    assert data.shape == (2, 3, 6, 8)  # (component, z, y, x): x horizontal, y vertical
    assert kw["axis_labels"] == ["component", "z", "y", "x"]
    assert kw["scale"] == pytest.approx([1.0, 4.0, 2.0, 1.0])  # mm
    assert kw["translate"] == pytest.approx([0.0, -4.0, 20.0, 10.0])  # first voxel, mm
    np.testing.assert_allclose(data[1, 2, 4, 7], ex.ds["wave"].values[7, 4, 2, 1].real, rtol=1e-6)
    lo, hi = kw["contrast_limits"]
    assert lo == -hi and hi > 0  # symmetric around 0 for the diverging colormap
    assert kw["colormap"] == LAYER_STYLES["wave"]["colormap"]
    assert kw["metadata"]["mre_example"] is ex and kw["metadata"]["mre_variable"] == "wave"
    mre, kw_mre, _ = layers["mre"]
    assert kw_mre["colormap"] == "magma"
    assert kw_mre["metadata"]["unit"] == "kPa"
    assert mre.max() == pytest.approx(abs(8000 + 500j) / 1e3, rel=1e-6)
    # fixed limits from the ground truth: 0 to ceil(1.1 × max) kPa
    assert kw_mre["contrast_limits"] == (0.0, 9.0)
    mask, kw_mask, kind_mask = layers["mre_mask"]
    assert kind_mask == "labels" and mask.dtype == np.int32 and mask.shape == (3, 6, 8)
    assert kw_mask["opacity"] == pytest.approx(0.4)
    assert layers["anat"][1]["colormap"] == "gray"


def test_sliders_mean_the_same_dim_in_every_layer(rng):
    """napari right-aligns axes: mre (frequency, z, y, x) must not share the component slider."""
    ex = example_3d(rng, multi=True, sequences=2)
    layers = by_name(example_to_layer_data(ex))
    wave, kw_w, _ = layers["wave"]
    assert kw_w["axis_labels"] == ["frequency", "sequence", "component", "z", "y", "x"]
    assert wave.shape == (3, 2, 2, 3, 6, 8)
    mre, kw_m, _ = layers["mre"]
    assert kw_m["axis_labels"] == kw_w["axis_labels"]
    assert mre.shape == (3, 2, 2, 3, 6, 8)
    # the broadcast axes repeat the data (a view, no copy); frequency follows the slider
    np.testing.assert_allclose(mre[2, 1, 1], mre[2, 0, 0])
    np.testing.assert_allclose(mre[2, 0, 0] / mre[0, 0, 0], 1.2, rtol=1e-5)
    anat, kw_a, _ = layers["anat"]
    assert kw_a["axis_labels"] == ["sequence", "component", "z", "y", "x"]
    assert anat.shape == (2, 2, 3, 6, 8)
    assert layers["mre_mask"][1]["axis_labels"] == ["z", "y", "x"]


def _results(ex: MREExample, factor: float) -> dict:
    return {
        "mu_pred": ex.ds["mre"] * factor,
        "wave_pred": ex.ds["wave"] * factor,
        "pde_residual": abs(ex.ds["wave"]) * 0.01 * factor,
    }


def test_update_result_layers_in_place(make_napari_viewer, rng):
    ex = example_3d(rng, sequences=1)
    viewer = make_napari_viewer()
    for data, kw, kind in example_to_layer_data(ex):
        viewer.add_layer(Layer.create(data, kw, kind))
    assert example_from_layers(viewer) is ex
    first = update_result_layers(viewer, _results(ex, 1.1))
    names = [lyr.name for lyr in viewer.layers]
    for name in ("mu_pred", "wave_pred", "pde_residual", "wave_diff", "mu_diff"):
        assert names.count(name) == 1, name
    assert names[-1] == "mre_mask"  # results stay under the mask outline
    mu = viewer.layers["mu_pred"]
    limits = tuple(mu.contrast_limits)
    assert limits == tuple(viewer.layers["mre"].contrast_limits)
    # NaN (transparent) outside the mask, kPa inside
    mask = viewer.layers["mre_mask"].data > 0
    assert np.all(np.isnan(mu.data[~mask]))
    np.testing.assert_allclose(mu.data[mask], 1.1 * viewer.layers["mre"].data[mask], rtol=1e-5)
    diff = viewer.layers["mu_diff"].data
    np.testing.assert_allclose(diff[mask], 0.1 * viewer.layers["mre"].data[mask], rtol=1e-4)

    second = update_result_layers(viewer, _results(ex, 0.9))
    assert [lyr.name for lyr in viewer.layers] == names  # no duplicates, same order
    assert all(a is b for a, b in zip(first, second, strict=True))  # same layer objects
    np.testing.assert_allclose(
        viewer.layers["mu_pred"].data[mask], 0.9 * viewer.layers["mre"].data[mask], rtol=1e-5
    )
    assert tuple(viewer.layers["mu_pred"].contrast_limits) == limits  # fixed kPa limits
    # the results live in the example, so saving the layers saves them too
    assert "mu_pred" in ex and "wave_pred" in ex
    assert example_from_layers(viewer.layers["mu_pred"]) is ex


def test_update_from_results_example(make_napari_viewer, rng):
    """A results MREExample (as the training widget has) also updates in place."""
    ex = example_3d(rng, multi=True)
    viewer = make_napari_viewer()
    for data, kw, kind in example_to_layer_data(ex):
        viewer.add_layer(Layer.create(data, kw, kind))
    single = ex.select_frequency(60)
    single.ds["mu_pred"] = single.ds["mre"] * 1.05
    single.ds["mu_ahi"] = single.ds["mre"] * 0.9
    update_result_layers(viewer, single)
    update_result_layers(viewer, single)
    names = [lyr.name for lyr in viewer.layers]
    assert names.count("mu_pred") == 1 and names.count("mu_ahi") == 1
    mu = viewer.layers["mu_pred"]
    assert mu.data.shape == (3, 6, 8)  # single frequency: visible at every slider position
    assert mu.metadata["mre_example"] is single
    assert "mu_pred" in ex  # copied into the viewer's example (same grid)

    # the next run's results go to the opened example, whichever layer is selected (a
    # selected result layer carries the earlier run's example, not the one opened)
    viewer.layers.selection.active = viewer.layers["mu_pred"]
    assert example_from_layers(viewer) is ex
    second = ex.select_frequency(60)
    second.ds["mu_pred"] = second.ds["mre"] * 0.8
    update_result_layers(viewer, second)
    np.testing.assert_allclose(ex.ds["mu_pred"].values, second.ds["mu_pred"].values)


def test_display_limits_default_without_truth(rng):
    w = rng.normal(size=(5, 4)) + 0j
    ex = MREExample.from_numpy(w, frequency=60, spacing=1e-3)
    lim = display_limits(ex)
    assert lim["modulus"] == (0.0, 12.0)
    assert lim["wave"][0] == -lim["wave"][1]


def test_screenshot_result_over_anatomy(make_napari_viewer, rng):
    """The rendered mu_pred is coloured inside the mask and leaves the gray anatomy outside."""
    nx, ny = 40, 30
    w = rng.normal(size=(nx, ny)) + 1j * rng.normal(size=(nx, ny))
    mask = np.zeros((nx, ny), int)
    mask[10:30, 8:22] = 1
    ex = MREExample.from_numpy(
        w, frequency=60, spacing=1e-3, mre=np.full((nx, ny), 5000.0 + 0j),
        mre_mask=mask, anat=np.full((nx, ny), 0.5),
    )  # fmt: skip
    viewer = make_napari_viewer(show=True)
    for data, kw, kind in example_to_layer_data(ex):
        viewer.add_layer(Layer.create(data, kw, kind))
    update_result_layers(viewer, {"mu_pred": ex.ds["mre"]})
    for layer in viewer.layers:
        layer.visible = layer.name in ("anat", "mu_pred")
    viewer.layers["anat"].contrast_limits = (0.0, 1.0)  # flat mid-gray background
    viewer.reset_view()
    img = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    assert img.shape[0] > 50 and img.shape[1] > 50
    lit = img.sum(axis=-1) > 30  # the canvas background is black
    rows, cols = np.nonzero(lit)
    assert rows.size > 0, "nothing was drawn"
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    view = img[r0:r1, c0:c1]
    # map the data grid (rows = y, cols = x) onto the drawn rectangle
    ys = ((np.arange(view.shape[0]) + 0.5) / view.shape[0] * ny).astype(int)
    xs = ((np.arange(view.shape[1]) + 0.5) / view.shape[1] * nx).astype(int)
    in_mask = mask.T[np.ix_(ys, xs)] > 0
    chroma = view.max(axis=-1) - view.min(axis=-1)
    # compare well inside / well outside the mask (edges are interpolated)
    from scipy.ndimage import binary_erosion

    core_in = binary_erosion(in_mask, iterations=3)
    core_out = binary_erosion(~in_mask, iterations=3)
    assert core_in.sum() > 100 and core_out.sum() > 100
    assert np.median(chroma[core_in]) > 40, "mu_pred should be coloured inside the mask"
    assert np.max(chroma[core_out]) < 8, "outside the mask the gray anatomy shows"
    assert abs(np.median(view[core_out]) - 128) < 10


def test_joint_and_ensemble_maps_are_result_layers():
    # a joint fit's G*(f) and α and an ensemble's uncertainty show as layers, in % / kPa
    from napari_mrepinn._layers import result_layer_data

    ex = example_3d(np.random.default_rng(0), multi=True)
    grid = ex.ds["mre"].isel(frequency=0, drop=True)
    ex.ds["mu_pred"] = grid.assign_attrs(frequency=60.0)
    ex.ds["mu_pred_f"] = ex.ds["mre"]
    ex.ds["mu_alpha"] = abs(grid) * 0 + 0.1
    ex.ds["mu_uncertainty"] = abs(grid) * 0 + 0.05
    layers = {kw["name"]: (data, kw) for data, kw, _ in result_layer_data(ex)}
    assert {"mu_pred_f", "mu_alpha", "mu_uncertainty", "mu_diff"} <= set(layers)
    data, kw = layers["mu_uncertainty"]
    assert kw["metadata"]["unit"] == "%"
    inside = np.asarray(data)[np.isfinite(data)]
    assert inside.size and np.allclose(inside, 5.0)
    data, kw = layers["mu_pred_f"]
    assert kw["axis_labels"][0] == "frequency" and np.nanmax(data) == pytest.approx(9.6, 0.01)
