"""Finite differences on gridded wave fields: Laplacians, smoothing and despeckle.

The numerical pieces of the direct inversions (:mod:`napari_mrepinn.baselines`, which
re-exports the public names here, and :mod:`napari_mrepinn.kmdev`), on
:class:`xarray.DataArray` fields with named dims (SI units: spacings in metres):

- :func:`laplacian` — ``"fd3"`` (3-point stencil), ``"gradient"`` (the published
  ``np.gradient``-of-gradient wide stencil) or ``"savgol"`` (Savitzky–Golay second
  derivative), with ``"one-sided"`` or ``"mirror"`` edges; :func:`fd3_plane_wave_bias` is
  the exact bias of the 3-point stencil on a plane wave;
- :func:`smooth` — Gaussian or Savitzky–Golay smoothing along the chosen dims (the
  inversions' smoothing; the preprocessing filter is :func:`napari_mrepinn.preprocess.smooth`);
- :func:`despeckle` — the published outlier clamp of ``1/∇²u``.

Everything is vectorised with numpy and ``scipy.ndimage``/``scipy.signal``; there are no
Python loops over voxels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import xarray as xr
from scipy import ndimage, signal

from .data import MREInputError

__all__ = [
    "LAPLACIAN_METHODS",
    "despeckle",
    "fd3_plane_wave_bias",
    "laplacian",
    "smooth",
]

LAPLACIAN_METHODS = ("fd3", "gradient", "savgol")
BOUNDARIES = ("one-sided", "mirror")

LaplacianMethod = Literal["fd3", "gradient", "savgol"]
Boundary = Literal["one-sided", "mirror"]


# ---------------------------------------------------------------------- small helpers
def fd3_plane_wave_bias(k: complex | np.ndarray, h: float) -> complex | np.ndarray:
    """Exact ratio ``G_est / G*`` of the 3-point-stencil AHI on a plane wave.

    Parameters
    ----------
    k : complex or ndarray
        Wavenumber along one grid axis in rad/m (complex for a damped wave).
    h : float
        Voxel spacing along that axis in metres.

    Returns
    -------
    complex or ndarray
        ``(kh)² / (2 - 2 cos kh)`` (complex for complex ``k``; 1 in the limit ``kh -> 0``).
    """
    kh = np.asarray(k * h, dtype=complex)
    den = 2.0 - 2.0 * np.cos(kh)
    small = np.abs(kh) < 1e-4
    # series 1 + (kh)²/12 avoids 0/0 for tiny kh
    out = np.where(small, 1.0 + kh**2 / 12.0, kh**2 / np.where(small, 1.0, den))
    return out[()] if out.ndim == 0 else out


def _complex(a: np.ndarray) -> np.ndarray:
    """The array as complex, keeping single precision if it came in single precision."""
    a = np.asarray(a)
    dtype = np.complex64 if a.dtype in (np.float32, np.complex64) else np.complex128
    return a.astype(dtype, copy=False)


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise MREInputError(f"{name} must be one of {list(choices)}, got {value!r}.")


def _check_savgol(order: int, window: int) -> None:
    if int(window) != window or window < 3 or window % 2 == 0:
        raise MREInputError(f"savgol_window must be an odd integer >= 3, got {window!r}.")
    if int(order) != order or not 2 <= order < window:
        raise MREInputError(
            f"savgol_order must be an integer with 2 <= order < window ({window}), "
            f"got {order!r}; second derivatives need at least a quadratic fit."
        )


def _check_method(method: str, choices: Sequence[object], boundary: str, savgol_order: int,
                  savgol_window: int) -> None:
    """``method`` among ``choices``, ``boundary`` among :data:`BOUNDARIES`, and for
    ``"savgol"`` a usable polynomial order and window."""
    _check_choice("method", method, choices)
    _check_choice("boundary", boundary, BOUNDARIES)
    if method == "savgol":
        _check_savgol(savgol_order, savgol_window)


def _check_threshold(threshold: float) -> None:
    if not (np.isfinite(threshold) and threshold > 1):
        raise MREInputError(f"despeckle threshold must be > 1, got {threshold!r}.")


def _spacings(u: xr.DataArray, spacing, dims: Sequence[str]) -> list[float]:
    """Voxel size in metres per dim from ``spacing`` (number, sequence, mapping) or coords."""
    if spacing is None:
        out = []
        for d in dims:
            if d not in u.coords or u.sizes[d] < 2:
                raise MREInputError(
                    f"laplacian: no coordinate for {d!r} to take the spacing from; pass "
                    "spacing= in metres."
                )
            out.append(float(np.mean(np.diff(np.asarray(u[d].values, dtype=float)))))
    elif isinstance(spacing, Mapping):
        missing = [d for d in dims if d not in spacing]
        if missing:
            raise MREInputError(f"laplacian: spacing has no entry for {missing}.")
        out = [float(spacing[d]) for d in dims]
    elif np.ndim(spacing) == 0:
        out = [float(spacing)] * len(dims)
    else:
        out = [float(s) for s in spacing]
        if len(out) != len(dims):
            raise MREInputError(
                f"laplacian: {len(out)} spacings for {len(dims)} dims {tuple(dims)}."
            )
    if not all(np.isfinite(s) and s > 0 for s in out):
        raise MREInputError(f"laplacian: spacing must be positive metres, got {out}.")
    return out


def _axes(u: xr.DataArray, dims: Sequence[str], min_size: int) -> list[int]:
    dims = tuple(dims)
    if not dims or len(set(dims)) != len(dims):
        raise MREInputError(f"dims must name distinct spatial dims, got {dims!r}.")
    for d in dims:
        if d not in u.dims:
            raise MREInputError(f"dims: {d!r} is not a dim of the wave {u.dims}.")
        if u.sizes[d] < min_size:
            raise MREInputError(
                f"dims: {d!r} has {u.sizes[d]} voxel(s); a second derivative along it needs "
                f"at least {min_size}. Leave {d!r} out of dims (in-plane inversion)."
            )
    return [u.get_axis_num(d) for d in dims]


def _sl(ndim: int, axis: int, s: slice | int) -> tuple:
    idx: list = [slice(None)] * ndim
    idx[axis] = s
    return tuple(idx)


# ---------------------------------------------------------------------- Laplacians
def _edge_weights(n: int, boundary: str) -> tuple[float, ...]:
    """Weights of the fd3 second difference at an edge voxel on (u0, u1, u2, u3), u0 the
    edge voxel and u1... inward (times 1/h²)."""
    if boundary == "mirror":
        # whole-sample mirror u[-1] = u[1]: zero normal derivative at the edge voxel
        return (-2.0, 2.0)
    if n >= 4:
        # one-sided second-order stencil: no assumption about the outside
        return (2.0, -5.0, 4.0, -1.0)
    return (1.0, -2.0, 1.0)  # n == 3: the one interior estimate is the only one there is


def _fd3_laplacian(u: np.ndarray, axes: Sequence[int], spacings: Sequence[float],
                   boundary: str) -> np.ndarray:
    """Sum over ``axes`` of ``(u[i+1] - 2u[i] + u[i-1]) / h²``, edges per ``boundary``.

    Fused over the axes (``-2 Σ 1/h² · u`` once, then the neighbour pairs of each axis
    added in place): a multi-frequency 3-D volume holds millions of complex values, and
    every full pass over it counts.
    """
    nd = u.ndim
    coef = [1.0 / h**2 for h in spacings]
    total = u * (-2.0 * sum(coef))
    tmp = None
    for axis, c in zip(axes, coef, strict=True):
        n = u.shape[axis]
        mid = _sl(nd, axis, slice(1, -1))
        if tmp is None or tmp.shape != total[mid].shape:
            tmp = np.empty_like(total[mid])
        np.add(u[_sl(nd, axis, slice(2, None))], u[_sl(nd, axis, slice(None, -2))], out=tmp)
        tmp *= c
        total[mid] += tmp
        # edge voxels: replace this axis's "-2u" share by the edge stencil
        w = list(_edge_weights(n, boundary))
        w[0] += 2.0
        for edge, step in ((0, 1), (n - 1, -1)):
            acc = 0.0
            for j, wj in enumerate(w):
                if wj:
                    acc = acc + wj * u[_sl(nd, axis, edge + step * j)]
            total[_sl(nd, axis, edge)] += c * acc
    return total


def _second_diff_gradient(u: np.ndarray, axis: int, h: float, boundary: str) -> np.ndarray:
    """The published wide stencil: ``np.gradient`` applied twice (divided by h² already)."""
    if boundary == "mirror":
        pad = [(0, 0)] * u.ndim
        pad[axis] = (2, 2)
        up = np.pad(u, pad, mode="reflect")  # numpy "reflect" = whole-sample mirror
        d2 = np.gradient(np.gradient(up, h, axis=axis), h, axis=axis)
        return d2[_sl(u.ndim, axis, slice(2, -2))]
    # np.gradient's own one-sided first differences at the edges (edge_order=1), which is
    # what xarray.differentiate gives in the published code
    return np.gradient(np.gradient(u, h, axis=axis), h, axis=axis)


def _savgol(u: np.ndarray, axis: int, order: int, window: int, deriv: int, h: float,
            boundary: str) -> np.ndarray:
    """Savitzky–Golay filter of a complex array along one axis (real and imag parts)."""
    if u.shape[axis] < window:
        raise MREInputError(
            f"savgol_window={window} is longer than an axis of {u.shape[axis]} voxels; use "
            "a smaller window."
        )
    # "interp" fits the polynomial to the edge window itself (one-sided); "mirror" is
    # scipy's whole-sample mirror, the same extension as the fd3 "mirror" boundary
    mode = "interp" if boundary == "one-sided" else "mirror"
    kw = dict(window_length=window, polyorder=order, deriv=deriv, delta=h, axis=axis,
              mode=mode)
    if np.iscomplexobj(u):
        return signal.savgol_filter(u.real, **kw) + 1j * signal.savgol_filter(u.imag, **kw)
    return signal.savgol_filter(u, **kw)


def _laplacian_np(u: np.ndarray, axes: Sequence[int], spacings: Sequence[float],
                  method: str, boundary: str, savgol_order: int = 2,
                  savgol_window: int = 5) -> np.ndarray:
    """Sum of second derivatives of ``u`` along ``axes`` (numpy core of :func:`laplacian`)."""
    if method == "fd3":
        return _fd3_laplacian(u, axes, spacings, boundary).astype(u.dtype, copy=False)
    total = None
    for axis, h in zip(axes, spacings, strict=True):
        if method == "gradient":
            d2 = _second_diff_gradient(u, axis, h, boundary)
        else:
            d2 = _savgol(u, axis, savgol_order, savgol_window, 2, h, boundary)
        if total is None:
            total = d2
        else:
            total += d2
    return np.ascontiguousarray(total.astype(u.dtype, copy=False))


def laplacian(
    u: xr.DataArray,
    spacing: float | Sequence[float] | Mapping[str, float] | None = None,
    *,
    dims: Sequence[str] = ("x", "y"),
    method: LaplacianMethod = "fd3",
    savgol_order: int = 2,
    savgol_window: int = 5,
    boundary: Boundary = "one-sided",
) -> xr.DataArray:
    """Finite-difference Laplacian of a (complex) field along the given dims.

    Parameters
    ----------
    u : xarray.DataArray
        Field with the dims in ``dims`` among its dims (other dims, such as ``frequency``
        or ``component``, are carried along untouched). Any unit; the result is in that
        unit per m².
    spacing : float, sequence of float, mapping or None
        Voxel size in metres: one value for all ``dims``, one per dim (in the order of
        ``dims``), a ``{dim: metres}`` mapping, or None to take it from ``u``'s coordinates.
    dims : sequence of str
        Dims to differentiate along. ``("x", "y")`` (default) is the slice-wise in-plane
        Laplacian of MDEV and the published AHI; ``("x", "y", "z")`` the full 3-D one.
    method : {"fd3", "gradient", "savgol"}
        ``"fd3"``: 3-point stencil ``(u[i+1] - 2u[i] + u[i-1]) / h²`` per axis, bias on a
        plane wave ``(kh)²/(2 - 2 cos kh)``. ``"gradient"``: ``np.gradient`` applied twice
        per axis, the published wide stencil ``(u[i+2] - 2u[i] + u[i-2]) / (4h²)``.
        ``"savgol"``: second derivative of a least-squares polynomial fit (Savitzky–Golay,
        ``savgol_order`` in a window of ``savgol_window`` voxels) along each axis; order 2
        and window 3 is exactly ``"fd3"``.
    savgol_order, savgol_window : int
        Polynomial order (2 or 3 usual) and odd window length in voxels (3 or 5 usual) of
        the ``"savgol"`` method.
    boundary : {"one-sided", "mirror"}
        Edge voxels. ``"one-sided"`` (default) makes no assumption about the outside:
        ``"fd3"`` uses the second-order one-sided stencil ``(2, -5, 4, -1)/h²``,
        ``"gradient"`` ``np.gradient``'s one-sided differences, ``"savgol"`` a polynomial
        fit to the edge window. ``"mirror"`` extends the field by whole-sample mirroring
        (zero normal derivative at the edge voxel), which is biased on waves but amplifies
        noise less. Either way the result has no NaN.

    Returns
    -------
    xarray.DataArray
        ``∇²u`` with ``u``'s dims, coords and dtype (complex for complex input), named
        ``"laplacian"``.

    Raises
    ------
    MREInputError
        If a dim is missing, too short (fewer than 3 voxels, or than the Savitzky–Golay
        window) or the spacing is not positive.
    """
    _check_method(method, LAPLACIAN_METHODS, boundary, savgol_order, savgol_window)
    if not isinstance(u, xr.DataArray):
        raise MREInputError("laplacian: u must be an xarray.DataArray with named dims.")
    axes = _axes(u, dims, 3)
    hs = _spacings(u, spacing, dims)
    values = np.asarray(u.values)
    if not np.issubdtype(values.dtype, np.inexact):
        values = values.astype(float)
    lap = _laplacian_np(values, axes, hs, method, boundary, savgol_order, savgol_window)
    return u.copy(data=lap).rename("laplacian")


# ---------------------------------------------------------------------- smoothing
def _smooth_np(u: np.ndarray, axes: Sequence[int], method: str, sigma: float,
               savgol_order: int, savgol_window: int, boundary: str) -> np.ndarray:
    if method == "gaussian":
        sig = np.zeros(u.ndim)
        sig[list(axes)] = sigma
        # a separable Gaussian over the Laplacian's dims only: never across frequencies,
        # components or (for in-plane inversion) slices
        return ndimage.gaussian_filter(u, sigma=sig, mode="mirror")
    out = u
    for axis in axes:  # separable SG smoothing = tensor-product polynomial fit
        out = _savgol(out, axis, savgol_order, savgol_window, 0, 1.0, boundary)
    return out.astype(u.dtype, copy=False)


def smooth(
    u: xr.DataArray,
    method: Literal["gaussian", "savgol"] = "gaussian",
    *,
    dims: Sequence[str] = ("x", "y"),
    sigma: float = 0.65,
    savgol_order: int = 2,
    savgol_window: int = 5,
    boundary: Boundary = "one-sided",
) -> xr.DataArray:
    """Smooth a (complex) :class:`xarray.DataArray` along the given named dims: the
    smoothing of the direct inversions.

    What ``ahi``/``mdev`` do with ``smoothing="gaussian"`` or ``"savgol"`` before their
    Laplacian, re-exported as :func:`napari_mrepinn.baselines.smooth`: use it to see or
    reuse that step on its own. Not to be confused with
    :func:`napari_mrepinn.preprocess.smooth` (defined in :mod:`napari_mrepinn.wave_filters`),
    the complex Gaussian preprocessing filter of plain numpy ``(..., x, y, z)`` arrays that
    :func:`napari_mrepinn.preprocess.prepare` applies once to the wave field
    (``smoothing=σ``, recorded in the preprocessing history).

    Parameters
    ----------
    u : xarray.DataArray
        Field to smooth (any unit); dims not in ``dims`` are left alone.
    method : {"gaussian", "savgol"}
        ``"gaussian"``: Gaussian of standard deviation ``sigma`` voxels (0.65 voxel is the
        Charité MDEV default), mirrored at the edges. ``"savgol"``: separable
        Savitzky–Golay smoothing (polynomial fit of ``savgol_order`` in ``savgol_window``
        voxels along each dim in turn).
    dims : sequence of str
        Dims to smooth along (default in-plane).
    sigma : float
        Gaussian standard deviation in voxels (not metres: the filter is a property of the
        sampling).
    savgol_order, savgol_window : int
        Savitzky–Golay polynomial order and odd window length in voxels.
    boundary : {"one-sided", "mirror"}
        Edge handling of the Savitzky–Golay filter (see :func:`laplacian`).

    Returns
    -------
    xarray.DataArray
        The smoothed field, same dims, coords and dtype.
    """
    _check_method(method, ("gaussian", "savgol"), boundary, savgol_order, savgol_window)
    if method == "gaussian" and not (np.isfinite(sigma) and sigma >= 0):
        raise MREInputError(f"sigma must be >= 0 voxels, got {sigma!r}.")
    axes = _axes(u, dims, 1)
    out = _smooth_np(np.asarray(u.values), axes, method, sigma, savgol_order, savgol_window,
                     boundary)
    return u.copy(data=out)


# ---------------------------------------------------------------------- despeckle
def _footprint_offsets(n_axes: int) -> list[tuple[int, ...]]:
    """Offsets of the despeckle footprint: a 5×5 square without its 4 corners (21 voxels)
    over two axes, or a 5-voxel line over one."""
    if n_axes == 1:
        return [(i,) for i in range(-2, 3)]
    return [(i, j) for i in range(-2, 3) for j in range(-2, 3) if abs(i) + abs(j) < 4]


def _local_median_clamp(mag: np.ndarray, axes: Sequence[int],
                        threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Find voxels with ``mag < local median / threshold`` (the despeckle outliers).

    Returns the flat indices of the outliers (into ``mag.ravel()``) and their local
    medians over the despeckle footprint (mirrored at the edges).

    A median filter over 6 million voxels costs seconds, but only voxels far below their
    neighbourhood can be outliers. The maximum over a box holding at least 11 of the 21
    footprint voxels bounds the median from above, so voxels above ``box max / threshold``
    are dropped with two cheap separable maximum filters, and the exact median is computed
    only for the candidates left.
    """
    axes = list(axes)
    offsets = _footprint_offsets(len(axes))
    boxes = [(5,)] if len(axes) == 1 else [(3, 5), (5, 3)]
    bound = None
    for box in boxes:
        size = [1] * mag.ndim
        for ax, s in zip(axes, box, strict=True):
            size[ax] = s
        # scipy "mirror" = numpy "reflect" below: both whole-sample mirror
        m = ndimage.maximum_filter(mag, size=size, mode="mirror")
        bound = m if bound is None else np.minimum(bound, m, out=bound)
    # the same expression as the exact test below, so rounding cannot drop an outlier
    cand = mag * threshold < bound
    del bound
    pad = [(0, 0)] * mag.ndim
    for ax in axes:
        pad[ax] = (2, 2)
    padded = np.pad(mag, pad, mode="reflect")
    # flat indices into the padded array: one gather per footprint offset (np.take on a
    # 1-D array is far cheaper than fancy indexing with one index array per axis)
    inner = tuple(slice(2, -2) if ax in axes else slice(None) for ax in range(mag.ndim))
    cand_p = np.zeros(padded.shape, bool)
    cand_p[inner] = cand
    lin = np.flatnonzero(cand_p)
    del cand_p
    strides = np.array(padded.strides) // padded.itemsize
    flat = padded.ravel()
    shifts = [sum(int(strides[ax]) * o for ax, o in zip(axes, off, strict=True))
              for off in offsets]
    mid = len(offsets) // 2
    med = np.empty(lin.size, mag.dtype)
    # Candidates are processed in chunks through one small, cache-resident buffer with
    # one row per candidate: the gathers of a chunk hit the same few cache lines and the
    # in-place partition along the short last axis needs no copy. One table of millions
    # of candidates would stream the whole volume through memory once per offset.
    chunk = 16384
    buf = np.empty((min(chunk, lin.size), len(offsets)), mag.dtype)
    for start in range(0, lin.size, chunk):
        part = lin[start : start + chunk]
        rows = buf[: part.size]
        for j, shift in enumerate(shifts):
            np.take(flat, part + shift, out=rows[:, j])
        rows.partition(mid, axis=1)
        med[start : start + part.size] = rows[:, mid]
    is_out = flat[lin] * threshold < med
    # back to flat indices of the unpadded array
    out_idx = np.flatnonzero(cand)[is_out]
    return out_idx, med[is_out]


