"""Tests of the direct inversions (AHI, MDEV) and their finite-difference building blocks.

The reference fields are plane waves built here with numpy, for which the discrete
Laplacian is known in closed form: on ``u = exp(-i k x)`` the 3-point stencil gives
``(u[i+1] - 2u[i] + u[i-1]) / h² = -λ u`` with ``λ = (2 - 2 cos kh) / h²`` (complex for a
damped wave), so ``-ρω² u / ∇²u = ρω²/λ = G* · (kh)² / (2 - 2 cos kh)`` exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from napari_mrepinn import baselines
from napari_mrepinn.benchmark import benchmark_baselines, format_baseline_benchmark
from napari_mrepinn.data import MREExample, MREInputError

RHO = 1000.0


def wavenumber(G: complex, f: float) -> complex:
    """MRE convention: k = ω √(ρ/G*), principal root, so Im k <= 0 for G'' >= 0."""
    return 2 * np.pi * f * np.sqrt(RHO / complex(G))


def bias(k: complex, h: float) -> complex:
    """(kh)² / (2 - 2 cos kh), computed here independently of the library."""
    kh = complex(k) * h
    return kh**2 / (2 - 2 * np.cos(kh))


def plane_wave(G: complex, f: float, h: float, shape=(40, 9), direction=(1.0, 0.0),
               amplitudes=(1.0,)) -> np.ndarray:
    """exp(-i k d·x) on a grid, one component per amplitude (trailing component axis)."""
    k = wavenumber(G, f)
    coords = np.meshgrid(*[h * np.arange(n) for n in shape], indexing="ij")
    phase = sum(d * c for d, c in zip(direction, coords, strict=True))
    u = np.exp(-1j * k * phase)
    return np.stack([a * u for a in amplitudes], axis=-1)


# ---------------------------------------------------------------------- Laplacian
@pytest.mark.parametrize("G", [3000.0, 3000 + 1500j])
@pytest.mark.parametrize("ppw", [3, 4, 6, 10])
@pytest.mark.parametrize("polar", [True, False])
def test_fd3_ahi_equals_exact_plane_wave_bias(G, ppw, polar):
    f = 60.0
    k = wavenumber(G, f)
    assert k.imag <= 0  # the MRE sign convention: exp(-ikx) decays along +x
    h = 2 * np.pi / k.real / ppw  # ppw voxels per wavelength
    u = plane_wave(G, f, h)[..., 0]
    if np.iscomplexobj(G) and G.imag > 0:
        assert abs(u[-1, 0]) < abs(u[0, 0])  # physical attenuation
    ex = MREExample.from_numpy(u, frequency=f, spacing=h)
    mu = baselines.ahi(ex, despeckle=False, polar=polar).values[2:-2]  # away from x edges
    B = bias(k, h)
    # what is exact for complex k: the complex factor B, i.e. |G_est| = |G||B| and
    # arg G_est = arg G + arg B (not the real-k formula applied to |k| or Re k)
    np.testing.assert_allclose(np.abs(mu) / (abs(G) * abs(B)), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.angle(mu), np.angle(G) + np.angle(B), rtol=0, atol=1e-6)
    if np.iscomplexobj(G) and ppw <= 6:
        # the phase bias is real, so the phase check above is not vacuous
        assert abs(np.angle(B)) > 1e-3
    assert ex.ds.sizes["y"] == mu.shape[1]


def test_fd3_plane_wave_bias_helper():
    k, h = wavenumber(3000 + 900j, 70.0), 3e-3
    assert baselines.fd3_plane_wave_bias(k, h) == pytest.approx(bias(k, h), rel=1e-12)
    # the tabulated real-k values: 1.23 at 4 voxels per wavelength, 1.053 at 8
    assert baselines.fd3_plane_wave_bias(2 * np.pi / 4, 1.0).real == pytest.approx(1.2337, abs=1e-4)
    assert baselines.fd3_plane_wave_bias(2 * np.pi / 8, 1.0).real == pytest.approx(1.0530, abs=1e-4)
    assert baselines.fd3_plane_wave_bias(1e-6, 1.0) == pytest.approx(1.0, abs=1e-12)


def test_fd3_bias_oblique_wave_3d_with_components():
    """3-D Laplacian, oblique damped wave, two components of different amplitude/phase."""
    G, f = 2500 + 800j, 80.0
    k = wavenumber(G, f)
    h = 2 * np.pi / k.real / 7
    d = np.array([0.48, 0.6, 0.64])  # unit vector
    u = plane_wave(G, f, h, shape=(16, 14, 12), direction=d, amplitudes=(1.0, 0.3 - 0.4j))
    ex = MREExample.from_numpy(u, frequency=f, spacing=h, components=["y", "x"])
    mu = baselines.ahi(ex, despeckle=False, dims=("x", "y", "z")).values[2:-2, 2:-2, 2:-2]
    lam_h2 = sum(2 - 2 * np.cos(k * da * h) for da in d)
    expected = RHO * (2 * np.pi * f) ** 2 * h**2 / lam_h2
    np.testing.assert_allclose(mu, expected, rtol=1e-9)
    # the in-plane Laplacian ignores the through-plane part of k and overestimates |G*|
    mu2 = baselines.ahi(ex, despeckle=False, dims="xy")
    assert mu2.attrs["laplacian_dims"] == "x,y" and mu2.attrs["dims_source"] == "user"
    assert np.median(np.abs(mu2.values[2:-2, 2:-2, 2:-2])) > 1.5 * abs(expected)
    # a volume of >= AUTO_3D_MIN_SLICES slices is inverted in 3-D by default, and says so
    auto = baselines.ahi(ex, despeckle=False)
    assert auto.attrs["laplacian_dims"] == "x,y,z" and auto.attrs["dims_source"] == "auto"
    np.testing.assert_allclose(auto.values[2:-2, 2:-2, 2:-2], expected, rtol=1e-9)
    m_auto = baselines.mdev(ex)
    assert m_auto.attrs["laplacian_dims"] == "x,y,z"
    # a thin slab (fewer slices) falls back to in-plane derivatives
    thin = MREExample(ex.ds.isel(z=slice(0, baselines.AUTO_3D_MIN_SLICES - 1)))
    assert baselines.ahi(thin).attrs["laplacian_dims"] == "x,y"
    assert baselines.resolve_dims(thin, "xyz") == ("x", "y", "z")


def _da(values, h, dims=("x", "y")):
    return xr.DataArray(values, dims=dims, coords={d: h * np.arange(n)
                                                   for d, n in zip(dims, values.shape,
                                                                   strict=True)})


def test_gradient_method_is_the_wide_stencil():
    G, f = 3000 + 500j, 60.0
    k = wavenumber(G, f)
    h = 2 * np.pi / k.real / 12
    u = _da(plane_wave(G, f, h, shape=(30, 6))[..., 0], h)
    lap = baselines.laplacian(u, method="gradient").values
    lam = (2 - 2 * np.cos(2 * k * h)) / (2 * h) ** 2  # 3-point stencil with step 2h
    np.testing.assert_allclose(lap[2:-2], -lam * u.values[2:-2], rtol=1e-9)


@pytest.mark.parametrize(
    ("method", "kw"),
    [("fd3", {}), ("savgol", {"savgol_order": 3, "savgol_window": 5}),
     ("savgol", {"savgol_order": 3, "savgol_window": 7})],
)
def test_laplacian_exact_on_cubic_including_edges(method, kw):
    """One-sided edges: (2,-5,4,-1) and edge polynomial fits are exact for cubics."""
    h = 2e-3
    x, y = np.meshgrid(h * np.arange(11), h * np.arange(9), indexing="ij")
    u = (1 + 2j) * x**3 - 3 * x * y**2 + 5j * y**2 + 7 * x
    expected = (1 + 2j) * 6 * x - 6 * x + 10j
    lap = baselines.laplacian(_da(u, h), h, method=method, **kw)
    assert lap.dims == ("x", "y")
    np.testing.assert_allclose(lap.values, expected, rtol=1e-7, atol=1e-7 * np.abs(expected).max())


def test_savgol_order2_window3_equals_fd3_and_mirror_is_finite():
    rng = np.random.default_rng(3)
    u = _da(rng.normal(size=(12, 10)) + 1j * rng.normal(size=(12, 10)), 1e-3)
    fd3 = baselines.laplacian(u, method="fd3").values
    sg = baselines.laplacian(u, method="savgol", savgol_order=2, savgol_window=3).values
    np.testing.assert_allclose(sg[1:-1, 1:-1], fd3[1:-1, 1:-1], rtol=1e-9, atol=1e-6)
    for method in baselines.LAPLACIAN_METHODS:
        lap = baselines.laplacian(u, method=method, boundary="mirror").values
        assert np.all(np.isfinite(lap))
        # interior does not depend on the boundary rule
        one = baselines.laplacian(u, method=method).values
        np.testing.assert_allclose(lap[3:-3, 3:-3], one[3:-3, 3:-3], rtol=1e-12)


def test_laplacian_bad_input():
    u = xr.DataArray(np.ones((8, 8, 1), complex), dims=("x", "y", "z"),
                     coords={"x": np.arange(8) * 1e-3, "y": np.arange(8) * 1e-3, "z": [0.0]})
    with pytest.raises(MREInputError, match="'z' has 1 voxel"):
        baselines.laplacian(u, dims=("x", "y", "z"))
    with pytest.raises(MREInputError, match="method"):
        baselines.laplacian(u, method="fd5")
    with pytest.raises(MREInputError, match="spacing"):
        baselines.laplacian(u, -1.0)
    with pytest.raises(MREInputError, match="savgol_window"):
        baselines.laplacian(u, method="savgol", savgol_window=4)


# ---------------------------------------------------------------------- despeckle
def test_despeckle_function_clamps_a_dip_of_the_laplacian_only():
    lap = np.full((9, 9), 2.0 + 0j)
    lap[4, 4] = 0.001j  # 1/lap spikes here
    lap[1, 7] = 0.0  # a vanishing Laplacian (no phase)
    out = baselines.despeckle(_da(lap, 1e-3), threshold=3.0).values
    assert out[4, 4] == pytest.approx(2.0 / 3.0 * 1j)  # magnitude clamped, phase kept
    assert out[1, 7] == pytest.approx(2.0 / 3.0)
    keep = np.ones_like(lap, bool)
    keep[4, 4] = keep[1, 7] = False
    np.testing.assert_array_equal(out[keep], lap[keep])
    # a transposed (non-contiguous) input gives the same, transposed result
    out_t = baselines.despeckle(_da(lap, 1e-3).transpose("y", "x"), threshold=3.0)
    np.testing.assert_array_equal(out_t.transpose("x", "y").values, out)
    # values within threshold × median are left alone
    lap2 = lap.copy()
    lap2[4, 4] = 0.7
    assert baselines.despeckle(_da(lap2, 1e-3)).values[4, 4] == 0.7


def test_ahi_despeckle_removes_spike_and_leaves_clean_wave_alone():
    G, f = 3000.0, 60.0
    k = wavenumber(G, f)
    h = 2 * np.pi / k.real / 8
    u = plane_wave(G, f, h, shape=(40, 13))[..., 0]
    lam = (2 - 2 * np.cos(k * h)) / h**2
    expected = G * bias(k, h)
    ex = MREExample.from_numpy(u, frequency=f, spacing=h)
    clean = baselines.ahi(ex, despeckle=False).values
    np.testing.assert_array_equal(baselines.ahi(ex).values, clean)  # nothing to clamp
    # perturb one neighbour so that the Laplacian at p drops to 1 % of its value
    p = (20, 6)
    u2 = u.copy()
    u2[p[0] + 1, p[1]] += 0.99 * lam * h**2 * u[p]
    ex2 = MREExample.from_numpy(u2, frequency=f, spacing=h)
    spiky = baselines.ahi(ex2, despeckle=False).values
    assert abs(spiky[p]) > 50 * abs(expected)
    fixed = baselines.ahi(ex2, despeckle=True).values
    # |∇²u| at p is clamped to (local median = |λ|) / 3, so |G*| = 3 × the clean value
    assert abs(fixed[p]) == pytest.approx(3 * abs(expected), rel=1e-9)
    far = np.ones(u.shape, bool)
    far[p[0] - 3 : p[0] + 5, p[1] - 3 : p[1] + 4] = False
    # voxels whose stencils do not reach the perturbation are bit-for-bit unchanged
    np.testing.assert_array_equal(fixed[far], clean[far])


# ---------------------------------------------------------------------- invariances
def smooth_random_example(shape=(24, 20, 4), nf=3, nc=2, seed=7):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(nf, *shape, nc)) + 1j * rng.normal(size=(nf, *shape, nc))
    u = ndimage.gaussian_filter(u, sigma=(0, 2, 2, 0, 0))
    return u


@pytest.mark.parametrize("scale", [1e-6, 1e3])
@pytest.mark.parametrize(
    "kw",
    [{}, {"smoothing": "gaussian"}, {"smoothing": "savgol"}, {"laplacian": "gradient"},
     {"polar": False}],
)
def test_ahi_and_mdev_invariant_to_wave_scale(scale, kw):
    u = smooth_random_example()
    freqs = [40.0, 60.0, 80.0]
    ex = MREExample.from_numpy(u, frequency=freqs, spacing=1.5e-3)
    exs = MREExample.from_numpy(u * scale, frequency=freqs, spacing=1.5e-3)
    ref = baselines.ahi(ex, **kw).values
    out = baselines.ahi(exs, **kw).values
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    kw_m = {k: v for k, v in kw.items() if k != "polar"}
    ref = baselines.mdev(ex, **kw_m).values
    out = baselines.mdev(exs, **kw_m).values
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    assert np.abs(ref).max() > 0


# ---------------------------------------------------------------------- MDEV
def test_mdev_recovers_modulus_within_stencil_bias():
    G = 3000 + 1200j
    freqs = np.array([40.0, 60.0, 80.0, 100.0])
    amps = np.array([1.0, 0.5, 2.0, 0.8])  # per frequency, so the weights matter
    h = 2 * np.pi / wavenumber(G, freqs[-1]).real / 6  # 6 voxels/λ at the top frequency
    u = np.stack([a * plane_wave(G, f, h, shape=(36, 7)) for a, f in
                  zip(amps, freqs, strict=True)])
    ex = MREExample.from_numpy(u, frequency=freqs, spacing=h, spatial_ndim=2)
    mu = baselines.mdev(ex).values[2:-2]
    assert mu.shape == (32, 7)
    ks = np.array([wavenumber(G, f) for f in freqs])
    Bs = np.array([bias(k, h) for k in ks])
    # weighted harmonic mean of |G B_f| and weighted angle: bracketed by the per-frequency
    # stencil biases
    ratio = np.abs(mu) / abs(G)
    assert np.all(ratio >= np.abs(Bs).min() * (1 - 1e-9))
    assert np.all(ratio <= np.abs(Bs).max() * (1 + 1e-9))
    phases = np.angle(G * Bs)
    assert np.all(np.angle(mu) >= phases.min() - 1e-9)
    assert np.all(np.angle(mu) <= phases.max() + 1e-9)
    # and exactly the MDEV formula with the closed-form discrete Laplacian
    ua = np.abs(u[:, 2:-2, :, 0])  # (f, x, y)
    lam = (2 - 2 * np.cos(ks * h)) / h**2
    w2 = (2 * np.pi * freqs) ** 2
    mag = RHO * np.einsum("f,fxy->xy", w2, ua) / np.einsum("f,fxy->xy", np.abs(lam), ua)
    cos_phi = (np.einsum("f,fxy->xy", lam.real, ua**2)
               / np.einsum("f,fxy->xy", np.abs(lam), ua**2))
    np.testing.assert_allclose(np.abs(mu), mag, rtol=1e-9)
    np.testing.assert_allclose(np.angle(mu), np.arccos(cos_phi), atol=1e-9)
    # less bias than AHI at the highest frequency
    assert abs(np.median(ratio) - 1) < abs(Bs[-1]) - 1


def test_mdev_single_frequency_equals_polar_ahi():
    u = smooth_random_example(nf=1)[0]
    ex = MREExample.from_numpy(u, frequency=50.0, spacing=2e-3)
    np.testing.assert_allclose(baselines.mdev(ex).values,
                               baselines.ahi(ex, despeckle=False).values, rtol=1e-12)


# ---------------------------------------------------------------------- outputs
def test_output_dims_names_units_and_no_nan():
    u = smooth_random_example(shape=(16, 12, 3), nf=2, nc=3)
    u[:, :, :6] = 0  # no wave at all in part of the grid
    mask = np.zeros((16, 12, 3), int)
    mask[3:12, 7:11] = 1
    ex = MREExample.from_numpy(u, frequency=[50.0, 70.0], spacing=1e-3, mre_mask=mask)
    a = baselines.ahi(ex)
    assert a.name == "mu_ahi" and a.dims == ("frequency", "x", "y", "z")
    assert a.attrs["units"] == "Pa" and np.iscomplexobj(a.values)
    np.testing.assert_array_equal(a["frequency"].values, [50.0, 70.0])
    a1 = baselines.ahi(ex, frequency=70.0)
    assert a1.dims == ("x", "y", "z") and a1.attrs["frequency"] == 70.0
    np.testing.assert_allclose(a1.values, a.sel(frequency=70.0).values, rtol=1e-12)
    m = baselines.mdev(ex, smoothing="gaussian")
    assert m.name == "mu_mdev" and m.dims == ("x", "y", "z")
    for arr in (a, a1, m, baselines.ahi(ex, polar=False), baselines.mdev(ex, despeckle=True)):
        assert np.all(np.isfinite(arr.values))
    # no wave, no Laplacian: 0 Pa rather than NaN/inf (where no stencil reaches the wave)
    assert np.all(baselines.mdev(ex).values[:, :5] == 0)
    assert np.all(a.values[:, :, :5] == 0)
    assert np.all(np.imag(a.values) >= 0)  # G'' >= 0 from the arccos phase
    masked = baselines.mdev(ex, apply_mask=True).values
    assert np.all(masked[mask == 0] == 0) and np.any(masked[mask > 0] != 0)


def test_ahi_bad_options():
    u = smooth_random_example(shape=(10, 10, 1), nf=1, nc=1)[0, :, :, 0, 0]
    ex = MREExample.from_numpy(u, frequency=50.0, spacing=1e-3)
    with pytest.raises(MREInputError, match="smoothing"):
        baselines.ahi(ex, smoothing="median")
    with pytest.raises(MREInputError, match="not spatial dims"):
        baselines.ahi(ex, dims=("x", "y", "z"))
    with pytest.raises(MREInputError, match="no 30 Hz"):
        baselines.ahi(ex, frequency=30.0)
    with pytest.raises(MREInputError, match="threshold"):
        baselines.mdev(ex, despeckle=True, threshold=0.5)


# ---------------------------------------------------------------------- speed
def test_baseline_benchmark_reports_both_methods():
    """The benchmark runs and reports; its timings go to the README, never into a test."""
    r = benchmark_baselines(shape=(32, 24, 6), n_components=3, n_frequencies=2, repeats=1)
    table = format_baseline_benchmark(r)
    assert "AHI" in table and "MDEV" in table
    assert r["n_values"] == 32 * 24 * 6 * 3 * 2
    assert r["ahi_cpu_s"] > 0 and r["mdev_cpu_s"] > 0

