"""3-D forward solver: the time-harmonic Navier equation solved by finite differences.

Conventions as everywhere in the library (``CONTRIBUTING.md``): SI units, ``u(t) =
Re{U e^{+iωt}}``, ``G* = G' + iG''`` with ``G'' >= 0``; a wave travelling along ``d`` is
``exp(-i k d·x)`` with ``k = ω √(ρ / G*)`` (``Re k > 0``, ``Im k < 0``).

The equation
------------
``model="navier"`` (default) solves the vector equation of a linear isotropic
viscoelastic solid,

    ∇·[G*(∇u + ∇uᵀ)] + ∇(λ ∇·u) + ρω² u = 0,

with a uniform first Lamé parameter ``λ`` (tissue's bulk modulus hardly varies between
tissues; only the shear modulus does). ``λ`` comes from ``poisson_ratio`` ν and the
background storage modulus, ``λ = 2ν/(1 − 2ν)·G'_b``. The default ν = 0.45 (``λ = 9 G'``)
makes the compressional wavelength 3.3× the shear one (ν = 0.49: 7×), so over an MRE field of
view the compressional field is nearly quasi-static and ``∇·u`` small, as in tissue
(ν ≈ 0.4999). The discretisation has no locking (see below), but the multigrid
preconditioner slows down as ν → 0.5: ν = 0.49 costs about twice the GMRES iterations of
0.45, which is why 0.45 is the default. The shear-only form
``∇·[G*(∇u + ∇uᵀ)] + ρω²u = 0`` is ``poisson_ratio=0``
(a compressible solid: its compressional waves are only √2 longer than the shear ones, which
is not tissue). ``model="hetero"`` solves the scalar equation ``∇·(G*∇u_i) + ρω²u_i = 0`` per
component, the PINN's default model (``pde="hetero"``) and the model of
:func:`napari_mrepinn.simulate.four_target`.

Why the default is the Navier equation, and how the inversions relate to it: in a
homogeneous region a shear wave is divergence free and all three forms reduce to the
Helmholtz equation ``G*∇²u + ρω²u = 0`` that AHI/MDEV invert. Where ``G*`` varies, the Navier
field also carries the terms ``∇G*·(∇u + ∇uᵀ)`` and the pressure ``λ∇·u`` (finite as
``λ → ∞``); the scalar ``hetero`` model keeps only ``∇G*·∇u_i``. Those terms live within about
a wavelength of an interface; they are the physics of real tissue, so the Navier field is
the ground truth and the model error of an inversion that assumes ``hetero`` is part of
what a benchmark on it measures. ``model="hetero"`` gives the matching ground truth when
the model error itself is to be excluded.

Discretisation
--------------
Nodes on a uniform grid ``refine`` times finer than the output, whose every ``refine``-th
node is an output voxel centre (the output samples those nodes). Second-order finite
differences in conservative form: ``∂_j(G* ∂_j u_i)`` with the 3-point stencil and
harmonic-mean face moduli (traction continuity across an interface), and the terms
``∂_j(G* ∂_i u_j)`` and ``∂_i(λ ∂_j u_j)`` with central (2h) first differences in both factors.
Using the same central difference ``D`` for both derivatives of the ``λ`` term makes it
``λ D(D·u)``: a discrete shear wave (``D·u = 0``) does not feel ``λ`` at all, so a large
``λ`` adds no dispersion to shear waves (a compact stencil on ``∂_i²`` and a central one on
``∂_i∂_j`` would add an error of order ``(λ/G)(kh)²``). The modulus at a node is the mean
over 3×3×3 sub-points of its cell, so a curved interface is not a staircase.

Source and boundaries
---------------------
A plane shear wave ``p exp(-i k_b d·x)`` of the background medium, with direction ``d`` at
``incidence`` from ``+z`` and ``azimuth`` from ``+x`` and polarisation ``p ⊥ d``, enters
through a total-field/scattered-field boundary a few cells outside the field of view: the
solver computes the total field inside that box and the scattered field outside, and the
source is the commutator ``A(χu_inc) − χ A u_inc`` (``χ`` = 1 inside the box), which lives
only on the box surface. The incident wave therefore crosses the grid under the discrete
equation (its numerical dispersion is part of the solution, and is what the plane-wave
check measures). Outside, a perfectly matched layer (complex coordinate stretching,
quadratic profile) absorbs the scattered waves on all six faces; the medium outside the
field of view is the background.

The sparse system is solved by GMRES, preconditioned by one geometric multigrid V-cycle
(damped Jacobi smoothing, trilinear transfer, rediscretised coarse operators, sparse LU on
the coarsest grid) of the complex-shifted operator ``ρω² → (1 − iβ)ρω²`` (the standard
shifted-Laplacian preconditioner of the Helmholtz equation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.linalg import LinearOperator, gmres, splu

from ._phantom import _check_modulus, _positive, _refine
from .data import DEFAULT_DENSITY, MREInputError

__all__ = ["MODELS", "plane_shear_wave", "solve_navier_3d"]

MODELS = ("navier", "hetero")

# cells between the field of view and the TF/SF surface, and between that surface and the
# PML: the widest stencil reaches 2 cells, so every node whose stencil crosses the surface
# sees the homogeneous background only, and no such stencil reaches the PML
_TF_MARGIN = 3
_SF_MARGIN = 2


# ============================================================================ the wave
def _direction(incidence: float, azimuth: float, polarization: float):
    """Unit direction of travel ``d`` and polarisation ``p ⊥ d`` (angles in radians).

    ``p = cos ψ e_θ + sin ψ e_φ``: ``ψ = 0`` polarises in the plane of ``d`` and ``z`` (the
    z component is then ``-sin θ``, the largest a wave at incidence θ can have).
    """
    t, f, s = float(incidence), float(azimuth), float(polarization)
    d = np.array([np.sin(t) * np.cos(f), np.sin(t) * np.sin(f), np.cos(t)])
    e_t = np.array([np.cos(t) * np.cos(f), np.cos(t) * np.sin(f), -np.sin(t)])
    e_f = np.array([-np.sin(f), np.cos(f), 0.0])
    return d, np.cos(s) * e_t + np.sin(s) * e_f


def plane_shear_wave(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    *,
    frequency: float,
    mu: complex,
    incidence: float = 0.0,
    azimuth: float = 0.0,
    polarization: float = 0.0,
    density: float = DEFAULT_DENSITY,
) -> np.ndarray:
    """Closed-form plane shear wave ``p exp(-i k d·x)`` of a homogeneous medium.

    Parameters
    ----------
    x, y, z : ndarray
        Coordinates in metres (broadcast together).
    frequency : float
        Hz.
    mu : complex
        ``G*`` in Pa; ``k = ω √(ρ / G*)``.
    incidence, azimuth, polarization : float
        Radians: direction of travel from ``+z`` and (its projection) from ``+x``;
        polarisation angle ψ (see the module docstring).
    density : float
        kg/m³.

    Returns
    -------
    ndarray of complex, shape ``broadcast + (3,)``
        Components (x, y, z), unit amplitude. It solves the Navier equation for any ``λ``
        (it is divergence free) and the scalar ``hetero`` equation per component.
    """
    omega = 2 * np.pi * _positive("frequency", frequency)
    g = complex(_check_modulus("mu", mu))
    k = omega * np.sqrt(_positive("density", density) / g)
    d, p = _direction(incidence, azimuth, polarization)
    x, y, z = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x, y, z)))
    phase = np.exp(-1j * k * (d[0] * x + d[1] * y + d[2] * z))
    return phase[..., None] * p


# ============================================================================ the grid
@dataclass
class _Axis:
    """One padded fine axis: node count, PML cells on each side, inner (FOV) start."""

    n: int  # nodes
    pml_lo: int
    pml_hi: int
    inner0: int  # index of the first field-of-view node
    n_inner: int

    def stretch(self, pos: np.ndarray, strength: float) -> np.ndarray:
        """PML stretch ``s = 1 − i S (d/L)²`` at fractional fine-node positions ``pos``."""
        lo = np.clip((self.pml_lo - pos) / max(self.pml_lo, 1), 0, None)
        hi = np.clip((pos - (self.n - 1 - self.pml_hi)) / max(self.pml_hi, 1), 0, None)
        return 1.0 - 1j * strength * np.maximum(lo, hi) ** 2


def _layout(n_inner: int, n_pml: int, levels: int) -> _Axis:
    pad = _TF_MARGIN + _SF_MARGIN + n_pml
    n = n_inner + 2 * pad
    extra = (-(n - 1)) % (2**levels)  # multigrid needs (n - 1) divisible by 2^levels
    lo = n_pml + extra // 2
    hi = n_pml + extra - extra // 2
    return _Axis(n + extra, lo, hi, lo + _SF_MARGIN + _TF_MARGIN, n_inner)


# ============================================================================ operator
def _shift(
    shape: tuple[int, ...], off: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices (rows, neighbours) of nodes whose neighbour at offset ``off`` is in the grid."""
    rows, nbrs = [], []
    for n, o in zip(shape, off, strict=True):
        rows.append(slice(max(0, -o), n - max(0, o)))
        nbrs.append(slice(max(0, o), n - max(0, -o)))
    return tuple(rows), tuple(nbrs)


