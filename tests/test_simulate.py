"""Tests of the ground-truth phantoms and the forward solver (``simulate.py``).

The closed-form cylinder is checked against its own PDE and interface conditions, the
finite-difference solver against the closed form and against Green's functions, and the
phantoms for geometry, conventions and physical consistency of wave and modulus.
"""

import numpy as np
import pytest
from scipy import ndimage, special

from napari_mrepinn import simulate as S
from napari_mrepinn.data import MREExample, MREInputError

RHO = 1000.0


def _relative_residual(u, g, h, omega, region):
    """||G ∇²u + ρω²u|| / ||ρω²u|| with the 5-point Laplacian, on interior nodes in region."""
    lap = (u[2:, 1:-1] + u[:-2, 1:-1] + u[1:-1, 2:] + u[1:-1, :-2] - 4 * u[1:-1, 1:-1]) / h**2
    inner = u[1:-1, 1:-1]
    res = g * lap + RHO * omega**2 * inner
    m = region[1:-1, 1:-1]
    return np.linalg.norm(res[m]) / np.linalg.norm(RHO * omega**2 * inner[m])


# ============================================================================ closed form
@pytest.fixture(scope="module")
def cyl_setup():
    f, a = 60.0, 10e-3
    g1 = S.voigt_modulus(3000, 1.0, f)
    g2 = S.voigt_modulus(10000, 1.0, f)
    return {"frequency": f, "radius": a, "mu_background": g1, "mu_inclusion": g2}


def test_voigt_and_wavenumber_sign_convention():
    g = S.voigt_modulus(3000, 1.0, 60)
    assert g.real == 3000 and g.imag == pytest.approx(2 * np.pi * 60)
    k = S.wavenumber(g, 60)
    # MRE convention: exp(-ikx) travels to +x and decays
    assert k.real > 0 and k.imag < 0
    assert k == pytest.approx(2 * np.pi * 60 * np.sqrt(RHO / g))


def test_cylinder_field_satisfies_pde(cyl_setup):
    h = 0.2e-3
    x = np.arange(-25e-3, 25e-3 + h / 2, h)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    u = S.cylinder_field(xx, yy, direction=0.4, **cyl_setup)
    r = np.hypot(xx, yy)[1:-1, 1:-1]
    a = cyl_setup["radius"]
    omega = 2 * np.pi * cyl_setup["frequency"]
    g = np.where(r < a, cyl_setup["mu_inclusion"], cyl_setup["mu_background"])
    r_full = np.hypot(xx, yy)
    outside = _relative_residual(u, g, h, omega, r_full > a + 3 * h)
    inside = _relative_residual(u, g, h, omega, r_full < a - 3 * h)
    # the 5-point truncation error alone is ~(kh)²/12 ≈ 1e-4 here
    assert outside < 1e-3
    assert inside < 1e-3


def test_cylinder_field_interface_continuity(cyl_setup):
    a = cyl_setup["radius"]
    g1, g2 = cyl_setup["mu_background"], cyl_setup["mu_inclusion"]
    theta = np.linspace(0, 2 * np.pi, 37)
    d = 1e-4 * a

    def at(r):
        return S.cylinder_field(r * np.cos(theta), r * np.sin(theta), direction=0.3, **cyl_setup)

    u_in, u_out = at(a - 1e-9 * a), at(a + 1e-9 * a)
    scale = np.max(np.abs(u_out))
    assert np.max(np.abs(u_in - u_out)) < 1e-6 * scale
    # one-sided second-order radial derivatives on each side
    du_in = (3 * at(a - 1e-12 * a) - 4 * at(a - d) + at(a - 2 * d)) / (2 * d)
    du_out = (-3 * at(a + 1e-12 * a) + 4 * at(a + d) - at(a + 2 * d)) / (2 * d)
    t_in, t_out = g2 * du_in, g1 * du_out
    k1 = S.wavenumber(g1, cyl_setup["frequency"])
    t_scale = abs(g1 * k1) * scale
    assert np.max(np.abs(t_in - t_out)) < 1e-4 * t_scale
    # and the strain itself does jump (the test would pass trivially for G₁ = G₂)
    assert np.max(np.abs(du_in - du_out)) > 0.1 * abs(k1) * scale


