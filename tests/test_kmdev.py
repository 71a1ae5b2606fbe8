"""k-MDEV on closed-form waves: exact plane waves and the Bessel-series cylinder.

Ground truth never comes from the inversion: plane waves of known complex wavenumber
``k = ω√(ρ/G*)`` (``simulate.wavenumber``) and the exact cylinder field
(``simulate.cylinder``).
"""

import numpy as np
import pytest

from napari_mrepinn import baselines, simulate
from napari_mrepinn.data import MREExample, MREInputError
from napari_mrepinn.kmdev import KMDEVOptions, kmdev, kmdev_filters
from napari_mrepinn.metrics import evaluate

RHO = 1000.0


def _speed(g):
    """Textbook phase speed of G* (m/s): ω / Re k."""
    g = np.asarray(g, complex)
    return np.sqrt(2 * np.abs(g) ** 2 / (RHO * (g.real + np.abs(g))))


def _plane(g, f, n=64, h=1e-3, theta=0.3):
    k = complex(simulate.wavenumber(g, f))
    x = np.arange(n) * h
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return np.exp(-1j * k * (xx * np.cos(theta) + yy * np.sin(theta))), k


def _interior(da, m=8):
    return da.values[m:-m, m:-m]


@pytest.mark.parametrize("theta", [0.1, 1.2, 2.6, 4.0, 5.5])
@pytest.mark.parametrize("g", [3000 + 600j, 9000 + 1000j])
def test_plane_wave_speed_and_attenuation(theta, g):
    f = 100.0
    u, k = _plane(g, f, theta=theta)
    ds = kmdev(MREExample.from_numpy(u, f, 1e-3))
    c = np.median(_interior(ds.kmdev_speed))
    assert c == pytest.approx(2 * np.pi * f / k.real, rel=0.02)
    # attenuation: positive (the wave decays along its travel) and about -Im k
    alpha = np.median(_interior(ds.kmdev_attenuation))
    assert alpha == pytest.approx(-k.imag, rel=0.12)
    rate = np.nanmedian(_interior(ds.kmdev_penetration_rate))
    assert rate == pytest.approx(2 * np.pi * f / -k.imag, rel=0.15)
    assert ds.kmdev_speed.attrs["units"] == "m/s"
    assert ds.kmdev_attenuation.attrs["units"] == "1/m"


def test_elastic_wave_has_no_attenuation():
    u, _ = _plane(3000.0, 80.0)
    ds = kmdev(MREExample.from_numpy(u, 80.0, 1e-3))
    assert np.median(_interior(ds.kmdev_speed)) == pytest.approx(_speed(3000.0), rel=0.02)
    # a wave that does not decay has (nearly) no attenuation: far below a viscous one's
    _, k_visc = _plane(3000 + 600j, 80.0)
    assert np.median(_interior(ds.kmdev_attenuation)) < 0.1 * -k_visc.imag


def test_growing_wave_is_not_read_as_damped():
    # the wrong sign convention exp(+ikx) travels to -x and grows along its travel: the
    # attenuation must not come out as the physical value
    u, k = _plane(3000 + 600j, 100.0, theta=0.0)
    grown = np.conj(u)  # exp(+i conj(k) x): travels to -x, |u| decays to +x = grows
    ds = kmdev(MREExample.from_numpy(grown, 100.0, 1e-3))
    assert np.median(_interior(ds.kmdev_attenuation)) < 0.2 * -k.imag


def test_scale_free_and_dtype():
    u, _ = _plane(3000 + 600j, 100.0)
    a = kmdev(MREExample.from_numpy(u, 100.0, 1e-3))
    b = kmdev(MREExample.from_numpy(1e-5 * np.exp(0.7j) * u, 100.0, 1e-3))
    np.testing.assert_allclose(a.kmdev_speed.values, b.kmdev_speed.values, rtol=1e-6)
    np.testing.assert_allclose(a.kmdev_attenuation.values, b.kmdev_attenuation.values,
                               rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(a.kmdev_speed.values))
    mask = np.zeros(u.shape, int)
    mask[:10] = 1
    masked = kmdev(MREExample.from_numpy(u, 100.0, 1e-3, mre_mask=mask), apply_mask=True)
    assert np.all(masked.kmdev_speed.values[10:] == 0)
    assert np.all(np.isnan(masked.kmdev_penetration_rate.values[10:]))
    np.testing.assert_allclose(masked.kmdev_speed.values[:10], a.kmdev_speed.values[:10])


