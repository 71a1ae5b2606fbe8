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
