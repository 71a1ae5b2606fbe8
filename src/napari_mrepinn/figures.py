"""Matplotlib figures of a fitted example (the PNG written by ``mrepinn fit``).

Images are drawn with x horizontal and y vertical, distances in mm and the modulus in kPa.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .data import MREExample
from .metrics import truth_for

__all__ = ["result_figure", "save_result_figure"]

MODULUS_RANGE_KPA = (0.0, 12.0)  # fixed so figures of different runs compare


def _plane(var: xr.DataArray) -> xr.DataArray:
    """The middle z slice, first component and first frequency: an (x, y) image."""
    sel = {}
    for dim in var.dims:
        if dim == "z":
            sel[dim] = var.sizes[dim] // 2
        elif dim not in ("x", "y"):
            sel[dim] = 0
    return var.isel(sel).transpose("y", "x")


def result_figure(example: MREExample):
    """A figure with the wave, its prediction, the modulus maps and the modulus error.

    Parameters
    ----------
    example : MREExample
        An example with ``mu_pred`` (from :func:`napari_mrepinn.fit`), optionally
        ``wave_pred``, ``mu_ahi`` and the ground truth ``mre``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    # a bare Figure (no pyplot) renders with Agg on savefig and leaves the user's
    # matplotlib backend alone
    from matplotlib.figure import Figure

    mask = _plane(example.mask.astype(float)).values > 0
    x_mm = example.ds["x"].values * 1e3
    y_mm = example.ds["y"].values * 1e3
    extent = (x_mm[0], x_mm[-1], y_mm[-1], y_mm[0])

    wave = _plane(example["wave"]).values.real
    wlim = float(np.max(np.abs(wave))) or 1.0
    panels: list[tuple[str, np.ndarray, dict]] = [
        ("wave (real part)", wave, {"cmap": "RdBu_r", "vmin": -wlim, "vmax": wlim}),
    ]
    if "wave_pred" in example:
        panels.append(
            ("PINN wave (real part)", _plane(example["wave_pred"]).values.real,
             {"cmap": "RdBu_r", "vmin": -wlim, "vmax": wlim})
        )
    kpa = {"cmap": "magma", "vmin": MODULUS_RANGE_KPA[0], "vmax": MODULUS_RANGE_KPA[1]}

    def modulus(name: str) -> np.ndarray:
        var = example[name]
        if "frequency" in var.dims:  # the truth where mu_pred stands (joint: f_ref)
            ref = example["mu_pred"] if "mu_pred" in example else var.isel(frequency=0)
            var = truth_for(ref, var)
        return np.where(mask, np.abs(_plane(var).values) / 1e3, np.nan)

    for name, title in (("mre", "true |G*| (kPa)"), ("mu_pred", "PINN |G*| (kPa)"),
                        ("mu_ahi", "AHI |G*| (kPa)")):
        if name in example:
            panels.append((title, modulus(name), kpa))
    if "mu_pred" in example and "mre" in example:
        err = modulus("mu_pred") - modulus("mre")
        elim = float(np.nanmax(np.abs(err))) if np.any(np.isfinite(err)) else 1.0
        panels.append(("PINN − true |G*| (kPa)", err,
                       {"cmap": "RdBu_r", "vmin": -elim, "vmax": elim}))

    ncols = 3
    nrows = int(np.ceil(len(panels) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.8 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, (title, image, style) in zip(axes, panels, strict=False):
        im = ax.imshow(image, extent=extent, interpolation="nearest", **style)
        ax.set_title(title)
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        fig.colorbar(im, ax=ax, shrink=0.85)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    freq = ", ".join(f"{f:g}" for f in example.frequencies)
    fig.suptitle(f"MRE-PINN result at {freq} Hz")
    return fig


def save_result_figure(example: MREExample, path: str | Path, dpi: int = 110) -> Path:
    """Write :func:`result_figure` to a PNG file (whole or not at all) and return its path.

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``...; PNG without one).

    Raises
    ------
    MREOutputError
        (an :class:`~napari_mrepinn.data.MREInputError`) if the file cannot be written.
    """
    from .outputs import atomic_open, check_writable

    path = Path(path)
    check_writable(path)
    fig = result_figure(example)
    with atomic_open(path, "wb") as fh:
        # a file object carries no name: matplotlib needs the format spelled out
        fig.savefig(fh, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
    return path
