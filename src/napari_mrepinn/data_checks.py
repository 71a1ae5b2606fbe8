"""What every :class:`~napari_mrepinn.data.MREExample` does to the dataset it is given:
normalise it, then check it.

- :func:`normalise_dataset`: variables in the canonical dim order (an integral float mask
  as int32), ``frequency``/``density`` attributes as numbers (files written by other tools
  often hold text), NaN wave voxels outside the mask set to 0;
- :func:`validate_dataset`: the checks behind :meth:`MREExample.validate`, one
  :class:`~napari_mrepinn.data.MREInputError` naming what is wrong;
- :func:`warn_implausible_geometry`: the unit-slip warning on the voxel spacing and field of
  view (the modulus' is :func:`napari_mrepinn.data.warn_implausible_modulus`).

:mod:`napari_mrepinn.data` imports this module inside its methods (this one imports the
error classes and constants from there).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .data import (
    _DIM_ORDER,
    DEFAULT_DENSITY,
    PLAUSIBLE_FOV_M,
    PLAUSIBLE_SPACING_M,
    SPATIAL_DIMS,
    MREInputError,
    MREMissingFrequency,
    MREPlausibilityWarning,
    _caller_level,
    _spacing,
    _where,
)

if TYPE_CHECKING:
    from .data import MREExample

__all__ = ["normalise_dataset", "validate_dataset", "warn_implausible_geometry"]


# ---------------------------------------------------------------------- normalise
def normalise_dataset(ds: xr.Dataset, source: str | None = None) -> xr.Dataset:
    """``ds`` as an :class:`~napari_mrepinn.data.MREExample` keeps it: canonical dim order,
    numeric ``frequency``/``density`` attributes, NaN outside the mask filled (see the module
    docstring). ``source`` (a file name) starts the messages."""
    return _mask_outside(_numeric_attrs(_canonical(ds), _where(source)))


def _canonical(ds: xr.Dataset) -> xr.Dataset:
    """Variables in the canonical dim order (unknown dims keep their place at the end)."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        order = [d for d in _DIM_ORDER if d in var.dims]
        order += [d for d in var.dims if d not in order]
        if tuple(order) != var.dims:
            out[name] = var.transpose(*order)
    if "mre_mask" in out and np.issubdtype(out["mre_mask"].dtype, np.floating):
        vals = out["mre_mask"].values
        if np.all(np.isfinite(vals)) and np.all(vals == np.round(vals)):
            out["mre_mask"] = out["mre_mask"].astype(np.int32)
    return out


def _attr_number(value: Any, key: str, where: str) -> float | np.ndarray:
    """A numeric attribute read from a file: numbers pass, numeric text is parsed, other
    text is one clear error (NetCDF attributes written by other tools are often text)."""
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str | np.str_):
        text = str(value).strip()
        for unit in ("hz", "kg/m3", "kg/m³", "kg m-3"):
            if text.lower().endswith(unit):
                text = text[: -len(unit)].strip()
        try:
            return float(text)
        except ValueError:
            raise MREInputError(
                f"{where}the '{key}' attribute is the text {str(value)!r}; it must be a "
                f"number ({'Hz' if key == 'frequency' else 'kg/m³'})."
            ) from None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise MREInputError(
            f"{where}the '{key}' attribute is {value!r}; it must be a number."
        ) from None
    return float(arr) if arr.ndim == 0 else arr


def _numeric_attrs(ds: xr.Dataset, where: str) -> xr.Dataset:
    """``frequency`` and ``density`` attributes as numbers (parsed from text if needed)."""
    keys = [k for k in ("frequency", "density") if k in ds.attrs]
    if not keys:
        return ds
    attrs = dict(ds.attrs)
    for key in keys:
        value = _attr_number(attrs[key], key, where)
        if isinstance(value, np.ndarray) and value.size == 1:
            value = float(value.ravel()[0])
        attrs[key] = value
    if all(attrs[k] is ds.attrs[k] for k in keys):
        return ds
    out = ds.copy()
    out.attrs = attrs
    return out


