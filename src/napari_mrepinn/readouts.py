"""The numbers researchers report, from any elastogram: readout maps and wave quality.

From a complex shear modulus map ``G* = G' + iG''`` (Pa; the PINN's ``mu_pred``, AHI's
``mu_ahi``, MDEV's ``mu_mdev`` or the ground truth ``mre``) this module computes the
readouts of :data:`READOUTS`; from a k-MDEV result (``kmdev_*`` variables) the speed and
penetration readouts directly. Arrays hold SI units (Pa, m/s, rad, 1/m, m); each readout's
display unit and scale (kPa, mm, ...) for tables and napari layers are in the same table,
so there is one place that says what a readout is and how it is shown.

Formulas (homogeneous viscoelastic medium, ``G* = |G*| e^{iφ}``, density ``ρ``,
``k = ω √(ρ/G*) = k' - iα``; MRE convention ``G'' >= 0``, see ``CONTRIBUTING.md``):

- shear-wave speed ``c = ω/k' = √(2|G*|² / (ρ (G' + |G*|)))`` (m/s);
- shear stiffness ``μ_s = ρ c²`` (Pa, the Mayo Clinic readout);
- attenuation ``α = -Im k = ω √(ρ/|G*|) sin(φ/2)`` (1/m), penetration depth ``δ = 1/α``
  (m) and penetration rate ``a = ω/α = √(|G*|/ρ) / sin(φ/2)`` (m/s, the tomoelastography
  readout; frequency independent for a given ``G*``, like ``c``);
- phase angle ``φ = atan2(G'', G')`` (rad), damping ratio ``ξ = G''/(2G')``.

Quality: :func:`oss_snr`, the octahedral shear-strain SNR of the wave (McGarry et al., Phys
Med Biol 56 (2011) N153); a value above about 3 is the usual acceptance threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from .data import MREExample, MREInputError

__all__ = [
    "METHOD_VARIABLES",
    "READOUTS",
    "Readout",
    "display",
    "modulus_readouts",
    "noise_sigma",
    "oss_snr",
    "readout_maps",
]


# ---------------------------------------------------------------------- formulas
def _abs(g, rho, omega):
    return np.abs(g)


def _storage(g, rho, omega):
    return g.real


def _loss(g, rho, omega):
    return g.imag


def _phase(g, rho, omega):
    return np.arctan2(g.imag, g.real)


def _speed(g, rho, omega):
    m = np.abs(g)
    den = rho * (g.real + m)
    out = np.zeros(np.shape(m))
    np.divide(2.0 * m**2, den, out=out, where=den > 0)
    return np.sqrt(out)


def _stiffness(g, rho, omega):
    return rho * _speed(g, rho, omega) ** 2


def _attenuation(g, rho, omega):
    m = np.abs(g)
    inv = np.zeros(np.shape(m))
    np.divide(rho, m, out=inv, where=m > 0)
    return omega * np.sqrt(inv) * np.sin(0.5 * _phase(g, rho, omega))


def _reciprocal(x: np.ndarray, scale: Any = 1.0) -> np.ndarray:
    """``scale / x`` where ``x > 0``, NaN elsewhere (no damping: unbounded)."""
    x = np.asarray(x, dtype=float)
    out = np.full(np.broadcast_shapes(x.shape, np.shape(scale)), np.nan)
    np.divide(scale, x, out=out, where=x > 0)
    return out


def _depth(g, rho, omega):
    return _reciprocal(_attenuation(g, rho, omega))


def _rate(g, rho, omega):
    return _reciprocal(_attenuation(g, rho, omega), omega)


def _damping(g, rho, omega):
    out = np.full(np.shape(g), np.nan)
    np.divide(g.imag, 2.0 * g.real, out=out, where=g.real > 0)
    return out


class Readout(NamedTuple):
    """One reported quantity: how to get it from ``G*`` and how to show it."""

    #: ``f(G* in Pa, ρ in kg/m³, ω in rad/s) -> array`` in ``unit``; None where it does
    #: not come from ``G*`` (quality maps)
    func: Callable[[np.ndarray, float, Any], np.ndarray] | None
    #: unit of the arrays (SI)
    unit: str
    #: unit where people look (tables, napari layers)
    display_unit: str
    #: multiply by this to go from ``unit`` to ``display_unit``
    display_scale: float
    #: name for plots and tables
    long_name: str
    #: whether the value depends on the frequency (not only on ``G*``)
    needs_frequency: bool = False


#: every readout: name -> :class:`Readout`. The one place for units and display scales.
READOUTS: dict[str, Readout] = {
    "abs_modulus": Readout(_abs, "Pa", "kPa", 1e-3, "|G*|"),
    "storage_modulus": Readout(_storage, "Pa", "kPa", 1e-3, "storage modulus G'"),
    "loss_modulus": Readout(_loss, "Pa", "kPa", 1e-3, "loss modulus G''"),
    "phase_angle": Readout(_phase, "rad", "rad", 1.0, "phase angle φ"),
    "shear_speed": Readout(_speed, "m/s", "m/s", 1.0, "shear-wave speed c"),
    "shear_stiffness": Readout(_stiffness, "Pa", "kPa", 1e-3, "shear stiffness ρc²"),
    "attenuation": Readout(_attenuation, "1/m", "1/m", 1.0, "attenuation α", True),
    "penetration_depth": Readout(_depth, "m", "mm", 1e3, "penetration depth 1/α", True),
    "penetration_rate": Readout(_rate, "m/s", "m/s", 1.0, "penetration rate a = ω/α"),
    "damping_ratio": Readout(_damping, "1", "1", 1.0, "damping ratio G''/(2G')"),
    "oss_snr": Readout(None, "1", "1", 1.0, "octahedral shear-strain SNR"),
}

#: method name -> the variable(s) holding its result
METHOD_VARIABLES = {
    "pinn": "mu_pred",
    "ahi": "mu_ahi",
    "mdev": "mu_mdev",
    "kmdev": "kmdev_speed",
    "truth": "mre",
}


def display(da: xr.DataArray) -> xr.DataArray:
    """A readout in its display unit (e.g. Pa -> kPa, m -> mm), ``units`` updated."""
    name = da.attrs.get("readout", da.name)
    if name not in READOUTS:
        raise MREInputError(
            f"display: {name!r} is not a readout; known: {sorted(READOUTS)}."
        )
    r = READOUTS[name]
    out = da * r.display_scale
    out.attrs = {**da.attrs, "units": r.display_unit}
    return out.rename(da.name)


# ---------------------------------------------------------------------- from G*
def _omega_like(mu: xr.DataArray, frequency: Any) -> Any:
    """``ω`` (rad/s) broadcastable against ``mu``: per entry of a frequency dim, or one."""
    if "frequency" in mu.dims:
        f = np.asarray(mu["frequency"].values, dtype=float)
        shape = [1] * mu.ndim
        shape[mu.get_axis_num("frequency")] = f.size
        return 2.0 * np.pi * f.reshape(shape)
    if frequency is None:
        return None
    return 2.0 * np.pi * float(frequency)


def modulus_readouts(
    mu: xr.DataArray,
    *,
    density: float = 1000.0,
    frequency: float | None = None,
    names: Any = None,
) -> xr.Dataset:
    """Readout maps of a complex shear modulus map.

    Parameters
    ----------
    mu : xarray.DataArray
        Complex ``G*`` in Pa (any dims; a ``frequency`` dim supplies ω per entry).
    density : float
        ρ in kg/m³.
    frequency : float, optional
        Hz, for the readouts that depend on it (attenuation, penetration depth) when
        ``mu`` has no ``frequency`` dim; taken from ``mu.attrs["frequency"]`` if absent.
        Without any, those readouts are left out.
    names : sequence of str, optional
        Readouts to compute (default: all that come from ``G*``).

    Returns
    -------
    xarray.Dataset
        One variable per readout, on ``mu``'s grid, with attrs ``units``,
        ``display_unit``, ``display_scale``, ``long_name`` and ``readout``. Where a value
        is unbounded (penetration depth and rate of an elastic voxel, ``G'' = 0``) it is
        NaN.
    """
    if not isinstance(mu, xr.DataArray):
        raise MREInputError("modulus_readouts: mu must be an xarray.DataArray of G* in Pa.")
    if not (np.isfinite(density) and density > 0):
        raise MREInputError(f"density must be positive kg/m³, got {density!r}.")
    if frequency is None and "frequency" in mu.attrs:
        frequency = float(mu.attrs["frequency"])
    if frequency is not None and not (np.isfinite(frequency) and frequency > 0):
        raise MREInputError(f"frequency must be positive Hz, got {frequency!r}.")
    from_g = [n for n, r in READOUTS.items() if r.func is not None]
    wanted = from_g if names is None else list(names)
    unknown = [n for n in wanted if n not in READOUTS or READOUTS[n].func is None]
    if unknown:
        raise MREInputError(
            f"unknown G* readout(s) {unknown}; known: "
            f"{[n for n, r in READOUTS.items() if r.func is not None]}."
        )
    g = np.asarray(mu.values).astype(complex, copy=False)
    if np.any(~np.isfinite(g)):
        g = np.where(np.isfinite(g), g, np.nan)
    omega = _omega_like(mu, frequency)
    out = {}
    for name in wanted:
        r = READOUTS[name]
        if r.needs_frequency and omega is None:
            continue
        with np.errstate(invalid="ignore"):
            # ω only matters for the readouts marked needs_frequency (and the penetration
            # rate, where it cancels): 1 stands in when there is none
            values = r.func(g, float(density), 1.0 if omega is None else omega)
        out[name] = _wrap(values, mu, name)
    ds = xr.Dataset(out)
    if omega is not None and "frequency" not in mu.dims:
        ds.attrs["frequency"] = float(frequency)
    return ds


def _wrap(values: np.ndarray, like: xr.DataArray, name: str, **attrs: Any) -> xr.DataArray:
    r = READOUTS[name]
    return xr.DataArray(
        np.asarray(values, dtype=float), dims=like.dims, coords=like.coords, name=name,
        attrs={"units": r.unit, "display_unit": r.display_unit,
               "display_scale": r.display_scale, "long_name": r.long_name,
               "readout": name, **attrs},
    )


# ---------------------------------------------------------------------- quality
def noise_sigma(wave: xr.DataArray, dims: tuple[str, str] = ("x", "y")) -> xr.DataArray:
    """Robust noise level of a complex wave from its finest-scale diagonal detail.

    The 2×2 Haar diagonal detail ``(u₀₀ - u₁₀ - u₀₁ + u₁₁)/2`` of white noise has the noise's
    standard deviation, while a smooth wave contributes only ``h² ∂x∂y u / 2``; the median
    absolute detail divided by 0.6745 (Donoho's estimator) is then ``σ``. Real and imaginary
    parts are estimated separately and combined, so ``σ² = E|n|²`` of complex noise.

    Parameters
    ----------
    wave : xarray.DataArray
        Complex wave with the two ``dims`` among its dims.
    dims : (str, str)
        The two in-plane dims of the detail.

    Returns
    -------
    xarray.DataArray
        ``σ`` (unit of the wave) per entry of the dims not in ``dims`` other than the
        spatial ones (``frequency``, ``component``), a scalar when there are none. On a
        noise-free wave it is an upper bound set by the wave's curvature.
    """
    a, b = dims
    if wave.sizes.get(a, 0) < 2 or wave.sizes.get(b, 0) < 2:
        raise MREInputError(f"noise_sigma: the wave needs at least 2 voxels along {dims}.")
    u = wave
    d = (u.isel({a: slice(0, -1), b: slice(0, -1)}).values
         - u.isel({a: slice(1, None), b: slice(0, -1)}).values
         - u.isel({a: slice(0, -1), b: slice(1, None)}).values
         + u.isel({a: slice(1, None), b: slice(1, None)}).values) / 2.0
    keep = [i for i, dim in enumerate(u.dims) if dim in ("frequency", "component")]
    d = np.moveaxis(d, keep, list(range(len(keep)))) if keep else d
    flat = d.reshape(*d.shape[: len(keep)], -1)
    sig_re = np.median(np.abs(flat.real), axis=-1) / 0.6745
    sig_im = np.median(np.abs(flat.imag), axis=-1) / 0.6745
    sigma = np.sqrt(sig_re**2 + sig_im**2)
    kdims = [u.dims[i] for i in keep]
    return xr.DataArray(sigma, dims=kdims, coords={k: u[k] for k in kdims},
                        name="noise_sigma", attrs={"units": u.attrs.get("units", "")})


def _grad(u: np.ndarray, axis: int | None, h: float) -> np.ndarray:
    if axis is None:
        return np.zeros_like(u)
    return np.gradient(u, h, axis=axis)


def oss_snr(example: MREExample, *, sigma: Any = None) -> xr.DataArray:
    """Octahedral shear-strain SNR of the wave (McGarry et al. 2011), a map.

    The strain ``ε = (∇u + ∇uᵀ)/2`` of the complex displacement (central differences) gives
    the octahedral shear strain
    ``γ = (2/3) √(|ε_xx-ε_yy|² + |ε_yy-ε_zz|² + |ε_zz-ε_xx|² + 6(|ε_xy|² + |ε_yz|² + |ε_xz|²))``.
    The noise's ``γ`` is propagated analytically from the displacement noise level ``σ``
    (:func:`noise_sigma`, or given) through the same differences, and the map is
    ``γ(u) / γ_noise``. Components or dims that are absent (2-D data, one encoding
    direction) contribute no strain terms: the value is then a lower bound of the 3-D one.

    Parameters
    ----------
    example : MREExample
        The wave; its ``component`` labels (``"x"``, ``"y"``, ``"z"``) say which
        displacement each component is (a wave without components is taken as ``"z"``).
    sigma : float or xarray.DataArray, optional
        Displacement noise ``σ`` (``E|n|²``, unit of the wave), per frequency and component
        if a DataArray. Default: estimated by :func:`noise_sigma`.

    Returns
    -------
    xarray.DataArray
        ``"oss_snr"`` (dimensionless) on the spatial grid, with a leading ``frequency`` dim
        for several frequencies; ``attrs["median_in_mask"]`` is the median over
        ``example.mask`` per frequency (a comma-separated string when several).
    """
    if not isinstance(example, MREExample):
        raise MREInputError("oss_snr needs an MREExample with a wave.")
    wave = example.ds["wave"]
    if "component" not in wave.dims:
        wave = wave.expand_dims(component=["z"], axis=wave.ndim)
    labels = [str(c) for c in wave["component"].values]
    bad = [c for c in labels if c not in ('x', 'y', 'z')]
    if bad or len(set(labels)) != len(labels):
        raise MREInputError(
            f"oss_snr: component labels must be distinct 'x', 'y', 'z', got {labels}."
        )
    sdims = example.spatial_dims
    for d in sdims:
        if wave.sizes[d] < 2:
            if d == "z":
                continue
            raise MREInputError(f"oss_snr: the wave needs at least 2 voxels along {d!r}.")
    if sigma is None:
        sigma = noise_sigma(wave)
    sig = xr.DataArray(sigma) if not isinstance(sigma, xr.DataArray) else sigma
    if np.any(~np.isfinite(sig.values)) or np.any(sig.values < 0):
        raise MREInputError("oss_snr: sigma must be finite and >= 0.")
    sig = sig.broadcast_like(wave.isel({d: 0 for d in sdims}, drop=True))
    h = example.spacing
    multi = "frequency" in wave.dims
    lead = ("frequency",) if multi else ()
    wave = wave.transpose(*lead, *sdims, "component")
    sig = sig.transpose(*lead, "component")
    # axes of the per-component arrays (lead..., spatial...)
    ax = {d: len(lead) + i for i, d in enumerate(sdims) if wave.sizes[d] >= 2}
    # du[i][j] = ∂u_i/∂x_j (i, j in x, y, z); absent -> zeros
    comps = {lab: np.asarray(wave.isel(component=k).values).astype(complex)
             for k, lab in enumerate(labels)}
    shape = next(iter(comps.values())).shape
    zero = np.zeros(shape, complex)
    du = {i: {j: (_grad(comps[i], ax.get(j), h.get(j, 1.0)) if i in comps else zero)
              for j in "xyz"} for i in "xyz"}
    e = {(i, j): 0.5 * (du[i][j] + du[j][i]) for i in "xyz" for j in "xyz"}
    gam2 = (np.abs(e["x", "x"] - e["y", "y"]) ** 2 + np.abs(e["y", "y"] - e["z", "z"]) ** 2
            + np.abs(e["z", "z"] - e["x", "x"]) ** 2
            + 6.0 * (np.abs(e["x", "y"]) ** 2 + np.abs(e["y", "z"]) ** 2
                     + np.abs(e["x", "z"]) ** 2))
    gamma = (2.0 / 3.0) * np.sqrt(gam2)

    # noise: central differences of white noise of variance s² have variance
    # s²/(2h²) (one-sided at the edges: more; the interior value is the reference);
    # different components and different neighbour pairs are uncorrelated
    var = {lab: sig.isel(component=k).values ** 2 for k, lab in enumerate(labels)}

    def dvar(i: str, j: str) -> Any:  # Var(∂u_i/∂x_j)
        if i not in var or j not in ax:
            return 0.0
        return var[i] / (2.0 * h[j] ** 2)

    v_diag = {i: dvar(i, i) for i in "xyz"}
    total = sum(v_diag[i] + v_diag[j] for i, j in (("x", "y"), ("y", "z"), ("z", "x")))
    total = total + 6.0 * sum(0.25 * (dvar(i, j) + dvar(j, i))
                              for i, j in (("x", "y"), ("y", "z"), ("x", "z")))
    gamma_noise = (2.0 / 3.0) * np.sqrt(np.asarray(total, dtype=float))
    gamma_noise = np.reshape(gamma_noise, gamma_noise.shape + (1,) * len(sdims))
    snr = np.full(shape, np.inf)
    np.divide(gamma, gamma_noise, out=snr, where=gamma_noise > 0)
    coords = {d: example.ds[d] for d in (*lead, *sdims)}
    out = xr.DataArray(snr, dims=(*lead, *sdims), coords=coords, name="oss_snr")
    med = out.where(example.mask).median(dim=list(sdims))
    out.attrs = {
        "units": "1", "display_unit": "1", "display_scale": 1.0, "readout": "oss_snr",
        "long_name": READOUTS["oss_snr"].long_name,
        "median_in_mask": ",".join(f"{v:.4g}" for v in np.atleast_1d(med.values)),
        "reference": "McGarry et al., Phys Med Biol 56 (2011) N153",
    }
    return out


# ---------------------------------------------------------------------- all at once
def _resolve_method(ex: MREExample, method: str | None) -> str:
    if method is None:
        for m in ("pinn", "mdev", "ahi", "kmdev"):
            if METHOD_VARIABLES[m] in ex:
                return m
        raise MREInputError(
            "readout_maps: no result in this example (looked for "
            f"{', '.join(METHOD_VARIABLES[m] for m in ('pinn', 'mdev', 'ahi', 'kmdev'))}); "
            "pass method='ahi', 'mdev' or 'kmdev' to compute one."
        )
    method = str(method).lower()
    if method not in METHOD_VARIABLES:
        raise MREInputError(
            f"readout_maps: method must be one of {sorted(METHOD_VARIABLES)}, got {method!r}."
        )
    return method


def _method_result(ex: MREExample, method: str) -> xr.DataArray | xr.Dataset:
    var = METHOD_VARIABLES[method]
    if method == "kmdev":
        names = [n for n in ex.ds.data_vars if str(n).startswith("kmdev_")]
        if "kmdev_speed" in names:
            return ex.ds[names]
        from .kmdev import kmdev

        return kmdev(ex)
    if var in ex:
        return ex[var]
    if method in ("ahi", "mdev"):
        from . import baselines

        return getattr(baselines, method)(ex)
    what = "train the PINN (mrepinn fit)" if method == "pinn" else "a file with ground truth"
    raise MREInputError(f"readout_maps: no {var!r} in this example; {what} first.")


def _kmdev_readouts(res: xr.Dataset, density: float, frequency: float | None) -> xr.Dataset:
    speed = res["kmdev_speed"]
    like = speed
    out = {
        "shear_speed": _wrap(speed.values, like, "shear_speed"),
        "shear_stiffness": _wrap(density * speed.values**2, like, "shear_stiffness"),
    }
    if "kmdev_penetration_rate" in res:
        out["penetration_rate"] = _wrap(res["kmdev_penetration_rate"].values, like,
                                        "penetration_rate")
    if "kmdev_attenuation" in res:
        att = res["kmdev_attenuation"].values
        # the compounded attenuation is an amplitude-weighted average over the band
        out["attenuation"] = _wrap(att, like, "attenuation")
        out["penetration_depth"] = _wrap(_reciprocal(att), like, "penetration_depth")
    return xr.Dataset(out)


def readout_maps(
    example_or_result: MREExample | xr.Dataset,
    method: str | None = None,
    *,
    quality: bool = True,
    frequency: float | None = None,
) -> xr.Dataset:
    """Every readout of one method's result as maps, with the wave-quality maps.

    Parameters
    ----------
    example_or_result : MREExample or xarray.Dataset
        An example or a saved result (``mrepinn fit`` / ``baseline`` output).
    method : {"pinn", "ahi", "mdev", "kmdev", "truth"}, optional
        Whose readouts: ``mu_pred``, ``mu_ahi``, ``mu_mdev``, the ``kmdev_*`` maps or the
        ground truth ``mre``. AHI, MDEV and k-MDEV are computed (defaults) when the
        example does not hold them. Default: the first result present (PINN, MDEV, AHI,
        k-MDEV).
    quality : bool
        Add ``oss_snr`` (:func:`oss_snr`) and, for the PINN, ``pde_residual_abs`` (the
        magnitude of the stored PDE residual, summed over components).
    frequency : float, optional
        Hz at which the frequency-dependent readouts (attenuation, penetration depth) of a
        frequency-independent ``G*`` map are given; default the map's own ``frequency``
        attribute, else the example's (the mean of its frequencies for a multi-frequency
        MDEV result, stated in the variable's ``frequency_hz`` attribute). k-MDEV's
        attenuation is its own amplitude-weighted average over the band.

    Returns
    -------
    xarray.Dataset
        Readout variables named as in :data:`READOUTS` (units in attrs, SI), plus
        ``oss_snr``; ``attrs["method"]`` says whose, ``attrs["frequency_hz"]`` at which
        frequency (absent for a map compounded over several frequencies). k-MDEV gives
        speed, stiffness and the penetration readouts only (no ``G*``, so no moduli or
        phase angle).
    """
    ex = example_or_result
    if isinstance(ex, xr.Dataset):
        ex = MREExample(ex)
    if not isinstance(ex, MREExample):
        raise MREInputError(
            f"readout_maps: expected an MREExample or a result Dataset, got "
            f"{type(example_or_result).__name__}."
        )
    method = _resolve_method(ex, method)
    res = _method_result(ex, method)
    rho = ex.density
    if frequency is None:
        if isinstance(res, xr.DataArray) and "frequency" in res.attrs:
            frequency = float(res.attrs["frequency"])
        else:
            frequency = float(np.mean(ex.frequencies))
    if isinstance(res, xr.Dataset):
        ds = _kmdev_readouts(res, rho, frequency)
    else:
        ds = modulus_readouts(res, density=rho, frequency=frequency)
        for name in ("attenuation", "penetration_depth"):
            if name in ds and "frequency" not in res.dims:
                ds[name].attrs["frequency_hz"] = float(frequency)
    if quality and "wave" in ex:
        ds["oss_snr"] = oss_snr(ex)
        if method == "pinn" and "pde_residual" in ex:
            r = ex["pde_residual"]
            mag = np.abs(r)
            if "component" in r.dims:
                mag = np.sqrt((mag**2).sum("component"))
            ds["pde_residual_abs"] = mag.rename("pde_residual_abs").assign_attrs(
                units="1", long_name="|PDE residual| / (ρω² scale(u))")
    ds.attrs = {"method": method, "density": float(rho)}
    # the maps are at one frequency when the example has one, or when the result says
    # which (a joint fit's G* at its reference frequency); an MDEV / k-MDEV map
    # compounded over several frequencies has none
    if "frequency" in res.attrs or len(ex.frequencies) == 1:
        ds.attrs["frequency_hz"] = float(frequency)
    return ds
