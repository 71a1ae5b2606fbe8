"""Readouts of G* against textbook formulas, and the OSS-SNR against known noise."""

import numpy as np
import pytest
import xarray as xr

from napari_mrepinn import simulate
from napari_mrepinn.data import MREExample, MREInputError
from napari_mrepinn.readouts import (
    READOUTS,
    display,
    modulus_readouts,
    noise_sigma,
    oss_snr,
    readout_maps,
)

RHO = 1000.0


def _const(value, shape=(6, 5)):
    return xr.DataArray(np.full(shape, value, complex), dims=("x", "y"))


@pytest.mark.parametrize("g", [3000 + 600j, 12000 + 4000j, 800 + 50j])
def test_homogeneous_viscoelastic_medium(g):
    f = 60.0
    omega = 2 * np.pi * f
    ds = modulus_readouts(_const(g), density=RHO, frequency=f)
    # independent reference: the complex wavenumber k = ω√(ρ/G*) = k' - iα
    k = complex(simulate.wavenumber(g, f, RHO))
    expect = {
        "abs_modulus": abs(g),
        "storage_modulus": g.real,
        "loss_modulus": g.imag,
        "phase_angle": np.arctan(g.imag / g.real),
        "shear_speed": omega / k.real,
        "shear_stiffness": RHO * (omega / k.real) ** 2,
        "attenuation": -k.imag,
        "penetration_depth": 1 / -k.imag,
        "penetration_rate": omega / -k.imag,
        "damping_ratio": g.imag / (2 * g.real),
    }
    for name, value in expect.items():
        np.testing.assert_allclose(ds[name].values, value, rtol=1e-10, err_msg=name)
        assert ds[name].attrs["units"] == READOUTS[name].unit


def test_springpot_phase_angle_is_alpha_pi_over_2():
    # springpot G* = μ^(1-a) (iωη)^a: a pure power law has φ = aπ/2 at every frequency
    mu, eta, a = 2000.0, 5.0, 0.3
    for f in (30.0, 90.0):
        g = mu ** (1 - a) * (1j * 2 * np.pi * f * eta) ** a
        ds = modulus_readouts(_const(g), frequency=f)
        np.testing.assert_allclose(ds.phase_angle.values, a * np.pi / 2, rtol=1e-12)


def test_elastic_medium_and_empty_voxels():
    ds = modulus_readouts(_const(4000.0 + 0j), frequency=50.0)
    np.testing.assert_allclose(ds.shear_speed.values, 2.0)  # √(4000/1000)
    np.testing.assert_allclose(ds.attenuation.values, 0.0)
    assert np.all(np.isnan(ds.penetration_depth.values))  # unbounded, not inf
    assert np.all(np.isnan(ds.penetration_rate.values))
    zero = modulus_readouts(_const(0j), frequency=50.0)
    assert np.all(zero.shear_speed.values == 0)


def test_frequency_dependence_and_frequency_dim():
    g = 3000 + 600j
    mu = xr.DataArray(np.full((2, 3, 3), g), dims=("frequency", "x", "y"),
                      coords={"frequency": [40.0, 80.0]})
    ds = modulus_readouts(mu)
    for f in (40.0, 80.0):
        k = complex(simulate.wavenumber(g, f))
        np.testing.assert_allclose(ds.attenuation.sel(frequency=f).values, -k.imag)
    # speed and penetration rate depend on G* only
    np.testing.assert_allclose(ds.penetration_rate.values[0], ds.penetration_rate.values[1])
    # without a frequency the frequency-dependent readouts are left out, not guessed
    assert "attenuation" not in modulus_readouts(_const(g))
    assert "penetration_rate" in modulus_readouts(_const(g))


def test_display_units():
    ds = modulus_readouts(_const(3000 + 600j), frequency=60.0)
    kpa = display(ds.abs_modulus)
    assert kpa.attrs["units"] == "kPa"
    np.testing.assert_allclose(kpa.values, abs(3000 + 600j) / 1e3)
    mm = display(ds.penetration_depth)
    assert mm.attrs["units"] == "mm"
    np.testing.assert_allclose(mm.values, 1e3 * ds.penetration_depth.values)
    with pytest.raises(MREInputError):
        display(xr.DataArray([1.0], name="nonsense"))