def _mask_outside(ds: xr.Dataset) -> xr.Dataset:
    """Set NaN/inf wave voxels outside a valid ``mre_mask`` to 0.

    Scanner exports often carry NaN where there is no tissue; outside the region of
    interest they are masked already, and a 0 there keeps every stencil finite. Inside the
    mask they stay, for :meth:`MREExample.validate` to refuse. The number filled is kept in
    ``wave.attrs["n_nonfinite_outside_mask"]``.
    """
    if "wave" not in ds or "mre_mask" not in ds:
        return ds
    wave, mask = ds["wave"], ds["mre_mask"]
    if not np.issubdtype(wave.dtype, np.inexact):
        return ds
    values = wave.values
    bad = ~np.isfinite(values)
    if not bad.any():
        return ds
    if (
        not set(mask.dims) <= set(wave.dims)
        or any(mask.sizes[d] != wave.sizes[d] for d in mask.dims)
        or not np.all(np.isfinite(np.asarray(mask.values, dtype=float)))
    ):
        return ds  # not a usable mask: validate() reports the NaN (and the mask)
    outside = ~(mask > 0).broadcast_like(wave).transpose(*wave.dims).values
    fill = bad & outside
    if not fill.any():
        return ds
    out = ds.copy()
    out["wave"] = wave.copy(data=np.where(fill, 0, values))
    out["wave"].attrs["n_nonfinite_outside_mask"] = int(fill.sum())
    return out


