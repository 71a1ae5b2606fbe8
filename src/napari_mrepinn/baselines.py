"""Classical direct inversions: algebraic Helmholtz inversion (AHI) and MDEV.

Both invert the locally homogeneous Helmholtz equation ``G* ∇²U + ρω²U = 0`` voxel by
voxel from finite-difference Laplacians of the complex wave field. They need no training,
are scale free (multiplying the wave by any constant leaves ``G*`` unchanged) and serve as
the reference the PINN is compared with.

Conventions (see ``CONTRIBUTING.md``): SI units inside, ``G* = G' + iG''`` with
``G'' >= 0``, ``ω = 2π f`` with ``f`` in Hz, density ``ρ`` in kg/m³ from the example.

Everything is vectorised over voxels, components and frequencies; there are no Python loops
over voxels. The finite differences (:func:`laplacian`, :func:`smooth`, :func:`despeckle`,
:func:`fd3_plane_wave_bias`) live in :mod:`napari_mrepinn.finite_differences` and are
re-exported here (this :func:`smooth` is the inversions' smoothing of named-dim fields, not
the preprocessing filter :func:`napari_mrepinn.preprocess.smooth`).

Discretisation bias, worth knowing when reading the maps: on a plane wave
``exp(-i k x)`` the 3-point stencil returns ``-(2 - 2 cos kh)/h² · u`` instead of
``-k² u``, so the (complex) estimate is ``G_est = G* · (kh)² / (2 - 2 cos kh)``
exactly, for complex ``k`` too: ``|G_est| = |G*| |B|`` and ``arg G_est = arg G* + arg B``
with ``B = (kh)²/(2 - 2 cos kh)``. ``B`` is 1.23 at 4 voxels per wavelength, 1.053 at 8,
1.015 at 15. The published ``np.gradient``-of-gradient stencil is the same stencil with
step ``2h``, so its bias is that of half the sampling (1.23 at 8 voxels per wavelength)
and it is blind to the checkerboard (Nyquist) mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from .data import MREExample, MREInputError, warn_implausible_modulus
from .finite_differences import (
    BOUNDARIES,
    LAPLACIAN_METHODS,
    Boundary,
    LaplacianMethod,
    _axes,
    _check_choice,
    _check_savgol,
    _check_threshold,
    _complex,
    _despeckle_np,
    _laplacian_np,
    _smooth_np,
    despeckle,
    fd3_plane_wave_bias,
    laplacian,
    smooth,
)

__all__ = [
    "AUTO_3D_MIN_SLICES",
    "LAPLACIAN_METHODS",
    "SMOOTHING_METHODS",
    "ahi",
    "despeckle",
    "fd3_plane_wave_bias",
    "laplacian",
    "mdev",
    "resolve_dims",
    "smooth",
]

SMOOTHING_METHODS = (None, "gaussian", "savgol")

# With at least this many slices a volume is inverted with 3-D derivatives by default: the
# wave varies along z in a real exam (an oblique wave), and the in-plane Laplacian then
# misses k_z², which biases G* upwards by (k/k_xy)². With fewer slices a z second
# difference is mostly edge stencil, and a slab of 2-D slice solutions (the liver
# phantom) has no through-plane wave to see.
AUTO_3D_MIN_SLICES = 5

# Voxels whose denominator is below this fraction of the largest one carry no usable wave
# information; they get G* = 0 instead of a huge or infinite value. Relative, so the
# result stays invariant to the scale of the wave.
_REL_GUARD = 1e-12

Smoothing = Literal["gaussian", "savgol"] | None


# ---------------------------------------------------------------------- inversions
def resolve_dims(example: MREExample, dims: Sequence[str] | str | None = None) -> tuple[str, ...]:
    """The spatial dims an inversion differentiates along.

    Parameters
    ----------
    example : MREExample
        The data.
    dims : None, "auto", "xy", "xyz" or sequence of str
        None or ``"auto"``: all spatial dims (3-D derivatives) when the example has a ``z``
        dim of at least :data:`AUTO_3D_MIN_SLICES` slices, else the in-plane dims. A string
        such as ``"xy"`` names one dim per letter.

    Returns
    -------
    tuple of str
    """
    ex = _as_example(example)
    if dims is None or (isinstance(dims, str) and dims == "auto"):
        sd = ex.spatial_dims
        if "z" in sd and ex.ds.sizes["z"] >= AUTO_3D_MIN_SLICES:
            return tuple(sd)
        return tuple(d for d in sd if d != "z")
    if isinstance(dims, str):
        return tuple(dims)
    return tuple(dims)


def _as_example(example) -> MREExample:
    if isinstance(example, MREExample):
        return example
    if isinstance(example, xr.Dataset):
        return MREExample(example)
    raise MREInputError(
        f"expected an MREExample (or an xarray.Dataset with a 'wave'), got "
        f"{type(example).__name__}."
    )


def _prepare(
    ex: MREExample,
    dims: Sequence[str],
    smoothing: str | None,
    sigma: float,
    savgol_order: int,
    savgol_window: int,
    method: str | None,
    boundary: str,
    despeckle: bool,
    threshold: float,
) -> tuple[xr.DataArray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Shared front end of AHI and MDEV: checks, smoothing, Laplacian and despeckle.

    Returns the wave DataArray, the (smoothed) wave values, their Laplacian (despeckled
    when asked), its magnitude and the Laplacian method actually used.
    """
    _check_threshold(threshold)
    _check_choice("smoothing", smoothing, SMOOTHING_METHODS)
    _check_choice("boundary", boundary, BOUNDARIES)
    if method is None:
        # smoothing by polynomial fits goes with polynomial-fit derivatives (as published)
        method = "savgol" if smoothing == "savgol" else "fd3"
    _check_choice("laplacian", method, LAPLACIAN_METHODS)
    if smoothing == "savgol" or method == "savgol":
        _check_savgol(savgol_order, savgol_window)
    if smoothing == "gaussian" and not (np.isfinite(sigma) and sigma >= 0):
        raise MREInputError(f"sigma must be >= 0 voxels, got {sigma!r}.")
    dims = tuple(dims)
    bad = [d for d in dims if d not in ex.spatial_dims]
    if bad:
        raise MREInputError(
            f"dims {bad} are not spatial dims of this example ({ex.spatial_dims})."
        )
    ex.check_signal()  # a zero wave would come out as 0 Pa, looking like a result
    wave = ex.ds["wave"]
    axes = _axes(wave, dims, 3)
    hs = [ex.spacing[d] for d in dims]
    u = _complex(wave.values)
    if smoothing is not None:
        u = _smooth_np(u, axes, smoothing, sigma, savgol_order, savgol_window, boundary)
    lap = _laplacian_np(u, axes, hs, method, boundary, savgol_order, savgol_window)
    lap_abs = np.abs(lap)
    if despeckle:
        lap, lap_abs = _despeckle_np(lap, axes, float(threshold), lap_abs)
    return wave, u, lap, lap_abs, method