def _faces(g: np.ndarray, axis: int) -> np.ndarray:
    """Harmonic-mean modulus on the faces along ``axis`` (n+1 faces; the outer two copy the
    edge node: a Dirichlet ghost beyond the PML)."""
    a = np.moveaxis(g, axis, 0)
    inner = 2 * a[:-1] * a[1:] / (a[:-1] + a[1:])
    out = np.concatenate([a[:1], inner, a[-1:]], axis=0)
    return np.moveaxis(out, 0, axis)


class _Stencil:
    """Accumulates ``(row component, column component, offset) -> coefficient array`` and
    builds the CSR matrix directly (every row of a component has the same entry list, so
    no COO triplets, which would triple the memory of a large grid)."""

    def __init__(self, shape: tuple[int, int, int], ncomp: int = 3):
        self.shape = shape
        self.ncomp = ncomp
        self.terms: dict[tuple[int, int, tuple[int, int, int]], np.ndarray] = {}

    def add(self, ci: int, cj: int, off: Sequence[int], coef: np.ndarray | complex) -> None:
        key = (ci, cj, tuple(int(o) for o in off))
        if key in self.terms:
            self.terms[key] += coef
        else:
            self.terms[key] = np.array(np.broadcast_to(coef, self.shape), dtype=complex)

    def matrix(self) -> sp.csr_matrix:
        shape = self.shape
        n = int(np.prod(shape))
        idx = np.arange(n, dtype=np.int32).reshape(shape)
        keys = [sorted((k for k in self.terms if k[0] == i), key=lambda k: (k[1], k[2]))
                for i in range(self.ncomp)]
        width = max(len(k) for k in keys)
        data = np.zeros((self.ncomp, n, width), complex)
        cols = np.zeros((self.ncomp, n, width), np.int32)
        for i in range(self.ncomp):
            cols[i] = (idx.reshape(-1, 1) + i * n)  # padding entries: 0 on the diagonal
            for m, key in enumerate(keys[i]):
                _, cj, off = key
                coef = self.terms.pop(key)
                r, c = _shift(shape, off)
                d = np.zeros(shape, complex)
                d[r] = coef[r]  # neighbours beyond the grid: u = 0 (dropped)
                cc = np.broadcast_to(idx, shape).copy()
                cc[r] = idx[c]
                data[i, :, m] = d.ravel()
                cols[i, :, m] = cc.ravel() + cj * n
        size = self.ncomp * n
        indptr = np.arange(0, size * width + 1, width, dtype=np.int32)
        return sp.csr_matrix(
            (data.reshape(-1), cols.reshape(-1), indptr), shape=(size, size)
        )