# ---------------------------------------------------------------------- check
def validate_dataset(ds: xr.Dataset, source: str | None = None) -> None:
    """Check the dataset of an example (:meth:`MREExample.validate
    <napari_mrepinn.data.MREExample.validate>`).

    Parameters
    ----------
    ds : xarray.Dataset
        As :func:`normalise_dataset` leaves it.
    source : str, optional
        The file it came from, to start every message.

    Raises
    ------
    MREInputError
        Naming what is wrong and how to fix it: no complex ``wave`` on ``x``, ``y`` (``z``)
        with evenly spaced coordinates in metres, no positive frequency (Hz, attribute or
        ``frequency`` axis; :class:`~napari_mrepinn.data.MREMissingFrequency` when absent),
        non-finite wave voxels inside the mask, a non-positive density, variables off the
        wave's grid, or a mask that is not integer labels or is empty.
    """
    w = _where(source)
    if "wave" not in ds:
        found = ", ".join(ds.data_vars) or "nothing"
        raise MREInputError(
            f"{w}no 'wave' variable (found: {found}); an MRE example needs the complex "
            "displacement field named 'wave'."
        )
    wave = ds["wave"]
    if not np.issubdtype(wave.dtype, np.number) or np.issubdtype(wave.dtype, np.integer):
        raise MREInputError(
            f"{w}'wave' has dtype {wave.dtype}; it must be a complex (or float) "
            "displacement field, not text or an integer label image."
        )
    if np.issubdtype(wave.dtype, np.bool_):
        raise MREInputError(f"{w}'wave' is boolean; expected complex displacement.")
    sdims = [d for d in SPATIAL_DIMS if d in wave.dims]
    if sdims[:2] != ["x", "y"]:
        raise MREInputError(
            f"{w}'wave' has dims {wave.dims}; it needs spatial dims 'x' and 'y' "
            "(and optionally 'z')."
        )
    extra = set(wave.dims) - set(_DIM_ORDER)
    if extra:
        raise MREInputError(f"{w}'wave' has unknown dims {sorted(extra)}.")
    for d in sdims:
        if d not in ds.coords:
            raise MREInputError(
                f"{w}no coordinate for '{d}': the voxel spacing is missing; give "
                "coordinates in metres (or spacing= in from_numpy)."
            )
        _spacing(ds[d].values, d, w)
    if "frequency" in wave.dims:
        try:
            f = np.asarray(ds["frequency"].values, dtype=float)
        except (TypeError, ValueError):
            raise MREInputError(
                f"{w}the 'frequency' coordinate is not numeric "
                f"({ds['frequency'].values.tolist()!r}); it must be Hz."
            ) from None
    elif "frequency" in ds.attrs:
        f = np.atleast_1d(np.asarray(ds.attrs["frequency"], dtype=float))
        if f.size > 1:
            raise MREInputError(
                f"{w}the frequency attribute holds {f.size} values but the wave has no "
                "'frequency' axis; give one frequency (Hz) per wave."
            )
    else:
        raise MREMissingFrequency(
            f"{w}the vibration frequency is missing; set ds.attrs['frequency'] in Hz "
            "(or pass frequency= / --frequency)."
        )
    if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise MREInputError(f"{w}frequency must be positive Hz, got {f.tolist()}.")
    if not np.all(np.isfinite(wave.values)):
        # NaN outside a valid mask was set to 0 on construction (_mask_outside)
        n = int(np.sum(~np.isfinite(wave.values)))
        if "mre_mask" in ds:
            raise MREInputError(
                f"{w}'wave' has {n} NaN or infinite voxels inside the mask; fill them "
                "(e.g. interpolate) or leave them out of 'mre_mask'."
            )
        raise MREInputError(
            f"{w}'wave' has {n} NaN or infinite voxels; fill them or give a mask "
            "('mre_mask') that leaves them out."
        )
    density = float(ds.attrs.get("density", DEFAULT_DENSITY))
    if not np.isfinite(density) or density <= 0:
        raise MREInputError(f"{w}density must be positive kg/m³, got {density!r}.")
    for name in ("mre", "mre_mask", "anat"):
        if name not in ds:
            continue
        var = ds[name]
        for d in sdims:
            if d not in var.dims or var.sizes[d] != wave.sizes[d]:
                raise MREInputError(
                    f"{w}'{name}' has shape {dict(var.sizes)} but 'wave' has "
                    f"{ {d: wave.sizes[d] for d in sdims} }; they must share the grid."
                )
    if "mre_mask" in ds:
        m = ds["mre_mask"]
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.bool_)):
            vals = np.asarray(m.values)
            if not np.all(np.isfinite(vals)) or not np.all(vals == np.round(vals)):
                raise MREInputError(
                    f"{w}'mre_mask' must hold integer region labels (0 = outside)."
                )
        if not np.any(m.values > 0):
            raise MREInputError(
                f"{w}'mre_mask' is empty (no voxel > 0); draw the region of interest "
                "or drop the mask to use the whole grid."
            )


def warn_implausible_geometry(example: MREExample) -> None:
    """Warn (:class:`~napari_mrepinn.data.MREPlausibilityWarning`) when the voxel spacing or
    the field of view is outside :data:`~napari_mrepinn.data.PLAUSIBLE_SPACING_M` /
    :data:`~napari_mrepinn.data.PLAUSIBLE_FOV_M` (usually mm given as metres)."""
    spacing = {d: s for d, s in example.spacing.items() if np.isfinite(s)}
    lo, hi = PLAUSIBLE_SPACING_M
    flo, fhi = PLAUSIBLE_FOV_M
    fov = {d: n * spacing[d] for d, n in zip(example.spatial_dims, example.spatial_shape,
                                             strict=True) if d in spacing}
    bad = [d for d, s in spacing.items() if not lo <= s <= hi]
    bad += [d for d, f in fov.items() if not flo <= f <= fhi and d not in bad]
    if bad:
        sp = ", ".join(f"{d}={spacing[d]:g} m" for d in spacing)
        fv = ", ".join(f"{d}={fov[d]:g} m" for d in fov)
        warnings.warn(
            f"{_where(example.source)}voxel spacing {sp} (field of view {fv}) is not "
            "physically plausible for MR elastography; coordinates and spacing are in "
            "metres (1 mm = 1e-3). A slip of units scales the modulus by its square.",
            MREPlausibilityWarning,
            stacklevel=_caller_level(),
        )
