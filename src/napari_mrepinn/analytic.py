"""Closed forms of viscoelastic shear waves: the Voigt and springpot moduli, the complex
wavenumber and the exact field of a plane wave scattered by a circular inclusion.

Conventions (``CONTRIBUTING.md``): SI units (metres, hertz, pascals, kg/m³), the MRE time
convention ``u(t) = Re{U e^{+iωt}}`` and the complex shear modulus ``G* = G' + iG''`` with
``G'' >= 0``. In this convention the complex wavenumber ``k = ω √(ρ / G*)`` has ``Re k > 0``
and ``Im k < 0``: a wave travelling to ``+x`` is ``exp(-i k x)`` and decays along its travel,
and outgoing cylindrical waves are Hankel functions of the second kind ``H⁽²⁾ₙ``.

These are the ground truth of the tests and of :func:`napari_mrepinn.simulate.cylinder`; the
public names are re-exported by :mod:`napari_mrepinn.simulate`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ._phantom import _check_modulus, _positive
from .data import DEFAULT_DENSITY, MREInputError

__all__ = ["cylinder_field", "springpot_exponent", "springpot_modulus", "voigt_modulus",
           "wavenumber"]


# ============================================================================ material
def voigt_modulus(mu: float | np.ndarray, viscosity: float | np.ndarray, frequency: float):
    """Complex shear modulus of a Voigt solid, ``G* = μ + iωη``.

    Parameters
    ----------
    mu : float or ndarray
        Storage (elastic) shear modulus μ in Pa.
    viscosity : float or ndarray
        Shear viscosity η in Pa·s (>= 0).
    frequency : float
        Vibration frequency in Hz.

    Returns
    -------
    complex or ndarray of complex
        ``G*`` in Pa, with ``G'' = ωη >= 0`` (MRE convention).
    """
    omega = 2 * np.pi * _positive("frequency", frequency)
    return np.asarray(mu, dtype=float) + 1j * omega * np.asarray(viscosity, dtype=float)


def springpot_exponent(mu_ref):
    """The springpot's power-law exponent ``α = 2φ/π`` of ``G*`` (``φ = arg G*``; 0 elastic,
    1 viscous; dimensionless, the type of ``mu_ref``)."""
    return 2 * np.angle(mu_ref) / np.pi


def springpot_modulus(mu_ref, frequency: float, f_ref: float):
    """Complex shear modulus of a springpot (power-law) solid at ``frequency``.

    ``G*(f) = G*_ref · (f / f_ref)^α`` with ``α = 2φ/π`` (:func:`springpot_exponent`): the phase
    angle does not change with the frequency and fixes the exponent (0 elastic, 1 viscous).
    The joint multi-frequency fit (:mod:`napari_mrepinn.multifreq`) assumes this model.

    Parameters
    ----------
    mu_ref : complex, ndarray or xarray.DataArray
        ``G*`` at ``f_ref`` in Pa (``G'' >= 0``).
    frequency, f_ref : float
        The frequency wanted and the reference frequency, in Hz.

    Returns
    -------
    same type as ``mu_ref``
        ``G*(frequency)`` in Pa.
    """
    return mu_ref * np.exp(springpot_exponent(mu_ref) * math.log(frequency / f_ref))


def wavenumber(mu: complex | np.ndarray, frequency: float, density: float = DEFAULT_DENSITY):
    """Complex shear wavenumber ``k = ω √(ρ / G*)`` in rad/m (``Re k > 0``, ``Im k <= 0``).

    With ``G'' >= 0`` the principal square root gives ``Im k <= 0``, so ``exp(-i k x)``
    travels to ``+x`` and decays along its travel (MRE convention).
    """
    omega = 2 * np.pi * _positive("frequency", frequency)
    rho = _positive("density", density)
    return omega * np.sqrt(rho / np.asarray(mu, dtype=complex))


# ============================================================================ closed form
def cylinder_field(
    x: np.ndarray,
    y: np.ndarray,
    *,
    frequency: float,
    radius: float,
    mu_background: complex,
    mu_inclusion: complex,
    density: float = DEFAULT_DENSITY,
    direction: float = 0.0,
    n_terms: int = 30,
) -> np.ndarray:
    """Exact field of a plane shear wave scattered by a circular inclusion (2D).

    Solves ``∇·(G*∇U) + ρω²U = 0`` in the plane for an inclusion of radius ``a`` centred at
    the origin (``G* = mu_inclusion`` for ``r < a``, ``mu_background`` outside), lit by the
    unit plane wave ``exp(-i k₁ (x cos θ + y sin θ))`` travelling along ``direction`` θ.
    ``U`` and the traction ``G* ∂U/∂r`` are continuous at ``r = a``.

    Written directly in the MRE convention (``e^{+iωt}``, ``G'' >= 0``), which is the
    complex conjugate of the textbook ``e^{-iωt}`` series with ``conj(G*)``:

    - outside: ``U = exp(-i k₁ r cos φ) + Σₙ εₙ (-i)ⁿ Aₙ H⁽²⁾ₙ(k₁r) cos nφ``
    - inside: ``U = Σₙ εₙ (-i)ⁿ Bₙ Jₙ(k₂r) cos nφ``

    with ``φ`` the polar angle from the incident direction, ``ε₀ = 1``, ``εₙ = 2``,
    ``Aₙ = [G₂k₂J'ₙ(k₂a)Jₙ(k₁a) − G₁k₁Jₙ(k₂a)J'ₙ(k₁a)] / Dₙ`` and, by the Wronskian
    ``JₙH⁽²⁾'ₙ − J'ₙH⁽²⁾ₙ = −2i/(πz)``, ``Bₙ = −2iG₁/(πaDₙ)`` where
    ``Dₙ = G₁k₁Jₙ(k₂a)H⁽²⁾'ₙ(k₁a) − G₂k₂J'ₙ(k₂a)H⁽²⁾ₙ(k₁a)``. The incident wave is
    evaluated in closed form (not as a series), so the result is exact at any distance;
    only the scattered and interior series are truncated at ``n_terms``.

    Parameters
    ----------
    x, y : ndarray
        Coordinates in metres relative to the inclusion centre (broadcast together).
    frequency : float
        Vibration frequency in Hz.
    radius : float
        Inclusion radius ``a`` in metres.
    mu_background, mu_inclusion : complex
        Complex shear moduli ``G*`` in Pa outside and inside (``G'' >= 0``; Voigt
        ``G* = μ + iωη``).
    density : float
        Density ρ in kg/m³ (both media).
    direction : float
        Direction of travel of the incident wave, radians from ``+x``.
    n_terms : int
        Highest order ``n`` kept; must exceed ``max|k|·a + 10`` for convergence.

    Returns
    -------
    ndarray of complex
        ``U`` at the points, unit incident amplitude (dimensionless).

    Raises
    ------
    MREInputError
        For non-positive frequency, radius or density, an invalid modulus, or too few terms.
    """
    f = _positive("frequency", frequency)
    a = _positive("radius", radius)
    rho = _positive("density", density)
    g1 = complex(_check_modulus("mu_background", mu_background))
    g2 = complex(_check_modulus("mu_inclusion", mu_inclusion))
    k1 = complex(wavenumber(g1, f, rho))
    k2 = complex(wavenumber(g2, f, rho))
    n_terms = int(n_terms)
    need = max(abs(k1), abs(k2)) * a + 10
    if n_terms < need:
        raise MREInputError(
            f"n_terms={n_terms} is too few for |k|·a = {need - 10:.3g}; use n_terms >= "
            f"{int(np.ceil(need))}."
        )
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    r = np.hypot(x, y)
    phi = np.arctan2(y, x) - float(direction)
    inside = r < a

    n = np.arange(n_terms + 1)
    j1, dj1 = special.jv(n, k1 * a), special.jvp(n, k1 * a)
    h1, dh1 = special.hankel2(n, k1 * a), special.h2vp(n, k1 * a)
    j2, dj2 = special.jv(n, k2 * a), special.jvp(n, k2 * a)
    with np.errstate(all="ignore"):
        den = g1 * k1 * j2 * dh1 - g2 * k2 * dj2 * h1
        coef_a = (g2 * k2 * dj2 * j1 - g1 * k1 * j2 * dj1) / den
        coef_b = -2j * g1 / (np.pi * a * den)
    # high orders: H⁽²⁾ₙ(k₁a) overflows, the coefficient is 0 to machine precision
    coef_a = np.where(np.isfinite(coef_a), coef_a, 0)
    coef_b = np.where(np.isfinite(coef_b), coef_b, 0)
    # drop orders whose contribution at r = a (their largest, for high n) is below
    # rounding: it saves most Hankel evaluations without changing the result
    with np.errstate(all="ignore"):
        coef_a = np.where(np.abs(coef_a * h1) > 1e-17, coef_a, 0)
        coef_b = np.where(np.abs(coef_b * j2) > 1e-17, coef_b, 0)
    weight = np.where(n == 0, 1.0, 2.0) * (-1j) ** n

    u = np.zeros(r.shape, complex)
    ro, po = r[~inside], phi[~inside]
    ri, pi_ = r[inside], phi[inside]
    uo = np.exp(-1j * k1 * ro * np.cos(po))
    ui = np.zeros(ri.shape, complex)
    with np.errstate(all="ignore"):
        for m in n:
            if coef_a[m] != 0:
                t = weight[m] * coef_a[m] * special.hankel2(m, k1 * ro) * np.cos(m * po)
                uo += np.where(np.isfinite(t), t, 0)
            if coef_b[m] != 0:
                t = weight[m] * coef_b[m] * special.jv(m, k2 * ri) * np.cos(m * pi_)
                ui += np.where(np.isfinite(t), t, 0)
    u[~inside] = uo
    u[inside] = ui
    return u