def _despeckle_np(lap: np.ndarray, axes: Sequence[int], threshold: float,
                  mag: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clamp ``1/∇²u`` at ``threshold`` × its local median, in place.

    Returns ``(lap, |lap|)``; both arrays are modified in place (pass copies to keep the
    originals).
    """
    # flat indices below address the C-ordered data (a transposed or sliced view would
    # silently take the writes into a copy)
    lap = np.ascontiguousarray(lap)
    mag = np.abs(lap) if mag is None else np.ascontiguousarray(mag)
    # With an odd footprint the median of 1/|L| is 1/median(|L|), so "1/|L| above
    # threshold × local median of 1/|L|" is "|L| below local median of |L| / threshold":
    # no reciprocals, no infinities where the Laplacian vanishes.
    idx, med = _local_median_clamp(mag, axes[:2], threshold)
    if idx.size:
        lap_flat, mag_flat = lap.reshape(-1), mag.reshape(-1)
        new = med / threshold
        old = mag_flat[idx]
        # keep the voxel's own phase; a voxel with L = 0 has none and gets phase 0
        phase = np.where(old > 0, lap_flat[idx] / np.where(old > 0, old, 1.0), 1.0)
        lap_flat[idx] = new * phase
        mag_flat[idx] = new
    return lap, mag


def despeckle(
    lap: xr.DataArray, *, dims: Sequence[str] = ("x", "y"), threshold: float = 3.0
) -> xr.DataArray:
    """Outlier ("despeckle") filter of a Laplacian: clamp spikes of ``1/∇²u``.

    Where ``|∇²u|`` nearly vanishes (wave nodes, noise) the inversion ``G* ∝ u/∇²u``
    spikes. Following the published AHI, ``1/∇²u`` is compared with its local median
    over a 5×5 footprint without its corners (21 voxels; a 5-voxel line for one dim) in
    the first two of ``dims``, mirrored at the edges. Where ``|1/∇²u|`` exceeds
    ``threshold`` × that median its magnitude is set to ``threshold`` × the median; the
    phase is kept.

    Deliberate differences from the published filter: the clamp is monotone (the
    published one clamps only above ``(threshold + 1)`` × median but then to
    ``threshold`` × median), and the phase of complex data is left as it is (the
    published code also "despeckles" the angle, which is not a ratio scale).

    Parameters
    ----------
    lap : xarray.DataArray
        A Laplacian, e.g. from :func:`laplacian` (any unit).
    dims : sequence of str
        The dims of the footprint (the first two are used).
    threshold : float
        Clamp factor (> 1; 3 as published).

    Returns
    -------
    xarray.DataArray
        The filtered Laplacian; unchanged where there is no outlier.
    """
    _check_threshold(threshold)
    axes = _axes(lap, dims, 1)
    values = np.array(lap.values, copy=True)  # filtered in place below
    if not np.issubdtype(values.dtype, np.inexact):
        values = values.astype(float)
    out, _ = _despeckle_np(values, axes, float(threshold))
    return lap.copy(data=out)
