"""Accuracy metrics of an elastogram against the ground truth.

All metrics compare magnitudes ``|G*|`` in Pa inside the region mask, except the median
relative error, which uses the complex difference ``|pred - true|`` (as published for
MRE-PINN). Region labels come from the integer mask: 0 is outside, 1 is the background
(the reference of the contrast transfer efficiency), 2, 3, ... are targets.

Definitions (``methods-and-data`` note, section 7.1):

- Pearson ``R`` of ``|pred|`` and ``|true|`` over the voxels with ``mask > 0``. (The
  published code correlates whole masked volumes, zeros outside included, which inflates
  R; here only the voxels inside the mask count.)
- Median relative error per region ``r``:
  ``median_r |pred - true| / median_r |true|``.
- Contrast transfer efficiency per target region ``r`` relative to the background label 1:
  ``CTE = (med_r|pred| - med_bg|pred|) / (med_r|true| - med_bg|true|) · 100 %``.
  100 % is perfect contrast, 0 % a flat map.
- RMSE of ``|G*|`` (Pa) over the voxels with ``mask > 0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .data import MREInputError

__all__ = [
    "BACKGROUND_LABEL",
    "contrast_transfer",
    "evaluate",
    "format_table",
    "median_relative_error",
    "pearson_r",
    "rmse",
    "truth_for",
]

BACKGROUND_LABEL = 1

ArrayLike = np.ndarray | xr.DataArray


def truth_for(pred: xr.DataArray, truth: xr.DataArray) -> xr.DataArray:
    """The ground truth on ``pred``'s axes: at the frequency ``pred`` stands for (its
    ``frequency`` attribute, e.g. the reference frequency of a joint multi-frequency fit;
    else the first) when the truth has a ``frequency`` axis and ``pred`` has not."""
    if "frequency" in truth.dims and "frequency" not in pred.dims:
        f = float(pred.attrs.get("frequency", truth["frequency"].values[0]))
        return truth.sel(frequency=f, method="nearest")
    return truth


# ---------------------------------------------------------------------- input handling
def _aligned(pred: Any, true: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numpy arrays of the same shape; DataArrays are transposed to the mask's dim order."""
    ref_dims = None
    for a in (mask, true, pred):
        if isinstance(a, xr.DataArray):
            ref_dims = a.dims
            break
    arrays = []
    for name, a in (("pred", pred), ("true", true), ("mask", mask)):
        if isinstance(a, xr.DataArray):
            if ref_dims is not None and set(a.dims) == set(ref_dims) and a.dims != ref_dims:
                a = a.transpose(*ref_dims)
            a = a.values
        try:
            arr = np.asarray(a)
        except Exception as exc:  # e.g. ragged lists
            raise MREInputError(f"{name}: not an array ({exc}).") from None
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise MREInputError(f"{name}: dtype {arr.dtype} is not numeric.")
        arrays.append(arr)
    p, t, m = arrays
    if p.shape != m.shape or t.shape != m.shape:
        raise MREInputError(
            f"metrics: shapes differ: pred {p.shape}, true {t.shape}, mask {m.shape}; "
            "they must share one grid (select one frequency of a multi-frequency result)."
        )
    if m.dtype != bool and not np.issubdtype(m.dtype, np.integer):
        if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
            raise MREInputError("mask: must hold integer region labels (0 = outside).")
    labels = m.astype(np.int64)
    if not np.any(labels > 0):
        raise MREInputError(
            "mask: no voxel > 0, so there is nothing to evaluate; give a region mask with "
            "labels 1 (background), 2, 3, ... (targets)."
        )
    inside = labels > 0
    for name, arr in (("pred", p), ("true", t)):
        bad = int(np.sum(~np.isfinite(arr[inside])))
        if bad:
            raise MREInputError(f"{name}: {bad} NaN or infinite voxels inside the mask.")
    return p, t, labels