def _assemble(
    g: np.ndarray,
    lam: float,
    mass: np.ndarray | complex,
    h: Sequence[float],
    s_node: Sequence[np.ndarray],
    s_face: Sequence[np.ndarray],
    model: str,
) -> sp.csr_matrix:
    """Matrix of ``S·L(u)`` on the grid (``S = s_x s_y s_z``, PML-stretched derivatives).

    ``g`` is the nodal ``G*`` (Pa), ``mass`` the nodal ``ρω²`` (1/s² · kg/m³; complex for the
    shifted preconditioner), ``s_node[a]`` / ``s_face[a]`` the stretch of axis ``a`` at its
    nodes / its ``n + 1`` faces (the outer two beyond the edge nodes).
    """
    shape = g.shape
    st = _Stencil(shape)
    sn = [np.reshape(s, [-1 if b == a else 1 for b in range(3)]) for a, s in enumerate(s_node)]
    sf = [np.reshape(s, [-1 if b == a else 1 for b in range(3)]) for a, s in enumerate(s_face)]
    s_all = sn[0] * sn[1] * sn[2]
    ncomp = 3
    # ---- ∂_j(G ∂_j u_i): 3-point stencil, harmonic face moduli
    for j in range(3):
        gf = _faces(g, j) / np.take(sf[j], range(shape[j] + 1), axis=j)
        lo = np.take(gf, range(shape[j]), axis=j)
        hi = np.take(gf, range(1, shape[j] + 1), axis=j)
        w = s_all / sn[j] / h[j] ** 2
        e = [0, 0, 0]
        e[j] = 1
        for i in range(ncomp):
            st.add(i, i, e, w * hi)
            st.add(i, i, [-v for v in e], w * lo)
            st.add(i, i, (0, 0, 0), -w * (hi + lo))
    for i in range(ncomp):
        st.add(i, i, (0, 0, 0), mass * s_all)
    if model == "navier":
        # ∂_a(c ∂_b u_comp) with central differences in both: outer a, inner b
        def wide(row: int, col: int, a: int, b: int, c: np.ndarray | float) -> None:
            c = np.broadcast_to(c, shape)
            cb = c / sn[b]
            ea = np.eye(3, dtype=int)[a]
            eb = np.eye(3, dtype=int)[b]
            # c/s_b at x ± e_a (0 beyond the grid: those neighbours are dropped anyway)
            plus = np.zeros(shape, complex)
            minus = np.zeros(shape, complex)
            r, q = _shift(shape, ea)
            plus[r] = cb[q]
            r, q = _shift(shape, -ea)
            minus[r] = cb[q]
            w = s_all / sn[a] / (4 * h[a] * h[b])
            st.add(row, col, ea + eb, w * plus)
            st.add(row, col, ea - eb, -w * plus)
            st.add(row, col, -ea + eb, -w * minus)
            st.add(row, col, -ea - eb, w * minus)

        for i in range(3):
            for j in range(3):
                wide(i, j, j, i, g)  # ∂_j(G ∂_i u_j)
                wide(i, j, i, j, lam)  # ∂_i(λ ∂_j u_j)
    return st.matrix()


