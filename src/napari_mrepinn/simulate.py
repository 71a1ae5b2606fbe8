"""Ground-truth MRE phantoms and a frequency-domain forward solver.

Everything here follows the library conventions (``CONTRIBUTING.md``): SI units (metres,
hertz, pascals, kg/m³), the MRE time convention ``u(t) = Re{U e^{+iωt}}`` and the complex
shear modulus ``G* = G' + iG''`` with ``G'' >= 0``. In this convention the complex
wavenumber ``k = ω √(ρ / G*)`` has ``Re k > 0`` and ``Im k < 0``: a wave travelling to
``+x`` is ``exp(-i k x)`` and decays along its travel, and outgoing cylindrical waves are
Hankel functions of the second kind ``H⁽²⁾ₙ``.

The scalar model solved throughout is the "heterogeneous" (anti-plane shear) equation

    ∇·(G*∇u) + ρω² u = -F,

exact for SH waves in 2D and the per-component model that MRE inversions use.

Contents
--------
- :func:`cylinder_field`: closed-form Bessel/Hankel series of a plane shear wave scattered
  by one circular inclusion (exact; no discretisation).
- :func:`cylinder`: that field sampled on a grid, as an :class:`MREExample`.
- :func:`solve_hetero_2d`: sparse finite-difference solver of the equation above for any
  complex ``G*(x, y)`` map, with a perfectly matched layer (PML) around the grid.
- :func:`four_target`: a 3D box like the public BIOQIC four-target FEM phantom.
- :func:`liver`: a patient-like abdominal slab (anatomy, liver mask, stiffness, wave).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy import ndimage, special
from scipy.sparse.linalg import splu

from .data import DEFAULT_DENSITY, MREExample, MREInputError, parse_frequencies

__all__ = [
    "cylinder",
    "cylinder_field",
    "four_target",
    "liver",
    "solve_hetero_2d",
    "voigt_modulus",
    "wavenumber",
]

# BIOQIC four-target FEM box (public description): target diameters (m) and centres (x, y; m)
FOUR_TARGET_DIAMETERS = (20e-3, 10e-3, 6e-3, 4e-3)
FOUR_TARGET_CENTRES = ((40e-3, 73.6e-3), (40e-3, 49.6e-3), (40e-3, 31.8e-3), (40e-3, 18.6e-3))

# four_target: incident direction (rad from +x) and complex amplitude per component
# (z, y, x); z dominates as in the FEM box, the others come from other directions so the
# components are not copies of each other.
_COMPONENT_DIRECTIONS = (np.pi / 2, np.deg2rad(25.0), np.deg2rad(140.0))
_COMPONENT_AMPLITUDES = (1.0, 0.5 * np.exp(0.7j), 0.4 * np.exp(-1.9j))


# ============================================================================ helpers
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


def cylinder(
    frequency: float = 60,
    radius: float = 10e-3,
    mu_background: float = 3000,
    mu_inclusion: float = 10000,
    viscosity: float = 1.0,
    shape: Sequence[int] = (64, 64),
    spacing: float = 1e-3,
    direction: float | Sequence[float] = 0.0,
    noise_ratio: float = 0.0,
    seed: int | None = None,
) -> MREExample:
    """A 2D example with the exact field of one circular inclusion (see :func:`cylinder_field`).

    Parameters
    ----------
    frequency : float
        Vibration frequency in Hz.
    radius : float
        Inclusion radius in metres.
    mu_background, mu_inclusion : float
        Storage moduli μ in Pa; the complex modulus is Voigt ``G* = μ + iωη``.
    viscosity : float
        Voigt viscosity η in Pa·s (both media).
    shape : (int, int)
        Grid size (x, y) in voxels.
    spacing : float
        Voxel size in metres.
    direction : float or sequence of float
        Incident direction of travel, radians from ``+x``. A sequence of 1 to 3 directions
        gives one component per direction (labels ``"z"``, ``"y"``, ``"x"``; the later ones
        with the amplitudes and phases of :func:`four_target`), each an exact solution of
        the scalar equation on its own (the ``hetero`` model, as in :func:`four_target`).
    noise_ratio : float
        Complex Gaussian noise power relative to ``mean|u|²`` (0 = none).
    seed : int, optional
        Noise seed.

    Returns
    -------
    MREExample
        Dims ``(x, y, component)`` with one component labelled ``"z"`` (the anti-plane
        displacement) per direction. The grid is centred on the inclusion (voxel centres at
        ``(i - (n-1)/2)·spacing``). ``mre`` is the true ``G*`` map (Pa), ``mre_mask`` is
        1 in the background and 2 in the inclusion.
    """
    f = _positive("frequency", frequency)
    h = _positive("spacing", spacing)
    if not np.isfinite(float(viscosity)) or float(viscosity) < 0:
        raise MREInputError(f"viscosity must be >= 0 Pa·s, got {viscosity!r}.")
    nx, ny = _shape(shape, 2, (2, 2))
    nr = _noise_ratio(noise_ratio)
    g1 = complex(voigt_modulus(_positive("mu_background", mu_background), viscosity, f))
    g2 = complex(voigt_modulus(_positive("mu_inclusion", mu_inclusion), viscosity, f))
    x = (np.arange(nx) - (nx - 1) / 2) * h
    y = (np.arange(ny) - (ny - 1) / 2) * h
    xx, yy = np.meshgrid(x, y, indexing="ij")
    a = _positive("radius", radius)
    k_max = max(abs(complex(wavenumber(g, f))) for g in (g1, g2))
    n_terms = max(30, int(np.ceil(k_max * a + 10)))
    dirs = np.atleast_1d(np.asarray(direction, dtype=float))
    if dirs.ndim != 1 or not 1 <= dirs.size <= 3 or not np.all(np.isfinite(dirs)):
        raise MREInputError(f"direction must be 1 to 3 angles in radians, got {direction!r}.")
    u = np.stack(
        [
            amp * cylinder_field(
                xx,
                yy,
                frequency=f,
                radius=a,
                mu_background=g1,
                mu_inclusion=g2,
                direction=float(d),
                n_terms=n_terms,
            )
            for d, amp in zip(dirs, _COMPONENT_AMPLITUDES, strict=False)
        ],
        axis=-1,
    )
    inside = np.hypot(xx, yy) < a
    mre = np.where(inside, g2, g1)
    mask = np.where(inside, 2, 1).astype(np.int32)
    ex = MREExample.from_numpy(
        u,
        f,
        h,
        mre=mre,
        mre_mask=mask,
        origin=(x[0], y[0]),
        components=list("zyx"[: dirs.size]),
        spatial_ndim=2,
    )
    _annotate(ex, "cylinder", viscosity=float(viscosity), radius=a, direction=float(dirs[0]))
    if dirs.size > 1:
        ex.ds.attrs["directions"] = ",".join(f"{d:.6g}" for d in dirs)
    if nr > 0:
        ex = ex.add_gaussian_noise(nr, seed)
    return ex


# ============================================================================ FD solver
def _stretch(n_inner: int, n_pml: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """PML stretch factors at the nodes and the faces of one padded axis.

    ``s = 1 - i·strength·(d/L)²`` with ``d`` the depth into the layer and ``L`` its
    thickness. In the ``e^{+iωt}`` convention the stretched coordinate ``x̃ = x − iβ(x)``
    turns an outgoing ``exp(-i k x̃)`` into one that also decays as ``exp(-Re(k)·β)``.
    """
    n = n_inner + 2 * n_pml
    pos_n = np.arange(n, dtype=float)
    pos_f = pos_n[:-1] + 0.5
    if n_pml == 0:
        return np.ones(n, complex), np.ones(n - 1, complex)

    def depth(p: np.ndarray) -> np.ndarray:
        # depth in cells beyond the first/last inner node
        return np.maximum(0.0, np.maximum(n_pml - p, p - (n_pml + n_inner - 1)))

    s_n = 1 - 1j * strength * (depth(pos_n) / n_pml) ** 2
    s_f = 1 - 1j * strength * (depth(pos_f) / n_pml) ** 2
    return s_n, s_f


def _assemble(
    g: np.ndarray,
    active: np.ndarray,
    hx: float,
    hy: float,
    sx: tuple[np.ndarray, np.ndarray],
    sy: tuple[np.ndarray, np.ndarray],
    diag_term: np.ndarray,
) -> sp.csc_matrix:
    """Five-point operator of ``∂x(sy/sx G ∂x u) + ∂y(sx/sy G ∂y u) + sx·sy·c·u``.

    Face coefficients are harmonic means of the node moduli (the flux ``G ∂u/∂n`` is what
    is continuous across an interface, so resistances add in series). Faces to inactive
    nodes carry no flux (traction-free surface); beyond the outer edge ``u = 0``
    (harmless: the PML has absorbed the wave by then). ``diag_term`` is ``ρω² − G kz²``.
    """
    sxn, sxf = sx
    syn, syf = sy
    idx = np.full(g.shape, -1, dtype=np.int64)
    idx[active] = np.arange(int(active.sum()))
    diag = sxn[:, None] * syn[None, :] * diag_term
    rows, cols, vals = [], [], []

    def hmean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return 2 * a * b / (a + b)

    # x faces between (i, j) and (i+1, j)
    cx = hmean(g[:-1], g[1:]) * syn[None, :] / sxf[:, None] / hx**2
    both = active[:-1] & active[1:]
    diag[:-1] -= np.where(both, cx, 0)
    diag[1:] -= np.where(both, cx, 0)
    p, q = idx[:-1][both], idx[1:][both]
    rows += [p, q]
    cols += [q, p]
    vals += [cx[both], cx[both]]
    # y faces between (i, j) and (i, j+1)
    cy = hmean(g[:, :-1], g[:, 1:]) * sxn[:, None] / syf[None, :] / hy**2
    both = active[:, :-1] & active[:, 1:]
    diag[:, :-1] -= np.where(both, cy, 0)
    diag[:, 1:] -= np.where(both, cy, 0)
    p, q = idx[:, :-1][both], idx[:, 1:][both]
    rows += [p, q]
    cols += [q, p]
    vals += [cy[both], cy[both]]
    # Dirichlet ghosts beyond the outer edge
    diag[0, :] -= g[0, :] * syn / sxn[0] / hx**2
    diag[-1, :] -= g[-1, :] * syn / sxn[-1] / hx**2
    diag[:, 0] -= g[:, 0] * sxn / syn[0] / hy**2
    diag[:, -1] -= g[:, -1] * sxn / syn[-1] / hy**2
    d_idx = idx[active]
    rows.append(d_idx)
    cols.append(d_idx)
    vals.append(diag[active])
    n = int(active.sum())
    mat = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    return mat.tocsc()


def _sparse_solve(a: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
    """Solve ``a x = rhs`` (all columns) by sparse LU.

    The matrix is complex symmetric with a symmetric pattern, so a minimum-degree ordering
    of ``AᵀA + A`` with preference for diagonal pivots (SuperLU's symmetric mode) has half
    the fill of the default column ordering and factors 2-3× faster. Diagonal pivoting is
    not guaranteed stable for an indefinite Helmholtz matrix, so the residual is checked
    and the default (partial pivoting) is used if it is not at rounding level.
    """
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.1, options={"SymmetricMode": True})
    sol = lu.solve(rhs)
    res = np.linalg.norm(a @ sol - rhs) / max(np.linalg.norm(rhs), 1e-300)
    if not np.isfinite(res) or res > 1e-8:
        sol = splu(a, permc_spec="COLAMD").solve(rhs)
    return sol


def solve_hetero_2d(
    mu: np.ndarray,
    frequency: float,
    spacing: float | Sequence[float],
    source: str | np.ndarray = "plane",
    density: float = DEFAULT_DENSITY,
    *,
    mu_background: complex | None = None,
    direction: float | Sequence[float] = 0.0,
    origin: Sequence[float] = (0.0, 0.0),
    kz: float = 0.0,
    active: np.ndarray | None = None,
    pml_wavelengths: float = 0.5,
    pml_strength: float = 5.0,
) -> np.ndarray:
    """Solve ``∇·(G*∇u) + (ρω² − G* kz²) u = −F`` on a 2D grid (finite differences).

    The grid nodes are the entries of ``mu``. The operator is the 5-point stencil with
    harmonic-mean face moduli, so an interface keeps ``u`` and ``G* ∂u/∂n`` continuous.
    The grid is padded on every side by a perfectly matched layer (complex coordinate
    stretching, quadratic profile, ``pml_wavelengths`` background wavelengths thick, at
    least 10 cells) that absorbs outgoing waves, so the result is that of an unbounded
    medium. The sparse complex-symmetric system is solved by sparse LU (``splu``); all
    right-hand sides (directions or force fields) share one factorisation.

    Two sources are supported:

    - ``"plane"`` (total-field/scattered-field): a plane wave of unit amplitude
      ``exp(-i k_b d·(x − origin))`` travelling along ``direction`` in the homogeneous
      medium ``mu_background`` that surrounds the grid (also inside the PML). The solver
      computes the scattered field ``u_s`` from ``A_G u_s = −(A_G − A_b) u_inc`` (the
      source lives only where ``G* ≠ mu_background``) and returns ``u_inc + u_s``. This is
      the discrete analogue of :func:`cylinder_field`.
    - an array ``F`` (body force density, shape ``mu.shape`` or ``mu.shape + (m,)``): the
      medium outside the grid continues the edge values of ``mu``. Use it for drivers
      (e.g. a patch on the body wall).

    With ``kz != 0`` the field is ``u(x, y)·cos(kz z)`` in 3D for a z-invariant medium
    (separation of variables); ``kz = 0`` is the 2D problem.

    Parameters
    ----------
    mu : ndarray of complex, shape (nx, ny)
        Complex shear modulus ``G*`` in Pa at the grid nodes (``G' > 0``, ``G'' >= 0``).
    frequency : float
        Vibration frequency in Hz.
    spacing : float or (float, float)
        Node spacing in metres (x, y).
    source : "plane" or ndarray
        See above.
    density : float
        Density ρ in kg/m³.
    mu_background : complex, optional
        Surrounding medium for ``source="plane"`` (default: median of ``mu``).
    direction : float or sequence of float
        Direction(s) of travel of the plane wave, radians from ``+x``; a sequence adds a
        trailing axis to the result.
    origin : (float, float)
        Coordinates (m) of node ``mu[0, 0]``; the incident phase is 0 at (0, 0).
    kz : float
        Through-plane wavenumber in rad/m (real, >= 0).
    active : ndarray of bool, optional
        Nodes that hold tissue. Faces between active and inactive nodes are traction-free
        (``G* ∂u/∂n = 0``, a free surface to air); ``u = 0`` is returned at inactive nodes.
    pml_wavelengths : float
        PML thickness in wavelengths of the medium at the grid edge.
    pml_strength : float
        Maximum imaginary stretch of the PML (dimensionless).

    Returns
    -------
    ndarray of complex
        ``u`` at the grid nodes, shape ``mu.shape`` (plus a trailing axis for several
        directions or force fields).

    Raises
    ------
    MREInputError
        For bad frequency, spacing, modulus, shapes or source.
    """
    f = _positive("frequency", frequency)
    rho = _positive("density", density)
    hx, hy = _spacing(spacing, 2)
    g = _check_modulus("mu", mu)
    if g.ndim != 2 or min(g.shape) < 3:
        raise MREInputError(f"mu must be a 2D map of at least 3 × 3 nodes, got {g.shape}.")
    kz = float(kz)
    if not np.isfinite(kz) or kz < 0:
        raise MREInputError(f"kz must be a real wavenumber >= 0 rad/m, got {kz!r}.")
    if active is None:
        act = np.ones(g.shape, bool)
    else:
        act = np.asarray(active, bool)
        if act.shape != g.shape:
            raise MREInputError(f"active has shape {act.shape}; mu has {g.shape}.")
        if not act.any():
            raise MREInputError("active: no active node; nothing to solve.")
    omega = 2 * np.pi * f
    plane = isinstance(source, str)
    if plane and source != "plane":
        raise MREInputError(f"source must be 'plane' or a force array, got {source!r}.")

    if plane:
        gb = (
            np.median(g.real) + 1j * np.median(g.imag) if mu_background is None else (mu_background)
        )
        gb = complex(_check_modulus("mu_background", gb))
        k_b = complex(wavenumber(gb, f, rho))
        if kz >= k_b.real:
            raise MREInputError(
                f"kz = {kz:g} rad/m is not below the background wavenumber Re k = "
                f"{k_b.real:.4g} rad/m at {f:g} Hz: the plane wave would be evanescent in "
                "the plane (no in-plane propagation); use a smaller kz."
            )
        dirs = np.atleast_1d(np.asarray(direction, dtype=float))
        squeeze = np.ndim(direction) == 0
        edge_g = np.array([gb])
        margin = 2  # homogeneous cells between the grid and the PML (keeps the source out)
    else:
        force = np.asarray(source, dtype=complex)
        squeeze = force.ndim == 2
        if force.ndim == 2:
            force = force[..., None]
        if force.shape[:2] != g.shape or force.ndim != 3:
            raise MREInputError(
                f"source: a force array must have shape {g.shape} (or {g.shape} + (m,)), "
                f"got {np.shape(source)}."
            )
        edge = np.zeros(g.shape, bool)
        edge[[0, -1], :] = True
        edge[:, [0, -1]] = True
        edge_g = g[edge & act]
        margin = 0

    # PML thickness from the wavelength of the medium at the grid edge; no PML is needed
    # when no tissue touches the edge (the body is closed by its free surface).
    if edge_g.size:
        # in-plane wavenumber; |k⊥| also covers evanescent fields (kz > Re k), whose decay
        # length then sets the layer
        k_perp = np.sqrt(wavenumber(edge_g, f, rho) ** 2 - kz**2 + 0j)
        lam = 2 * np.pi / max(float(np.min(np.abs(k_perp))), 1e-12)
        n_pml = int(min(max(10, np.ceil(pml_wavelengths * lam / min(hx, hy))), 400))
    else:
        n_pml = 0
    pad = n_pml + margin
    big_shape = (g.shape[0] + 2 * pad, g.shape[1] + 2 * pad)
    inner = (slice(pad, pad + g.shape[0]), slice(pad, pad + g.shape[1]))
    if plane:
        gp = np.full(big_shape, gb, dtype=complex)
        gp[inner] = g
        ap = np.ones(big_shape, bool)
        ap[inner] = act
    else:
        gp = np.pad(g, pad, mode="edge")
        ap = np.pad(act, pad, mode="edge")
    sx = _stretch(g.shape[0] + 2 * margin, n_pml, pml_strength)
    sy = _stretch(g.shape[1] + 2 * margin, n_pml, pml_strength)
    a_g = _assemble(gp, ap, hx, hy, sx, sy, rho * omega**2 - gp * kz**2)

    if plane:
        x = origin[0] + (np.arange(big_shape[0]) - pad) * hx
        y = origin[1] + (np.arange(big_shape[1]) - pad) * hy
        xx, yy = np.meshgrid(x, y, indexing="ij")
        kp = np.sqrt(rho * omega**2 / gb - kz**2 + 0j)  # in-plane wavenumber, Im <= 0
        u_inc = np.stack(
            [np.exp(-1j * kp * (xx * np.cos(d) + yy * np.sin(d))) for d in dirs], axis=-1
        )
        # A_b: same grid, homogeneous background, every node active
        a_b = _assemble(
            np.full(big_shape, gb),
            np.ones(big_shape, bool),
            hx,
            hy,
            sx,
            sy,
            np.full(big_shape, rho * omega**2 - gb * kz**2),
        )
        ub = u_inc.reshape(-1, len(dirs))
        flat_act = ap.ravel()
        rhs = -(a_g @ ub[flat_act] - (a_b @ ub)[flat_act])
    else:
        fp = np.pad(force, ((pad, pad), (pad, pad), (0, 0)))
        s_area = sx[0][:, None] * sy[0][None, :]
        rhs = -(fp * s_area[..., None])[ap]

    rhs = np.ascontiguousarray(rhs)
    sol = _sparse_solve(a_g, rhs)
    out = np.zeros((*big_shape, sol.shape[1]), complex)
    out[ap] = sol
    if plane:
        out = np.where(ap[..., None], out + u_inc, 0)
    out = out[inner]
    return out[..., 0] if squeeze else out


# ============================================================================ phantoms
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


def four_target(
    frequency: float | Sequence[float] = 90,
    *,
    shape: Sequence[int] = (80, 100, 10),
    spacing: float | Sequence[float] = 1e-3,
    mu_background: float = 3000,
    mu_target: float = 10000,
    viscosity: float = 1.0,
    n_components: int = 3,
    refine: int = 2,
    kz: float = 0.0,
    noise_ratio: float = 0.0,
    seed: int | None = None,
) -> MREExample:
    """A 3D box like the public BIOQIC four-target FEM phantom, waves from the FD solver.

    Geometry (defaults): 80 × 100 × 10 voxels of 1 mm (x, y, z), voxel centres at
    ``(i + 0.5)·spacing``; background ``μ = 3 kPa``; four cylindrical targets (axes along
    z) of ``μ = 10 kPa`` with diameters 20, 10, 6 and 4 mm centred at x = 40 mm and
    y = 73.6, 49.6, 31.8, 18.6 mm; Voigt ``G* = μ + iωη`` with ``η = 1 Pa·s`` everywhere.
    A voxel is in a target when its centre is inside the circle.

    Waves: each component is a plane wave from another direction (z along +y, the others
    at 25° and 140° from +x, with amplitudes 1, 0.5, 0.4 and different phases) scattered by
    the targets, solved by :func:`solve_hetero_2d` (``source="plane"``, PML all round) on a
    grid ``refine`` times finer than the output, whose every ``refine``-th node is an output
    voxel centre; the output is those nodes. The medium is z-invariant, so the 3D field is
    ``u_c(x, y, z) = v_c(x, y)·cos(kz (z − z_mid))`` (separation of variables; ``kz = 0``,
    the default, gives a z-invariant wave). Each component obeys the scalar equation
    ``∇·(G*∇u) + ρω²u = 0`` independently (the "hetero" model, no ∇·u coupling).

    Parameters
    ----------
    frequency : float or sequence of float
        Hz; a sequence gives a leading ``frequency`` dim on ``wave`` and ``mre``.
    shape : (int, int, int)
        Voxels along x, y, z.
    spacing : float or (float, float, float)
        Voxel size in metres.
    mu_background, mu_target : float
        Storage moduli μ in Pa.
    viscosity : float
        Voigt viscosity η in Pa·s.
    n_components : int
        1 to 3 displacement components (labels ``"z"``, ``"y"``, ``"x"``).
    refine : int
        Forward-grid refinement (>= 2).
    kz : float
        Through-plane wavenumber in rad/m (>= 0).
    noise_ratio : float
        Complex Gaussian noise power relative to ``mean|u|²`` (0 = none).
    seed : int, optional
        Noise seed.

    Returns
    -------
    MREExample
        ``wave`` ``([frequency,] x, y, z, component)``, ``mre`` ``([frequency,] x, y, z)``
        in Pa, ``mre_mask`` 1 (background) and 2..5 (targets, largest first).
    """
    freqs, multi = parse_frequencies(frequency)
    nx, ny, nz = _shape(shape, 3, (3, 3, 1))
    hx, hy, hz = _spacing(spacing, 3)
    mb = _positive("mu_background", mu_background)
    mt = _positive("mu_target", mu_target)
    if not np.isfinite(float(viscosity)) or float(viscosity) < 0:
        raise MREInputError(f"viscosity must be >= 0 Pa·s, got {viscosity!r}.")
    if int(n_components) != n_components or not 1 <= int(n_components) <= 3:
        raise MREInputError(f"n_components must be 1, 2 or 3, got {n_components!r}.")
    nc = int(n_components)
    if int(refine) != refine or int(refine) < 2:
        raise MREInputError(f"refine must be an integer >= 2, got {refine!r}.")
    refine = int(refine)
    if not np.isfinite(float(kz)) or float(kz) < 0:
        raise MREInputError(f"kz must be >= 0 rad/m, got {kz!r}.")
    nr = _noise_ratio(noise_ratio)

    x = (np.arange(nx) + 0.5) * hx
    y = (np.arange(ny) + 0.5) * hy
    z = (np.arange(nz) + 0.5) * hz

    def labels(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        lab = np.ones(xx.shape, np.int32)
        targets = zip(FOUR_TARGET_DIAMETERS, FOUR_TARGET_CENTRES, strict=True)
        for i, (d, (cx, cy)) in enumerate(targets):
            lab[np.hypot(xx - cx, yy - cy) < d / 2] = i + 2
        return lab

    lab = labels(*np.meshgrid(x, y, indexing="ij"))
    xf = _fine_axis(nx, hx, refine, x[0])
    yf = _fine_axis(ny, hy, refine, y[0])
    lab_f = labels(*np.meshgrid(xf, yf, indexing="ij"))
    # through-plane profile; z_mid is the slab centre
    zprof = np.cos(float(kz) * (z - z.mean()))

    waves, mres = [], []
    for f in freqs:
        gb = complex(voigt_modulus(mb, viscosity, f))
        gt = complex(voigt_modulus(mt, viscosity, f))
        g_f = np.where(lab_f > 1, gt, gb)
        v = solve_hetero_2d(
            g_f,
            f,
            (hx / refine, hy / refine),
            "plane",
            mu_background=gb,
            direction=_COMPONENT_DIRECTIONS[:nc],
            origin=(xf[0], yf[0]),
            kz=float(kz),
        )[::refine, ::refine]
        v = v * np.asarray(_COMPONENT_AMPLITUDES[:nc])
        waves.append(v[:, :, None, :] * zprof[None, None, :, None])
        mres.append(np.broadcast_to(np.where(lab > 1, gt, gb)[..., None], (nx, ny, nz)))
    wave = np.stack(waves) if multi else waves[0]
    mre = np.stack(mres) if multi else mres[0]
    mask = np.broadcast_to(lab[..., None], (nx, ny, nz)).copy()
    ex = MREExample.from_numpy(
        wave,
        freqs if multi else freqs[0],
        (hx, hy, hz),
        mre=mre,
        mre_mask=mask,
        origin=(x[0], y[0], z[0]),
        components=list("zyx"[:nc]),
        spatial_ndim=3,
    )
    _annotate(
        ex,
        "four_target",
        viscosity=float(viscosity),
        refine=refine,
        kz=float(kz),
        region_labels="1 background, 2-5 targets of 20, 10, 6, 4 mm diameter",
    )
    if nr > 0:
        ex = ex.add_gaussian_noise(nr, seed)
    return ex


# ---------------------------------------------------------------------------- liver
# tissue labels of the synthetic abdomen
_AIR, _FAT, _MUSCLE, _OTHER, _LIVER, _SPLEEN, _VESSEL, _BONE = range(8)
# storage modulus μ (Pa) and Voigt viscosity η (Pa·s) per tissue at the MRE scale. Bone is
# capped at 20 kPa: on the wave's scale it is rigid either way, and a GPa value would only
# worsen the conditioning. Vessels (blood) carry almost no shear: soft and lossy.
_TISSUE_MU = {
    _FAT: 1500.0,
    _MUSCLE: 3000.0,
    _OTHER: 2000.0,
    _LIVER: 2200.0,
    _SPLEEN: 4500.0,
    _VESSEL: 1000.0,
    _BONE: 20000.0,
}
_TISSUE_ETA = {
    _FAT: 1.0,
    _MUSCLE: 1.5,
    _OTHER: 1.0,
    _LIVER: 1.0,
    _SPLEEN: 1.5,
    _VESSEL: 2.0,
    _BONE: 5.0,
}
# (t1, t2) weighted intensities, arbitrary units
_TISSUE_ANAT = {
    _AIR: (0.0, 0.0),
    _FAT: (1.0, 0.8),
    _MUSCLE: (0.4, 0.25),
    _OTHER: (0.35, 0.5),
    _LIVER: (0.6, 0.3),
    _SPLEEN: (0.45, 0.6),
    _VESSEL: (0.15, 0.9),
    _BONE: (0.7, 0.4),
}


def _ellipse(xx, yy, cx, cy, ax, ay, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / ax) ** 2 + (v / ay) ** 2 < 1


def _abdomen(xx: np.ndarray, yy: np.ndarray, zrel: float) -> np.ndarray:
    """Tissue labels at points (x, y in mm, patient's right at −x, anterior at −y).

    ``zrel`` (mm from the slab centre) grows the organs slightly from slice to slice.
    """
    s = 1 + 0.004 * zrel
    lab = np.full(xx.shape, _AIR, np.int8)
    body = _ellipse(xx, yy, 0, 5, 150, 105)
    lab[body] = _FAT
    wall = _ellipse(xx, yy, 0, 7, 136, 93)
    lab[wall] = _MUSCLE
    cavity = _ellipse(xx, yy, 0, 7, 127, 85)
    lab[cavity] = _OTHER
    liver = (
        _ellipse(xx, yy, -60, 5, 75 * s, 80 * s, 0.2)
        | _ellipse(xx, yy, 10, -45, 55 * s, 24 * s, -0.15)
    ) & cavity
    lab[liver] = _LIVER
    lab[_ellipse(xx, yy, 100, 40, 28 * s, 48 * s, 0.5) & cavity] = _SPLEEN
    for cx, cy in ((-32, 86), (32, 86)):  # paraspinal muscles
        lab[_ellipse(xx, yy, cx, cy, 22, 13)] = _MUSCLE
    lab[_ellipse(xx, yy, 0, 72, 16, 16)] = _BONE  # vertebral body
    vessels = (
        (12, 44, 11),
        (-22, 42, 11),
        (-50, 0, 6),
        (-30, -20, 4),
        (-80, 20, 4.5),
        (-45, 35, 5),
    )  # aorta, IVC, hepatic/portal branches
    for cx, cy, r in vessels:
        lab[_ellipse(xx, yy, cx + 0.3 * zrel, cy, r, r)] = _VESSEL
    return lab


def _liver_maps(xx, yy, zrel, patches, frequency):
    """Labels and complex modulus (Pa) at points (mm)."""
    lab = _abdomen(xx, yy, zrel)
    mu = np.zeros(xx.shape)
    eta = np.zeros(xx.shape)
    for t, m in _TISSUE_MU.items():
        mu[lab == t] = m
        eta[lab == t] = _TISSUE_ETA[t]
    # fibrotic patches: smooth steps (2 mm wide edge) up to their peak modulus, liver only
    fib = np.zeros(xx.shape)
    for cx, cy, cz, r, peak in patches:
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2 + (zrel - cz) ** 2)
        w = 1 / (1 + np.exp((d - r) / 2.0))
        fib = np.maximum(fib, w * (peak - _TISSUE_MU[_LIVER]))
    in_liver = lab == _LIVER
    mu[in_liver] += fib[in_liver]
    eta[in_liver] += 0.5 * fib[in_liver] / 3000.0  # fibrosis is also a bit more viscous
    g = voigt_modulus(np.where(lab == _AIR, 1.0, mu), eta, frequency)
    return lab, g, np.where(in_liver, fib, 0.0)


def liver(
    frequency: float | Sequence[float] = 60,
    *,
    shape: Sequence[int] = (128, 128, 4),
    spacing: float | Sequence[float] = 2.5e-3,
    noise_ratio: float = 0.0,
    seed: int | None = 0,
    refine: int = 2,
) -> MREExample:
    """A patient-like abdominal MRE slab through the liver (synthetic, deterministic).

    Anatomy (x = patient's right → left, y = anterior → posterior, z = slices; the body is
    centred in the field of view): subcutaneous fat, abdominal wall and paraspinal muscles,
    vertebral body, aorta and IVC, liver with portal/hepatic vessel branches, spleen and
    other soft tissue; air outside. Stiffness (storage μ, Voigt η): healthy liver 2.2 kPa
    with three fibrotic patches of 4–6 kPa (positions, sizes and peaks drawn from ``seed``),
    fat 1.5 kPa, muscle 3 kPa, spleen 4.5 kPa, other soft tissue 2 kPa, vessels 1 kPa
    (lossy), bone 20 kPa (rigid on the wave's scale).

    Wave (one component, ``"z"``, as in clinical 2D MRE): each slice is solved by
    :func:`solve_hetero_2d` on a grid ``refine`` times finer, with a body-force driver
    patch (the outer 8 mm of the anterior body wall, 140 mm wide with a cos² taper, over
    the right lobe), a traction-free body surface (air
    is not solved; ``u = 0`` there) and absorbing layers where tissue meets the grid edge.
    The slice model is 2D (no through-plane propagation). The wave is scaled to RMS 1 over
    the liver mask.

    Parameters
    ----------
    frequency : float or sequence of float
        Hz (60 Hz clinical); a sequence gives a leading ``frequency`` dim.
    shape : (int, int, int)
        Voxels along x, y, z.
    spacing : float or (float, float, float)
        Voxel size in metres.
    noise_ratio : float
        Complex Gaussian noise power relative to ``mean|u|²`` (0 = none).
    seed : int, optional
        Seed of the fibrotic patches, the image noise of ``anat`` and the wave noise.
    refine : int
        Forward-grid refinement (>= 2).

    Returns
    -------
    MREExample
        ``wave`` ``([frequency,] x, y, z, component)``, ``mre`` (Pa), ``mre_mask`` (1 in the
        liver parenchyma, large vessels excluded; 0 elsewhere), ``anat`` with
        ``sequence = ["t1", "t2"]``.
    """
    freqs, multi = parse_frequencies(frequency)
    nx, ny, nz = _shape(shape, 3, (8, 8, 1))
    hx, hy, hz = _spacing(spacing, 3)
    nr = _noise_ratio(noise_ratio)
    if int(refine) != refine or int(refine) < 2:
        raise MREInputError(f"refine must be an integer >= 2, got {refine!r}.")
    refine = int(refine)
    rng = np.random.default_rng(seed)

    # geometry in mm, body centred in the field of view
    x = (np.arange(nx) - (nx - 1) / 2) * hx
    y = (np.arange(ny) - (ny - 1) / 2) * hy
    z = (np.arange(nz) - (nz - 1) / 2) * hz
    xx, yy = (a * 1e3 for a in np.meshgrid(x, y, indexing="ij"))
    xf = _fine_axis(nx, hx, refine, x[0])
    yf = _fine_axis(ny, hy, refine, y[0])
    xxf, yyf = (a * 1e3 for a in np.meshgrid(xf, yf, indexing="ij"))

    # fibrotic patches: centres drawn from liver points of the middle slice
    mid = _abdomen(xx, yy, 0.0)
    cand = np.argwhere(ndimage.binary_erosion(mid == _LIVER, iterations=3))
    if cand.size == 0:
        raise MREInputError(
            f"shape {shape} × spacing {spacing!r} does not reach the liver; use a field of "
            "view of about 320 mm (e.g. 128 voxels of 2.5 mm)."
        )
    patches = []
    for _ in range(3):
        i, j = cand[rng.integers(len(cand))]
        patches.append(
            (xx[i, j], yy[i, j], rng.uniform(-5, 5), rng.uniform(8, 15), rng.uniform(4000, 6000))
        )

    # driver: body-force patch in the anterior wall over the right lobe (mm)
    def driver(xm: np.ndarray, ym: np.ndarray, lab: np.ndarray) -> np.ndarray:
        near_skin = (lab != _AIR) & ~_ellipse(xm, ym, 0, 5, 142, 97)
        taper = np.cos(np.clip((xm + 45) / 70, -1, 1) * np.pi / 2) ** 2
        return np.where(near_skin & (ym < -40), taper, 0.0)

    wave = np.zeros((len(freqs), nx, ny, nz), complex)
    mre = np.zeros((len(freqs), nx, ny, nz), complex)
    labels = np.zeros((nx, ny, nz), np.int8)
    fib = np.zeros((nx, ny, nz))
    for iz, zr in enumerate(z * 1e3):
        lab_f = _abdomen(xxf, yyf, zr)
        act = lab_f != _AIR
        if not act.any():
            continue
        force = driver(xxf, yyf, lab_f)
        for jf, f in enumerate(freqs):
            lab, g, fb = _liver_maps(xx, yy, zr, patches, f)
            # air has no shear stiffness: G* = 0 there in the ground truth
            labels[..., iz], fib[..., iz] = lab, fb
            mre[jf, ..., iz] = np.where(lab == _AIR, 0, g)
            _, g_f, _ = _liver_maps(xxf, yyf, zr, patches, f)
            if not force.any():
                continue
            v = solve_hetero_2d(g_f, f, (hx / refine, hy / refine), force, active=act)
            wave[jf, ..., iz] = v[::refine, ::refine]
    mask = (labels == _LIVER).astype(np.int32)
    if not mask.any():
        raise MREInputError(f"shape {shape}: the liver is outside the field of view.")
    rms = np.sqrt(np.mean(np.abs(wave[:, mask > 0]) ** 2))
    if not rms > 0:
        # the driver sits on the anterior body wall: a small field of view can miss it
        raise MREInputError(
            f"shape {shape} × spacing {spacing!r}: the driver on the anterior body wall is "
            "outside the field of view, so no wave reaches the liver; use a field of view of "
            "about 320 mm (e.g. 128 voxels of 2.5 mm)."
        )
    wave /= rms

    # anatomical images: tissue intensities, partial volume blur, smooth bias, noise
    anat = np.zeros((nx, ny, nz, 2))
    for t, vals in _TISSUE_ANAT.items():
        anat[labels == t] = vals
    anat[..., 1] += 0.1 * fib / 3000.0  # fibrosis: slightly brighter on T2 (oedema)
    anat = ndimage.gaussian_filter(anat, sigma=(0.7, 0.7, 0, 0))
    bias = 1 + 0.15 * (xx / 160.0) - 0.1 * (yy / 120.0)
    anat *= bias[..., None, None]
    anat += rng.normal(0, 0.01, anat.shape)
    anat = np.clip(anat, 0, None)

    w = wave[..., None] if multi else wave[0][..., None]
    m = mre if multi else mre[0]
    ex = MREExample.from_numpy(
        w,
        freqs if multi else freqs[0],
        (hx, hy, hz),
        mre=m,
        mre_mask=mask,
        anat=anat,
        origin=(x[0], y[0], z[0]),
        components=["z"],
        spatial_ndim=3,
    )
    ex.ds = ex.ds.assign_coords(sequence=["t1", "t2"])
    _annotate(ex, "liver", refine=refine, seed=-1 if seed is None else int(seed))
    if nr > 0:
        ex = ex.add_gaussian_noise(nr, seed)
    return ex
