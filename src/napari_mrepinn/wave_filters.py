"""Optional filters of complex MRE wave fields ``(..., x, y, z)``: smoothing, band-pass and
divergence removal.

:func:`smooth` (complex Gaussian; not :func:`napari_mrepinn.baselines.smooth`, the
inversions' own smoothing of named-dim fields), :func:`bandpass` (radial Butterworth in k-space) and
:func:`remove_divergence` (Helmholtz–Hodge projection onto the shear part) are the optional
steps 5 of :func:`napari_mrepinn.preprocess.prepare`; the public names are re-exported by
:mod:`napari_mrepinn.preprocess`. Spacings are in metres, cut-offs in cycles/m.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .data import SPATIAL_DIMS, MREInputError

__all__ = ["bandpass", "remove_divergence", "smooth"]


# ====================================================================== filters
def smooth(
    wave: np.ndarray,
    sigma: float | Sequence[float],
    *,
    in_plane: bool = True,
) -> np.ndarray:
    """Complex Gaussian smoothing of ``(..., x, y, z)`` numpy fields: a preprocessing filter.

    The optional smoothing step of :func:`napari_mrepinn.preprocess.prepare`
    (``smoothing=σ``), re-exported as :func:`napari_mrepinn.preprocess.smooth`: use it to
    clean a wave field once, before any inversion (it is recorded in the example's
    preprocessing history). Not to be confused with
    :func:`napari_mrepinn.baselines.smooth` (defined in
    :mod:`napari_mrepinn.finite_differences`), which smooths a named-dim
    :class:`xarray.DataArray` along chosen dims, Gaussian or Savitzky–Golay, as the
    smoothing step of the direct inversions (``ahi``/``mdev`` ``smoothing=``).

    Parameters
    ----------
    wave : ndarray
        Complex field; the last three axes are x, y, z.
    sigma : float or (float, float, float)
        Standard deviation in voxels (MDEV's default is 0.65).
    in_plane : bool
        With a single ``sigma``: smooth x and y only (slices are thick in MRE).
    """
    w = np.asarray(wave)
    if np.ndim(sigma) == 0:
        s3 = (float(sigma), float(sigma), 0.0 if in_plane else float(sigma))
    else:
        s3 = tuple(float(v) for v in sigma)
        if len(s3) != 3:
            raise MREInputError(f"smoothing sigma needs 1 or 3 values, got {sigma!r}.")
    if any(v < 0 or not np.isfinite(v) for v in s3):
        raise MREInputError(f"smoothing sigma must be >= 0 voxels, got {sigma!r}.")
    full = (0.0,) * (w.ndim - 3) + s3
    if np.iscomplexobj(w):
        return (ndimage.gaussian_filter(w.real, full, mode="nearest")
                + 1j * ndimage.gaussian_filter(w.imag, full, mode="nearest")).astype(w.dtype)
    return ndimage.gaussian_filter(w, full, mode="nearest")


def _wavenumbers(shape: Sequence[int], spacing: Sequence[float], axes: Sequence[int]) -> np.ndarray:
    """|k| in cycles/m on the FFT grid of the given spatial axes."""
    k2 = 0.0
    for a in axes:
        k = np.fft.fftfreq(shape[a], d=spacing[a])
        k2 = k2 + (k.reshape([-1 if i == a else 1 for i in range(len(shape))])) ** 2
    return np.sqrt(k2)


def bandpass(
    wave: np.ndarray,
    spacing: Sequence[float],
    *,
    low: float | None = None,
    high: float | None = 100.0,
    order: int = 1,
    in_plane: bool = True,
) -> np.ndarray:
    """Radial Butterworth band-pass of ``(..., x, y, z)`` fields in k-space.

    ``H(k) = 1/(1 + (k/high)^{2n}) · (1 − 1/(1 + (k/low)^{2n}))`` with ``k`` in cycles/m
    (MDEV's low-pass default: ``high = 100``, ``n = 1``). The FFT is periodic: the field's
    edges meet, which is the usual MRE practice.

    Parameters
    ----------
    wave : ndarray
        Complex field; the last three axes are x, y, z.
    spacing : (float, float, float)
        Voxel size in metres along x, y, z.
    low, high : float, optional
        High-pass and low-pass cut-offs in cycles/m (None = no cut).
    order : int
        Butterworth order n.
    in_plane : bool
        Filter in x and y only (per slice).
    """
    w = np.asarray(wave)
    sp = [float(s) for s in spacing]
    if len(sp) != 3 or any(not np.isfinite(s) or s <= 0 for s in sp[:2]):
        raise MREInputError(
            f"band-pass needs the voxel spacing (x, y, z) in metres, got {spacing}."
        )
    for name, v in (("low", low), ("high", high)):
        if v is not None and (not np.isfinite(v) or v <= 0):
            raise MREInputError(f"band-pass {name} cut-off must be > 0 cycles/m, got {v!r}.")
    off = w.ndim - 3
    axes = [off, off + 1] if in_plane or w.shape[-1] < 2 else [off, off + 1, off + 2]
    shape = [1] * off + list(w.shape[-3:])
    full_sp = [1.0] * off + [sp[0], sp[1], sp[2] if np.isfinite(sp[2]) and sp[2] > 0 else sp[0]]
    k = _wavenumbers(shape, full_sp, axes)
    h = np.ones_like(k)
    n2 = 2 * int(order)
    if high is not None:
        h = h / (1.0 + (k / high) ** n2)
    if low is not None:
        with np.errstate(divide="ignore"):
            h = h * (1.0 - 1.0 / (1.0 + (k / low) ** n2))
    out = np.fft.ifftn(np.fft.fftn(w, axes=axes) * h, axes=axes)
    return out if np.iscomplexobj(w) else out.real


def remove_divergence(
    wave: np.ndarray,
    spacing: Sequence[float],
    components: Sequence[str],
) -> np.ndarray:
    """Remove the compressional (curl-free) part of a 3-component 3-D field.

    Helmholtz–Hodge projection in k-space: ``Û ← Û − k (k·Û)/|k|²`` (periodic boundaries),
    which leaves the divergence-free shear part.

    Parameters
    ----------
    wave : ndarray
        ``(..., x, y, z, component)`` complex field.
    spacing : (float, float, float)
        Voxel size in metres.
    components : sequence of str
        Labels of the component axis; must hold ``"x"``, ``"y"`` and ``"z"``.
    """
    w = np.asarray(wave)
    labels = [str(c) for c in components]
    if sorted(labels) != ["x", "y", "z"] or w.shape[-1] != 3:
        raise MREInputError(
            f"divergence removal needs the x, y and z motion-encoding directions, got "
            f"{labels}; acquire all three or leave divergence removal off."
        )
    if w.shape[-2] < 4:
        raise MREInputError(
            f"divergence removal needs a 3-D volume (>= 4 slices), got {w.shape[-2]}; leave it "
            "off for 2-D acquisitions."
        )
    off = w.ndim - 4
    axes = [off, off + 1, off + 2]
    uh = np.fft.fftn(w, axes=axes)
    ks = []
    for i, a in enumerate(axes):
        k = np.fft.fftfreq(w.shape[a], d=float(spacing[i]))
        ks.append(k.reshape([-1 if j == a else 1 for j in range(w.ndim - 1)]))
    kvec = [ks[SPATIAL_DIMS.index(c)] for c in labels]
    k2 = sum(k**2 for k in ks)
    k2 = np.where(k2 == 0, 1.0, k2)
    dot = sum(kvec[i] * uh[..., i] for i in range(3)) / k2
    for i in range(3):
        uh[..., i] -= kvec[i] * dot
    out = np.fft.ifftn(uh, axes=axes)
    return out.astype(w.dtype) if np.iscomplexobj(w) else out