def test_frequencies_compound_as_amplitude_weighted_slowness():
    # two frequencies with different speeds and equal amplitudes: 1/c is the mean slowness
    h, n = 1e-3, 64
    g1, g2 = 3000.0 + 1j, 6000.0 + 1j  # nearly elastic: equal amplitudes everywhere
    u1, k1 = _plane(g1, 100.0, n, h, theta=0.5)
    u2, k2 = _plane(g2, 120.0, n, h, theta=2.0)
    ex = MREExample.from_numpy(np.stack([u1, u2]), [100.0, 120.0], h)
    c = np.median(_interior(kmdev(ex).kmdev_speed))
    slowness = 0.5 * (k1.real / (2 * np.pi * 100.0) + k2.real / (2 * np.pi * 120.0))
    assert c == pytest.approx(1.0 / slowness, rel=0.03)
    # and each frequency alone gives its own speed
    single = kmdev(ex.select_frequency(120.0)).kmdev_speed
    assert np.median(_interior(single)) == pytest.approx(_speed(g2), rel=0.03)


def test_volume_with_components_is_inverted_slice_by_slice():
    u, _ = _plane(3000 + 600j, 100.0, n=32)
    vol = np.stack([u, u, u], axis=-1)[..., None] * np.array([1.0, 0.5j])  # x, y, z, comp
    ex = MREExample.from_numpy(vol, 100.0, 1e-3, components=["z", "y"])
    ds = kmdev(ex)
    assert ds.kmdev_speed.dims == ("x", "y", "z")
    assert ds.kmdev_speed.shape == (32, 32, 3)
    np.testing.assert_allclose(ds.kmdev_speed.values[..., 0], ds.kmdev_speed.values[..., 2],
                               rtol=1e-6)
    np.testing.assert_array_equal(ds.x.values, ex.ds.x.values)


def test_directional_filter_passes_the_wave_travelling_its_way():
    # a plane wave exp(-i k x) along +x must land in filter θ = 0, not θ = π
    n, h = 64, 1e-3
    filt = kmdev_filters((n, n), (h, h), KMDEVOptions(max_speed=None))
    x = np.arange(n) * h
    # 6 whole wavelengths over the grid: one spectral line, no leakage
    u = np.exp(-2j * np.pi * 6 * x / (n * h))[:, None] * np.ones(n)
    spec = np.abs(np.fft.fft2(u)) ** 2
    energy = [(spec * f**2).sum() for f in filt]
    assert int(np.argmax(energy)) == 0
    assert energy[4] < 1e-6 * energy[0]  # θ = π: the opposite direction
    assert energy[1] == pytest.approx(energy[7])  # ±45°: symmetric


def test_cylinder_contrast_and_noise_robustness():
    # exact field of a stiff inclusion at 20 dB SNR: k-MDEV keeps the contrast, AHI loses it
    ex = simulate.cylinder(noise_ratio=1e-2, seed=3)
    true_c = _speed(ex.mre.values)
    mask = ex.mre_mask.values
    k = evaluate(kmdev(ex).kmdev_speed.values, true_c, mask)
    a = evaluate(_speed(baselines.ahi(ex).values), true_c, mask)
    assert k["cte_percent"][2] > 25.0
    assert k["pearson_r"] > 0.5
    assert k["median_pred_pa"][1] == pytest.approx(k["median_true_pa"][1], rel=0.05)
    assert k["pearson_r"] > a["pearson_r"] + 0.3
    assert abs(k["cte_percent"][2] - 100) < abs(a["cte_percent"][2] - 100)


def test_bad_input():
    u, _ = _plane(3000.0, 60.0, n=16)
    ex = MREExample.from_numpy(u, 60.0, 1e-3)
    with pytest.raises(MREInputError, match="n_directions"):
        kmdev(ex, n_directions=0)
    with pytest.raises(MREInputError, match="unknown option"):
        kmdev(ex, low_pass=3)
    with pytest.raises(MREInputError, match="highpass"):
        kmdev(ex, highpass=200.0, lowpass=100.0)
    with pytest.raises(MREInputError, match="max_speed"):
        kmdev(ex, max_speed=0.1)  # high-pass at 600 cycles/m, above the low-pass
    with pytest.raises(MREInputError, match="padding"):
        kmdev(ex, padding="wrap")
    with pytest.raises(MREInputError, match="KMDEVOptions"):
        kmdev(ex, {"lowpass": 3})
    with pytest.raises(MREInputError, match="at least 3"):
        kmdev(MREExample.from_numpy(np.ones((2, 8), complex), 60.0, 1e-3))
    with pytest.raises(MREInputError):
        kmdev("not an example")
