"""Region-of-interest statistics of readout maps, as a table and a CSV file.

For each region of a label map (the example's ``mre_mask``, a drawn napari Labels layer, a
NIfTI or NetCDF mask) and each readout of :mod:`napari_mrepinn.readouts`: the number of
voxels, the median and interquartile range (25th and 75th percentiles), and mean ± sd —
the numbers MRE studies report (the clinical readout is the ROI median). Values are in
the readouts' display units (kPa, m/s, rad, mm, 1/m) unless asked for SI.

NaN voxels (e.g. the penetration depth of an undamped voxel, which is unbounded) are left
out of the statistics and counted: ``n`` is the region's size, ``n_valid`` the voxels that
entered the statistics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .data import MREExample, MREInputError
from .readouts import READOUTS, readout_maps

__all__ = [
    "STAT_COLUMNS",
    "load_roi",
    "region_statistics",
    "roi_statistics",
    "write_csv",
]

#: columns of the statistics table, in order
STAT_COLUMNS = (
    "method", "region", "region_name", "readout", "frequency_hz", "unit", "n", "n_valid",
    "median", "q25", "q75", "iqr", "mean", "sd",
)


# ---------------------------------------------------------------------- label maps
def _as_labels(labels: Any, sdims: Sequence[str], shape: Sequence[int], where: str) -> np.ndarray:
    """An integer label array on the spatial grid (dims in ``sdims`` order)."""
    if isinstance(labels, xr.DataArray):
        extra = [d for d in labels.dims if d not in sdims]
        if extra:
            labels = labels.squeeze([d for d in extra if labels.sizes[d] == 1], drop=True)
            extra = [d for d in labels.dims if d not in sdims]
        if extra:
            raise MREInputError(
                f"{where}: the label map has dims {labels.dims}; expected the spatial dims "
                f"{tuple(sdims)}."
            )
        labels = labels.transpose(*[d for d in sdims if d in labels.dims]).values
    arr = np.asarray(labels)
    # napari Labels of a 2-D example may carry a leading or trailing singleton axis
    while arr.ndim > len(shape) and 1 in arr.shape:
        arr = arr.squeeze(axis=arr.shape.index(1))
    if arr.ndim == len(shape) - 1 and len(shape) == 3 and shape[2] == 1:
        arr = arr[..., None]
    if tuple(arr.shape) != tuple(shape):
        raise MREInputError(
            f"{where}: the label map has shape {arr.shape} but the maps' grid is "
            f"{tuple(shape)} ({', '.join(sdims)}); draw or resample the ROI on that grid."
        )
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or not (
            np.all(arr == np.round(arr))
        ):
            raise MREInputError(f"{where}: the label map must hold integer labels (0 = outside).")
        arr = arr.astype(np.int64)
    if not np.any(arr > 0):
        raise MREInputError(
            f"{where}: the label map has no region (no voxel > 0); draw a region first."
        )
    return arr


def load_roi(path: str | os.PathLike, example: MREExample | None = None) -> np.ndarray:
    """Read a label map from a NIfTI (``.nii``, ``.nii.gz``) or NetCDF (``.nc``) file.

    Parameters
    ----------
    path : str or PathLike
        NIfTI: the image's axes are the example's ``(x, y[, z])`` (the layout
        :func:`napari_mrepinn.io.save_nifti_folder` writes). NetCDF: the variable
        ``mre_mask``, or the only integer variable, on dims ``x, y[, z]``.
    example : MREExample, optional
        The grid the labels must fit (checked here when given).

    Returns
    -------
    ndarray of int
        Labels on the spatial grid, 0 = outside.

    Raises
    ------
    MREInputError
        If the file is missing or unreadable, has no label variable or does not fit.
    """
    p = Path(path)
    if not p.is_file():
        raise MREInputError(f"{p}: no such ROI file (give a .nii, .nii.gz or .nc label map).")
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        from .io_nifti import _read_nifti

        data, _ = _read_nifti(p)
        labels: Any = np.asarray(data)
    elif name.endswith(".nc"):
        from .netcdf import _open_lazy

        try:
            with _open_lazy(p) as ds:  # damage that would hang libhdf5: one clear error
                if "mre_mask" in ds:
                    labels = ds["mre_mask"].load()
                else:
                    ints = [v for v in ds.data_vars
                            if np.issubdtype(ds[v].dtype, np.integer) or ds[v].dtype == bool]
                    if len(ints) != 1:
                        raise MREInputError(
                            f"{p}: no 'mre_mask' variable and {len(ints)} integer variables "
                            f"({ints}); save the labels as 'mre_mask'."
                        )
                    labels = ds[ints[0]].load()
        except MREInputError:
            raise
        except Exception as exc:
            raise MREInputError(
                f"{p}: not a readable NetCDF file ({type(exc).__name__}: {exc})."
            ) from None
    else:
        raise MREInputError(f"{p}: ROI files are .nii, .nii.gz or .nc label maps.")
    if example is None:
        arr = labels.values if isinstance(labels, xr.DataArray) else labels
        return np.asarray(arr).astype(np.int64)
    return _as_labels(labels, example.spatial_dims, example.spatial_shape, str(p))


# ---------------------------------------------------------------------- statistics
def _describe(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        nan = float("nan")
        return {"n_valid": 0, "median": nan, "q25": nan, "q75": nan, "iqr": nan,
                "mean": nan, "sd": nan}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {
        "n_valid": int(v.size),
        "median": float(med),
        "q25": float(q25),
        "q75": float(q75),
        "iqr": float(q75 - q25),
        "mean": float(np.mean(v)),
        # sample sd (ddof=1), as studies report it; NaN for a single voxel
        "sd": float(np.std(v, ddof=1)) if v.size > 1 else float("nan"),
    }


def region_statistics(
    maps: xr.Dataset,
    labels: Any,
    *,
    region_names: Mapping[int, str] | None = None,
    readouts: Sequence[str] | None = None,
    display: bool = True,
    method: str | None = None,
) -> Any:
    """Statistics of each readout map in each labelled region.

    Parameters
    ----------
    maps : xarray.Dataset
        Readout maps on spatial dims ``x, y[, z]`` (e.g. from
        :func:`~napari_mrepinn.readouts.readout_maps`); a map with a ``frequency`` dim gets
        one row per frequency.
    labels : ndarray or xarray.DataArray
        Integer labels on the same grid, 0 = outside; every label > 0 is a region.
    region_names : mapping of int to str, optional
        Names of the regions (default ``"region N"``).
    readouts : sequence of str, optional
        Variables of ``maps`` to summarise (default: all numeric real ones).
    display : bool
        Convert to the display unit of each readout (kPa, mm; see
        :data:`~napari_mrepinn.readouts.READOUTS`); False keeps SI.
    method : str, optional
        The ``method`` column (default ``maps.attrs["method"]``).

    Returns
    -------
    pandas.DataFrame
        One row per (readout, frequency, region) with the columns of :data:`STAT_COLUMNS`
        (``frequency_hz``: the map's frequency dim, else ``maps.attrs["frequency_hz"]`` --
        a single-frequency fit's frequency, a joint fit's reference frequency -- else NaN,
        for a map compounded over several frequencies).
    """
    import pandas as pd

    if not isinstance(maps, xr.Dataset):
        raise MREInputError("region_statistics: maps must be an xarray.Dataset of readouts.")
    sdims = [d for d in ("x", "y", "z") if d in maps.dims]
    if not sdims:
        raise MREInputError("region_statistics: the maps have no spatial dims x, y[, z].")
    shape = [maps.sizes[d] for d in sdims]
    lab = _as_labels(labels, sdims, shape, "roi")
    present = [int(v) for v in np.unique(lab) if v > 0]
    names = {k: f"region {k}" for k in present}
    if region_names:
        names.update({int(k): str(v) for k, v in region_names.items() if int(k) in names})
    if readouts is None:
        readouts = [n for n, v in maps.data_vars.items()
                    if np.issubdtype(v.dtype, np.number) and not np.iscomplexobj(v)
                    and set(sdims) <= set(v.dims)]
    missing = [r for r in readouts if r not in maps]
    if missing:
        raise MREInputError(
            f"region_statistics: no map {missing}; available: {list(maps.data_vars)}."
        )
    method = method or str(maps.attrs.get("method", ""))
    masks = {k: lab == k for k in present}
    at = float(maps.attrs.get("frequency_hz", np.nan))  # of maps without a frequency dim
    rows = []
    for name in readouts:
        da = maps[name]
        if np.iscomplexobj(da):
            raise MREInputError(
                f"region_statistics: {name!r} is complex; summarise its readouts "
                "(readout_maps) instead."
            )
        extra = [d for d in da.dims if d not in sdims]
        bad = [d for d in extra if d != "frequency"]
        if bad:
            raise MREInputError(
                f"region_statistics: {name!r} has dims {bad} besides the grid and frequency."
            )
        key = da.attrs.get("readout", name)
        info = READOUTS.get(key)
        unit = da.attrs.get("units", "")
        scale = 1.0
        if display and info is not None:
            scale, unit = info.display_scale, info.display_unit
        entries = ([(float(f), da.sel(frequency=f)) for f in da["frequency"].values]
                   if "frequency" in da.dims else [(at, da)])
        for freq, sub in entries:
            values = np.asarray(sub.transpose(*sdims).values, dtype=float) * scale
            for k in present:
                rows.append({
                    "method": method, "region": k, "region_name": names[k],
                    "readout": name, "frequency_hz": freq, "unit": unit,
                    "n": int(masks[k].sum()), **_describe(values[masks[k]]),
                })
    return pd.DataFrame(rows, columns=list(STAT_COLUMNS))


def roi_statistics(
    example_or_result: MREExample | xr.Dataset,
    roi: Any = None,
    *,
    methods: Sequence[str] | None = None,
    region_names: Mapping[int, str] | None = None,
    readouts: Sequence[str] | None = None,
    display: bool = True,
) -> Any:
    """ROI statistics of every readout of one or more methods.

    Parameters
    ----------
    example_or_result : MREExample or xarray.Dataset
        An example or saved result.
    roi : None, array, xarray.DataArray, str or PathLike
        Label map: None for the example's ``mre_mask``; an array or DataArray on the
        spatial grid (e.g. a napari Labels layer's data); or a NIfTI / NetCDF file
        (:func:`load_roi`).
    methods : sequence of str, optional
        Methods of :func:`~napari_mrepinn.readouts.readout_maps` (``pinn``, ``ahi``,
        ``mdev``, ``kmdev``, ``truth``). Default: every result the file holds (and the
        ground truth when there is one).
    region_names, readouts, display
        As in :func:`region_statistics`.

    Returns
    -------
    pandas.DataFrame
        The rows of all methods, columns :data:`STAT_COLUMNS`.
    """
    import pandas as pd

    ex = MREExample(example_or_result) if isinstance(example_or_result, xr.Dataset) \
        else example_or_result
    if not isinstance(ex, MREExample):
        raise MREInputError(
            f"roi_statistics: expected an MREExample or a result Dataset, got "
            f"{type(example_or_result).__name__}."
        )
    where = ex.source or "example"
    if roi is None:
        if "mre_mask" not in ex:
            raise MREInputError(
                f"{where}: no 'mre_mask' to take the regions from; give a label map "
                "(--roi MASK.nii.gz or a napari Labels layer)."
            )
        labels = _as_labels(ex["mre_mask"], ex.spatial_dims, ex.spatial_shape, where)
    elif isinstance(roi, str | os.PathLike):
        labels = load_roi(roi, ex)
    else:
        labels = _as_labels(roi, ex.spatial_dims, ex.spatial_shape, "roi")
    if methods is None:
        from .readouts import METHOD_VARIABLES

        methods = [m for m in ("pinn", "ahi", "mdev", "kmdev", "truth")
                   if METHOD_VARIABLES[m] in ex]
        if not methods:
            raise MREInputError(
                f"{where}: holds no result (mu_pred, mu_ahi, mu_mdev, kmdev_speed) or ground "
                "truth; choose methods, e.g. methods=['mdev'] (computed on the fly)."
            )
    tables = []
    for m in methods:
        # quality maps describe the wave, not a method: added once below
        maps = readout_maps(ex, m, quality=False)
        names = readouts if readouts is None else [r for r in readouts if r in maps]
        tables.append(region_statistics(maps, labels, region_names=region_names,
                                        readouts=names, display=display, method=m))
    if "wave" in ex and (readouts is None or "oss_snr" in readouts):
        from .readouts import oss_snr

        quality = xr.Dataset({"oss_snr": oss_snr(ex)})
        tables.append(region_statistics(quality, labels, region_names=region_names,
                                        display=display, method="wave"))
    return pd.concat(tables, ignore_index=True)


# ---------------------------------------------------------------------- export
def write_csv(table: Any, path: str | os.PathLike) -> Path:
    """Write a table as CSV atomically: all of it or nothing.

    The text goes to a unique temporary file in the target folder, is flushed and synced
    to disk, then renamed over ``path`` (``os.replace``, atomic on one file system). On any
    failure the temporary file is removed and an existing ``path`` is left untouched.

    Parameters
    ----------
    table : pandas.DataFrame
        The table (e.g. from :func:`roi_statistics`).
    path : str or PathLike
        Target ``.csv`` file; its folder must exist.

    Returns
    -------
    Path
        The written file.
    """
    out = Path(path)
    if out.is_dir():
        raise MREInputError(f"{out}: is a folder; give a file name ending in .csv.")
    if not out.parent.is_dir():
        raise MREInputError(f"{out}: the folder {out.parent} does not exist.")
    from .outputs import atomic_open

    with atomic_open(out, "w", newline="", encoding="utf-8") as fh:
        table.to_csv(fh, index=False)
    return out