def _region_labels(labels: np.ndarray, regions: Any) -> dict[int, str]:
    """``{label: name}`` of the regions to report (all labels > 0 by default)."""
    present = [int(v) for v in np.unique(labels) if v > 0]
    if regions is None:
        return {v: f"region {v}" for v in present}
    if isinstance(regions, Mapping):
        out = {int(k): str(v) for k, v in regions.items()}
    else:
        out = {int(k): f"region {int(k)}" for k in regions}
    missing = [k for k in out if k not in present]
    if missing:
        raise MREInputError(
            f"regions: labels {missing} are not in the mask (labels present: {present})."
        )
    return out


# ---------------------------------------------------------------------- single metrics
def pearson_r(pred: ArrayLike, true: ArrayLike, mask: ArrayLike) -> float:
    """Pearson correlation of ``|pred|`` and ``|true|`` over the voxels with ``mask > 0``.

    Returns NaN when either map is constant inside the mask (R is undefined there).
    """
    p, t, labels = _aligned(pred, true, mask)
    return _pearson(np.abs(p[labels > 0]), np.abs(t[labels > 0]))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float), b.astype(float)
    # constant up to rounding (e.g. a modulus still at its prior): R is undefined, not ±0
    if any(np.ptp(v) <= 1e-6 * np.max(np.abs(v)) for v in (a, b) if v.size):
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / den) if den > 0 else float("nan")


def rmse(pred: ArrayLike, true: ArrayLike, mask: ArrayLike) -> float:
    """Root-mean-square error of ``|G*|`` (Pa) over the voxels with ``mask > 0``."""
    p, t, labels = _aligned(pred, true, mask)
    inside = labels > 0
    return float(np.sqrt(np.mean((np.abs(p[inside]) - np.abs(t[inside])) ** 2)))


def median_relative_error(
    pred: ArrayLike, true: ArrayLike, mask: ArrayLike, *, regions: Any = None
) -> dict[int, float]:
    """``median|pred - true| / median|true|`` per region label (a fraction, not %).

    NaN for a region whose true median is 0.
    """
    p, t, labels = _aligned(pred, true, mask)
    out = {}
    for lab in _region_labels(labels, regions):
        sel = labels == lab
        ref = float(np.median(np.abs(t[sel])))
        err = float(np.median(np.abs(p[sel] - t[sel])))
        out[lab] = err / ref if ref > 0 else float("nan")
    return out


def contrast_transfer(
    pred: ArrayLike, true: ArrayLike, mask: ArrayLike, *, regions: Any = None,
    background: int = BACKGROUND_LABEL,
) -> dict[int, float]:
    """Contrast transfer efficiency (%) of each target region relative to ``background``.

    ``CTE = (med|pred|_r - med|pred|_bg) / (med|true|_r - med|true|_bg) · 100``. Targets
    are all reported labels except the background. NaN where the true contrast is 0 or
    the mask has no background label.
    """
    p, t, labels = _aligned(pred, true, mask)
    return _cte(np.abs(p), np.abs(t), labels, _region_labels(labels, regions), background)


def _cte(pa: np.ndarray, ta: np.ndarray, labels: np.ndarray, regions: Mapping[int, str],
         background: int) -> dict[int, float]:
    bg = labels == background
    out = {}
    for lab in regions:
        if lab == background:
            continue
        if not bg.any():
            out[lab] = float("nan")
            continue
        sel = labels == lab
        true_c = float(np.median(ta[sel]) - np.median(ta[bg]))
        pred_c = float(np.median(pa[sel]) - np.median(pa[bg]))
        out[lab] = 100.0 * pred_c / true_c if true_c != 0 else float("nan")
    return out