def test_incident_wave_decays_along_travel(cyl_setup):
    # no contrast: the field is the incident plane wave, exactly
    f = cyl_setup["frequency"]
    g = cyl_setup["mu_background"]
    k = S.wavenumber(g, f)
    for direction in (0.0, np.pi / 2, 2.5):
        s = np.linspace(15e-3, 60e-3, 10)  # distance along travel, outside the inclusion
        x, y = s * np.cos(direction), s * np.sin(direction)
        u = S.cylinder_field(
            x,
            y,
            frequency=f,
            radius=1e-3,
            mu_background=g,
            mu_inclusion=g,
            direction=direction,
        )
        np.testing.assert_allclose(u, np.exp(-1j * k * s), rtol=1e-10)
        assert np.all(np.diff(np.abs(u)) < 0)  # decays along its travel
        phase = np.unwrap(np.angle(u))
        assert np.all(np.diff(phase) < 0)  # e^{+iωt}: phase lags along travel


def test_scattered_wave_is_outgoing_and_decays(cyl_setup):
    f, a = cyl_setup["frequency"], cyl_setup["radius"]
    k1 = S.wavenumber(cyl_setup["mu_background"], f)
    r = np.linspace(5 * a, 20 * a, 200)  # far field: H⁽²⁾ₙ(kr) ~ e^{-ikr}/√r
    for angle in (np.pi, np.pi / 2):  # back-scatter and side-scatter
        x, y = r * np.cos(angle), r * np.sin(angle)
        u = S.cylinder_field(x, y, **cyl_setup)
        us = u - np.exp(-1j * k1 * x)
        # outgoing: phase decreases with r at the background wavenumber
        slope = np.polyfit(r, np.unwrap(np.angle(us)), 1)[0]
        assert slope == pytest.approx(-k1.real, rel=0.05)
        # decays faster than the lossless 1/√r spreading, at the rate -Im k₁
        amp = np.abs(us) * np.sqrt(r)
        rate = np.polyfit(r, np.log(amp), 1)[0]
        assert rate < 0
        assert rate == pytest.approx(k1.imag, rel=0.1)


def test_cylinder_field_input_checks(cyl_setup):
    args = dict(cyl_setup)
    with pytest.raises(MREInputError, match="frequency"):
        S.cylinder_field(0.0, 0.0, **{**args, "frequency": -1})
    with pytest.raises(MREInputError, match="radius"):
        S.cylinder_field(0.0, 0.0, **{**args, "radius": 0})
    with pytest.raises(MREInputError, match="G''"):
        S.cylinder_field(0.0, 0.0, **{**args, "mu_inclusion": 3000 - 10j})
    with pytest.raises(MREInputError, match="n_terms"):
        S.cylinder_field(0.0, 0.0, **{**args, "radius": 0.2}, n_terms=30)


def test_cylinder_example():
    ex = S.cylinder(shape=(40, 50), spacing=1e-3)
    assert isinstance(ex, MREExample)
    assert ex["wave"].dims == ("x", "y", "component")
    assert list(ex["component"].values) == ["z"]
    assert ex.spatial_shape == (40, 50)
    assert ex.frequency == 60.0
    # grid centred on the inclusion, coordinates in metres
    assert ex["x"].values.mean() == pytest.approx(0, abs=1e-12)
    assert ex.spacing["x"] == pytest.approx(1e-3)
    mre = ex["mre"].values
    assert np.all(mre.imag >= 0)
    g2 = S.voigt_modulus(10000, 1.0, 60)
    mask = ex["mre_mask"].values
    assert set(np.unique(mask)) == {1, 2}
    np.testing.assert_allclose(mre[mask == 2], g2)
    # the inclusion of 10 mm radius covers about π·10² voxels of 1 mm²
    assert np.sum(mask == 2) == pytest.approx(np.pi * 100, rel=0.05)
    xx, yy = np.meshgrid(ex["x"].values, ex["y"].values, indexing="ij")
    u = S.cylinder_field(
        xx,
        yy,
        frequency=60,
        radius=10e-3,
        mu_background=S.voigt_modulus(3000, 1.0, 60),
        mu_inclusion=g2,
    )
    np.testing.assert_allclose(ex["wave"].values[..., 0], u)
    noisy = S.cylinder(shape=(40, 50), noise_ratio=0.01, seed=3)
    again = S.cylinder(shape=(40, 50), noise_ratio=0.01, seed=3)
    np.testing.assert_array_equal(noisy["wave"].values, again["wave"].values)
    err = np.mean(np.abs(noisy["wave"].values - ex["wave"].values) ** 2)
    assert err == pytest.approx(0.01 * np.mean(np.abs(u) ** 2), rel=0.2)


