"""Tests of the 3-D Navier forward solver (``forward3d.py``).

Ground truth is closed form (the plane shear wave) or the solver on a finer grid; the grids
are tiny so that each solve takes seconds.
"""

import numpy as np
import pytest

from napari_mrepinn import baselines
from napari_mrepinn import forward3d as F
from napari_mrepinn.data import MREInputError
from napari_mrepinn.simulate import voigt_modulus

F0, MU_B = 100.0, 3000.0  # 100 Hz in 3 kPa: 17 mm shear wavelength


def _plane_wave_error(refine: int, model: str = "navier", incidence: float = 50.0) -> float:
    h = 1.5e-3
    shape = (6, 6, 5)
    ex = F.inclusion_phantom(F0, shape=shape, spacing=h, mu_background=MU_B, inclusions=[],
                             incidence=incidence, azimuth=30.0, polarization=20.0,
                             refine=refine, model=model, rtol=1e-7, pml_min_cells=6)
    x, y, z = (ex.ds[d].values for d in "xyz")
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
    ref = F.plane_shear_wave(xx, yy, zz, frequency=F0, mu=voigt_modulus(MU_B, 1.0, F0),
                             incidence=np.deg2rad(incidence), azimuth=np.deg2rad(30.0),
                             polarization=np.deg2rad(20.0))
    u = ex.ds["wave"].transpose("x", "y", "z", "component").sel(component=["x", "y", "z"]).values
    return float(np.linalg.norm(u - ref) / np.linalg.norm(ref))


def test_plane_shear_wave_is_divergence_free_and_has_the_right_wavenumber():
    g = voigt_modulus(MU_B, 1.0, F0)
    h = 1e-5
    x = np.array([-h, 0.0, h])
    xx, yy, zz = np.meshgrid(x, x, x, indexing="ij")
    u = F.plane_shear_wave(xx, yy, zz, frequency=F0, mu=g, incidence=0.7, azimuth=1.1,
                           polarization=0.4)
    div = sum((u[tuple(2 if a == b else 1 for b in range(3))][a]
               - u[tuple(0 if a == b else 1 for b in range(3))][a]) / (2 * h) for a in range(3))
    k = 2 * np.pi * F0 * np.sqrt(1000 / g)
    assert abs(div) < 1e-6 * abs(k)
    lap = sum(u[tuple(2 if a == b else 1 for b in range(3))] + u[tuple(0 if a == b else 1
              for b in range(3))] - 2 * u[1, 1, 1] for a in range(3)) / h**2
    np.testing.assert_allclose(lap, -(k**2) * u[1, 1, 1], rtol=1e-4)


@pytest.fixture(scope="module")
def plane_wave_errors():
    return {(r, m): _plane_wave_error(r, m) for r, m in
            ((1, "navier"), (2, "navier"), (1, "hetero"))}


@pytest.mark.slow  # a 3-D solve in its fixture (15–20 s): CI runs it
def test_homogeneous_medium_gives_the_closed_form_plane_wave(plane_wave_errors):
    # the wave enters through the TF/SF surface and crosses the grid under the discrete
    # equation, so this measures dispersion and the source, not a copy of the input
    assert plane_wave_errors[(2, "navier")] < 0.01
    assert plane_wave_errors[(1, "hetero")] < 0.03


@pytest.mark.slow  # a 3-D solve in its fixture (15–20 s): CI runs it
def test_plane_wave_error_converges_at_second_order(plane_wave_errors):
    e1, e2 = plane_wave_errors[(1, "navier")], plane_wave_errors[(2, "navier")]
    assert e2 < e1 / 3  # second order: 4x per halving of the step


@pytest.fixture(scope="module")
def sphere_case():
    return F.inclusion_phantom(
        F0, shape=(20, 20, 12), spacing=1.5e-3, mu_background=MU_B,
        inclusions=[F.Inclusion(6e-3, 3 * MU_B)], incidence=50.0, azimuth=20.0,
    )


