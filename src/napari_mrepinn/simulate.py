"""Ground-truth MRE phantoms: the front door to the closed forms and the forward solvers.

Everything here follows the library conventions (``CONTRIBUTING.md``): SI units (metres,
hertz, pascals, kg/m³), the MRE time convention ``u(t) = Re{U e^{+iωt}}`` and the complex
shear modulus ``G* = G' + iG''`` with ``G'' >= 0``.

The phantoms (each an :class:`MREExample` with its ground truth ``mre`` and ``mre_mask``):

- :func:`cylinder`: the exact field of one circular inclusion sampled on a grid (2D);
- :func:`four_target`: a 3D box like the public BIOQIC four-target FEM phantom;
- :func:`liver`: a patient-like abdominal slab (anatomy, liver mask, stiffness, wave), in
  :mod:`napari_mrepinn.liver_phantom`.

What they are made from lives in its own module, and the public names are re-exported here
(``simulate.cylinder_field``, ...):

- :mod:`napari_mrepinn.analytic` — :func:`voigt_modulus`, :func:`springpot_modulus`,
  :func:`wavenumber` and
  :func:`cylinder_field`, the closed-form Bessel/Hankel series of a plane shear wave
  scattered by one circular inclusion (exact; no discretisation);
- :mod:`napari_mrepinn.forward2d` — :func:`solve_hetero_2d`, the sparse finite-difference
  solver of ``∇·(G*∇u) + ρω² u = -F`` for any complex ``G*(x, y)`` map, with a perfectly
  matched layer (PML) around the grid;
- :mod:`napari_mrepinn.forward3d` — the 3-D Navier solver and its inclusion phantoms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._phantom import (
    _annotate,
    _fine_axis,
    _noise_ratio,
    _positive,
    _refine,
    _shape,
    _spacing,
    _viscosity,
)
from .analytic import cylinder_field, springpot_modulus, voigt_modulus, wavenumber
from .data import MREExample, MREInputError, parse_frequencies
from .forward2d import solve_hetero_2d
from .liver_phantom import liver

__all__ = [
    "cylinder",
    "cylinder_field",
    "four_target",
    "liver",
    "solve_hetero_2d",
    "springpot_modulus",
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

#: how four_target's G* changes with the frequency: "voigt" (G* = μ + iωη at every
#: frequency) or "springpot" (the Voigt G* at the band's geometric mean, extended by the
#: power law the joint multi-frequency fit assumes)
DISPERSIONS = ("voigt", "springpot")



# ============================================================================ phantoms
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
    _viscosity(viscosity)
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


def four_target(
    frequency: float | Sequence[float] = 90,
    *,
    shape: Sequence[int] = (80, 100, 10),
    spacing: float | Sequence[float] = 1e-3,
    mu_background: float = 3000,
    mu_target: float = 10000,
    viscosity: float = 1.0,
    dispersion: str = "voigt",
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
    dispersion : {"voigt", "springpot"}
        How ``G*`` depends on the frequency (:data:`DISPERSIONS`). ``"springpot"``:
        ``G*(f) = G*_V(f₀) · (f/f₀)^α`` with ``G*_V`` the Voigt modulus, ``f₀`` the geometric
        mean of ``frequency`` and ``α = 2 arg G*_V(f₀) / π`` per region
        (:func:`springpot_modulus`); the same as ``"voigt"`` for one frequency.
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
    _viscosity(viscosity)
    if dispersion not in DISPERSIONS:
        raise MREInputError(
            f"dispersion must be one of {', '.join(DISPERSIONS)}, got {dispersion!r}.")
    if int(n_components) != n_components or not 1 <= int(n_components) <= 3:
        raise MREInputError(f"n_components must be 1, 2 or 3, got {n_components!r}.")
    nc = int(n_components)
    refine = _refine(refine)
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

    f0 = float(np.exp(np.mean(np.log(freqs))))

    def modulus(mu: float, f: float) -> complex:
        if dispersion == "voigt":
            return complex(voigt_modulus(mu, viscosity, f))
        return complex(springpot_modulus(voigt_modulus(mu, viscosity, f0), f, f0))

    waves, mres = [], []
    for f in freqs:
        gb, gt = modulus(mb, f), modulus(mt, f)
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
        dispersion=dispersion,
        refine=refine,
        kz=float(kz),
        region_labels="1 background, 2-5 targets of 20, 10, 6, 4 mm diameter",
    )
    if nr > 0:
        ex = ex.add_gaussian_noise(nr, seed)
    return ex
