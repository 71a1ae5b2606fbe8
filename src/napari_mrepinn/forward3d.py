"""3-D ground truth: inclusion phantoms whose waves solve the time-harmonic Navier equation.

:func:`inclusion_phantom` builds an :class:`~napari_mrepinn.data.MREExample` of ellipsoidal
inclusions (:class:`Inclusion`) in a homogeneous background, lit by a plane shear wave, its wave
from :func:`solve_navier_3d` on a grid ``refine`` times finer than the output
(:func:`fine_modulus` gives ``G*`` on those fine nodes, averaged over sub-points of each
cell so that a curved interface is no staircase). The solver, its equation (``model=
"navier"`` or ``"hetero"``), discretisation, source and boundaries live in
:mod:`napari_mrepinn.navier3d`; its public names are re-exported here
(``forward3d.solve_navier_3d``, ``forward3d.plane_shear_wave``, ``forward3d.MODELS``).

Conventions as everywhere in the library (``CONTRIBUTING.md``): SI units, ``u(t) =
Re{U e^{+iωt}}``, ``G* = G' + iG''`` with ``G'' >= 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._phantom import _annotate, _noise_ratio, _positive, _viscosity
from .analytic import voigt_modulus
from .data import MREExample, MREInputError
from .navier3d import MODELS, plane_shear_wave, solve_navier_3d

__all__ = [
    "MODELS",
    "Inclusion",
    "fine_modulus",
    "inclusion_phantom",
    "inclusion_volume",
    "plane_shear_wave",
    "solve_navier_3d",
]


# ============================================================================ geometry
@dataclass(frozen=True)
class Inclusion:
    """An ellipsoidal inclusion (a sphere when the three radii are equal).

    Parameters
    ----------
    radii : float or (float, float, float)
        Semi-axes in metres (one value: a sphere), along the inclusion's own axes.
    mu : float
        Storage shear modulus μ in Pa.
    center : (float, float, float)
        Centre in metres, in the coordinates of the output grid (its centre is the origin).
    angles : (float, float)
        Orientation: the inclusion's axes are the grid axes turned by ``angles[0]`` radians
        about ``z``, then by ``angles[1]`` about the new ``y``.
    viscosity : float, optional
        Voigt viscosity η in Pa·s (default: the background's).
    """

    radii: float | tuple[float, float, float]
    mu: float
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    angles: tuple[float, float] = (0.0, 0.0)
    viscosity: float | None = None

    def axes(self) -> np.ndarray:
        r = np.broadcast_to(np.asarray(self.radii, dtype=float), (3,)).copy()
        if not np.all(np.isfinite(r)) or np.any(r <= 0):
            raise MREInputError(f"Inclusion radii must be positive metres, got {self.radii!r}.")
        return r

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Whether points (metres, broadcast together) are inside the ellipsoid."""
        a, b = (float(v) for v in self.angles)
        ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
        dx, dy, dz = (x - self.center[0], y - self.center[1], z - self.center[2])
        # rotate the points into the inclusion's frame (inverse of Rz(a)·Ry(b))
        u = ca * dx + sa * dy
        v = -sa * dx + ca * dy
        p = cb * u - sb * dz
        w = sb * u + cb * dz
        r = self.axes()
        return (p / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2 < 1.0


def inclusion_volume(
    inclusions: Sequence[Inclusion], x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """Region labels at points: 1 background, ``2 + n`` inside inclusion ``n`` (later wins)."""
    lab = np.ones(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), np.int32)
    for n, inc in enumerate(inclusions):
        lab[inc.contains(x, y, z)] = 2 + n
    return lab


# ============================================================================ phantoms
def _axis_coords(n: int, h: float) -> np.ndarray:
    """Voxel centres (m) of an axis centred on 0."""
    return (np.arange(n) - (n - 1) / 2) * h


def fine_modulus(
    inclusions: Sequence[Inclusion],
    mu_background: complex,
    shape: Sequence[int],
    spacing: Sequence[float],
    refine: int,
    frequency: float,
    background_viscosity: float,
    subsamples: int = 3,
) -> np.ndarray:
    """``G*`` (Pa) on the fine nodes of an output grid centred on the origin.

    Each fine node gets the mean ``G*`` over ``subsamples³`` points of its cell, so that a
    curved interface is resolved below the fine spacing (no staircase).
    """
    hf = np.asarray(spacing, float) / refine
    axes = [_axis_coords((n - 1) * refine + 1, hh) for n, hh in zip(shape, hf, strict=True)]
    offs = (np.arange(subsamples) - (subsamples - 1) / 2) / subsamples
    g = np.zeros([len(a) for a in axes], complex)
    mus = [complex(mu_background)] + [
        complex(voigt_modulus(inc.mu, background_viscosity if inc.viscosity is None
                              else inc.viscosity, frequency)) for inc in inclusions
    ]
    mus = np.asarray(mus)
    for ox in offs:
        for oy in offs:
            for oz in offs:
                xx, yy, zz = np.meshgrid(axes[0] + ox * hf[0], axes[1] + oy * hf[1],
                                         axes[2] + oz * hf[2], indexing="ij", sparse=True)
                g += mus[inclusion_volume(inclusions, xx, yy, zz) - 1]
    return g / subsamples**3


def inclusion_phantom(
    frequency: float = 60.0,
    *,
    shape: Sequence[int] = (48, 48, 24),
    spacing: float | Sequence[float] = 1.5e-3,
    mu_background: float = 3000.0,
    inclusions: Sequence[Inclusion] | None = None,
    viscosity: float = 1.0,
    incidence: float = 50.0,
    azimuth: float = 0.0,
    polarization: float = 0.0,
    components: Sequence[str] = ("x", "y", "z"),
    model: str = "navier",
    poisson_ratio: float = 0.45,
    refine: int = 2,
    noise_ratio: float = 0.0,
    seed: int | None = None,
    info: dict | None = None,
    **solver: float,
) -> MREExample:
    """A 3-D volume with ellipsoidal inclusions and an oblique plane shear wave.

    Parameters
    ----------
    frequency : float
        Hz.
    shape : (int, int, int)
        Output voxels (x, y, z); the grid is centred on the origin.
    spacing : float or (float, float, float)
        Voxel size in metres.
    mu_background : float
        Background storage modulus μ in Pa (Voigt ``G* = μ + iωη``).
    inclusions : sequence of Inclusion, optional
        Default: one sphere of 8 mm radius and 3× the background modulus at the centre.
    viscosity : float
        Voigt viscosity η (Pa·s) of the background (and of inclusions that set none).
    incidence, azimuth, polarization : float
        Incident wave in **degrees**: direction of travel from ``+z``, its azimuth from
        ``+x``, polarisation angle (0: in the plane of the direction and ``z``).
    components : sequence of {"x", "y", "z"}
        Displacement components returned (a scanner may measure only some).
    model, poisson_ratio, refine
        See :func:`solve_navier_3d`. ν = 0.45 by default (``λ = 9 G'``, compressional
        wavelength 3.3× the shear one): the multigrid preconditioner slows down as ν → 0.5
        (ν = 0.49 takes about twice the iterations).
    noise_ratio : float
        Complex Gaussian noise power relative to ``mean|u|²`` (1e-3 = 30 dB).
    seed : int, optional
        Noise seed.
    info : dict, optional
        Filled with the solver statistics.
    **solver
        Other keywords of :func:`solve_navier_3d` (``rtol``, ``pml_wavelengths``...).

    Returns
    -------
    MREExample
        ``wave`` (x, y, z, component), ``mre`` the true ``G*`` (Pa) at the voxel centres,
        ``mre_mask`` 1 in the background and 2, 3... in the inclusions; attrs ``frequency``,
        ``phantom = "inclusion_3d"`` and the wave and model parameters.
    """
    f = _positive("frequency", frequency)
    nr = _noise_ratio(noise_ratio)
    try:
        shp = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        shp = ()
    if len(shp) != 3 or min(shp) < 2:
        raise MREInputError(f"shape must be 3 integers >= 2 (x, y, z voxels), got {shape!r}.")
    h = np.broadcast_to(np.asarray(spacing, dtype=float), (3,)).copy()
    if not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise MREInputError(f"spacing must be positive metres, got {spacing!r}.")
    comps = list(components)
    if not comps or any(c not in ("x", "y", "z") for c in comps) or len(set(comps)) != len(comps):
        raise MREInputError(
            f"components must be distinct labels among x, y, z, got {components!r}."
        )
    _viscosity(viscosity)
    incs = list(inclusions) if inclusions is not None else [Inclusion(8e-3, 3 * mu_background)]
    gb = complex(voigt_modulus(_positive("mu_background", mu_background), viscosity, f))
    g_fine = fine_modulus(incs, gb, shp, h, int(refine), f, float(viscosity))
    axes = [_axis_coords(n, hh) for n, hh in zip(shp, h, strict=True)]
    stats: dict = {} if info is None else info
    u = solve_navier_3d(
        g_fine, f, h, mu_background=gb, refine=refine, origin=tuple(a[0] for a in axes),
        incidence=np.deg2rad(incidence), azimuth=np.deg2rad(azimuth),
        polarization=np.deg2rad(polarization), model=model, poisson_ratio=poisson_ratio,
        info=stats, **solver,
    )
    xx, yy, zz = np.meshgrid(*axes, indexing="ij", sparse=True)
    lab = inclusion_volume(incs, xx, yy, zz)
    mus = np.asarray([gb] + [
        complex(voigt_modulus(inc.mu, viscosity if inc.viscosity is None else inc.viscosity, f))
        for inc in incs
    ])
    order = {"x": 0, "y": 1, "z": 2}
    ex = MREExample.from_numpy(
        u[..., [order[c] for c in comps]], f, tuple(h), mre=mus[lab - 1], mre_mask=lab,
        origin=tuple(a[0] for a in axes), components=comps, spatial_ndim=3,
    )
    _annotate(
        ex, "inclusion_3d", viscosity=float(viscosity), refine=int(refine), model=model,
        poisson_ratio=float(poisson_ratio) if model == "navier" else 0.0,
        incidence_deg=float(incidence), azimuth_deg=float(azimuth),
        polarization_deg=float(polarization),
        region_labels="1 background, 2.. inclusions",
        solver_iterations=int(stats.get("iterations", -1)),
        solver_seconds=float(stats.get("seconds", float("nan"))),
    )
    if nr > 0:
        ex = ex.add_gaussian_noise(nr, seed)
    return ex