@pytest.mark.slow  # a 3-D solve in its fixture (15–20 s): CI runs it
def test_labels_modulus_and_metadata(sphere_case):
    ex = sphere_case
    x, y, z = (ex.ds[d].values for d in "xyz")
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
    inside = xx**2 + yy**2 + zz**2 < (6e-3) ** 2
    mask = ex.ds["mre_mask"].transpose("x", "y", "z").values
    np.testing.assert_array_equal(mask, np.where(inside, 2, 1))
    mre = ex.ds["mre"].transpose("x", "y", "z").values
    np.testing.assert_allclose(mre[inside], voigt_modulus(3 * MU_B, 1.0, F0))
    np.testing.assert_allclose(mre[~inside], voigt_modulus(MU_B, 1.0, F0))
    assert ex.frequency == F0 and list(ex.ds["component"].values) == ["x", "y", "z"]
    assert ex.ds.attrs["phantom"] == "inclusion_3d" and ex.ds.attrs["model"] == "navier"
    assert np.all(np.isfinite(ex.ds["wave"].values))


def test_ellipsoid_orientation():
    inc = F.Inclusion((6e-3, 3e-3, 2e-3), 9000.0, angles=(np.pi / 2, 0.0))
    # turned by 90° about z: the long axis lies along y
    assert inc.contains(np.array(0.0), np.array(5e-3), np.array(0.0))
    assert not inc.contains(np.array(5e-3), np.array(0.0), np.array(0.0))
    lab = F.inclusion_volume([inc], np.array(0.0), np.array(0.0), np.array(0.0))
    assert lab == 2


@pytest.mark.slow  # a 3-D solve in its fixture (15–20 s): CI runs it
def test_inclusion_visible_in_3d_ahi_with_small_background_bias(sphere_case):
    mu = baselines.ahi(sphere_case, smoothing="gaussian", sigma=0.65)
    assert mu.attrs["laplacian_dims"] == "x,y,z"
    mask = sphere_case.ds["mre_mask"]
    core = (mask == 2).values
    bg = (mask == 1).values
    # stay off the volume's edge voxels, where the one-sided stencils are noisiest
    inner = np.zeros(core.shape, bool)
    inner[2:-2, 2:-2, 2:-2] = True
    a = np.abs(mu.values)
    med_in, med_bg = np.median(a[core & inner]), np.median(a[bg & inner])
    true_bg = abs(voigt_modulus(MU_B, 1.0, F0))
    # a 12 mm sphere is under half a wavelength (29 mm inside): AHI blurs it, but sees it
    assert med_in > 1.3 * med_bg
    assert abs(med_bg / true_bg - 1) < 0.10
    # in-plane derivatives miss k_z² of the oblique wave: the background comes out stiffer
    mu2 = np.abs(baselines.ahi(sphere_case, smoothing="gaussian", sigma=0.65, dims="xy").values)
    assert np.median(mu2[bg & inner]) > 1.3 * true_bg


def test_bad_input_raises():
    with pytest.raises(MREInputError, match="components"):
        F.inclusion_phantom(60, shape=(8, 8, 6), components=["w"])
    with pytest.raises(MREInputError, match="poisson_ratio"):
        F.solve_navier_3d(np.full((5, 5, 5), 3000.0 + 0j), 60, 1e-3, mu_background=3000,
                          poisson_ratio=0.5)
    with pytest.raises(MREInputError, match="fine nodes"):
        F.solve_navier_3d(np.full((6, 5, 5), 3000.0 + 0j), 60, 1e-3, mu_background=3000)


@pytest.mark.slow
def test_sphere_scattering_converges_under_refinement():
    """Scattered field of a sphere: refine 1 and 2 against refine 4 on the output nodes."""
    kw = dict(shape=(10, 10, 8), spacing=2e-3, mu_background=MU_B,
              inclusions=[F.Inclusion(4e-3, 3 * MU_B)], incidence=40.0, azimuth=10.0,
              rtol=1e-9)
    u = {r: F.inclusion_phantom(F0, refine=r, **kw).ds["wave"].values for r in (1, 2, 4)}
    e1 = np.linalg.norm(u[1] - u[4]) / np.linalg.norm(u[4])
    e2 = np.linalg.norm(u[2] - u[4]) / np.linalg.norm(u[4])
    assert e2 < 0.6 * e1
    assert e2 < 0.05