# ============================================================================ FD solver
def _fd_vs_closed_form(h, half_width=16e-3):
    f, a, direction = 80.0, 6e-3, 0.3
    g1, g2 = S.voigt_modulus(3000, 1.0, f), S.voigt_modulus(9000, 1.0, f)
    x = np.arange(-half_width, half_width + h / 2, h)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    g = np.where(np.hypot(xx, yy) < a, g2, g1)
    u = S.solve_hetero_2d(
        g, f, h, "plane", mu_background=g1, direction=direction, origin=(x[0], x[0])
    )
    exact = S.cylinder_field(
        xx, yy, frequency=f, radius=a, mu_background=g1, mu_inclusion=g2, direction=direction
    )
    return np.linalg.norm(u - exact) / np.linalg.norm(exact)


def test_solver_converges_to_closed_form():
    # measured: 1.04 % at 0.5 mm, 0.38 % at 0.25 mm (0.15 % at 0.125 mm, slow test)
    e1 = _fd_vs_closed_form(0.5e-3)
    e2 = _fd_vs_closed_form(0.25e-3)
    assert e1 < 0.02
    assert e2 < 0.006
    assert e2 < 0.6 * e1


@pytest.mark.slow
def test_solver_converges_fine_grid():
    assert _fd_vs_closed_form(0.125e-3) < 0.0025


def _point_source(n=101, h=0.5e-3, active=None):
    f = 60.0
    g = S.voigt_modulus(3000, 1.0, f)
    k = S.wavenumber(g, f)
    c = n // 2
    x = (np.arange(n) - c) * h
    xx, yy = np.meshgrid(x, x, indexing="ij")
    force = np.zeros((n, n))
    force[c, c] = 1 / h**2  # unit line force
    u = S.solve_hetero_2d(np.full((n, n), g), f, h, force, active=active)
    return u, xx, yy, k, g, h


def test_solver_point_source_matches_greens_function():
    # G(∇² + k²)u = −δ  ⇒  u = −(i/4) H₀⁽²⁾(kr) / G* in the MRE convention (outgoing)
    u, xx, yy, k, g, h = _point_source()
    r = np.hypot(xx, yy)
    exact = -0.25j * special.hankel2(0, k * r) / g
    m = r > 5 * h
    # the PML reflects almost nothing: the error is the O(h²) dispersion (measured 0.2 %)
    assert np.linalg.norm(u[m] - exact[m]) / np.linalg.norm(exact[m]) < 0.01


def test_solver_free_surface_is_traction_free():
    # half-space below y_b removed: the method of images gives the exact field
    n, h = 101, 0.5e-3
    active = np.ones((n, n), bool)
    active[:, :30] = False
    u, xx, yy, k, g, h = _point_source(n, h, active)
    yb = yy[0, 30] - h / 2  # the free surface lies on the faces to the removed nodes
    r1 = np.hypot(xx, yy)
    r2 = np.hypot(xx, yy - 2 * yb)
    exact = -0.25j * (special.hankel2(0, k * r1) + special.hankel2(0, k * r2)) / g
    m = (r1 > 5 * h) & active
    assert np.linalg.norm(u[m] - exact[m]) / np.linalg.norm(exact[m]) < 0.01
    assert np.all(u[~active] == 0)


