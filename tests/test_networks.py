"""The PINN networks (``napari_mrepinn.networks``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from napari_mrepinn.data import MREExample, MREInputError
from napari_mrepinn.networks import (
    MREPINN,
    PINN,
    estimate_modulus_prior,
    resolve_modulus_prior,
)

F = 60.0
G = complex(3000.0, 2 * math.pi * F)  # Voigt 3 kPa, η = 1 Pa·s
K = 2 * math.pi * F * np.sqrt(1000 / G)


def _plane_example(n: int = 24, h: float = 1e-3, **kw) -> MREExample:
    ax = np.arange(n) * h
    xx, _ = np.meshgrid(ax, ax, indexing="ij")
    u = np.exp(-1j * K * xx)
    return MREExample.from_numpy(u, F, h, **kw)


def _autograd_derivs(f, x, k):
    x = x.clone().requires_grad_(True)
    y = f(x)
    jac, hess = [], []
    for p in range(y.shape[1]):
        g = torch.autograd.grad(y[:, p].sum(), x, create_graph=True)[0][:, :k]
        rows = [torch.autograd.grad(g[:, a].sum(), x, retain_graph=True)[0][:, :k]
                for a in range(k)]
        jac.append(g)
        hess.append(torch.stack(rows, 1))
    return y, torch.stack(jac, 1), torch.stack(hess, 1)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(dense=False),
        dict(activ="tanh"),
        dict(activ="gelu", n_layers=3),
        dict(polar_input=True),
    ],
)
def test_taylor_matches_autograd(kw):
    torch.manual_seed(0)
    net = PINN(3, 2, n_hidden=16, **kw).double()
    x = torch.randn(20, 3, dtype=torch.float64) * 3
    dx = torch.eye(3, dtype=torch.float64)[:, :2] * torch.tensor([2.0, 0.5], dtype=torch.float64)
    # chain rule: the physical coordinates t map to inputs x = x0 + dx t

    def f(t):
        return net.raw(x + t @ dx.T)

    y, jac, hess = _autograd_derivs(f, torch.zeros(20, 2, dtype=torch.float64), 2)
    # with grad mode on (autograd streams) and off (the buffered streams)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            v, j, lap = net.taylor(x, dx, "laplacian")
            _, j2, h = net.taylor(x, dx, "hessian")
            v3, j3, none = net.taylor(x, dx, None)
        assert none is None
        assert torch.allclose(v, y.detach(), atol=1e-10)
        assert torch.allclose(v3, y.detach(), atol=1e-10)
        for jj in (j, j2, j3):
            assert torch.allclose(jj, jac.detach(), atol=1e-9)
        assert torch.allclose(h, hess.detach(), atol=1e-8)
        lap_true = torch.diagonal(hess, dim1=-2, dim2=-1).sum(-1).detach()
        assert torch.allclose(lap, lap_true, atol=1e-8)


@pytest.mark.parametrize(
    "kw", [dict(), dict(dense=False), dict(activ="tanh"), dict(activ="gelu", n_layers=3)]
)
@pytest.mark.parametrize(
    ("order", "derivative_graph"), [(None, True), ("laplacian", False), ("hessian", False)]
)
def test_hand_written_backward_matches_autograd(kw, order, derivative_graph):
    # the buffered streams back-propagate by hand (value only, or value and first
    # derivatives); their parameter gradients must equal autograd's through the same streams
    from napari_mrepinn._taylor import taylor_autograd

    torch.manual_seed(1)
    net = PINN(3, 4, n_hidden=16, **kw).double()
    x = torch.randn(30, 3, dtype=torch.float64) * 3
    dx = torch.eye(3, dtype=torch.float64)[:, :2] * torch.tensor([2.0, 0.5], dtype=torch.float64)
    wv = torch.randn(30, 4, dtype=torch.float64)
    wj = torch.randn(30, 4, 2, dtype=torch.float64)

    def loss(v, j):
        out = (wv * v).sum() + (v**2).sum()
        return out + ((wj * j).sum() + (j**2).sum() if derivative_graph else 0)

    grads = {}
    for name in ("hand", "autograd"):
        net.zero_grad(set_to_none=True)
        if name == "hand":
            v, j, sec = net.taylor(x, dx, order, derivative_graph=derivative_graph)
            assert j.requires_grad == derivative_graph
            assert sec is None or not sec.requires_grad
        else:
            v, j, _ = taylor_autograd(net, x, dx, order)
        loss(v, j).backward()
        grads[name] = [p.grad.clone() for p in net.parameters()]
    for a, b in zip(grads["autograd"], grads["hand"], strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)



def _nested_laplacian(net, x, dx):
    """Value, Jacobian and Laplacian of ``net.raw`` in the coordinates ``t`` (``x + t dx^T``) by
    nested reverse-mode autograd, every pass with a graph to the parameters."""
    t = torch.zeros(x.shape[0], dx.shape[1], dtype=x.dtype, requires_grad=True)
    y = net.raw(x + t @ dx.T)
    jac, lap = [], []
    for p in range(y.shape[1]):
        g = torch.autograd.grad(y[:, p].sum(), t, create_graph=True)[0]
        lap.append(sum(torch.autograd.grad(g[:, a].sum(), t, create_graph=True)[0][:, a]
                       for a in range(dx.shape[1])))
        jac.append(g)
    return y, torch.stack(jac, 1), torch.stack(lap, 1)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(dense=False), dict(activ="tanh"), dict(activ="gelu", n_layers=3),
     dict(activ="softplus", dense=False)],
)
@pytest.mark.parametrize("k", [2, 3])
def test_hand_written_backward_through_the_laplacian(kw, k, monkeypatch):
    # the PDE trains the wave through its value, Jacobian and Laplacian: the buffered streams
    # back-propagate by hand through all of them, and their parameter gradients must equal
    # autograd's through the same streams and nested reverse-mode autograd's
    from napari_mrepinn import _taylor

    torch.manual_seed(2)
    net = PINN(3, 4, n_hidden=16, **kw).double()
    x = torch.randn(30, 3, dtype=torch.float64) * 3
    dx = torch.randn(3, k, dtype=torch.float64)
    wv = torch.randn(30, 4, dtype=torch.float64)
    wj = torch.randn(30, 4, k, dtype=torch.float64)
    wl = torch.randn(30, 4, dtype=torch.float64)

    def loss(v, j, lap):
        return (wv * v).sum() + (wj * j).sum() + (wl * lap).sum() + (j**2).sum() + (lap**2).sum()

    autograd_streams = _taylor.taylor_autograd
    engines = {
        "hand": lambda: net.taylor(x, dx, "laplacian", derivative_graph=True),
        "autograd": lambda: autograd_streams(net, x, dx, "laplacian"),
        "nested": lambda: _nested_laplacian(net, x, dx),
    }
    grads, outs = {}, {}
    for name, engine in engines.items():
        net.zero_grad(set_to_none=True)
        with monkeypatch.context() as m:
            if name == "hand":  # taylor() must dispatch to the hand-written backward
                def refuse(*args, **kwargs):
                    raise AssertionError("taylor() fell back to taylor_autograd")

                m.setattr(_taylor, "taylor_autograd", refuse)
            v, j, lap = engine()
        assert v.requires_grad and j.requires_grad and lap.requires_grad
        outs[name] = [t.detach() for t in (v, j, lap)]
        loss(v, j, lap).backward()
        grads[name] = [p.grad.clone() for p in net.parameters()]
    for name in ("autograd", "nested"):
        for a, b in zip(outs[name], outs["hand"], strict=True):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)
        for a, b in zip(grads[name], grads["hand"], strict=True):
            assert float((a - b).abs().max()) <= 1e-10 * float(a.abs().max())


def test_pinn_outputs_and_init():
    torch.manual_seed(0)
    net = PINN(2, 3, n_layers=5, n_hidden=32, complex_output=True)
    assert net.hidden[0].in_features == 2
    assert [lin.in_features for lin in net.hidden] == [2, 34, 66, 98]
    assert net.output.in_features == 130 and net.output.out_features == 6
    assert float(net.hidden[0].weight.detach().abs().max()) <= 1 / 2
    y = net(torch.randn(7, 2))
    assert y.shape == (7, 3) and y.is_complex()
    polar = PINN(2, 1, complex_output=True, polar_output=True, n_hidden=8)
    raw = polar.raw(torch.zeros(1, 2))
    assert torch.allclose(polar(torch.zeros(1, 2)).abs(), raw[:, 0].abs())
    zero = PINN(2, 2, zero_output=True, n_hidden=8)
    assert torch.all(zero(torch.randn(5, 2)) == 0)
    with pytest.raises(ValueError, match="activation"):
        PINN(2, 1, activ="bogus")


def test_modulus_is_physical_for_any_weights():
    torch.manual_seed(1)
    net = MREPINN(_plane_example(), n_layers=3, n_hidden=16, mu_prior=3000.0)
    with torch.no_grad():
        for p in net.mu_pinn.parameters():
            p.normal_(0, 5.0)  # wild weights
    x = net.center + (torch.rand(500, 2) - 0.5) * net.extent
    mu = net.mu(x)
    assert mu.shape == (500, 1) and mu.is_complex()
    assert torch.all(mu.real > 0)  # G' > 0
    assert torch.all(mu.imag >= 0)  # G'' >= 0
    assert torch.all(mu.abs() <= 3000 * 100 * 1.001)
    assert torch.all(mu.abs() >= 3000 / 100 / 1.001)


def test_modulus_starts_at_the_prior_and_ignores_the_truth():
    ex = _plane_example()
    g0 = 2500 * np.exp(0.2j)
    net = MREPINN(ex, mu_prior=g0, n_hidden=16)
    x = net.center + (torch.rand(10, 2) - 0.5) * net.extent
    assert torch.allclose(net.mu(x), torch.tensor(g0, dtype=torch.complex64), rtol=1e-5)
    # the ground truth never enters the model: absurd values give the same network
    shape = ex.spatial_shape
    truth = _plane_example(mre=np.full(shape, 1e9 + 0j))
    torch.manual_seed(0)
    a = MREPINN(ex, n_hidden=16)
    torch.manual_seed(0)
    b = MREPINN(truth, n_hidden=16)
    assert a.mu_prior == b.mu_prior
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_default_prior_is_physical():
    # least-squares homogeneous Helmholtz estimate on a clean plane wave: close to G
    g = estimate_modulus_prior(_plane_example(n=32))
    assert abs(g) == pytest.approx(abs(G), rel=0.1)
    assert g.real > 0 and g.imag >= 0


def test_prior_forms():
    ex = _plane_example()
    assert abs(resolve_modulus_prior(ex, 4000.0)) == pytest.approx(4000.0)
    assert resolve_modulus_prior(ex, 4000 + 400j) == pytest.approx(4000 + 400j, rel=1e-6)
    assert abs(resolve_modulus_prior(ex, (1000.0, 9000.0))) == pytest.approx(3000.0)
    ahi = np.full(ex.spatial_shape, 5000 + 500j)
    ahi[0, 0] = -1e6  # an outlier with negative storage modulus is ignored
    da = xr.DataArray(ahi, dims=("x", "y"))
    assert resolve_modulus_prior(ex, da) == pytest.approx(5000 + 500j, rel=1e-6)
    with pytest.raises(MREInputError):
        resolve_modulus_prior(ex, -5.0)
    with pytest.raises(MREInputError):
        resolve_modulus_prior(ex, (5.0, 1.0))


def test_wave_scaling_and_input_normalisation():
    ex = _plane_example(n=20, h=2e-3, origin=0.01)
    net = MREPINN(ex, omega=30, n_hidden=8)
    x = torch.tensor(ex.ds["x"].values, dtype=torch.float32)
    assert float(net.center[0]) == pytest.approx(0.01 + 19e-3)
    assert float(net.extent[0]) == pytest.approx(40e-3)
    pts = torch.stack([x, x], 1)
    z = net.normalize_input(pts)
    assert float(z.abs().max()) <= 15.0 + 1e-4
    u_rms = float(np.sqrt(np.mean(np.abs(ex.wave.values) ** 2)))
    assert float(net.u_scale) == pytest.approx(u_rms)
    assert torch.allclose(net.u(pts), net.wave_std(pts) * u_rms)


def test_components_and_anatomy():
    n = 10
    u = np.ones((n, n, 2), complex)
    anat = np.random.default_rng(0).normal(size=(n, n, 3))
    ex = MREExample.from_numpy(u, F, 1e-3, anat=anat, spatial_ndim=2, components=["y", "x"])
    net = MREPINN(ex, n_hidden=8)
    x = torch.zeros(4, 2)
    u_, mu_, a_ = net(x)
    assert u_.shape == (4, 2) and mu_.shape == (4, 1) and a_.shape == (4, 3)
    assert net.wave_field.components == ["y", "x"]


def test_multifrequency_is_refused():
    u = np.ones((2, 8, 8), complex)
    ex = MREExample.from_numpy(u, [50.0, 60.0], 1e-3)
    with pytest.raises(MREInputError, match="select"):
        MREPINN(ex)
