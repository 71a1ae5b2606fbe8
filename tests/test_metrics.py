"""Tests of the elastogram accuracy metrics on hand-made arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from napari_mrepinn import metrics
from napari_mrepinn.data import MREInputError


@pytest.fixture
def phantom():
    """Background (label 1, 2 kPa), two targets (labels 2 and 3), outside (label 0)."""
    mask = np.zeros((12, 10), int)
    mask[1:11, 1:9] = 1
    mask[2:5, 2:5] = 2
    mask[7:10, 5:8] = 3
    true = np.full(mask.shape, 2000.0 + 400j)
    true[mask == 2] = 6000.0 + 1500j
    true[mask == 3] = 4000.0 + 800j
    # some texture inside each region so that R is not driven by three levels only
    rng = np.random.default_rng(0)
    true = true * (1 + 0.05 * rng.standard_normal(mask.shape))
    true[mask == 0] = 0
    return true, mask


def test_perfect_prediction(phantom):
    true, mask = phantom
    r = metrics.evaluate(true.copy(), true, mask)
    assert r["pearson_r"] == pytest.approx(1.0, abs=1e-12)
    assert r["rmse_pa"] == 0.0
    assert r["median_relative_error"] == {1: 0.0, 2: 0.0, 3: 0.0}
    assert r["cte_percent"] == {2: pytest.approx(100.0), 3: pytest.approx(100.0)}
    assert r["n_voxels"] == int((mask > 0).sum())


def test_scaled_copy(phantom):
    true, mask = phantom
    r = metrics.evaluate(2.5 * true, true, mask)
    assert r["pearson_r"] == pytest.approx(1.0, abs=1e-12)
    # median|2.5 t - t| / median|t| = 1.5 in every region
    for v in r["median_relative_error"].values():
        assert v == pytest.approx(1.5)
    for v in r["cte_percent"].values():
        assert v == pytest.approx(250.0)
    inside = mask > 0
    assert r["rmse_pa"] == pytest.approx(1.5 * np.sqrt(np.mean(np.abs(true[inside]) ** 2)))


def test_flat_prediction_has_zero_contrast_and_undefined_r(phantom):
    true, mask = phantom
    r = metrics.evaluate(np.full(mask.shape, 3000.0 + 0j), true, mask)
    assert r["cte_percent"] == {2: 0.0, 3: 0.0}
    assert np.isnan(r["pearson_r"])  # a constant map has no correlation
    # constant up to float32 rounding of a complex modulus (a network still at its prior)
    phase = np.random.default_rng(0).uniform(0, 1.4, mask.shape)
    g = (np.float32(2000) * np.exp(1j * phase)).astype(np.complex64)  # |g| varies by ~1e-7
    assert np.isnan(metrics.pearson_r(g, true, mask))
    # while a real, small contrast still correlates
    assert metrics.pearson_r(3000 + 1e-2 * np.abs(true), true, mask) == pytest.approx(1.0)


def test_offset_keeps_contrast_and_phase_counts_in_relative_error(phantom):
    true, mask = phantom
    mag = np.abs(true)
    r = metrics.evaluate(mag + 1000.0, mag, mask)
    assert r["cte_percent"] == {2: pytest.approx(100.0), 3: pytest.approx(100.0)}  # cancels
    assert r["pearson_r"] == pytest.approx(1.0, abs=1e-12)
    assert r["rmse_pa"] == pytest.approx(1000.0)
    # a pure phase error: magnitudes (R, RMSE, CTE) are perfect, the complex error is not
    theta = 0.3
    r = metrics.evaluate(true * np.exp(1j * theta), true, mask)
    assert r["rmse_pa"] == pytest.approx(0.0, abs=1e-9)
    assert r["pearson_r"] == pytest.approx(1.0, abs=1e-12)
    assert r["cte_percent"][3] == pytest.approx(100.0)
    for v in r["median_relative_error"].values():
        assert v == pytest.approx(2 * np.sin(theta / 2))


def test_known_values_by_hand():
    mask = np.array([[1, 1, 1, 2, 2, 0]])
    true = np.array([[1000.0, 1000.0, 1000.0, 3000.0, 3000.0, 5.0]])
    pred = np.array([[1100.0, 900.0, 1000.0, 2000.0, 2600.0, 1e9]])
    r = metrics.evaluate(pred, true, mask)
    assert r["rmse_pa"] == pytest.approx(np.sqrt((100**2 + 100**2 + 0 + 1000**2 + 400**2) / 5))
    assert r["median_relative_error"][1] == pytest.approx(100 / 1000)
    assert r["median_relative_error"][2] == pytest.approx(700 / 3000)
    # (2300 - 1000) / (3000 - 1000)
    assert r["cte_percent"][2] == pytest.approx(65.0)
    assert r["median_pred_pa"] == {1: 1000.0, 2: 2300.0}
    a, b = pred[0, :5], true[0, :5]
    assert r["pearson_r"] == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_outside_mask_is_ignored_and_pieces_agree(phantom):
    true, mask = phantom
    rng = np.random.default_rng(1)
    pred = true * (1 + 0.2 * rng.standard_normal(true.shape))
    ref = metrics.evaluate(pred, true, mask)
    pred2 = pred.copy()
    pred2[mask == 0] = 1e12
    assert metrics.evaluate(pred2, true, mask) == ref
    assert metrics.pearson_r(pred, true, mask) == ref["pearson_r"]
    assert metrics.rmse(pred, true, mask) == ref["rmse_pa"]
    assert metrics.median_relative_error(pred, true, mask) == ref["median_relative_error"]
    assert metrics.contrast_transfer(pred, true, mask) == ref["cte_percent"]


def test_dataarrays_in_any_dim_order(phantom):
    true, mask = phantom
    pred = true * 1.1 + 50
    dims = ("x", "y")
    ref = metrics.evaluate(pred, true, mask)
    r = metrics.evaluate(xr.DataArray(pred, dims=dims).transpose("y", "x"),
                         xr.DataArray(true, dims=dims), xr.DataArray(mask, dims=dims))
    assert r["rmse_pa"] == pytest.approx(ref["rmse_pa"])
    assert r["cte_percent"] == pytest.approx(ref["cte_percent"])


def test_regions_selection_and_boolean_mask(phantom):
    true, mask = phantom
    r = metrics.evaluate(true, true, mask, regions={1: "background", 2: "stiff"})
    assert set(r["median_relative_error"]) == {1, 2}
    assert set(r["cte_percent"]) == {2}
    assert r["region_names"][2] == "stiff"
    rb = metrics.evaluate(true, true, mask > 0)
    assert rb["cte_percent"] == {} and set(rb["median_relative_error"]) == {1}


@pytest.mark.parametrize(
    ("pred_shape", "mask_fn", "match"),
    [
        ((12, 9), lambda m: m, "shapes differ"),
        ((12, 10), lambda m: np.zeros_like(m), "no voxel > 0"),
        ((12, 10), lambda m: m + 0.5, "integer region labels"),
    ],
)
def test_bad_input_raises(phantom, pred_shape, mask_fn, match):
    true, mask = phantom
    pred = np.ones(pred_shape, complex)
    with pytest.raises(MREInputError, match=match):
        metrics.evaluate(pred, true, mask_fn(mask))


def test_nan_inside_mask_raises_but_not_outside(phantom):
    true, mask = phantom
    pred = true.copy()
    pred[mask == 0] = np.nan
    metrics.evaluate(pred, true, mask)  # fine: outside the mask
    pred[3, 3] = np.nan
    with pytest.raises(MREInputError, match="pred: 1 NaN"):
        metrics.evaluate(pred, true, mask)
    with pytest.raises(MREInputError, match="not in the mask"):
        metrics.evaluate(true, true, mask, regions=[1, 7])


def test_format_table_in_kpa_and_percent(phantom):
    true, mask = phantom
    res = {
        "AHI": metrics.evaluate(true * 1.2, true, mask, regions={1: "bg", 2: "t2", 3: "t3"}),
        "flat": metrics.evaluate(np.full(mask.shape, 2000.0), true, mask),
    }
    table = metrics.format_table(res)
    lines = table.splitlines()
    assert "RMSE kPa" in lines[0] and "CTE t2 %" in lines[0] and "rel.err bg %" in lines[0]
    ahi_row = next(line for line in lines if line.startswith("AHI"))
    rmse_kpa = res["AHI"]["rmse_pa"] / 1e3
    assert f"{rmse_kpa:.3f}" in ahi_row and "120.0" in ahi_row and "20.0" in ahi_row
    flat_row = next(line for line in lines if line.startswith("flat"))
    assert "n/a" in flat_row  # undefined R of a flat map
    single = metrics.format_table(res["AHI"])
    assert single.splitlines()[2].startswith("prediction")