# ============================================================================ multigrid
def _prolongation_1d(n_coarse: int) -> sp.csr_matrix:
    nf = 2 * (n_coarse - 1) + 1
    rows = np.concatenate([np.arange(0, nf, 2), np.arange(1, nf, 2), np.arange(1, nf, 2)])
    cols = np.concatenate([np.arange(n_coarse), np.arange(n_coarse - 1), np.arange(1, n_coarse)])
    half = np.full(n_coarse - 1, 0.5)
    vals = np.concatenate([np.ones(n_coarse), half, half])
    return sp.csr_matrix((vals, (rows, cols)), shape=(nf, n_coarse))


def _restrict_modulus(g: np.ndarray) -> np.ndarray:
    """Full-weighting average onto the every-other nodes."""
    for a in range(3):
        g = ndimage.convolve1d(g.real, [0.25, 0.5, 0.25], axis=a, mode="nearest") + 1j * (
            ndimage.convolve1d(g.imag, [0.25, 0.5, 0.25], axis=a, mode="nearest")
        )
    return g[::2, ::2, ::2]


class _Multigrid:
    """V-cycle of the shifted operator; ``apply(b)`` approximates ``A_β⁻¹ b``."""

    def __init__(self, fine_shifted, fine_diag, coarse_ops, prolongations, omega: float,
                 sweeps: int):
        self.ops = [fine_shifted, *(m.__matmul__ for m in coarse_ops[:-1])]
        self.diag_inv = [1.0 / fine_diag] + [1.0 / a.diagonal() for a in coarse_ops[:-1]]
        self.p = prolongations
        self.coarse = splu(coarse_ops[-1].tocsc())
        self.omega = omega
        self.sweeps = sweeps
        self.calls = 0

    def _cycle(self, level: int, b: np.ndarray) -> np.ndarray:
        if level == len(self.ops):
            return self.coarse.solve(b)
        a, dinv, w = self.ops[level], self.diag_inv[level], self.omega
        x = w * dinv * b
        for _ in range(self.sweeps - 1):
            x += w * dinv * (b - a(x))
        r = b - a(x)
        p = self.p[level]
        x += p @ self._cycle(level + 1, (p.T @ r) / 8.0)
        for _ in range(self.sweeps):
            x += w * dinv * (b - a(x))
        return x

    def apply(self, b: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self._cycle(0, np.asarray(b, complex).ravel())


# ============================================================================ the solver
def solve_navier_3d(
    mu: np.ndarray,
    frequency: float,
    spacing: float | Sequence[float],
    *,
    mu_background: complex,
    refine: int = 2,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    incidence: float = 0.0,
    azimuth: float = 0.0,
    polarization: float = 0.0,
    model: str = "navier",
    poisson_ratio: float = 0.45,
    density: float = DEFAULT_DENSITY,
    pml_wavelengths: float = 0.25,
    pml_min_cells: int = 8,
    pml_reflection: float = 0.1,
    shift: float = 0.5,
    rtol: float = 1e-7,
    maxiter: int = 400,
    restart: int = 20,
    jacobi: float = 0.4,
    sweeps: int = 3,
    max_coarse: int = 30_000,
    precond_lame: float = 9.0,
    info: dict | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Total field of a plane shear wave scattered by a heterogeneous region (3-D).

    Parameters
    ----------
    mu : ndarray of complex
        ``G*`` in Pa on the fine nodes, shape ``((nx − 1)·refine + 1, ...)`` for an output of
        ``(nx, ny, nz)`` voxels (see :func:`napari_mrepinn.forward3d.fine_modulus`).
    frequency : float
        Hz.
    spacing : float or (float, float, float)
        Output voxel size in metres.
    mu_background : complex
        ``G*`` (Pa) of the surrounding medium, that carries the incident wave and fills the
        PML.
    refine : int
        Fine nodes per output voxel along each axis (>= 1; 2 is the default ground truth).
    origin : (float, float, float)
        Coordinates (m) of the first output voxel centre.
    incidence, azimuth, polarization : float
        Incident wave (radians, see :func:`plane_shear_wave`); its phase is 0 at the origin
        of coordinates.
    model : {"navier", "hetero"}
        Equation (see the module docstring).
    poisson_ratio : float
        ν in [0, 0.5) of the ``navier`` model: ``λ = 2ν/(1 − 2ν)·G'_b`` (uniform).
    density : float
        kg/m³.
    pml_wavelengths, pml_min_cells, pml_reflection : float, int, float
        PML thickness in background shear wavelengths (at least ``pml_min_cells`` fine
        cells) and its nominal round-trip reflection, which sets the stretch.
    shift : float
        Imaginary shift β of the multigrid preconditioner.
    rtol : float
        GMRES relative residual tolerance.
    maxiter : int
        GMRES iterations at most.
    restart : int
        GMRES restart length (memory: ``restart`` vectors of the unknowns).
    jacobi, sweeps : float, int
        Damped-Jacobi weight and sweeps per level of the V-cycle.
    max_coarse : int
        Coarsening stops at a grid of at most this many unknowns (sparse LU there).
    precond_lame : float
        Cap of the preconditioner's ``λ / G'_b`` (see the comment in the code).
    info : dict, optional
        Filled with solver statistics (unknowns, iterations, residual, seconds, levels).
    verbose : bool
        Print the GMRES residual per iteration.

    Notes
    -----
    The PML is tuned for solver speed, not for the last digit of absorption: 0.25 shear
    wavelengths (at least 8 fine cells) with a nominal round-trip reflection of 10 %. A
    stronger stretch makes the PML anisotropic on the grid, which point-Jacobi smoothing
    handles badly (a nominal 1 % took 3× the iterations). What the layer reflects is an
    incoming wave that solves the same equation, so the field inside the field of view stays
    an exact solution for the given ``G*``; only its make-up (more standing-wave content)
    changes.

    Returns
    -------
    ndarray of complex, shape ``(nx, ny, nz, 3)``
        Displacement (x, y, z components) at the output voxel centres; the incident wave has
        unit amplitude.

    Raises
    ------
    MREInputError
        For bad parameters, or when GMRES does not reach ``rtol`` in ``maxiter`` iterations.
    """
    t0 = time.perf_counter()
    f = _positive("frequency", frequency)
    rho = _positive("density", density)
    if model not in MODELS:
        raise MREInputError(f"model must be one of {list(MODELS)}, got {model!r}.")
    refine = _refine(refine, minimum=1)
    nu = float(poisson_ratio)
    if not (np.isfinite(nu) and 0 <= nu < 0.5):
        raise MREInputError(f"poisson_ratio must be in [0, 0.5), got {poisson_ratio!r}.")
    h_out = np.broadcast_to(np.asarray(spacing, dtype=float), (3,)).copy()
    if not np.all(np.isfinite(h_out)) or np.any(h_out <= 0):
        raise MREInputError(f"spacing must be positive metres, got {spacing!r}.")
    gb = complex(_check_modulus("mu_background", mu_background))
    omega = 2 * np.pi * f
    k_b = omega * np.sqrt(rho / gb)
    lam = 2 * nu / (1 - 2 * nu) * gb.real if model == "navier" else 0.0
    h = h_out / refine

    g_in = _check_modulus("mu", mu)
    if g_in.ndim != 3 or min(g_in.shape) < 3:
        raise MREInputError(
            f"mu must be a 3-D array of fine-node moduli (>= 3 nodes per axis), got {g_in.shape}."
        )
    if any((n - 1) % refine for n in g_in.shape):
        raise MREInputError(
            f"mu has {g_in.shape} fine nodes; with refine={refine} each axis needs "
            "(n_out - 1)·refine + 1 nodes."
        )
    n_inner = np.asarray(g_in.shape)
    # ---- layout: levels of multigrid until the coarsest grid is small
    lam_s = 2 * np.pi / k_b.real
    n_pml = max(int(pml_min_cells), int(np.ceil(pml_wavelengths * lam_s / h.min())))
    levels = 1
    while True:
        axes = [_layout(int(n), n_pml, levels) for n in n_inner]
        dofs = 3 * np.prod([(ax.n - 1) // 2**levels + 1 for ax in axes])
        if dofs <= max_coarse or min((ax.n - 1) // 2**levels for ax in axes) < 4:
            break
        levels += 1
    shape = tuple(ax.n for ax in axes)

    # ---- medium on the padded grid: background outside the field of view
    g = np.full(shape, gb, complex)
    inner = tuple(slice(ax.inner0, ax.inner0 + ax.n_inner) for ax in axes)
    g[inner] = g_in

    # ---- PML stretch from the nominal reflection exp(-2 k S L / 3)
    def strength(ax: _Axis, hh: float) -> float:
        thick = max(ax.pml_lo, 1) * hh
        return 3 * np.log(1 / pml_reflection) / (2 * k_b.real * thick)

    def stretches(step: int):
        nodes, faces = [], []
        for ax, hh in zip(axes, h, strict=True):
            pos = np.arange(0, ax.n, step, dtype=float)
            s_str = strength(ax, hh)
            nodes.append(ax.stretch(pos, s_str))
            fpos = np.concatenate([[pos[0] - step / 2], pos + step / 2])
            faces.append(ax.stretch(fpos, s_str))
        return nodes, faces

    rho_w2 = rho * omega**2
    s_node, s_face = stretches(1)
    a = _assemble(g, lam, rho_w2, h, s_node, s_face, model)
    s_all = (s_node[0][:, None, None] * s_node[1][None, :, None] * s_node[2][None, None, :])
    shift_diag = np.tile((-1j * shift * rho_w2 * s_all).ravel(), 3)

    # ---- source: plane wave through the TF/SF surface
    coords = [
        (np.arange(ax.n) - ax.inner0) * hh + o for ax, hh, o in zip(axes, h, origin, strict=True)
    ]
    xx, yy, zz = np.meshgrid(*coords, indexing="ij", sparse=True)
    u_inc = plane_shear_wave(
        xx, yy, zz, frequency=f, mu=gb, incidence=incidence, azimuth=azimuth,
        polarization=polarization, density=rho,
    )
    chi = np.zeros(shape, bool)
    chi[tuple(slice(ax.inner0 - _TF_MARGIN, ax.inner0 + ax.n_inner + _TF_MARGIN)
              for ax in axes)] = True
    u_flat = np.moveaxis(u_inc, -1, 0).reshape(-1)
    chi3 = np.tile(chi.ravel(), 3)
    b = np.where(chi3, 0, a @ np.where(chi3, u_flat, 0)) - np.where(
        chi3, a @ np.where(chi3, 0, u_flat), 0
    )
    del u_inc, u_flat

    # ---- multigrid hierarchy of the shifted operator. Jacobi smoothing fails on the stiff
    # grad-div term of a large λ (its eigenvalues are λ/G times the shear ones), so the
    # preconditioner uses λ_p = min(λ, precond_lame·G'_b): GMRES then sees the
    # compressional modes as a cluster near λ/λ_p, which costs a few iterations
    lam_p = min(lam, float(precond_lame) * gb.real)
    coarse_ops, prols = [], []
    gl = g
    for lev in range(1, levels + 1):
        gl = _restrict_modulus(gl)
        nodes, faces = stretches(2**lev)
        coarse_ops.append(
            _assemble(gl, lam_p, rho_w2 * (1 - 1j * shift), h * 2**lev, nodes, faces, model)
        )
        n_c = gl.shape
        p1 = [_prolongation_1d(n) for n in n_c]
        p3 = sp.kron(p1[0], sp.kron(p1[1], p1[2])).tocsr()
        prols.append(sp.block_diag([p3] * 3, format="csr"))

    if lam_p == lam:
        a_p = a
    else:
        a_p = _assemble(g, lam_p, rho_w2, h, s_node, s_face, model)

    def fine_shifted(x: np.ndarray) -> np.ndarray:
        return a_p @ x + shift_diag * x

    mg = _Multigrid(fine_shifted, a_p.diagonal() + shift_diag, coarse_ops, prols, jacobi, sweeps)
    t_setup = time.perf_counter() - t0
    if verbose:
        print(f"setup {t_setup:.1f}s unknowns {a.shape[0]} grid {shape} levels {levels}",
              flush=True)
    # right preconditioning, so that GMRES monitors the true residual ||b - A x|| / ||b||
    am = LinearOperator(a.shape, matvec=lambda y: a @ mg.apply(y), dtype=complex)
    it = [0]

    def count(r):
        it[0] += 1
        if verbose:
            print(f"gmres {it[0]} {r:.3g} {time.perf_counter() - t0:.1f}s", flush=True)

    y, flag = gmres(am, b, rtol=rtol, restart=restart, maxiter=max(1, maxiter // restart),
                    callback=count, callback_type="pr_norm")
    sol = mg.apply(y)
    res = np.linalg.norm(a @ sol - b) / np.linalg.norm(b)
    if info is not None:
        info.update(
            unknowns=int(a.shape[0]), nnz=int(a.nnz), grid=shape, levels=levels,
            iterations=it[0], residual=float(res), setup_s=t_setup,
            seconds=time.perf_counter() - t0, pml_cells=n_pml, lam=lam,
        )
    if flag != 0 and res > 10 * rtol:
        raise MREInputError(
            f"solve_navier_3d: GMRES stopped at relative residual {res:.2g} after {it[0]} "
            f"iterations (target {rtol:g}); use a larger refine or maxiter."
        )
    u = sol.reshape(3, *shape)
    u = u[(slice(None), *inner)]
    return np.moveaxis(u[:, ::refine, ::refine, ::refine], 0, -1)