def _usable(den: np.ndarray, scale_axes: tuple[int, ...] | None) -> np.ndarray:
    """Voxels whose (linear in u) denominator is a usable fraction of its maximum.

    The maximum is taken over ``scale_axes`` (all axes when None), so each frequency of a
    multi-frequency AHI has its own scale. Relative, so scale invariance is kept; the
    threshold applies to a quantity linear in the wave (``Σ|∇²u|``), never to a
    quadratic one, whose dynamic range is the square of the field's.
    """
    ref = np.max(den, axis=scale_axes, keepdims=True) if den.size else np.zeros(1)
    return (den > _REL_GUARD * ref) & np.isfinite(den)


def _divide(num: np.ndarray, den: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``num/den`` where ``ok`` and ``den > 0``, else 0 (never inf or NaN)."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=np.result_type(num, den))
    np.divide(num, den, out=out, where=ok & (den > 0))
    return out


def _polar(mag_num: np.ndarray, mag_den: np.ndarray, dot: np.ndarray, norm: np.ndarray,
           scale_axes: tuple[int, ...] | None) -> np.ndarray:
    """``|G*| e^{iφ}`` with ``|G*| = mag_num/mag_den`` and ``cos φ = -dot/norm``."""
    ok = _usable(mag_den, scale_axes)
    mag = _divide(mag_num, mag_den, ok)
    # |dot| <= norm term by term (Cauchy–Schwarz), so this ratio is bounded even where
    # both are tiny; the clip only removes rounding beyond ±1
    cos_phi = np.clip(-_divide(dot, norm, ok), -1.0, 1.0)
    # e^{iφ} with φ = arccos(cos φ) in [0, π], i.e. sin φ >= 0 (G'' >= 0)
    return mag * (cos_phi + 1j * np.sqrt(1.0 - cos_phi**2))


def _output(values: np.ndarray, ex: MREExample, name: str, lead: tuple[str, ...],
            attrs: dict, apply_mask: bool) -> xr.DataArray:
    sdims = ex.spatial_dims
    coords = {d: ex.ds[d] for d in (*lead, *sdims)}
    out = xr.DataArray(values, dims=(*lead, *sdims), coords=coords, name=name, attrs=attrs)
    if apply_mask:
        out = out.where(ex.mask, 0.0)
    warn_implausible_modulus(out, ex.mask, name=name, source=ex.source)
    return out


def _settings_attrs(method_name: str, lap_method: str, smoothing: str | None, sigma: float,
                    savgol_order: int, savgol_window: int, dims: Sequence[str],
                    boundary: str, density: float) -> dict:
    # NetCDF-friendly scalars only (no None, no bool)
    attrs = {
        "units": "Pa",
        "long_name": f"complex shear modulus G* ({method_name})",
        "method": method_name,
        "laplacian": lap_method,
        "laplacian_dims": ",".join(dims),
        "boundary": boundary,
        "smoothing": smoothing or "none",
        "density": float(density),
    }
    if smoothing == "gaussian":
        attrs["sigma_voxels"] = float(sigma)
    if smoothing == "savgol" or lap_method == "savgol":
        attrs["savgol_order"] = int(savgol_order)
        attrs["savgol_window"] = int(savgol_window)
    return attrs


def ahi(
    example: MREExample,
    *,
    frequency: float | None = None,
    smoothing: Smoothing = None,
    sigma: float = 0.65,
    savgol_order: int = 2,
    savgol_window: int = 5,
    laplacian: LaplacianMethod | None = None,
    despeckle: bool = True,
    threshold: float = 3.0,
    dims: Sequence[str] | str | None = None,
    polar: bool = True,
    boundary: Boundary = "one-sided",
    apply_mask: bool = False,
) -> xr.DataArray:
    """Algebraic Helmholtz inversion (direct inversion) of each frequency.

    Solves ``G* ∇²U + ρω²U = 0`` voxel by voxel, combining the wave components.

    Parameters
    ----------
    example : MREExample
        The wave field (any unit; the result does not depend on its scale), its grid in
        metres, frequency in Hz and density in kg/m³.
    frequency : float, optional
        Invert only this frequency (Hz). By default every frequency of the example is
        inverted on its own.
    smoothing : {None, "gaussian", "savgol"}
        Pre-smoothing of the wave along ``dims``: a Gaussian of ``sigma`` voxels, or a
        separable Savitzky–Golay fit (which also makes ``"savgol"`` the default
        Laplacian, as in the published AHI). The smoothed wave is used in numerator and
        Laplacian alike (:func:`smooth` does this step on its own). Default None (the
        published default).
    sigma : float
        Gaussian standard deviation in voxels (0.65 = Charité MDEV default).
    savgol_order, savgol_window : int
        Savitzky–Golay polynomial order (2–3) and odd window length in voxels (3–5).
    laplacian : {"fd3", "gradient", "savgol"}, optional
        Laplacian stencil (see :func:`laplacian`). Default ``"fd3"``, or ``"savgol"`` when
        ``smoothing="savgol"``. ``"gradient"`` reproduces the published AHI.
    despeckle : bool
        Clamp outliers of ``1/∇²u`` (see :func:`despeckle`) before inverting.
    threshold : float
        Despeckle clamp factor.
    dims : None, "auto", "xy", "xyz" or sequence of str
        Laplacian (and smoothing) dims. Default (None = ``"auto"``, see
        :func:`resolve_dims`): 3-D ``("x", "y", "z")`` for a volume of at least
        :data:`AUTO_3D_MIN_SLICES` slices, in-plane ``("x", "y")`` for a slice or a thin
        slab. Pass ``"xy"`` for the slice-wise inversion of the published AHI/MDEV. The
        result's ``laplacian_dims`` attribute says which was used, ``dims_source``
        whether it was chosen automatically.
    polar : bool
        True (default): the polar form of Oliphant et al. (2001) summed over components,
        ``|G*| = ρω² Σ|u| / Σ|∇²u|``, ``cos φ = -Σ Re(ū ∇²u) / Σ|u||∇²u|`` with
        ``φ ∈ [0, π]`` (the arccos loses about half the digits near ``φ = 0``: a purely
        elastic medium comes out with ``|φ| ~ 1e-8`` rad). False: the complex
        least-squares form ``G* = -ρω² Σ conj(∇²u) u / Σ|∇²u|²``.
    boundary : {"one-sided", "mirror"}
        Edge handling of smoothing and Laplacian (see :func:`laplacian`).
    apply_mask : bool
        Set ``G*`` to 0 outside ``example.mask``. By default the whole grid is returned
        (the inversion is always computed on the whole grid, so the stencils near the mask
        edge see real data).

    Returns
    -------
    xarray.DataArray
        ``"mu_ahi"``: complex ``G*`` in Pa on the spatial dims, with a leading
        ``frequency`` dim when the example has several frequencies and ``frequency`` is
        not given. Voxels with no usable Laplacian (``|∇²u|`` below 1e-12 of its maximum)
        are 0; the result never holds NaN or inf.

    Raises
    ------
    MREInputError
        For an unknown option, a missing frequency or a dim too short to differentiate.
    """
    ex = _as_example(example)
    if frequency is not None:
        ex = ex.select_frequency(frequency)
    auto = dims is None or dims == "auto"
    dims = resolve_dims(ex, dims)
    wave, u, lap, lap_abs, method = _prepare(
        ex, dims, smoothing, sigma, savgol_order, savgol_window, laplacian, boundary,
        despeckle, threshold,
    )

    multi = "frequency" in wave.dims
    omega = 2.0 * np.pi * ex.frequencies
    rho_w2 = ex.density * omega**2  # Pa·m² per (unit of u / unit of ∇²u)
    shape = [1] * u.ndim
    if multi:
        shape[0] = len(omega)
    rho_w2 = rho_w2.reshape(shape) if multi else float(rho_w2[0])
    comp = (wave.get_axis_num("component"),) if "component" in wave.dims else ()
    # per-frequency guard scale: the maximum over everything but the frequency axis
    n_out = u.ndim - len(comp)
    scale_axes = tuple(range(1, n_out)) if multi else None

    if polar:
        u_abs = np.abs(u)
        num = np.sum(u_abs, axis=comp) if comp else u_abs
        den = np.sum(lap_abs, axis=comp) if comp else lap_abs
        dot_c = u.real * lap.real
        dot_c += u.imag * lap.imag
        dot = np.sum(dot_c, axis=comp) if comp else dot_c
        nrm_c = u_abs * lap_abs
        nrm = np.sum(nrm_c, axis=comp) if comp else nrm_c
        if multi:
            rho_w2 = rho_w2.reshape(rho_w2.shape[: num.ndim])
        mu = _polar(rho_w2 * num, den, dot, nrm, scale_axes)
    else:
        cross = np.conj(lap) * u
        num = np.sum(cross, axis=comp) if comp else cross
        den = np.sum(lap_abs**2, axis=comp) if comp else lap_abs**2
        ok = _usable(np.sum(lap_abs, axis=comp) if comp else lap_abs, scale_axes)
        if multi:
            rho_w2 = rho_w2.reshape(rho_w2.shape[: num.ndim])
        mu = _divide(-rho_w2 * num, den, ok)
    mu = mu.astype(np.complex128 if u.dtype == np.complex128 else np.complex64, copy=False)

    attrs = _settings_attrs("AHI", method, smoothing, sigma, savgol_order, savgol_window,
                            dims, boundary, ex.density)
    attrs["dims_source"] = "auto" if auto else "user"
    attrs["polar"] = int(polar)
    attrs["despeckle"] = int(despeckle)
    if despeckle:
        attrs["despeckle_threshold"] = float(threshold)
    if not multi:
        attrs["frequency"] = float(ex.frequencies[0])
    return _output(mu, ex, "mu_ahi", ("frequency",) if multi else (), attrs, apply_mask)


def mdev(
    example: MREExample,
    *,
    smoothing: Smoothing = None,
    sigma: float = 0.65,
    savgol_order: int = 2,
    savgol_window: int = 5,
    laplacian: LaplacianMethod | None = None,
    despeckle: bool = False,
    threshold: float = 3.0,
    dims: Sequence[str] | str | None = None,
    boundary: Boundary = "one-sided",
    apply_mask: bool = False,
) -> xr.DataArray:
    """Multifrequency dual elasto-visco inversion (MDEV, Papazoglou et al. 2012).

    Magnitude and phase of ``G*`` are estimated separately from sums over all frequencies
    ``f`` and components ``c`` of the example, which fills the nodes of the single wave
    fields ("compounding")::

        |G*| = ρ Σ_f,c ω_f² |u_f,c| / Σ_f,c |∇²u_f,c|
        cos φ = -Σ_f,c Re(ū_f,c ∇²u_f,c) / Σ_f,c |u_f,c| |∇²u_f,c|,   φ ∈ [0, π]

    ``G*`` is taken as frequency independent over the band: the result is an effective,
    amplitude-weighted average over the frequencies.

    Parameters
    ----------
    example : MREExample
        Single- or multi-frequency wave (any unit), grid in metres, frequency in Hz.
    smoothing, sigma, savgol_order, savgol_window, laplacian, dims, boundary, apply_mask
        As in :func:`ahi`. The Charité pipeline smooths with ``smoothing="gaussian"``,
        ``sigma=0.65``; the default here is no smoothing so that the inversion alone is
        what is measured.
    despeckle : bool
        Despeckle each Laplacian as in :func:`ahi` (off by default: compounding already
        removes most node spikes).
    threshold : float
        Despeckle clamp factor.

    Returns
    -------
    xarray.DataArray
        ``"mu_mdev"``: complex ``G*`` in Pa on the spatial dims; 0 (never NaN or inf)
        where the summed Laplacian vanishes.
    """
    ex = _as_example(example)
    auto = dims is None or dims == "auto"
    dims = resolve_dims(ex, dims)
    wave, u, lap, lap_abs, method = _prepare(
        ex, dims, smoothing, sigma, savgol_order, savgol_window, laplacian, boundary,
        despeckle, threshold,
    )
    multi = "frequency" in wave.dims
    omega = 2.0 * np.pi * ex.frequencies
    # every axis that is not spatial gets summed: frequency (first) and component (last)
    sum_axes = tuple(wave.get_axis_num(d) for d in ("frequency", "component") if d in wave.dims)
    u_abs = np.abs(u)
    w2 = (omega**2).reshape([-1] + [1] * (u.ndim - 1)) if multi else omega[0] ** 2
    num = np.sum(w2 * u_abs, axis=sum_axes) if sum_axes else w2 * u_abs
    den = np.sum(lap_abs, axis=sum_axes) if sum_axes else lap_abs
    dot_c = u.real * lap.real
    dot_c += u.imag * lap.imag
    nrm_c = u_abs * lap_abs
    dot = np.sum(dot_c, axis=sum_axes) if sum_axes else dot_c
    nrm = np.sum(nrm_c, axis=sum_axes) if sum_axes else nrm_c
    mu = _polar(ex.density * num, den, dot, nrm, None)
    mu = mu.astype(np.complex128 if u.dtype == np.complex128 else np.complex64, copy=False)
    attrs = _settings_attrs("MDEV", method, smoothing, sigma, savgol_order, savgol_window,
                            dims, boundary, ex.density)
    attrs["dims_source"] = "auto" if auto else "user"
    attrs["despeckle"] = int(despeckle)
    attrs["frequencies_hz"] = ",".join(f"{f:g}" for f in ex.frequencies)
    return _output(mu, ex, "mu_mdev", (), attrs, apply_mask)
