"""A trained :class:`~napari_mrepinn.training.MREPINNModel` evaluated on the full grid.

:func:`grid_predictions` runs the networks and the PDE residual over every grid point in
batches (memory bounded by the batch, whatever the grid); :func:`grid_comparison` puts the
predictions beside the truth (``pred``, ``diff``, ``true``) and :func:`public_results` picks
the public result variables. ``MREPINNModel._grid_eval``, ``test`` and ``results`` call
them, so a subclass (the joint multi-frequency model) still overrides the methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr

if TYPE_CHECKING:
    from .training import MREPINNModel

__all__ = ["grid_comparison", "grid_predictions", "public_results"]


def grid_predictions(model: MREPINNModel, batch_size: int = 4096,
                     progress: bool = False) -> dict[str, np.ndarray]:
    """Predictions on the full grid in batches of ``batch_size`` points (memory stays
    bounded by the batch, whatever the grid), as flat numpy arrays; a progress bar when
    ``progress`` and the grid has more than one batch.

    Returns
    -------
    dict of str to ndarray
        ``u`` (wave, data units), ``mu`` (Pa, ``(N, n_moduli)``), ``pde`` (dimensionless
        residual) and, with anatomy networks, ``a``: one row per grid point.
    """
    net = model.net
    parts: dict[str, list[np.ndarray]] = {"u": [], "mu": [], "a": [], "pde": []}
    was_training = net.training
    net.eval()
    try:
        starts = range(0, model.x_all.shape[0], batch_size)
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="full-grid evaluation", unit="batch", leave=False)
        for s in starts:
            x = model.x_all[s : s + batch_size]
            with torch.no_grad():
                # the residual's own passes of the networks give the wave and modulus
                fields: dict[str, torch.Tensor] = {}
                r = model.pde.normalized(x, net.wave_field, net.mu_field,
                                         create_graph=False, fields=fields)
                u = net.wave_from_std(fields["u"])
                mu = fields["mu"]
                if net.n_anat:
                    parts["a"].append(net.mu_and_anat(x)[1].cpu().numpy())
            parts["u"].append(u.cpu().numpy())
            parts["mu"].append(mu.cpu().numpy())  # (N, n_moduli)
            parts["pde"].append(r.cpu().numpy())
    finally:
        net.train(was_training)
    return {k: np.concatenate(v, 0) for k, v in parts.items() if v}


def grid_comparison(model: MREPINNModel, ev: dict[str, np.ndarray]) -> xr.Dataset:
    """The full-grid predictions ``ev`` (:func:`grid_predictions`) beside the truth, as
    ``pred``, ``diff`` and ``true`` along ``variable``, with the mask and the iteration: the
    dataset :meth:`MREPINNModel.test <napari_mrepinn.training.MREPINNModel.test>` returns
    (its docstring lists the variables)."""
    ex = model.example
    wave = ex["wave"]
    shape = ex.spatial_shape
    wdims = wave.dims
    coords = {d: ex.ds[d] for d in wdims}
    sdims = ex.spatial_dims
    scoords = {d: ex.ds[d] for d in sdims}

    def triple(pred: np.ndarray, true: np.ndarray | None, dims, crd) -> xr.DataArray:
        if true is None:
            true = np.full_like(pred, np.nan)
        arr = np.stack([pred, true - pred, true])
        return xr.DataArray(
            arr, dims=("variable", *dims), coords={"variable": ["pred", "diff", "true"], **crd}
        )

    u_pred = ev["u"].reshape(wave.shape)
    r_pred = ev["pde"].reshape(wave.shape)
    # the (first) modulus map; a free joint fit keeps one per frequency (the model's mu_all)
    mu_pred = ev["mu"][:, model.result_modulus].reshape(shape)
    mre = np.asarray(ex["mre"].values) if "mre" in ex and ex["mre"].dims == sdims else None
    ds = xr.Dataset(
        {
            "u": triple(u_pred, np.asarray(wave.values), wdims, coords),
            "mu": triple(mu_pred, mre, sdims, scoords),
            "pde": triple(r_pred, np.zeros_like(r_pred), wdims, coords),
        }
    )
    ds["mu"].attrs["units"] = "Pa"
    ds["pde"].attrs["units"] = "1"
    if "mu_ahi" in ex and ex["mu_ahi"].dims == sdims:
        ds["direct"] = triple(np.asarray(ex["mu_ahi"].values), mre, sdims, scoords)
    if model.net.n_anat and "anat" in ex:
        anat = ex["anat"]
        a_pred = ev["a"].reshape(anat.shape)
        ds["anat"] = triple(a_pred, np.asarray(anat.values, float), anat.dims,
                            {d: ex.ds[d] for d in anat.dims if d in ex.ds.coords})
    ds["mask"] = ex.mask
    ds.attrs["iteration"] = int(model.iteration)
    return ds


def public_results(model: MREPINNModel, t: xr.Dataset) -> xr.Dataset:
    """The public result variables (``wave_pred``, ``mu_pred``, ``pde_residual``,
    ``mu_ahi``) from the :func:`grid_comparison` ``t``: what :meth:`MREPINNModel.results
    <napari_mrepinn.training.MREPINNModel.results>` returns."""
    out = xr.Dataset(
        {
            "wave_pred": t["u"].sel(variable="pred", drop=True),
            "mu_pred": t["mu"].sel(variable="pred", drop=True),
            "pde_residual": t["pde"].sel(variable="pred", drop=True),
        }
    )
    out["wave_pred"].attrs["units"] = model.example["wave"].attrs.get("units", "")
    out["mu_pred"].attrs["units"] = "Pa"
    out["pde_residual"].attrs["units"] = "1"
    if "mu_ahi" in model.example:
        out["mu_ahi"] = model.example["mu_ahi"]
    out.attrs["iteration"] = int(model.iteration)
    return out
