"""Phase wrapping and spatial unwrapping of MRE phase volumes.

Phase images hold the motion-encoded phase modulo 2π. :func:`unwrap` removes the wraps of
each volume (``"laplacian"``: least-squares / Laplacian unwrapping by a DCT Poisson solve,
made integer-2π-consistent with the wrapped input; ``"skimage"``: 3-D masked
:func:`skimage.restoration.unwrap_phase`; ``"none"``); :func:`align_offsets` then removes the
arbitrary 2π multiple each volume got, so that it does not leak into the temporal harmonic;
:func:`count_wraps` counts what is left. Arrays are ``(..., x, y, z)`` phase in radians.
:func:`napari_mrepinn.preprocess.prepare` runs these steps; the public names are re-exported
by :mod:`napari_mrepinn.preprocess`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import fft as sfft

from .data import MREInputError

__all__ = [
    "UNWRAP_METHODS",
    "align_offsets",
    "count_wraps",
    "laplacian_unwrap",
    "unwrap",
    "wrap",
]

UNWRAP_METHODS = ("skimage", "laplacian", "none")
TWO_PI = 2.0 * np.pi


# ====================================================================== wrapping
def wrap(phase: np.ndarray) -> np.ndarray:
    """Phase wrapped into ``[−π, π]`` (the nearest value modulo 2π)."""
    phase = np.asarray(phase)
    return phase - TWO_PI * np.rint(phase / TWO_PI)


# ====================================================================== unwrapping
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