def test_noise_sigma_and_oss_snr_track_the_added_noise():
    clean = simulate.cylinder(shape=(48, 48))
    power = float(np.mean(np.abs(clean.wave.values) ** 2))
    snrs = {}
    for ratio in (1e-3, 1e-2):
        ex = clean.add_gaussian_noise(ratio, seed=4)
        est = float(noise_sigma(ex.wave).values.squeeze())
        assert est == pytest.approx(np.sqrt(ratio * power), rel=0.1)
        snr = oss_snr(ex)
        snrs[ratio] = float(snr.attrs["median_in_mask"])
    # 10 dB more noise: the strain SNR drops by about √10
    assert snrs[1e-3] / snrs[1e-2] == pytest.approx(np.sqrt(10), rel=0.2)


def test_oss_snr_of_a_plane_wave_and_of_pure_noise():
    n, h, f = 64, 1e-3, 60.0
    k = 2 * np.pi * 5 / (n * h)  # real wavenumber
    x = np.arange(n) * h
    u = np.exp(-1j * k * x)[:, None] * np.ones(n)
    ex = MREExample.from_numpy(u[..., None], f, h, components=["z"], spatial_ndim=2)
    sigma = 0.01
    snr = oss_snr(ex, sigma=sigma).values
    # anti-plane wave u_z(x): ε_xz = ∂x u_z / 2, γ = (2/3)√6 |ε_xz| = (√6/3) k (central
    # differences: sin(kh)/h instead of k); noise γ = (2/3)√1.5 σ/h
    signal = np.sqrt(6) / 3 * np.sin(k * h) / h
    noise = (2 / 3) * np.sqrt(1.5) * sigma / h
    np.testing.assert_allclose(snr[2:-2, 2:-2], signal / noise, rtol=1e-6)

    # the analytic noise propagation: on pure white noise of that σ, mean γ² ≈ γ_noise²
    rng = np.random.default_rng(0)
    m = 96
    noise_only = sigma / np.sqrt(2) * (rng.normal(size=(m, m, 3)) + 1j * rng.normal(size=(m, m, 3)))
    ex3 = MREExample.from_numpy(noise_only, f, h, components=["x", "y", "z"], spatial_ndim=2)
    s = oss_snr(ex3, sigma=sigma).values[2:-2, 2:-2]
    assert np.sqrt(np.mean(s**2)) == pytest.approx(1.0, rel=0.05)


@pytest.fixture(scope="module")
def plane_example():
    # a viscoelastic plane wave of known G* with a two-region mask
    g, f, h, n = 3000 + 600j, 100.0, 1e-3, 48
    k = complex(simulate.wavenumber(g, f))
    x = np.arange(n) * h
    xx, yy = np.meshgrid(x, x, indexing="ij")
    u = np.exp(-1j * k * (xx * np.cos(0.4) + yy * np.sin(0.4)))
    mask = np.ones((n, n), int)
    mask[10:38, 10:38] = 2
    return MREExample.from_numpy(u, f, h, mre=np.full((n, n), g), mre_mask=mask), g, k


def test_readout_maps_for_each_method(plane_example):
    ex, g, k = plane_example
    c_true = 2 * np.pi * 100.0 / k.real
    inner = (slice(10, 38), slice(10, 38))
    truth = readout_maps(ex, "truth")
    np.testing.assert_allclose(truth.shear_speed.values, c_true, rtol=1e-10)
    assert truth.attrs["method"] == "truth"
    assert "oss_snr" in truth
    for method in ("ahi", "mdev", "kmdev"):  # computed on the fly
        ds = readout_maps(ex, method)
        assert float(np.median(ds.shear_speed.values[inner])) == pytest.approx(c_true, rel=0.03)
        assert ds.shear_speed.attrs["units"] == "m/s"
    km = readout_maps(ex, "kmdev")
    assert "abs_modulus" not in km and "penetration_rate" in km
    # a stored result is used as it is
    stored = ex.copy()
    stored["mu_ahi"] = stored["mre"] * 2
    ds = readout_maps(stored, "ahi", quality=False)
    np.testing.assert_allclose(ds.abs_modulus.values, 2 * abs(g))
    assert "oss_snr" not in ds
    assert readout_maps(stored).attrs["method"] == "ahi"  # the result present


def test_readout_maps_errors(plane_example):
    ex, _, _ = plane_example
    with pytest.raises(MREInputError, match="mu_pred"):
        readout_maps(ex, "pinn")
    with pytest.raises(MREInputError, match="method"):
        readout_maps(ex, "lfe")
    with pytest.raises(MREInputError, match="no result"):
        readout_maps(ex)
    with pytest.raises(MREInputError):
        readout_maps(np.zeros(3))
    with pytest.raises(MREInputError, match="component labels"):
        bad = MREExample.from_numpy(np.ones((8, 8, 1), complex), 60.0, 1e-3,
                                    components=["r"], spatial_ndim=2)
        oss_snr(bad)