def test_solver_multiple_directions_and_kz():
    f, h = 60.0, 1e-3
    g = np.full((30, 30), S.voigt_modulus(3000, 1.0, f))
    u = S.solve_hetero_2d(g, f, h, "plane", direction=[0.0, np.pi / 2])
    assert u.shape == (30, 30, 2)
    # homogeneous medium: exactly the incident waves, along x and along y
    x = np.arange(30) * h
    k = S.wavenumber(g[0, 0], f)
    np.testing.assert_allclose(u[:, 5, 0], np.exp(-1j * k * x), rtol=1e-10)
    np.testing.assert_allclose(u[5, :, 1], np.exp(-1j * k * x), rtol=1e-10)
    # kz > 0 lowers the in-plane wavenumber: k⊥² = k² − kz²
    kz = 0.5 * k.real
    u = S.solve_hetero_2d(g, f, h, "plane", kz=kz)
    np.testing.assert_allclose(u[:, 5], np.exp(-1j * np.sqrt(k**2 - kz**2) * x), rtol=1e-10)
    with pytest.raises(MREInputError, match="evanescent"):
        S.solve_hetero_2d(g, f, h, "plane", kz=1.01 * k.real)


def test_solver_input_checks():
    g = np.full((10, 10), 3000 + 300j)
    with pytest.raises(MREInputError, match="frequency"):
        S.solve_hetero_2d(g, 0, 1e-3)
    with pytest.raises(MREInputError, match="spacing"):
        S.solve_hetero_2d(g, 60, -1e-3)
    with pytest.raises(MREInputError, match="G''"):
        S.solve_hetero_2d(np.full((10, 10), 3000 - 300j), 60, 1e-3)
    with pytest.raises(MREInputError, match="2D"):
        S.solve_hetero_2d(np.full((10,), 3000 + 0j), 60, 1e-3)
    with pytest.raises(MREInputError, match="source"):
        S.solve_hetero_2d(g, 60, 1e-3, np.zeros((5, 5)))
    with pytest.raises(MREInputError, match="source"):
        S.solve_hetero_2d(g, 60, 1e-3, "point")
    with pytest.raises(MREInputError, match="active"):
        S.solve_hetero_2d(g, 60, 1e-3, active=np.ones((3, 3), bool))


# ============================================================================ four target
@pytest.fixture(scope="module")
def box():
    return S.four_target()


def test_four_target_grid_and_dims(box):
    assert box["wave"].dims == ("x", "y", "z", "component")
    assert box.spatial_shape == (80, 100, 10)
    assert list(box["component"].values) == ["z", "y", "x"]
    assert box.frequency == 90.0
    assert box["mre"].dims == ("x", "y", "z")
    # voxel centres in metres, 1 mm apart, spanning 80 × 100 × 10 mm
    for d, n in zip("xyz", (80, 100, 10), strict=True):
        np.testing.assert_allclose(box[d].values, (np.arange(n) + 0.5) * 1e-3)
    assert np.all(np.isfinite(box["wave"].values))


def test_four_target_geometry(box):
    mask = box["mre_mask"].values
    assert set(np.unique(mask)) == {1, 2, 3, 4, 5}
    m = mask[..., 0]
    x, y = box["x"].values, box["y"].values
    for label, d, (cx, cy) in zip(
        (2, 3, 4, 5), S.FOUR_TARGET_DIAMETERS, S.FOUR_TARGET_CENTRES, strict=True
    ):
        region = m == label
        # extent along x through the centre (x = 40 mm falls between voxel centres)
        row = region[:, np.argmin(np.abs(y - cy))]
        assert row.sum() == round(d / 1e-3)
        assert x[row].mean() == pytest.approx(cx, abs=1e-9)
        assert region.sum() == pytest.approx(np.pi * (d / 2e-3) ** 2, rel=0.3)
    counts = [np.sum(m == i) for i in (2, 3, 4, 5)]
    assert counts == sorted(counts, reverse=True)  # largest first
    # the same disks in every slice
    assert np.all(mask == mask[..., :1])


def test_four_target_modulus(box):
    mre = box["mre"].values
    mask = box["mre_mask"].values
    omega = 2 * np.pi * 90
    np.testing.assert_allclose(mre[mask == 1], 3000 + 1j * omega)
    np.testing.assert_allclose(mre[mask > 1], 10000 + 1j * omega)
    assert np.all(mre.imag >= 0)


def test_four_target_components_differ_and_wave_is_z_invariant(box):
    w = box["wave"].values
    flat = w[..., 0, :].reshape(-1, 3)
    for i in range(3):
        for j in range(i + 1, 3):
            a, b = flat[:, i], flat[:, j]
            corr = abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))
            assert corr < 0.8
    np.testing.assert_allclose(w, np.broadcast_to(w[:, :, :1], w.shape))  # kz = 0


