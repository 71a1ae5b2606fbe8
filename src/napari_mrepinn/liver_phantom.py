"""A patient-like abdominal MRE slab through the liver: anatomy, liver mask, stiffness, wave.

:func:`liver` (re-exported by :mod:`napari_mrepinn.simulate`) draws a synthetic abdomen
(fat, muscle, bone, vessels, liver with fibrotic patches, spleen) slice by slice, gives each
tissue a Voigt modulus and solves each slice's wave with
:func:`napari_mrepinn.forward2d.solve_hetero_2d` from a driver on the anterior body wall.
SI units inside (the anatomy is drawn in millimetres).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ._phantom import _annotate, _fine_axis, _noise_ratio, _refine, _shape, _spacing
from .analytic import voigt_modulus
from .data import MREExample, MREInputError, parse_frequencies
from .forward2d import solve_hetero_2d

__all__ = ["liver"]

# ============================================================================ tissues
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


# ============================================================================ anatomy
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


# ============================================================================ the phantom
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
    refine = _refine(refine)
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
