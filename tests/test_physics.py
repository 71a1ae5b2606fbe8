"""Wave equations and derivative engines (``napari_mrepinn.physics``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import constant_field
from napari_mrepinn.data import MREExample
from napari_mrepinn.derivatives import derivatives
from napari_mrepinn.networks import MREPINN
from napari_mrepinn.physics import WaveEquation

F = 60.0  # Hz
RHO = 1000.0
W = 2 * math.pi * F
G = complex(3000.0, W * 1.0)  # Voigt, η = 1 Pa·s
K = W * np.sqrt(RHO / G)  # complex wavenumber, Im k < 0


def _points(n: int = 64, dims: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, dims, generator=g, dtype=torch.float64) - 0.5) * 0.04


def _plane(k: complex, axis: int = 0, amp: float = 1.0):
    kt = torch.tensor(k, dtype=torch.complex128)

    def u(x: torch.Tensor) -> torch.Tensor:
        return (amp * torch.exp(-1j * kt * x[:, axis].to(torch.complex128)))[:, None]

    return u


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("name", ["helmholtz", "hetero", "general"])
def test_plane_wave_solves_every_equation(engine, name):
    # a homogeneous plane shear wave exp(-ikx) (anti-plane) is an exact solution
    pde = WaveEquation.from_name(name, omega=F, rho=RHO, engine=engine)
    x = _points()
    r = pde(x, _plane(K), constant_field(G))
    ref = pde.body_coefficient
    assert r.shape == (64, 1)
    assert torch.abs(r).max() / ref < 1e-8


def test_omega_is_hertz():
    pde = WaveEquation.from_name("helmholtz", omega=F)
    assert pde.angular_frequency == pytest.approx(2 * math.pi * F)
    assert pde.body_coefficient == pytest.approx(RHO * (2 * math.pi * F) ** 2)


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_hetero_matches_closed_form(engine):
    # u = exp(-ikx), G(x) = G0 (1 + a x): ∇·(G∇u) = -k² G u - i k G0 a u
    a = 20.0
    g0 = torch.tensor(G, dtype=torch.complex128)

    def mu(x):
        return (g0 * (1 + a * x[:, 0].to(torch.complex128)))[:, None]

    x = _points()
    pde = WaveEquation.from_name("hetero", omega=F, engine=engine)
    r = pde(x, _plane(K), mu)
    xc = x[:, 0].to(torch.complex128)
    u = torch.exp(-1j * K * xc)
    expect = -(K**2) * g0 * (1 + a * xc) * u - 1j * K * g0 * a * u + pde.body_coefficient * u
    assert torch.allclose(r[:, 0], expect, rtol=1e-9, atol=1e-6 * pde.body_coefficient)
    # helmholtz ignores the modulus gradient
    h = WaveEquation.from_name("helmholtz", omega=F, engine=engine)(x, _plane(K), mu)
    assert torch.allclose(h[:, 0], expect + 1j * K * g0 * a * u, rtol=1e-9,
                          atol=1e-6 * pde.body_coefficient)


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_general_longitudinal_and_transverse_waves(engine):
    # Navier–Cauchy: a transverse wave travels with k_s = ω√(ρ/G), a longitudinal one with
    # k_p = ω√(ρ/(λ + 2G)); both are exact solutions of the general equation only
    lam = 5.0 * G
    kp = W * np.sqrt(RHO / (lam + 2 * G))
    kpt = torch.tensor(kp, dtype=torch.complex128)

    def longitudinal(x):  # components (x, y): u_x = exp(-i k_p x)
        ux = torch.exp(-1j * kpt * x[:, 0].to(torch.complex128))
        return torch.stack([ux, 0 * ux], 1)

    def transverse(x):  # u_y = exp(-i k_s x)
        uy = _plane(K)(x)[:, 0]
        return torch.stack([0 * uy, uy], 1)

    x = _points()
    pde = WaveEquation.from_name("general", omega=F, engine=engine, lambda_=lam)
    ref = pde.body_coefficient
    for field in (longitudinal, transverse):
        r = pde(x, field, constant_field(G), components=["x", "y"])
        assert torch.abs(r).max() / ref < 1e-8
    # the scalar hetero form does not hold for the longitudinal wave
    het = WaveEquation.from_name("hetero", omega=F, engine=engine)
    assert torch.abs(het(x, longitudinal, constant_field(G))).max() / ref > 0.1


def test_general_scalar_wave_equals_hetero():
    x = _points()
    g0 = torch.tensor(G, dtype=torch.complex128)

    def mu(x):
        return (g0 * (1 + 30 * x[:, 1].to(torch.complex128) ** 2))[:, None]

    a = WaveEquation.from_name("general", omega=F)(x, _plane(K), mu)
    b = WaveEquation.from_name("hetero", omega=F)(x, _plane(K), mu)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-9)


def test_no_z_uses_in_plane_derivatives():
    x = _points(dims=3)
    # a wave along z is invisible to in-plane derivatives: residual = ρω²u
    mu = constant_field(G)
    r_in = WaveEquation.from_name("helmholtz", omega=F, no_z=True)(x, _plane(K, axis=2), mu)
    r_3d = WaveEquation.from_name("helmholtz", omega=F, no_z=False)(x, _plane(K, axis=2), mu)
    u = _plane(K, axis=2)(x)
    assert torch.allclose(r_in, RHO * W**2 * u)
    assert torch.abs(r_3d).max() < 1e-8 * RHO * W**2


def test_from_name_and_engine_errors():
    with pytest.raises(ValueError, match="unknown PDE"):
        WaveEquation.from_name("curl", omega=F)
    with pytest.raises(ValueError, match="engine"):
        WaveEquation.from_name("hetero", omega=F, engine="magic")
    with pytest.raises(ValueError, match="Hz"):
        WaveEquation.from_name("hetero", omega=0)


def _example(n_comp: int, ndim: int = 2) -> MREExample:
    n, h = 12, 1e-3
    ax = np.arange(n) * h
    grids = np.meshgrid(*([ax] * ndim), indexing="ij")
    u = np.exp(-1j * K * grids[0])
    if n_comp:
        u = np.stack([u * c for c in (1.0, 0.5, 0.25)[:n_comp]], -1)
        comps = list("xyz")[:n_comp]
    else:
        comps = None
    return MREExample.from_numpy(u, F, h, spatial_ndim=ndim, components=comps)


@pytest.mark.parametrize(
    ("name", "n_comp", "ndim", "no_z"),
    [
        ("helmholtz", 0, 2, True),
        ("hetero", 0, 2, True),
        ("hetero", 3, 3, True),
        ("hetero", 3, 3, False),
        ("general", 2, 2, True),
        ("general", 3, 3, False),
    ],
)
def test_engines_agree_on_the_networks(name, n_comp, ndim, no_z):
    torch.manual_seed(0)
    net = MREPINN(_example(n_comp, ndim), n_layers=3, n_hidden=16)
    with torch.no_grad():  # move the modulus off its flat start so ∇G* matters
        net.mu_pinn.output.weight.normal_(0, 0.3)
    x = net.center + (torch.rand(50, ndim) - 0.5) * net.extent
    out = {}
    for engine in ("reference", "fast"):
        pde = WaveEquation.from_name(name, omega=F, engine=engine, no_z=no_z, lambda_=1e3)
        loss = (pde.normalized(x, net.wave_field, net.mu_field).abs() ** 2).mean()
        net.zero_grad()
        loss.backward()
        grads = [p.grad.clone() for p in net.mu_pinn.parameters()]
        out[engine] = (loss.item(), grads)
    ref, fast = out["reference"], out["fast"]
    assert fast[0] == pytest.approx(ref[0], rel=1e-5)
    for a, b in zip(ref[1], fast[1], strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(a.abs().max()) + 1e-12)


@pytest.mark.parametrize("detach", [True, False])
def test_detach_trains_only_the_modulus(detach):
    torch.manual_seed(0)
    net = MREPINN(_example(0), n_layers=3, n_hidden=16)
    x = net.center + (torch.rand(20, 2) - 0.5) * net.extent
    for engine in ("fast", "reference"):
        pde = WaveEquation.from_name("hetero", omega=F, detach=detach, engine=engine)
        net.zero_grad(set_to_none=True)
        (pde.normalized(x, net.wave_field, net.mu_field).abs() ** 2).mean().backward()
        u_grads = [p.grad for p in net.u_pinn.parameters()]
        assert all(g is None for g in u_grads) == detach
        assert all(p.grad is not None for p in net.mu_pinn.parameters())


def test_func_derivatives_of_plain_callables():
    # the fast engine differentiates any callable with torch.func
    x = _points(16)
    v, j, h = derivatives(_plane(K, axis=1), x, [0, 1], "hessian")
    u = v[:, 0]
    assert torch.allclose(j[:, 0, 1], -1j * K * u)
    assert torch.allclose(j[:, 0, 0], torch.zeros_like(u))
    assert torch.allclose(h[:, 0, 1, 1], -(K**2) * u)
    _, _, lap = derivatives(_plane(K, axis=1), x, [0, 1], "laplacian", engine="reference")
    assert torch.allclose(lap[:, 0], h[:, 0, 1, 1])
