"""Joint multi-frequency inversion (``napari_mrepinn.multifreq``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import constant_field
from napari_mrepinn import multifreq, recipe
from napari_mrepinn.config import TrainingConfig
from napari_mrepinn.data import MREExample, MREInputError
from napari_mrepinn.physics import WaveEquation

RHO = 1000.0
FREQS = [40.0, 60.0, 90.0]
F_REF = 60.0
G_REF = 3000.0 * np.exp(1j * 0.2)  # |G*| 3 kPa, phase 0.2 rad (α = 0.127)


def _points(n: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 0.04


def _springpot(g: complex, f: float) -> complex:
    return g * (f / F_REF) ** (2 * np.angle(g) / np.pi)


def _stacked_plane_waves(g_ref: complex):
    """exp(-i k_f x) at every frequency, side by side (the exact homogeneous solutions)."""
    ks = [2 * math.pi * f * np.sqrt(RHO / _springpot(g_ref, f)) for f in FREQS]
    kt = torch.tensor(ks, dtype=torch.complex128)

    def u(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-1j * kt[None, :] * x[:, :1].to(torch.complex128))

    return u


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_springpot_plane_waves_are_exact_solutions(engine):
    base = WaveEquation.from_name("hetero", omega=F_REF, rho=RHO, engine=engine)
    eq = multifreq.JointEquation(base, FREQS, F_REF, None)
    x = _points()
    r = eq.normalized(x, _stacked_plane_waves(G_REF), constant_field(G_REF))
    assert r.shape == (48, len(FREQS))
    assert float(r.detach().abs().max()) < 1e-8
    # the same waves with a frequency-independent modulus (α ignored) do not solve it
    wrong = multifreq.JointEquation(base, FREQS, F_REF, None)
    r2 = wrong.normalized(x, _stacked_plane_waves(abs(G_REF) + 0j), constant_field(G_REF))
    assert float(r2[:, 0].detach().abs().median()) > 1e-2  # 40 Hz: the modulus is 6 % off
    assert float(r2[:, 1].detach().abs().max()) > 1e-3  # 60 Hz: the phase differs


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_springpot_gradient_matches_the_explicit_modulus(engine):
    # a heterogeneous G*_ref(x) with varying magnitude and phase: each frequency's residual
    # must equal the plain equation's with G*(x, f) written out as a function of x
    def g_ref(x):
        xc = x[:, :1].to(torch.complex128)
        mag = 3000.0 * (1 + 10 * xc + 200 * xc**2)
        phase = 0.2 + 8 * x[:, 1:2].to(torch.complex128)
        return mag * torch.exp(1j * phase)

    def g_at(f):
        def mu(x):
            g = g_ref(x)
            return g * torch.exp(2 / math.pi * math.log(f / F_REF) * torch.angle(g))

        return mu

    base = WaveEquation.from_name("hetero", omega=F_REF, rho=RHO, engine=engine)
    eq = multifreq.JointEquation(base, FREQS, F_REF, None)
    u = _stacked_plane_waves(G_REF)
    x = _points(seed=1)
    joint = eq(x, u, g_ref)
    for k, f in enumerate(FREQS):
        single = WaveEquation.from_name("hetero", omega=f, rho=RHO, engine=engine)

        def uk(x, k=k):
            return u(x)[:, k : k + 1]

        expect = single(x, uk, g_at(f))
        assert torch.allclose(joint[:, k : k + 1], expect, rtol=1e-9,
                              atol=1e-9 * single.body_coefficient)


def _multi_example(n: int = 20, n_comp: int = 2) -> MREExample:
    rng = np.random.default_rng(0)
    xs = (np.arange(n) + 0.5) * 1e-3
    xx = np.meshgrid(xs, xs, indexing="ij")[0]
    waves = []
    for f in FREQS:
        k = 2 * np.pi * f * np.sqrt(RHO / _springpot(G_REF, f))
        w = np.exp(-1j * k * xx)[..., None, None] * (1.0 + np.arange(n_comp))  # per component
        waves.append(w * (0.5 if f == 90.0 else 1.0))  # a damped top frequency
    wave = np.stack(waves) + 1e-4 * rng.standard_normal((len(FREQS), n, n, 1, n_comp))
    return MREExample.from_numpy(wave, FREQS, 1e-3, mre=np.full((n, n, 1), G_REF))


def test_stack_and_unstack_round_trip():
    ex = _multi_example()
    view, scales = multifreq.stack_frequencies(ex, 60.0)
    assert view.frequencies.tolist() == [60.0]
    assert list(view.ds["component"].values) == [
        f"{c}@{f:g} Hz" for f in FREQS for c in ex.ds["component"].values]
    # each frequency is standardised by its own RMS in the mask
    w = np.asarray(view.ds["wave"].values)
    for k in range(len(FREQS)):
        assert np.sqrt(np.mean(np.abs(w[..., 2 * k : 2 * k + 2]) ** 2)) == pytest.approx(1.0)
    for k in range(len(FREQS)):  # ... which are returned: the RMS of each frequency's wave
        raw = np.asarray(ex.ds["wave"].isel(frequency=k).values)
        assert scales[k] == pytest.approx(np.sqrt(np.mean(np.abs(raw) ** 2)))
    assert scales[2] < 0.6 * scales[0]  # the damped top frequency
    back = multifreq.unstack_components(view.ds["wave"], ex.frequencies,
                                        multifreq.component_labels(ex), scales)
    np.testing.assert_allclose(back.transpose(*ex.ds["wave"].dims).values,
                               ex.ds["wave"].values, rtol=1e-12)


def test_stack_refuses_a_frequency_without_motion():
    ex = _multi_example()
    ds = ex.ds.copy(deep=True)
    ds["wave"][1] = 0
    with pytest.raises(MREInputError, match="60 Hz is zero"):
        multifreq.stack_frequencies(MREExample(ds), 60.0)


def test_reference_frequency_rule():
    assert multifreq.reference_frequency([50, 60, 70, 80, 90, 100]) == 70.0
    assert multifreq.reference_frequency([30, 60, 120]) == 60.0
    assert multifreq.reference_frequency([30, 60, 120], 45.0) == 45.0
    with pytest.raises(MREInputError, match="positive"):
        multifreq.reference_frequency([30, 60], -1.0)


def test_config_accepts_several_frequencies_and_checks_the_reference():
    multi = _multi_example()
    TrainingConfig().check(multi)
    TrainingConfig(reference_frequency=50.0).check(multi)
    single = multi.select_frequency(60.0)
    with pytest.raises(MREInputError, match="reference_frequency is for joint fits"):
        TrainingConfig(reference_frequency=60.0).check(single)
    with pytest.raises(MREInputError, match="reference_frequency must be > 0"):
        TrainingConfig(reference_frequency=-5.0).check()
    assert TrainingConfig(reference_frequency=None).reference_frequency is None


def test_fit_of_several_frequencies_is_one_joint_model():
    ex = _multi_example()
    model = recipe.build_model(ex, iters=60, pde_warmup_iters=30)
    assert isinstance(model, multifreq.JointFrequencyModel)
    assert model.net.n_components == 2 * len(FREQS)  # the stacked view's components
    heads = model.net.u_pinn
    assert isinstance(heads, multifreq.FrequencyHeads) and len(heads.nets) == len(FREQS)
    # each frequency's network sees the input scaled to its own wavelength
    np.testing.assert_allclose(heads.input_scales.numpy(), np.array(FREQS) / max(FREQS),
                               rtol=0.05)
    out = recipe.fit(ex, iters=60, pde_warmup_iters=30, progress=False, stop_tol=0)
    assert out.ds["wave_pred"].dims == ex.ds["wave"].dims
    assert out.ds["pde_residual"].dims == ex.ds["wave"].dims
    assert out.ds["mu_pred"].dims == ("x", "y", "z")
    assert out.ds["mu_pred"].attrs["frequency"] == 60.0
    assert out.ds["mu_pred_f"].dims == ("frequency", "x", "y", "z")
    # mu_pred_f is the springpot of mu_pred, and α = 2φ/π
    mu = out.ds["mu_pred"].values
    for f in FREQS:
        np.testing.assert_allclose(out.ds["mu_pred_f"].sel(frequency=f).values,
                                   multifreq.springpot_modulus(mu, f, 60.0), rtol=1e-6)
    np.testing.assert_allclose(out.ds["mu_alpha"].values, 2 * np.angle(mu) / np.pi)
    # the ROI table says at which frequency the joint map holds; MDEV compounds them all
    from napari_mrepinn.stats import roi_statistics

    table = roi_statistics(out, np.ones(mu.shape, int), methods=["pinn", "mdev"],
                           readouts=["abs_modulus"])
    assert set(table[table.method == "pinn"].frequency_hz) == {60.0}
    assert table[table.method == "mdev"].frequency_hz.isna().all()
    settings = json.loads(out.ds.attrs["mrepinn_settings_json"])
    assert settings["frequencies_hz"] == FREQS
    assert settings["reference_frequency_hz"] == 60.0
    assert settings["frequency_model"] == "springpot"
    # the wave prediction is in the data's units at every frequency (per-frequency scales)
    for k in range(len(FREQS)):
        pred = np.abs(out.ds["wave_pred"].isel(frequency=k).values).mean()
        data = np.abs(ex.ds["wave"].isel(frequency=k).values).mean()
        assert pred == pytest.approx(data, rel=0.5)


def test_cli_fit_of_a_multi_frequency_file(tmp_path, capsys):
    from napari_mrepinn.cli import main

    path = tmp_path / "multi.nc"
    ex = _multi_example()
    ds = ex.ds.copy()
    ds["mre"] = ds["mre"].expand_dims(frequency=ex.ds["frequency"].values).copy()
    MREExample(ds).save(path)
    out = tmp_path / "fit.nc"
    assert main(["fit", str(path), "-o", str(out), "--iters", "40", "--n-points", "128",
                 "--stop-tol", "0"]) == 0
    printed = capsys.readouterr().out
    assert "one joint fit, mu_pred at the reference frequency 60 Hz" in printed
    assert "mu_pred" in printed and "mu_ahi" in printed  # scored at the reference frequency
    result = MREExample.load(out)
    assert result.ds["mu_pred_f"].dims[0] == "frequency"
    assert recipe.result_config(result).iters == 40
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_frequency_heads_derivatives_match_autograd():
    # the heads' forward Laplacian (fast engine) equals reverse-mode autograd (reference)
    ex = _multi_example(n=12)
    view, _ = multifreq.stack_frequencies(ex, 60.0)
    from napari_mrepinn.networks import MREPINN

    net = MREPINN(view, omega=20.0, n_layers=2, n_hidden=8, mu_prior=G_REF)
    net.use_frequency_heads([f / 90.0 for f in FREQS])
    xy = _points(16).float() + 0.006
    x = torch.cat([xy, torch.full((16, 1), 0.5e-3)], dim=1)  # the example's one slice
    out = {}
    for engine in ("fast", "reference"):
        base = WaveEquation.from_name("hetero", omega=60.0, engine=engine)
        eq = multifreq.JointEquation(base, FREQS, 60.0, ["z", "y"])
        out[engine] = eq.normalized(x, net.wave_field, net.mu_field).detach()
    assert out["fast"].shape == (16, 2 * len(FREQS))
    torch.testing.assert_close(out["fast"], out["reference"], rtol=1e-3, atol=1e-4)


def test_joint_checkpoint_round_trip(tmp_path):
    ex = _multi_example(n=12)
    model = recipe.build_model(ex, iters=20, pde_warmup_iters=10, n_hidden=8, n_layers=2)
    model.train(20)
    path = model.save(tmp_path / "joint.pt")
    again = recipe.build_model(ex, iters=20, pde_warmup_iters=10, n_hidden=8, n_layers=2)
    again.restore(path)
    assert again.iteration == 20
    x = model.x_all[:5]
    torch.testing.assert_close(again.net.wave_std(x), model.net.wave_std(x))
    # a single-frequency model cannot take it
    single = recipe.build_model(ex.select_frequency(60.0), iters=20, n_hidden=8, n_layers=2)
    with pytest.raises(MREInputError):
        single.restore(path)


def test_free_frequency_model_gives_one_map_per_frequency():
    ex = _multi_example(n=12)
    model = recipe.build_model(ex, iters=30, pde_warmup_iters=10, n_hidden=8, n_layers=2,
                               frequency_model="free")
    assert model.net.n_moduli == len(FREQS) and model.pde.model == "free"
    x = model.x_all[:7]
    mu = model.net.mu(x)
    assert mu.shape == (7, len(FREQS))
    # each frequency's residual uses its own modulus column: the plain equation with it
    u = model.net.wave_field
    joint = model.pde(x, u, model.net.mu_field, create_graph=False)
    k = 2
    single = WaveEquation.from_name("hetero", omega=FREQS[k], rho=RHO)

    def uk(xx):
        return u(xx)[:, 2 * k : 2 * k + 2]

    def mk(xx):
        return model.net.mu(xx)[:, k : k + 1]

    torch.testing.assert_close(joint[:, 2 * k : 2 * k + 2], single(x, uk, mk, create_graph=False),
                               rtol=1e-4, atol=1e-3)
    out = recipe.fit(ex, iters=30, pde_warmup_iters=10, n_hidden=8, n_layers=2,
                     frequency_model="free", stop_tol=0, progress=False)
    assert "mu_alpha" not in out.ds  # no springpot, no exponent
    np.testing.assert_allclose(out.ds["mu_pred_f"].sel(frequency=60.0).values,
                               out.ds["mu_pred"].values)
    settings = json.loads(out.ds.attrs["mrepinn_settings_json"])
    assert settings["frequency_model"] == "free"


def test_omega2_weights_scale_each_frequency_of_the_loss():
    base = WaveEquation.from_name("hetero", omega=F_REF, rho=RHO)
    equal = multifreq.JointEquation(base, FREQS, F_REF, ["z", "y"])
    omega2 = multifreq.JointEquation(base, FREQS, F_REF, ["z", "y"], weights="omega2")
    assert equal.frequency_weights() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(omega2.frequency_weights(),
                               [(f / max(FREQS)) ** 2 for f in FREQS])
    x = _points(20)

    def u(xx):  # a wave that solves none of the equations: every block non-zero
        return torch.sin(200 * xx[:, :1]).repeat(1, 2 * len(FREQS)).to(torch.complex128)

    mu = constant_field(G_REF)
    r = equal.normalized(x, u, mu, create_graph=False)
    torch.testing.assert_close(equal.loss_residual(x, u, mu, create_graph=False), r)
    # the shown residual stays each frequency's own; the loss's is weighted per block
    torch.testing.assert_close(omega2.normalized(x, u, mu, create_graph=False), r)
    weighted = omega2.loss_residual(x, u, mu, create_graph=False)
    for k, f in enumerate(FREQS):
        torch.testing.assert_close(weighted[:, 2 * k : 2 * k + 2],
                                   r[:, 2 * k : 2 * k + 2] * (f / max(FREQS)) ** 2)
    with pytest.raises(MREInputError, match="frequency_weights must be one of"):
        multifreq.JointEquation(base, FREQS, F_REF, None, weights="f4")


def test_fit_with_omega2_weights_trains_and_says_so():
    ex = _multi_example(n=12)
    with pytest.raises(MREInputError, match="frequency_weights must be one of equal, omega2"):
        recipe.fit(ex, iters=5, frequency_weights="f4", progress=False)
    out = recipe.fit(ex, iters=20, pde_warmup_iters=5, n_hidden=8, n_layers=2,
                     frequency_weights="omega2", stop_tol=0, progress=False)
    settings = json.loads(out.ds.attrs["mrepinn_settings_json"])
    assert settings["config"]["frequency_weights"] == "omega2"
    np.testing.assert_allclose(settings["frequency_weights"],
                               [(f / max(FREQS)) ** 2 for f in FREQS])
    assert np.isfinite(out.ds["mu_pred"].values).all()
