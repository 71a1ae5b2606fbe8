"""From scanner phase images to a complex wave field: the MRE preparation chain.

Each step is a small function with its options; :func:`prepare` runs them in MREdge's order
and records what ran (with its options and counts) in ``example.ds.attrs["preprocessing_json"]``:

1. :func:`phase_to_radians` — stored integer values (through RescaleSlope/Intercept and the
   stored range) to −π…π;
2. :func:`unwrap` — per phase volume: ``"skimage"`` (3-D masked
   :func:`skimage.restoration.unwrap_phase`), ``"laplacian"`` (least-squares / Laplacian
   unwrapping by a DCT Poisson solve, made integer-2π-consistent with the wrapped input) or
   ``"none"``; then :func:`align_offsets` removes the arbitrary 2π multiple each volume got;
3. :func:`first_harmonic` — temporal Fourier transform over N ≥ 3 evenly spaced offsets;
4. :func:`phase_to_displacement` — when the motion-encoding sensitivity is known;
5. :func:`smooth`, :func:`bandpass`, :func:`remove_divergence` — optional filters;
6. :func:`magnitude_mask`; the anatomy is the mean magnitude.

Conventions: phase arrays are ``(..., x, y, z)`` with voxel spacing in metres; offset ``n``
of ``N`` is sampled at ``t_n = n / (N f)``, and the wave follows the library's
``u(x, t) = Re{U(x) e^{+iωt}}`` (see ``CONTRIBUTING.md``), so
``U = (2/N) Σ_n φ_n e^{−2πi n/N}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from .data import MREExample, MREInputError, parse_frequencies

__all__ = [
    "UNWRAP_METHODS",
    "align_offsets",
    "bandpass",
    "count_wraps",
    "first_harmonic",
    "laplacian_unwrap",
    "magnitude_mask",
    "phase_to_displacement",
    "phase_to_radians",
    "prepare",
    "preprocessing_record",
    "remove_divergence",
    "smooth",
    "unwrap",
    "wrap",
]

UNWRAP_METHODS = ("skimage", "laplacian", "none")
DIRECTIONS = ("x", "y", "z")
TWO_PI = 2.0 * np.pi


# ====================================================================== 1. radians
def phase_to_radians(
    stored: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    bits_stored: int = 12,
    signed: bool = False,
    value_range: tuple[float, float] | str | None = None,
    source: str | None = None,
) -> np.ndarray:
    """Scanner phase values to radians in −π…π.

    The rescaled value is ``stored·slope + intercept`` (DICOM RescaleSlope/Intercept). By
    default the full stored range (``0 … 2^bits − 1``, or ``−2^(bits−1) …`` when ``signed``)
    spans one turn: its lowest value is −π and one step past its highest is +π, so 12-bit
    values 0…4095 become ``−π + 2π·v/4096`` and a Siemens-style rescale (slope 2, intercept
    −4096 → −4096…4094) becomes ``π·r/4096``.

    Parameters
    ----------
    stored : ndarray
        Stored (raw) pixel values.
    slope, intercept : float
        RescaleSlope and RescaleIntercept.
    bits_stored : int
        BitsStored: the stored range is ``2^bits_stored`` values.
    signed : bool
        PixelRepresentation 1 (two's complement stored values).
    value_range : (float, float) or "radians", optional
        Override: the rescaled values ``lo`` and ``hi`` that map to −π and +π, or
        ``"radians"`` when the rescaled values already are radians.
    source : str, optional
        Names the data in error messages.

    Returns
    -------
    ndarray of float32
        Phase in radians.

    Raises
    ------
    MREInputError
        If values fall outside the range (the range then is wrong: pass ``value_range``).
    """
    where = f"{source}: " if source else ""
    stored = np.asarray(stored)
    # float32 holds 16-bit stored values exactly; big exams halve their memory
    dtype = np.float32 if stored.dtype.itemsize <= 2 or stored.dtype == np.float32 \
        else np.float64
    rescaled = stored.astype(dtype) * dtype(slope) + dtype(intercept)
    if isinstance(value_range, str):
        if value_range != "radians":
            raise MREInputError(
                f"{where}phase range {value_range!r} is not understood; give (low, high) in "
                "rescaled units or 'radians'."
            )
        lo, hi = -np.pi, np.pi
    elif value_range is not None:
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise MREInputError(
                f"{where}phase range must be two numbers (low, high), got {value_range!r}."
            ) from None
        if not hi > lo:
            raise MREInputError(f"{where}phase range ({lo:g}, {hi:g}): high must exceed low.")
    else:
        if int(bits_stored) < 1 or int(bits_stored) > 32:
            raise MREInputError(f"{where}BitsStored {bits_stored!r} is not a valid bit depth.")
        n = 2 ** int(bits_stored)
        smin = -n // 2 if signed else 0
        a, b = smin * float(slope) + float(intercept), (smin + n) * float(slope) + float(intercept)
        lo, hi = min(a, b), max(a, b)
    if rescaled.size:
        vmin, vmax = float(rescaled.min()), float(rescaled.max())
        tol = 1e-6 * (hi - lo)
        if vmin < lo - tol or vmax > hi + tol:
            raise MREInputError(
                f"{where}phase values {vmin:g}…{vmax:g} fall outside the range {lo:g}…{hi:g} "
                "that maps to −π…π; pass the scanner's phase range (phase_range=(low, high) "
                "or --phase-range LOW HIGH, or 'radians')."
            )
    out = rescaled - dtype(lo)
    out *= dtype(TWO_PI / (hi - lo))
    out -= dtype(np.pi)
    return out.astype(np.float32, copy=False)


def wrap(phase: np.ndarray) -> np.ndarray:
    """Phase wrapped into ``[−π, π]`` (the nearest value modulo 2π)."""
    phase = np.asarray(phase)
    return phase - TWO_PI * np.rint(phase / TWO_PI)


# ====================================================================== 2. unwrapping
def _spatial_axes(ndim: int) -> tuple[int, int, int]:
    return (ndim - 3, ndim - 2, ndim - 1)


def count_wraps(phase: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Neighbour pairs (along x, y, z) whose phase jumps by more than π.

    Parameters
    ----------
    phase : ndarray
        ``(..., x, y, z)`` phase in radians.
    mask : ndarray of bool, optional
        ``(x, y, z)``: only pairs with both voxels inside count.

    Returns
    -------
    int
        Number of jumps, summed over all leading volumes.
    """
    phase = np.asarray(phase)
    total = 0
    for ax in _spatial_axes(phase.ndim):
        if phase.shape[ax] < 2:
            continue
        jump = np.abs(np.diff(phase, axis=ax)) > np.pi
        if mask is not None:
            m = np.asarray(mask, bool)
            a = ax - (phase.ndim - 3)
            pair = np.take(m, range(m.shape[a] - 1), axis=a) & np.take(m, range(1, m.shape[a]),
                                                                      axis=a)
            jump = jump & pair
        total += int(np.count_nonzero(jump))
    return total


def _dct_eigenvalues(shape: Sequence[int]) -> np.ndarray:
    """Eigenvalues of the 7-point Neumann Laplacian (unit spacing) in the DCT-II basis."""
    lam = np.zeros(shape, dtype=np.float64)
    for a, n in enumerate(shape):
        k = np.arange(n)
        ev = 2.0 * np.cos(np.pi * k / n) - 2.0
        lam = lam + ev.reshape([-1 if i == a else 1 for i in range(len(shape))])
    return lam


def _divergence(flux: list[tuple[int, np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    """Divergence of edge flows along the given axes, zero flux through the box faces."""
    out = np.zeros(shape, np.float32)
    for ax, d in flux:
        head = [slice(None)] * len(shape)
        tail = [slice(None)] * len(shape)
        head[ax] = slice(0, -1)
        tail[ax] = slice(1, None)
        out[tuple(head)] += d
        out[tuple(tail)] -= d
    return out


def _edge_masks(mask: np.ndarray | None, ndim: int, shape: Sequence[int]) -> dict[int, Any]:
    """Per spatial axis: True where both voxels of an edge are inside (None: all)."""
    out: dict[int, Any] = {}
    for ax in _spatial_axes(ndim):
        n = shape[ax]
        if n < 2:
            continue
        if mask is None:
            out[ax] = None
        else:
            a = ax - (ndim - 3)
            out[ax] = np.take(mask, range(n - 1), axis=a) & np.take(mask, range(1, n), axis=a)
    return out


def _masked_laplacian(phi: np.ndarray, edges: Mapping[int, Any]) -> np.ndarray:
    flux = []
    for ax, pair in edges.items():
        d = np.diff(phi, axis=ax)
        flux.append((ax, d if pair is None else d * pair))
    return _divergence(flux, phi.shape)


def laplacian_unwrap(
    phase: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    consistent: bool = True,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> np.ndarray:
    """Laplacian (least-squares) phase unwrapping by a DCT Poisson solve.

    The discrete Laplacian of the true phase is the divergence of the wrapped neighbour
    differences ``wrap(ψ_{i+1} − ψ_i)`` (exact wherever the true phase changes by less than
    π between neighbours); the Poisson equation with Neumann boundaries is solved with
    DCT-II transforms over the spatial axes (Ghiglia & Romero 1994; the Laplacian-based
    unwrapping of MRE tools works the same way). With a mask, only edges inside it count:
    the masked Poisson problem is solved by conjugate gradients preconditioned with the
    same DCT solve (a few iterations for compact regions). The solution is defined up to a
    constant; with ``consistent`` the result is made integer-2π-consistent with the input:
    ``ψ + 2πk`` with ``k = round((φ_L − c − ψ) / 2π)`` and ``c`` the circular mean offset,
    so any smooth solver error smaller than π disappears exactly.

    Parameters
    ----------
    phase : ndarray
        Wrapped phase, ``(..., x, y, z)`` radians (each leading index is one volume).
    mask : ndarray of bool, optional
        ``(x, y, z)``; differences that touch a voxel outside are ignored and the result
        outside is the wrapped input.
    consistent : bool
        Snap the result to ``ψ + 2πk`` (default). ``False`` returns the smooth Poisson
        solution itself (zero mean).
    max_iter, tol : int, float
        Conjugate-gradient limits with a mask (relative residual).

    Returns
    -------
    ndarray of float32
        Unwrapped phase, same shape.
    """
    psi = np.asarray(phase, dtype=np.float32)
    axes = _spatial_axes(psi.ndim)
    m = None if mask is None else np.asarray(mask, bool)
    if m is not None and m.all():
        m = None
    edges = _edge_masks(m, psi.ndim, psi.shape)
    flux = []
    for ax, pair in edges.items():
        d = wrap(np.diff(psi, axis=ax)).astype(np.float32)
        flux.append((ax, d if pair is None else d * pair))
    rho = _divergence(flux, psi.shape)
    lam = _dct_eigenvalues([psi.shape[a] for a in axes]).astype(np.float32)
    lam.flat[0] = 1.0

    def poisson(r: np.ndarray) -> np.ndarray:
        c = sfft.dctn(r, type=2, axes=axes, norm="ortho")
        c /= lam
        c[(..., 0, 0, 0)] = 0.0  # the free constant
        return sfft.idctn(c, type=2, axes=axes, norm="ortho").astype(np.float32)

    if m is None:
        phi = poisson(rho)
    else:
        phi = _masked_cg(rho, m, edges, poisson, axes, max_iter, tol)
    if not consistent:
        return phi
    resid = phi - psi
    # circular mean offset of every volume (over the mask, on a subsample), then whole turns
    c = _circular_mean(resid, m, axes)
    k = np.rint((resid - c) / TWO_PI)
    if m is not None:
        k = k * m
    return (psi + TWO_PI * k).astype(np.float32)


def _subsample(mask: np.ndarray | None, shape: Sequence[int], n_max: int = 65536) -> np.ndarray:
    """Flat indices of at most ``n_max`` evenly spread voxels (inside ``mask``)."""
    if mask is None:
        size = int(np.prod(shape))
        return np.arange(0, size, max(1, size // n_max))
    idx = np.flatnonzero(mask)
    return idx[:: max(1, len(idx) // n_max)]


def _circular_mean(resid: np.ndarray, mask: np.ndarray | None,
                   axes: tuple[int, int, int]) -> np.ndarray:
    """Circular mean of ``resid`` over the spatial axes of every volume, keepdims."""
    idx = _subsample(mask, resid.shape[-3:])
    flat = resid.reshape((*resid.shape[:-3], -1))[..., idx].astype(np.float64)
    c = np.arctan2(np.sin(flat).sum(-1), np.cos(flat).sum(-1))
    return c.astype(np.float32)[..., None, None, None]


def _masked_cg(
    rho: np.ndarray,
    m: np.ndarray,
    edges: Mapping[int, Any],
    poisson: Callable[[np.ndarray], np.ndarray],
    axes: tuple[int, int, int],
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """Solve ``L_mask φ = ρ`` inside ``m`` (every leading volume at once) by PCG."""
    mf = m.astype(np.float32)

    def a_op(x: np.ndarray) -> np.ndarray:
        return -_masked_laplacian(x, edges) * mf

    def precond(r: np.ndarray) -> np.ndarray:
        return -poisson(r * mf) * mf

    def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(a * b, axis=axes, keepdims=True, dtype=np.float64)

    b = -rho * mf
    x = precond(b)
    r = b - a_op(x)
    z = precond(r)
    p = z.copy()
    rz = dot(r, z)
    bnorm = np.sqrt(dot(b, b)) + 1e-30
    for _ in range(max_iter):
        if np.all(np.sqrt(dot(r, r)) <= tol * bnorm):
            break
        ap = a_op(p)
        pap = dot(p, ap)
        alpha = np.where(pap > 0, rz / np.where(pap > 0, pap, 1.0), 0.0).astype(np.float32)
        x += alpha * p
        r -= alpha * ap
        z = precond(r)
        rz_new = dot(r, z)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0).astype(np.float32)
        p = z + beta * p
        rz = rz_new
    return x


def _skimage_unwrap_volume(psi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import unwrap_phase

    squeeze = psi.shape[-1] == 1  # one slice: the 2-D algorithm
    vol = psi[..., 0] if squeeze else psi
    if mask is not None:
        mv = mask[..., 0] if squeeze else mask
        if not mv.any():
            return psi.copy()
        out = unwrap_phase(np.ma.masked_array(vol, ~mv))
        out = np.where(np.ma.getmaskarray(out), vol, np.ma.getdata(out))
    else:
        out = unwrap_phase(vol)
    out = np.asarray(out, np.float32)
    return out[..., None] if squeeze else out


def unwrap(
    phase: np.ndarray,
    method: str = "laplacian",
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Spatially unwrap each phase volume.

    Parameters
    ----------
    phase : ndarray
        Wrapped phase ``(..., x, y, z)`` in radians; every leading index is one volume.
    method : {"laplacian", "skimage", "none"}
        ``"laplacian"``: :func:`laplacian_unwrap` (fast: two DCTs per volume; robust to
        open-ended fringes); ``"skimage"``: :func:`skimage.restoration.unwrap_phase` in 3-D
        (2-D for one slice) with the mask (reliability-sorted path following, slower);
        ``"none"``: the phase as given.
    mask : ndarray of bool, optional
        ``(x, y, z)`` voxels to unwrap over.

    Returns
    -------
    ndarray of float32
        Unwrapped phase; each volume differs from the input by whole turns ``2πk(x)``.
    """
    if method not in UNWRAP_METHODS:
        raise MREInputError(
            f"unwrap method {method!r} is not known; choose one of {', '.join(UNWRAP_METHODS)}."
        )
    psi = np.asarray(phase, dtype=np.float32)
    if method == "none":
        return psi.copy()
    if method == "laplacian":
        return laplacian_unwrap(psi, mask)
    flat = psi.reshape((-1, *psi.shape[-3:]))
    out = np.stack([_skimage_unwrap_volume(v, mask) for v in flat])
    return out.reshape(psi.shape)


def align_offsets(
    unwrapped: np.ndarray,
    wrapped: np.ndarray,
    *,
    axis: int = 0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Remove the arbitrary whole-turn constant each volume got from spatial unwrapping.

    Spatial unwrapping fixes every volume only up to ``2πk``; a ``k`` that differs between
    time offsets would leak into the first harmonic. Each offset is shifted by the whole
    turns that make its change from the previous offset agree (median over the mask) with
    the wrapped temporal difference, which is exact where the phase changes by less than π
    between offsets. The first offset is brought nearest to zero.

    Parameters
    ----------
    unwrapped, wrapped : ndarray
        Same shape ``(..., offset, ..., x, y, z)``.
    axis : int
        The offset axis.
    mask : ndarray of bool, optional
        ``(x, y, z)``.

    Returns
    -------
    ndarray of float32
        ``unwrapped`` with one whole-turn shift per volume.
    """
    u = np.moveaxis(np.asarray(unwrapped, np.float32), axis, 0).copy()
    w = np.moveaxis(np.asarray(wrapped, np.float32), axis, 0)
    m = np.ones(u.shape[-3:], bool) if mask is None else np.asarray(mask, bool)
    if not m.any():
        m = np.ones(u.shape[-3:], bool)

    idx = _subsample(m, m.shape)

    def turns(x: np.ndarray) -> np.ndarray:
        # median over (a subsample of) the masked voxels of every leading volume
        flat = x.reshape((*x.shape[:-3], -1))[..., idx]
        return np.rint(np.median(flat, axis=-1) / TWO_PI)[..., None, None, None]

    u[0] -= TWO_PI * turns(u[0])
    for n in range(1, u.shape[0]):
        diff = (u[n] - u[n - 1]) - wrap(w[n] - w[n - 1])
        u[n] -= TWO_PI * turns(diff)
    return np.moveaxis(u, 0, axis)


# ====================================================================== 3. harmonic
def first_harmonic(
    phase: np.ndarray,
    *,
    axis: int = 0,
    harmonic: int = 1,
    times: Sequence[float] | None = None,
    source: str | None = None,
) -> np.ndarray:
    """Temporal Fourier coefficient of the phase offsets: the complex wave field.

    With offsets ``n = 0 … N−1`` evenly spaced over one vibration period,
    ``U = (2/N) Σ_n φ_n e^{−2πi h n/N}`` (``h = harmonic``), so that
    ``φ_n = Re{U e^{+2πi h n/N}} + …``, the library's ``u(x, t) = Re{U e^{+iωt}}``.

    Parameters
    ----------
    phase : ndarray
        Unwrapped phase with the offset axis ``axis``.
    axis : int
        The offset axis.
    harmonic : int
        Which harmonic (1 = the vibration frequency).
    times : sequence of float, optional
        Acquisition time (any unit) of every offset; checked to be evenly spaced.
    source : str, optional
        Names the data in error messages.

    Returns
    -------
    ndarray of complex64
        The harmonic, ``phase`` without the offset axis.
    """
    where = f"{source}: " if source else ""
    phase = np.asarray(phase)
    n = phase.shape[axis]
    if n < 3:
        raise MREInputError(
            f"{where}{n} phase offset(s); the temporal Fourier transform needs at least 3 "
            "evenly spaced offsets over one vibration period."
        )
    if not 1 <= int(harmonic) <= n // 2:
        raise MREInputError(f"{where}harmonic {harmonic} is not in 1…{n // 2} for {n} offsets.")
    if times is not None:
        t = np.asarray(times, float)
        if len(t) != n:
            raise MREInputError(f"{where}{len(t)} offset times for {n} offsets.")
        d = np.diff(t)
        if np.any(d <= 0) or np.ptp(d) > 0.02 * abs(np.mean(d)):
            raise MREInputError(
                f"{where}the phase offsets are not evenly spaced in time ({t.tolist()}); the "
                "temporal Fourier transform needs N offsets evenly spread over one period."
            )
    kernel = (2.0 / n) * np.exp(-2j * np.pi * int(harmonic) * np.arange(n) / n)
    out = np.tensordot(kernel.astype(np.complex64), phase.astype(np.float32), axes=([0], [axis]))
    return out.astype(np.complex64)


# ====================================================================== 4. displacement
def phase_to_displacement(wave: np.ndarray, sensitivity: float) -> np.ndarray:
    """Phase (rad) to displacement (m) with the motion-encoding sensitivity in rad/m.

    The inversions are scale-free, so this only matters for amplitude maps.
    """
    s = float(sensitivity)
    if not np.isfinite(s) or s == 0:
        raise MREInputError(
            f"encoding sensitivity must be a non-zero number of rad/m, got {sensitivity!r}."
        )
    return np.asarray(wave) / s


# ====================================================================== 5. filters
def smooth(
    wave: np.ndarray,
    sigma: float | Sequence[float],
    *,
    in_plane: bool = True,
) -> np.ndarray:
    """Complex Gaussian smoothing of ``(..., x, y, z)`` fields.

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
    kvec = [ks[DIRECTIONS.index(c)] for c in labels]
    k2 = sum(k**2 for k in ks)
    k2 = np.where(k2 == 0, 1.0, k2)
    dot = sum(kvec[i] * uh[..., i] for i in range(3)) / k2
    for i in range(3):
        uh[..., i] -= kvec[i] * dot
    out = np.fft.ifftn(uh, axes=axes)
    return out.astype(w.dtype) if np.iscomplexobj(w) else out


# ====================================================================== 6. mask
def magnitude_mask(
    magnitude: np.ndarray,
    threshold: float = 0.1,
    *,
    fill_holes: bool = True,
) -> np.ndarray:
    """Voxels whose magnitude exceeds ``threshold`` × the 99th percentile.

    Parameters
    ----------
    magnitude : ndarray
        ``(x, y, z)`` mean magnitude.
    threshold : float
        Fraction (0…1) of the robust maximum.
    fill_holes : bool
        Fill enclosed holes slice by slice (vessels, dark tissue inside the body).
    """
    mag = np.asarray(magnitude, float)
    if not 0 <= threshold < 1:
        raise MREInputError(f"mask threshold must be a fraction in [0, 1), got {threshold!r}.")
    ref = np.percentile(mag, 99) if mag.size else 0.0
    m = mag > threshold * ref
    if fill_holes:
        for z in range(m.shape[-1]):
            m[..., z] = ndimage.binary_fill_holes(m[..., z])
    return m


# ====================================================================== the chain
def preprocessing_record(example: MREExample) -> list[dict[str, Any]]:
    """The steps :func:`prepare` recorded on ``example`` (empty when none)."""
    text = example.ds.attrs.get("preprocessing_json")
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _series_list(
    phase: np.ndarray | Sequence[np.ndarray],
    n_freq: int,
    n_dir: int,
    multi: bool,
) -> list[np.ndarray]:
    if isinstance(phase, np.ndarray):
        want = (n_freq,) if multi else ()
        if phase.ndim != len(want) + 5 or phase.shape[: len(want) + 1] != (*want, n_dir):
            lead = "frequency, " if multi else ""
            raise MREInputError(
                f"phase has shape {phase.shape}; expected ({lead}direction, offset, x, y, z) "
                f"with {n_dir} direction(s){f' and {n_freq} frequencies' if multi else ''}."
            )
        return list(phase.reshape((-1, *phase.shape[-4:])))
    series = [np.asarray(p) for p in phase]
    if len(series) != n_freq * n_dir:
        raise MREInputError(
            f"{len(series)} phase series for {n_freq} frequency(ies) × {n_dir} direction(s); "
            "give one series per frequency and direction, frequency by frequency."
        )
    for s in series:
        if s.ndim != 4:
            raise MREInputError(f"a phase series has shape {s.shape}; expected (offset, x, y, z).")
        if s.shape[1:] != series[0].shape[1:]:
            raise MREInputError(
                f"phase series grids differ ({s.shape[1:]} vs {series[0].shape[1:]}); all "
                "series must share slices and matrix size."
            )
    return series


def _check_directions(directions: Sequence[str]) -> list[str]:
    labels = [str(d).lower() for d in directions]
    bad = [d for d in labels if d not in DIRECTIONS]
    if bad or len(set(labels)) != len(labels) or not labels:
        raise MREInputError(
            f"motion-encoding directions {list(directions)} must be distinct labels among "
            "x, y, z (x along the image columns, y along the rows, z along the slice normal)."
        )
    return labels


def prepare(
    phase: np.ndarray | Sequence[np.ndarray],
    *,
    frequency: float | Sequence[float],
    directions: Sequence[str],
    spacing: float | Sequence[float],
    origin: float | Sequence[float] = 0.0,
    magnitude: np.ndarray | None = None,
    to_radians: Mapping[str, Any] | None = None,
    unwrap_method: str = "laplacian",
    mask: np.ndarray | None = None,
    mask_threshold: float | None = 0.1,
    encoding_sensitivity: float | None = None,
    smoothing: float | Sequence[float] | None = None,
    band: tuple[float | None, float | None] | None = None,
    divergence_removal: bool = False,
    reverse_offsets: bool = False,
    history: Sequence[Mapping[str, Any]] = (),
    source: str | None = None,
    progress: bool | Callable[[int, int], None] = False,
    return_steps: bool = False,
) -> MREExample | tuple[MREExample, dict[str, np.ndarray]]:
    """Run the preparation chain on phase offsets and return an :class:`MREExample`.

    Parameters
    ----------
    phase : ndarray or sequence of ndarray
        Radians (or stored values with ``to_radians``): an array
        ``([frequency,] direction, offset, x, y, z)`` (frequency axis when ``frequency`` is a
        sequence), or one ``(offset, x, y, z)`` array per series, frequency by frequency
        and direction by direction within each frequency.
    frequency : float or sequence of float
        Vibration frequency(ies) in Hz.
    directions : sequence of str
        Motion-encoding direction of each series within a frequency (``"x"``, ``"y"``,
        ``"z"``): the wave's component labels.
    spacing : float or (float, float, float)
        Voxel size in metres (x, y, z).
    origin : float or (float, float, float)
        First voxel centre in metres.
    magnitude : ndarray, optional
        Magnitude images with the spatial axes last; their mean is the anatomy ``anat`` and
        the source of the threshold mask.
    to_radians : mapping, optional
        Keyword arguments of :func:`phase_to_radians` when ``phase`` holds stored values.
    unwrap_method : {"laplacian", "skimage", "none"}
        See :func:`unwrap`.
    mask : ndarray, optional
        ``(x, y, z)`` region (non-zero inside): the unwrapping region and ``mre_mask``.
    mask_threshold : float, optional
        Without ``mask``: :func:`magnitude_mask` threshold (fraction of the robust maximum);
        ``None`` (or no magnitude) keeps the whole grid.
    encoding_sensitivity : float, optional
        Motion-encoding sensitivity in rad/m: the wave becomes displacement in metres.
        Without it the wave stays in radians (the inversions are scale-free).
    smoothing : float or (float, float, float), optional
        Complex Gaussian σ in voxels (:func:`smooth`).
    band : (low, high), optional
        Butterworth cut-offs in cycles/m (:func:`bandpass`).
    divergence_removal : bool
        Remove the compressional wave (needs x, y, z directions, 3-D).
    reverse_offsets : bool
        The offsets run backwards in time (offset ``n`` at ``t = −n/(N f)``): the harmonic is
        conjugated. A sign that flips the loss modulus ``G''`` negative in every inversion is
        the symptom.
    history : sequence of mapping
        Steps that already ran (e.g. the readers' phase-to-radians), recorded first.
    source : str, optional
        Where the data came from (messages, ``example.source``).
    progress : bool or callable
        ``True``: a tqdm bar over the series; a callable gets ``(done, total)``.
    return_steps : bool
        Also return ``{"wrapped", "unwrapped"}`` phase arrays ``(series, offset, x, y, z)``
        (for display).

    Returns
    -------
    MREExample
        ``wave`` ``([frequency,] x, y, z, component)`` complex, ``anat`` and ``mre_mask``
        when known; ``attrs["preprocessing_json"]`` lists the steps, ``attrs["wraps_found"]``
        and ``attrs["wraps_left"]`` count phase jumps > π before and after unwrapping.
    """
    where = f"{source}: " if source else ""
    try:
        freqs, multi = parse_frequencies(frequency)
    except MREInputError as exc:
        raise MREInputError(f"{where}{exc}") from None
    labels = _check_directions(directions)
    series = _series_list(phase, len(freqs), len(labels), multi)
    grid = series[0].shape[1:]
    if len(grid) != 3:
        raise MREInputError(f"{where}phase volumes must be (x, y, z), got {grid}.")
    sp = np.broadcast_to(np.asarray(spacing, float), (3,)).copy()
    records: list[dict[str, Any]] = [dict(r) for r in history]

    if to_radians is not None:
        series = [phase_to_radians(s, source=source, **dict(to_radians)) for s in series]
        records.append({"step": "phase_to_radians", "options": _jsonable(dict(to_radians))})
    else:
        series = [np.asarray(s, np.float32) for s in series]
        top = max(float(np.abs(s).max()) for s in series)
        if not np.isfinite(top) or top > 1000.0:
            # stored scanner values (e.g. 0…4095) passed as if they were radians
            raise MREInputError(
                f"{where}phase values reach {top:g}; that is not radians. Convert them "
                "(to_radians={'slope': …, 'intercept': …, 'bits_stored': …})."
            )

    # ---- mask and anatomy
    anat = None
    if magnitude is not None:
        mag = np.asarray(magnitude, float)
        if mag.shape[-3:] != grid:
            raise MREInputError(
                f"{where}magnitude images {mag.shape[-3:]} do not match the phase grid {grid}."
            )
        anat = mag.reshape((-1, *grid)).mean(axis=0)
    if mask is not None:
        region = np.asarray(mask) != 0
        if region.shape != grid:
            raise MREInputError(f"{where}mask shape {region.shape} is not the grid {grid}.")
        if not region.any():
            raise MREInputError(f"{where}the mask is empty; draw a region or pass no mask.")
        records.append({"step": "mask", "options": {"given": True},
                        "voxels": int(region.sum())})
    elif mask_threshold is not None and anat is not None:
        region = magnitude_mask(anat, float(mask_threshold))
        if not region.any():
            raise MREInputError(
                f"{where}no voxel is above the magnitude threshold {mask_threshold:g}; lower "
                "it (--mask-threshold) or give a mask."
            )
        records.append({"step": "mask", "options": {"threshold": float(mask_threshold)},
                        "voxels": int(region.sum())})
    else:
        region = None

    # ---- unwrap, align, first harmonic: one series at a time (bounded memory)
    if unwrap_method not in UNWRAP_METHODS:
        raise MREInputError(
            f"unwrap method {unwrap_method!r} is not known; choose one of "
            f"{', '.join(UNWRAP_METHODS)}."
        )
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(series), desc="prepare", unit="series", leave=False)
    found = left = 0
    harmonics = []
    wrapped_steps, unwrapped_steps = [], []
    try:
        for i, psi in enumerate(series):
            if psi.shape[0] < 3:
                raise MREInputError(
                    f"{where}series {i + 1} has {psi.shape[0]} phase offset(s); the temporal "
                    "Fourier transform needs at least 3."
                )
            psi = wrap(psi).astype(np.float32) if unwrap_method != "none" else psi
            phi = unwrap(psi, unwrap_method, mask=region)
            if unwrap_method != "none":
                phi = align_offsets(phi, psi, axis=0, mask=region)
            found += count_wraps(psi, region)
            left += count_wraps(phi, region)
            harmonics.append(first_harmonic(phi, axis=0, source=source))
            if return_steps:
                wrapped_steps.append(psi)
                unwrapped_steps.append(phi)
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(i + 1, len(series))
    finally:
        if bar is not None:
            bar.close()
    n_offsets = sorted({int(s.shape[0]) for s in series})
    records.append({"step": "unwrap", "options": {"method": unwrap_method},
                    "wraps_found": found, "wraps_left": left})
    records.append({"step": "first_harmonic",
                    "options": {"harmonic": 1, "offsets": n_offsets,
                                "reverse_offsets": bool(reverse_offsets),
                                "convention": "u = Re{U exp(+i omega t)}"}})

    nd = len(labels)
    wave = np.stack(harmonics).reshape((len(freqs), nd, *grid)).astype(np.complex128)
    wave = np.moveaxis(wave, 1, -1)  # (F, x, y, z, component)
    if reverse_offsets:
        wave = np.conj(wave)
    if encoding_sensitivity is not None:
        wave = phase_to_displacement(wave, encoding_sensitivity)
        records.append({"step": "phase_to_displacement",
                        "options": {"sensitivity_rad_per_m": float(encoding_sensitivity)}})
    if smoothing is not None:
        wave = np.moveaxis(smooth(np.moveaxis(wave, -1, 1), smoothing), 1, -1)
        records.append({"step": "smooth", "options": {"sigma_voxels": _jsonable(smoothing)}})
    if band is not None:
        low, high = band
        wave = np.moveaxis(bandpass(np.moveaxis(wave, -1, 1), sp, low=low, high=high), 1, -1)
        records.append({"step": "bandpass", "options": {"low_cycles_per_m": low,
                                                        "high_cycles_per_m": high, "order": 1}})
    if divergence_removal:
        wave = remove_divergence(wave, sp, labels)
        records.append({"step": "remove_divergence", "options": {"method": "helmholtz_fft"}})

    if not np.isfinite(sp[2]) or sp[2] <= 0:
        sp[2] = sp[0]
    example = MREExample.from_numpy(
        wave if multi else wave[0],
        freqs if multi else float(freqs[0]),
        tuple(sp),
        mre_mask=None if region is None else region.astype(np.int32),
        anat=anat,
        origin=origin,
        components=labels,
        spatial_ndim=3,
        source=source,
    )
    example.ds["wave"].attrs["units"] = "m" if encoding_sensitivity is not None else "rad"
    example.ds.attrs["preprocessing_json"] = json.dumps(records)
    example.ds.attrs["wraps_found"] = int(found)
    example.ds.attrs["wraps_left"] = int(left)
    example.ds.attrs["n_offsets"] = int(n_offsets[0]) if len(n_offsets) == 1 else str(n_offsets)
    if return_steps:
        return example, {"wrapped": np.stack(wrapped_steps), "unwrapped": np.stack(unwrapped_steps)}
    return example


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
