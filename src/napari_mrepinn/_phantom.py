"""What every phantom builder shares: argument checks, fine forward grids, labels.

The builders (:mod:`napari_mrepinn.simulate`, :mod:`napari_mrepinn.liver_phantom`,
:mod:`napari_mrepinn.forward3d`) and the closed forms and solvers they call
(:mod:`napari_mrepinn.analytic`, :mod:`napari_mrepinn.forward2d`) check their arguments here,
so each rule (and its message) is written once. Units are SI (metres, hertz, pascals).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import MREExample, MREInputError


# ============================================================================ checks
def _positive(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MREInputError(f"{name} must be a positive number, got {value!r}.") from None
    if not np.isfinite(v) or v <= 0:
        raise MREInputError(f"{name} must be a positive number, got {value!r}.")
    return v


def _spacing(spacing: float | Sequence[float], ndim: int) -> np.ndarray:
    """Voxel spacing (m) per axis from one value or one per axis."""
    s = np.atleast_1d(np.asarray(spacing, dtype=float))
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.shape != (ndim,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise MREInputError(
            f"spacing must be positive metres (one value or {ndim}), got {spacing!r}."
        )
    return s


def _shape(shape: Sequence[int], ndim: int, minimum: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(n) for n in shape)
        ok = len(out) == ndim and all(float(n) == int(n) for n in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or any(n < m for n, m in zip(out, minimum, strict=True)):
        raise MREInputError(
            f"shape must be {ndim} integers of at least {tuple(minimum)} voxels, got {shape!r}."
        )
    return out


def _noise_ratio(noise_ratio: float) -> float:
    v = float(noise_ratio)
    if not np.isfinite(v) or v < 0:
        raise MREInputError(f"noise_ratio must be >= 0, got {noise_ratio!r}.")
    return v


def _check_modulus(name: str, mu: complex | np.ndarray) -> np.ndarray:
    """A complex modulus (Pa) must have G' > 0 and G'' >= 0 (MRE convention)."""
    m = np.asarray(mu, dtype=complex)
    if not np.all(np.isfinite(m)) or np.any(m.real <= 0) or np.any(m.imag < 0):
        raise MREInputError(
            f"{name}: a complex shear modulus needs G' > 0 and G'' >= 0 Pa (MRE convention "
            "G* = G' + iG''); got a value outside that range."
        )
    return m


def _viscosity(viscosity: float) -> float:
    """A Voigt viscosity η (Pa·s) must be finite and >= 0."""
    if not np.isfinite(float(viscosity)) or float(viscosity) < 0:
        raise MREInputError(f"viscosity must be >= 0 Pa·s, got {viscosity!r}.")
    return float(viscosity)


def _refine(refine: int, minimum: int = 2) -> int:
    """A forward-grid refinement: an integer of at least ``minimum``."""
    if int(refine) != refine or int(refine) < minimum:
        raise MREInputError(f"refine must be an integer >= {minimum}, got {refine!r}.")
    return int(refine)


# ============================================================================ labels
def _annotate(ex: MREExample, name: str, **attrs: float | str) -> None:
    ex.ds.attrs["phantom"] = name
    for k, v in attrs.items():
        ex.ds.attrs[k] = v
    if "mre" in ex.ds:
        ex.ds["mre"].attrs["units"] = "Pa"
        ex.ds["mre"].attrs["long_name"] = "complex shear modulus G* (ground truth)"


def _fine_axis(n: int, h: float, refine: int, origin: float) -> np.ndarray:
    """Fine node coordinates whose every ``refine``-th node is an output voxel centre."""
    return origin + np.arange((n - 1) * refine + 1) * (h / refine)
