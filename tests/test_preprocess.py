"""The preparation chain: radians, unwrapping, first harmonic, filters, mask, prepare()."""

import json

import numpy as np
import pytest

from napari_mrepinn import preprocess as pp
from napari_mrepinn.data import MREInputError


def smooth_phase(shape, seed, max_step=0.8 * np.pi, ramp=12.0):
    """A smooth 3-D phase whose neighbour differences stay below ``max_step`` (< π)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    phi = np.zeros(shape)
    for _ in range(4):
        k = rng.uniform(-3, 3, 3)
        phi += rng.uniform(1, 3) * np.sin(2 * np.pi * sum(k[i] * grids[i] for i in range(3))
                                          + rng.uniform(0, 6))
    phi += ramp * (grids[0] + 0.5 * grids[1] + 0.3 * grids[2])
    step = max(np.abs(np.diff(phi, axis=a)).max() for a in range(3) if shape[a] > 1)
    return phi * min(1.0, max_step / step)


# ---------------------------------------------------------------------- radians
def test_phase_to_radians_full_stored_range():
    v = np.array([0, 1024, 2048, 4095])
    rad = pp.phase_to_radians(v, bits_stored=12)
    np.testing.assert_allclose(rad, -np.pi + 2 * np.pi * v / 4096, atol=1e-6)
    # a Siemens-style rescale (slope 2, intercept -4096) maps the same stored values alike
    np.testing.assert_allclose(
        pp.phase_to_radians(v, slope=2, intercept=-4096, bits_stored=12), rad, atol=1e-6
    )
    # override in rescaled units
    np.testing.assert_allclose(
        pp.phase_to_radians(np.array([-3142, 0, 3142]), value_range=(-3142, 3142)),
        [-np.pi, 0, np.pi], atol=1e-6,
    )


def test_phase_to_radians_refuses_values_outside_the_range():
    with pytest.raises(MREInputError, match="phase range"):
        pp.phase_to_radians(np.array([0, 5000]), bits_stored=12)


# ---------------------------------------------------------------------- unwrapping
@pytest.mark.parametrize("method", ["laplacian", "skimage"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unwrap_exact_where_phase_changes_by_less_than_pi(method, seed):
    true = smooth_phase((24, 20, 6), seed)
    wrapped = pp.wrap(true)
    assert pp.count_wraps(wrapped) > 50
    out = pp.unwrap(wrapped, method)
    turns = (out - true) / (2 * np.pi)
    # the same whole number of turns everywhere: exact up to the free constant
    assert np.allclose(turns, np.round(turns.mean()), atol=1e-4)
    assert pp.count_wraps(out) == 0


@pytest.mark.parametrize("method", ["laplacian", "skimage"])
def test_unwrap_one_slice_and_with_mask(method):
    true = smooth_phase((30, 26, 1), 5)
    mask = np.zeros(true.shape, bool)
    mask[3:27, 4:22] = True
    wrapped = pp.wrap(true)
    # random phase outside the mask (air) must not spoil the inside
    wrapped[~mask] = np.random.default_rng(0).uniform(-np.pi, np.pi, (~mask).sum())
    out = pp.unwrap(wrapped, method, mask=mask)
    turns = ((out - true) / (2 * np.pi))[mask]
    assert np.allclose(turns, np.round(turns.mean()), atol=1e-4)


def test_laplacian_result_is_integer_turns_from_the_input_even_with_noise(rng):
    true = smooth_phase((20, 20, 4), 3)
    wrapped = pp.wrap(true + rng.normal(0, 0.5, true.shape))
    out = pp.laplacian_unwrap(wrapped)
    k = (out - wrapped) / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)


def test_align_offsets_removes_per_volume_turns():
    true = np.stack([smooth_phase((16, 12, 3), s) * 0.3 for s in range(4)])
    wrapped = pp.wrap(true)
    shifted = true + 2 * np.pi * np.array([0, 3, -2, 5])[:, None, None, None]
    aligned = pp.align_offsets(shifted, wrapped, axis=0)
    diff = aligned - true
    assert np.allclose(diff, diff.flat[0], atol=1e-4)
    np.testing.assert_allclose(pp.first_harmonic(aligned), pp.first_harmonic(true), atol=1e-4)


def test_unknown_method_is_refused():
    with pytest.raises(MREInputError, match="unwrap method"):
        pp.unwrap(np.zeros((4, 4, 1)), "prelude")


# ---------------------------------------------------------------------- harmonic
@pytest.mark.parametrize("n", [3, 4, 8])
def test_first_harmonic_follows_the_library_sign_convention(n):
    # a real wave travelling to +x: cos(ωt − kx). With u = Re{U e^{+iωt}} it is U = e^{−ikx}
    # (CONTRIBUTING.md), whatever the number of offsets
    x = np.linspace(0, 0.05, 30)[:, None, None]
    k, amp = 2 * np.pi / 0.02, 1.7
    phase = np.stack([amp * np.cos(2 * np.pi * i / n - k * x) for i in range(n)])
    u = pp.first_harmonic(phase)
    np.testing.assert_allclose(u, amp * np.exp(-1j * k * x), atol=1e-5)


def test_first_harmonic_needs_three_evenly_spaced_offsets():
    with pytest.raises(MREInputError, match="at least 3"):
        pp.first_harmonic(np.zeros((2, 4, 4, 1)))
    with pytest.raises(MREInputError, match="evenly spaced"):
        pp.first_harmonic(np.zeros((4, 4, 4, 1)), times=[0, 1, 2, 4])


# ---------------------------------------------------------------------- filters
def test_bandpass_keeps_low_and_removes_high_wavenumbers():
    h = 1e-3
    x = np.arange(64)[:, None, None] * h
    # periodic on the 64 mm grid: 2 and 16 cycles
    low = np.exp(2j * np.pi * 31.25 * x) * np.ones((64, 8, 1))  # 31.25 cycles/m
    high = np.exp(2j * np.pi * 250 * x) * np.ones((64, 8, 1))  # 250 cycles/m
    out = pp.bandpass(low + high, (h, h, h), high=100.0, order=4)
    assert np.abs(out - low).max() < 0.01
    # the high-pass side
    out = pp.bandpass(low + high, (h, h, h), low=100.0, high=None, order=4)
    assert np.abs(out - high).max() < 0.01


def test_remove_divergence_removes_longitudinal_keeps_transverse():
    n, h = 16, 1e-3
    xx = np.meshgrid(*[np.arange(n) * h] * 3, indexing="ij")[0]
    phase = np.exp(2j * np.pi * 2 * xx / (n * h))  # periodic plane wave along x
    zeros = np.zeros_like(phase)
    longitudinal = np.stack([phase, zeros, zeros], -1)  # components x, y, z
    transverse = np.stack([zeros, phase, zeros], -1)
    out = pp.remove_divergence(longitudinal + transverse, (h, h, h), ["x", "y", "z"])
    np.testing.assert_allclose(out, transverse, atol=1e-10)
    with pytest.raises(MREInputError, match="x, y and z"):
        pp.remove_divergence(transverse[..., :2], (h, h, h), ["x", "y"])


def test_smooth_is_complex_gaussian():
    w = np.zeros((9, 9, 1), complex)
    w[4, 4, 0] = 1 + 1j
    out = pp.smooth(w, 1.0)
    assert out.real.sum() == pytest.approx(1.0) and out.imag.sum() == pytest.approx(1.0)
    assert out[4, 4, 0].real < 0.5


def test_the_two_smooth_functions_point_to_each_other():
    # two public functions share the name: each must tell a newcomer which one to use
    from napari_mrepinn import baselines, finite_differences, wave_filters

    assert pp.smooth is wave_filters.smooth and baselines.smooth is finite_differences.smooth
    assert pp.smooth is not baselines.smooth
    assert "napari_mrepinn.baselines.smooth" in pp.smooth.__doc__
    assert "napari_mrepinn.preprocess.smooth" in baselines.smooth.__doc__


def test_magnitude_mask_threshold():
    mag = np.zeros((20, 20, 2))
    mag[5:15, 5:15] = 100.0
    mag[9, 9] = 0.0  # a dark vessel inside is kept (holes are filled)
    m = pp.magnitude_mask(mag, 0.1)
    assert m.sum() == 200


# ---------------------------------------------------------------------- prepare
def test_prepare_records_every_step_and_recovers_the_wave():
    rng = np.random.default_rng(0)
    nx, ny, nz, n = 20, 16, 3, 8
    # steps between neighbours: wave < 1.5·0.2π, background < 0.4π; together < π
    true = np.stack([1.5 * np.exp(1j * smooth_phase((nx, ny, nz), s, 0.2 * np.pi, ramp=0))
                     for s in (1, 2)], axis=0)  # (direction, x, y, z)
    bg = smooth_phase((nx, ny, nz), 9, 0.4 * np.pi, ramp=20)
    t = np.arange(n) / n
    phase = pp.wrap(np.real(true[:, None] * np.exp(2j * np.pi * t)[None, :, None, None, None])
                    + bg)
    mag = np.ones((nx, ny, nz)) + rng.uniform(0, 0.1, (nx, ny, nz))
    ex = pp.prepare(phase, frequency=60, directions=["z", "x"], spacing=1e-3, magnitude=mag,
                    smoothing=None)
    got = np.moveaxis(ex.wave.values, -1, 0)
    np.testing.assert_allclose(got, true, atol=1e-4)
    steps = json.loads(ex.ds.attrs["preprocessing_json"])
    assert [s["step"] for s in steps] == ["mask", "unwrap", "first_harmonic"]
    assert steps[1]["wraps_found"] > 0 and steps[1]["wraps_left"] == 0
    assert list(ex.ds["component"].values) == ["z", "x"]
    assert "anat" in ex and "mre_mask" in ex
    # backwards offsets conjugate the wave
    rev = pp.prepare(phase, frequency=60, directions=["z", "x"], spacing=1e-3,
                     reverse_offsets=True)
    np.testing.assert_allclose(np.moveaxis(rev.wave.values, -1, 0), np.conj(true), atol=1e-4)


def test_prepare_refuses_stored_values_and_bad_directions():
    with pytest.raises(MREInputError, match="not radians"):
        pp.prepare(np.full((1, 4, 4, 4, 1), 2000.0), frequency=60, directions=["x"],
                   spacing=1e-3)
    with pytest.raises(MREInputError, match="distinct labels"):
        pp.prepare(np.zeros((2, 4, 4, 4, 1)), frequency=60, directions=["x", "x"], spacing=1e-3)
