"""The ensemble uncertainty map (``napari_mrepinn.uncertainty``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from napari_mrepinn import recipe, simulate, uncertainty
from napari_mrepinn.data import MREInputError


def test_ensemble_maps_are_mean_and_relative_spread():
    a = xr.DataArray(np.array([[1000.0 + 100j, 2000.0]]), dims=("x", "y"))
    b = xr.DataArray(np.array([[3000.0 + 300j, 2000.0]]), dims=("x", "y"))
    maps = uncertainty.ensemble_maps([a, b], calibration=2.0)
    np.testing.assert_allclose(maps["mu_pred"].values, [[2000.0 + 200j, 2000.0]])
    mags = np.abs([1000.0 + 100j, 3000.0 + 300j])
    spread = np.std(mags, ddof=1) / np.mean(mags)
    np.testing.assert_allclose(maps["mu_spread"].values, [[spread, 0.0]])
    np.testing.assert_allclose(maps["mu_uncertainty"].values, [[2 * spread, 0.0]])
    assert maps["mu_uncertainty"].attrs["coverage"] == uncertainty.COVERAGE


def test_ensemble_result_is_the_first_member_with_the_maps_and_the_seeds():
    # one assembly for fit_ensemble (processes) and the napari dock (members in turn)
    ex = simulate.cylinder(shape=(8, 8), seed=0)
    grid = ex.ds["mre"]
    members = []
    for k, seed in enumerate((5, 6)):
        member = xr.Dataset({"mu_pred": grid * (1 + k), "wave_pred": ex.ds["wave"] * k})
        member.attrs = {"frequency": ex.frequency,
                        "mrepinn_settings_json": json.dumps({"seconds": 1.0 + k, "iters": 9}),
                        "mrepinn_config_json": f"config {seed}"}
        members.append(member)
    out = uncertainty.ensemble_result(ex, members, [5, 6])
    np.testing.assert_allclose(out.ds["mu_pred"].values, 1.5 * grid.values)
    np.testing.assert_allclose(out.ds["wave_pred"].values, 0 * ex.ds["wave"].values)
    np.testing.assert_allclose(out.ds["mu_spread"].values, np.std([1, 2], ddof=1) / 1.5)
    assert out.ds.attrs["mrepinn_config_json"] == "config 5"  # the first member's record
    s = json.loads(out.ds.attrs["mrepinn_settings_json"])
    assert s["iters"] == 9 and s["ensemble_members"] == 2 and s["ensemble_seeds"] == [5, 6]
    assert s["ensemble_seconds"] == [1.0, 2.0]
    assert s["uncertainty_calibration"] == uncertainty.CALIBRATION
    assert "mu_spread" not in ex.ds  # a copy
    with pytest.raises(MREInputError, match="at least 2 members"):
        uncertainty.ensemble_result(ex, members[:1], [5])
    assert uncertainty.ensemble_seeds(3, 3) == [3, 4, 5]
    assert len(set(uncertainty.ensemble_seeds(None, 3))) == 3


@pytest.fixture(scope="module")
def small():
    return simulate.cylinder(shape=(24, 24), seed=0).add_gaussian_noise(1e-3, seed=0)


@pytest.mark.slow  # two spawned processes that import torch: ~20 s
def test_fit_with_ensemble_members_gives_the_uncertainty_map(small):
    # two members in two processes (spawned), as `mrepinn fit --ensemble-members 2` runs them
    out = recipe.fit(small, iters=40, pde_warmup_iters=20, n_hidden=16, n_layers=2,
                     stop_tol=0, progress=False, ensemble_members=2)
    for name in ("mu_pred", "mu_spread", "mu_uncertainty", "wave_pred", "mu_ahi"):
        assert name in out.ds, name
    spread = out.ds["mu_spread"].values[np.asarray(out.mask.values, bool)]
    assert np.all(np.isfinite(spread)) and spread.max() > 0  # two seeds differ
    s = json.loads(out.ds.attrs["mrepinn_settings_json"])
    assert s["ensemble_members"] == 2 and s["ensemble_seeds"] == [0, 1]
    # the members are the recipe's own fits with those seeds
    one = recipe.fit(small, iters=40, pde_warmup_iters=20, n_hidden=16, n_layers=2,
                     stop_tol=0, progress=False, seed=1)
    two = recipe.fit(small, iters=40, pde_warmup_iters=20, n_hidden=16, n_layers=2,
                     stop_tol=0, progress=False, seed=0)
    mean = (one.ds["mu_pred"].values + two.ds["mu_pred"].values) / 2
    np.testing.assert_allclose(out.ds["mu_pred"].values, mean, rtol=1e-5)


def test_ensemble_refuses_what_it_cannot_do(small):
    with pytest.raises(MREInputError, match="at least 2 members"):
        uncertainty.fit_ensemble(small, members=1)
    with pytest.raises(MREInputError, match="no callbacks"):
        recipe.fit(small, ensemble_members=2, callbacks=[object()], progress=False)