# ---------------------------------------------------------------------- all at once
def evaluate(
    pred: ArrayLike, true: ArrayLike, mask: ArrayLike, *, regions: Any = None,
    background: int = BACKGROUND_LABEL,
) -> dict[str, Any]:
    """All metrics of one elastogram against the truth.

    Parameters
    ----------
    pred, true : ndarray or xarray.DataArray
        Complex (or real) shear modulus in Pa on the same grid. DataArrays with the same
        dims in another order are transposed to match.
    mask : ndarray or xarray.DataArray
        Integer region labels on that grid: 0 = outside, 1 = background, 2, 3, ... =
        targets. A boolean mask is one region (label 1, so no CTE).
    regions : sequence of int or mapping of int to str, optional
        Region labels to report (with names, for tables); default all labels > 0.
    background : int
        Label of the contrast reference region (1).

    Returns
    -------
    dict
        ``"pearson_r"`` (float), ``"rmse_pa"`` (Pa), ``"n_voxels"`` (voxels with mask > 0),
        ``"median_relative_error"`` ({label: fraction}), ``"cte_percent"`` ({target label:
        %}), ``"median_pred_pa"`` / ``"median_true_pa"`` ({label: median |G*| in Pa}),
        ``"region_names"`` ({label: name}) and ``"background"`` (the label).

    Raises
    ------
    MREInputError
        If the shapes differ, the mask is empty or not integer, a region is missing, or
        pred/true hold NaN or inf inside the mask.

    Examples
    --------
    >>> mask = np.array([[1, 1, 2, 2]])
    >>> true = np.array([[1e3, 1e3, 3e3, 3e3]])
    >>> evaluate(2 * true, true, mask)["cte_percent"]
    {2: 200.0}
    """
    p, t, labels = _aligned(pred, true, mask)
    names = _region_labels(labels, regions)
    inside = labels > 0
    pa, ta = np.abs(p), np.abs(t)
    med_rel, med_p, med_t = {}, {}, {}
    for lab in names:
        sel = labels == lab
        med_p[lab] = float(np.median(pa[sel]))
        med_t[lab] = float(np.median(ta[sel]))
        err = float(np.median(np.abs(p[sel] - t[sel])))
        med_rel[lab] = err / med_t[lab] if med_t[lab] > 0 else float("nan")
    return {
        "pearson_r": _pearson(pa[inside], ta[inside]),
        "rmse_pa": float(np.sqrt(np.mean((pa[inside] - ta[inside]) ** 2))),
        "n_voxels": int(inside.sum()),
        "median_relative_error": med_rel,
        "cte_percent": _cte(pa, ta, labels, names, background),
        "median_pred_pa": med_p,
        "median_true_pa": med_t,
        "region_names": names,
        "background": int(background),
    }


def _fmt(v: float, spec: str) -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, spec)


def format_table(results: Mapping[str, Any] | Mapping[str, Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`evaluate` results (kPa and %), for the CLI.

    Parameters
    ----------
    results : dict
        One :func:`evaluate` result, or ``{method name: result}`` for several methods
        (one row each).

    Returns
    -------
    str
        Columns: method, R, RMSE (kPa), median relative error (%) per region and CTE (%)
        per target region; "n/a" where a value is undefined.
    """
    if "pearson_r" in results:
        results = {"prediction": results}
    if not results:
        return "(no results)"
    labels: list[int] = []
    names: dict[int, str] = {}
    targets: list[int] = []
    for res in results.values():
        for lab, name in res["region_names"].items():
            if lab not in names:
                labels.append(lab)
                names[lab] = name
        for lab in res["cte_percent"]:
            if lab not in targets:
                targets.append(lab)
    header = ["method", "R", "RMSE kPa"]
    header += [f"rel.err {names[lab]} %" for lab in labels]
    header += [f"CTE {names[lab]} %" for lab in targets]
    rows = []
    for method, res in results.items():
        row = [str(method), _fmt(res["pearson_r"], ".3f"), _fmt(res["rmse_pa"] / 1e3, ".3f")]
        rel = res["median_relative_error"]
        row += [_fmt(100 * rel[lab], ".1f") if lab in rel else "" for lab in labels]
        cte = res["cte_percent"]
        row += [_fmt(cte[lab], ".1f") if lab in cte else "" for lab in targets]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)