def test_four_target_wave_obeys_its_physics(box):
    # z component travels along +y: away from the targets (x < 25 mm) the wave is close to
    # the incident plane wave, decays along y and its phase lags along y
    w = box["wave"].values[:12, :, 0, 0]
    k = S.wavenumber(S.voigt_modulus(3000, 1.0, 90), 90)
    amp = np.abs(w).mean(axis=0)
    assert amp[90] < 0.2 * amp[5]
    slope = np.polyfit(box["y"].values, np.unwrap(np.angle(w.mean(axis=0))), 1)[0]
    assert slope == pytest.approx(-k.real, rel=0.1)


def test_four_target_multifrequency_and_kz():
    ex = S.four_target([60, 90], shape=(40, 50, 4), n_components=2, kz=100.0)
    assert ex["wave"].dims == ("frequency", "x", "y", "z", "component")
    assert ex["wave"].shape == (2, 40, 50, 4, 2)
    assert ex["mre"].dims == ("frequency", "x", "y", "z")
    np.testing.assert_allclose(ex["frequency"].values, [60, 90])
    g = ex["mre"].values
    assert g[0, 0, 0, 0] == pytest.approx(3000 + 2j * np.pi * 60)
    assert g[1, 0, 0, 0] == pytest.approx(3000 + 2j * np.pi * 90)
    # z profile cos(kz (z − z_mid))
    z = ex["z"].values
    prof = np.cos(100.0 * (z - z.mean()))
    w = ex["wave"].values
    np.testing.assert_allclose(w, w[:, :, :, :1] / prof[0] * prof[None, None, None, :, None])
    one = ex.select_frequency(60)
    assert one["wave"].dims == ("x", "y", "z", "component")


def test_four_target_noise_and_checks():
    kw = dict(shape=(30, 40, 2), n_components=1)
    clean = S.four_target(**kw)
    noisy = S.four_target(noise_ratio=0.05, seed=1, **kw)
    again = S.four_target(noise_ratio=0.05, seed=1, **kw)
    np.testing.assert_array_equal(noisy["wave"].values, again["wave"].values)
    assert not np.allclose(noisy["wave"].values, clean["wave"].values)
    for bad in (
        dict(frequency=0),
        dict(frequency=[60, -1]),
        dict(spacing=0),
        dict(shape=(80, 100)),
        dict(refine=1),
        dict(n_components=4),
        dict(noise_ratio=-1),
        dict(viscosity=-1),
        dict(dispersion="maxwell"),
    ):
        with pytest.raises(MREInputError):
            S.four_target(**{**kw, **bad})


def test_four_target_springpot_dispersion():
    kw = dict(shape=(30, 40, 2), n_components=1)
    ex = S.four_target([50, 100], dispersion="springpot", **kw)
    g, mask = ex["mre"].values, ex["mre_mask"].values
    f0 = np.sqrt(50 * 100)  # the band's geometric mean
    for label, mu in ((1, 3000), (2, 10000)):
        ref = mu + 2j * np.pi * f0 * 1.0  # Voigt at f0, η = 1 Pa·s
        alpha = 2 * np.arctan2(ref.imag, ref.real) / np.pi
        for i, f in enumerate((50, 100)):
            np.testing.assert_allclose(g[i][mask == label], ref * (f / f0) ** alpha)
    # a springpot's phase angle does not change with the frequency; a Voigt solid's does
    np.testing.assert_allclose(np.angle(g[0]), np.angle(g[1]))
    voigt = S.four_target([50, 100], **kw)
    assert not np.allclose(np.angle(voigt["mre"].values[0]), np.angle(voigt["mre"].values[1]))
    # the solver saw the springpot modulus: the waves differ from the Voigt box's
    assert not np.allclose(ex["wave"].values, voigt["wave"].values, rtol=1e-3)
    assert ex.ds.attrs["dispersion"] == "springpot"
    # one frequency: the geometric mean is that frequency, so it is the Voigt box
    one = S.four_target(60, dispersion="springpot", **kw)
    np.testing.assert_allclose(one["mre"].values, S.four_target(60, **kw)["mre"].values)


