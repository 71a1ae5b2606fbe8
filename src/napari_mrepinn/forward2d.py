"""2-D ground truth: the scalar (anti-plane shear) wave equation solved by finite differences.

:func:`solve_hetero_2d` solves

    ∇·(G*∇u) + (ρω² − G* kz²) u = −F

for any complex ``G*(x, y)`` map: a sparse 5-point operator with harmonic-mean face moduli
(traction continuity across an interface), a perfectly matched layer (PML) around the grid,
sparse LU. It is exact for SH waves in 2D and the per-component model that MRE inversions
use (the "hetero" model). Conventions as in :mod:`napari_mrepinn.analytic`: SI units,
``u(t) = Re{U e^{+iωt}}``, ``G'' >= 0``. :func:`napari_mrepinn.simulate.four_target` and
:func:`napari_mrepinn.liver_phantom.liver` build their waves with it; the vector 3-D
counterpart is :mod:`napari_mrepinn.forward3d`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ._phantom import _check_modulus, _positive, _spacing
from .analytic import wavenumber
from .data import DEFAULT_DENSITY, MREInputError

__all__ = ["solve_hetero_2d"]


# ============================================================================ operator
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


# ============================================================================ the solver
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