def test_springpot_modulus_closed_form():
    g = S.springpot_modulus(np.array([3000 + 500j, 8000 + 0j]), 120.0, 60.0)
    alpha = 2 * np.arctan2(500, 3000) / np.pi
    np.testing.assert_allclose(g, [(3000 + 500j) * 2 ** alpha, 8000])  # elastic: no change


# ============================================================================ liver
@pytest.fixture(scope="module")
def abdomen():
    return S.liver()


def test_liver_variables(abdomen):
    ex = abdomen
    assert {"wave", "mre", "mre_mask", "anat"} <= set(ex.keys())
    assert ex.spatial_shape == (128, 128, 4)
    assert ex.spacing["x"] == pytest.approx(2.5e-3)
    assert ex["wave"].dims == ("x", "y", "z", "component")
    assert ex["anat"].dims == ("x", "y", "z", "sequence")
    assert list(ex["sequence"].values) == ["t1", "t2"]
    mask = ex["mre_mask"].values
    assert set(np.unique(mask)) == {0, 1}
    assert 0.1 < mask.mean() < 0.4  # the liver is a large part of the slab
    anat = ex["anat"].values
    assert np.all(np.isfinite(anat))
    # liver and background are distinguishable on the anatomical images
    assert anat[mask == 1, 0].mean() > 5 * anat[ex["mre"].values == 0, 0].mean()


def test_liver_modulus(abdomen):
    mre = abdomen["mre"].values
    mask = abdomen["mre_mask"].values == 1
    assert np.all(mre.imag >= 0)
    liver_mu = mre.real[mask]
    assert 2000 <= np.median(liver_mu) <= 2500  # mostly healthy
    assert liver_mu.min() >= 2000
    assert 4000 <= liver_mu.max() <= 6000  # fibrotic patches
    assert 0.01 < np.mean(liver_mu > 3500) < 0.4


def test_liver_wave_nontrivial_and_consistent(abdomen):
    ex = abdomen
    w = ex["wave"].values[..., 0]
    mask = ex["mre_mask"].values == 1
    assert np.all(np.isfinite(w))
    assert np.sqrt(np.mean(np.abs(w[mask]) ** 2)) == pytest.approx(1.0)
    assert np.median(np.abs(w[mask])) > 0.05  # the wave reaches the liver
    assert np.all(w[ex["mre"].values == 0] == 0)  # air does not move
    # local wavenumber from the phase gradient in healthy liver matches the modulus: with
    # central differences the expected value is sin(k h)/h for k = Re k(2.2 kPa)
    h = ex.spacing["x"]
    gx = np.gradient(w, h, axis=0)
    gy = np.gradient(w, h, axis=1)
    with np.errstate(all="ignore"):
        kloc = np.hypot(np.imag(np.conj(w) * gx), np.imag(np.conj(w) * gy)) / np.abs(w) ** 2
    core = ndimage.binary_erosion(mask, iterations=2, structure=np.ones((3, 3, 1)))
    core &= ex["mre"].values.real < 2500
    k = S.wavenumber(S.voigt_modulus(2200, 1.0, 60), 60).real
    assert np.median(kloc[core]) == pytest.approx(np.sin(k * h) / h, rel=0.1)


def test_liver_deterministic_by_seed():
    one = S.liver(shape=(128, 128, 1))
    again = S.liver(shape=(128, 128, 1))
    for name in ("wave", "mre", "anat"):
        np.testing.assert_array_equal(again[name].values, one[name].values)
    other = S.liver(seed=1, shape=(128, 128, 1))
    assert not np.allclose(other["mre"].values, one["mre"].values)  # patches move
    assert np.array_equal(other["mre_mask"].values, one["mre_mask"].values)  # anatomy stays


def test_liver_checks():
    with pytest.raises(MREInputError, match="frequency"):
        S.liver(0)
    with pytest.raises(MREInputError, match="spacing"):
        S.liver(spacing=-1)
    with pytest.raises(MREInputError, match="shape"):
        S.liver(shape=(128, 128))


def test_liver_field_of_view_without_the_driver_is_a_clear_error():
    with pytest.raises(MREInputError, match="outside the field of view"):
        S.liver(shape=(32, 32, 2))
