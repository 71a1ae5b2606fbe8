"""Forward propagation of spatial derivatives through the coordinate MLPs ("Taylor mode").

The networks of :mod:`napari_mrepinn.networks` see an affine map of the physical coordinates
``t`` (metres): ``x = x0 + J t`` with a constant ``J``. For a layer ``z = W h + b`` followed by
``a = σ(z)``, the derivatives of the activations follow from those of the layer before::

    ∂_k z = W ∂_k h                 ∂_k a = σ'(z) ∂_k z
    Δz    = W Δh                    Δa    = σ'(z) Δz + σ''(z) Σ_k (∂_k z)²
    ∂²z   = W ∂²h                   ∂_k∂_l a = σ'(z) ∂_k∂_l z + σ''(z) ∂_k z ∂_l z

so the value, the K first derivatives and the Laplacian (one stream) or the Hessian (K² streams)
travel through the network together, stacked along one axis, and each layer costs one matrix
product for all of them ("forward Laplacian"). This replaces the nested reverse-mode passes of
the published method (one per output and axis) by a single forward pass.

Two implementations compute the same numbers:

:func:`stream_forward`
    Writes every layer's streams into one preallocated buffer (the dense connectivity then costs
    no concatenation) and, wrapped in :class:`_StreamFunction`, back-propagates by hand through
    the *value* stream, through the value and first-derivative streams, or through the value,
    first-derivative and Laplacian streams, the three cases training needs: the detached wave
    (the PDE treats its derivatives as data, only the data loss trains the wave network), the
    modulus gradient ``∇G*`` of ``hetero`` and ``general``, and the wave trained by the PDE
    through its value, Jacobian and Laplacian (``pde_trains_wave``).
:func:`taylor_autograd`
    Plain tensor operations that autograd differentiates through every stream, for the rarer
    cases of a graph through the Hessian streams or through the inputs.

:func:`taylor` picks between them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["ACTIVATIONS", "activation_name", "stream_forward", "taylor", "taylor_autograd"]


# ---------------------------------------------------------------------------- activations
# Each returns (σ, σ', σ'') and, with ``third=True``, σ''' as well: only the hand-written
# backward through the Laplacian stream needs it, so the other paths keep their memory.
def _sin(z: torch.Tensor, third: bool = False):
    s, c = torch.sin(z), torch.cos(z)
    return (s, c, -s, -c) if third else (s, c, -s)


def _tanh(z: torch.Tensor, third: bool = False):
    t = torch.tanh(z)
    d = 1 - t * t
    f = (t, d, -2 * t * d)
    return (*f, -2 * d * (1 - 3 * t * t)) if third else f


def _gelu(z: torch.Tensor, third: bool = False):
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    f = (z * cdf, cdf + z * pdf, pdf * (2 - z * z))
    return (*f, pdf * z * (z * z - 4)) if third else f


def _softplus(z: torch.Tensor, third: bool = False):
    sig = torch.sigmoid(z)
    f2 = sig * (1 - sig)
    f = (nn.functional.softplus(z), sig, f2)
    return (*f, f2 * (1 - 2 * sig)) if third else f


#: value, first and second (optionally third) derivative of each activation
ACTIVATIONS = {"sin": _sin, "tanh": _tanh, "gelu": _gelu, "softplus": _softplus}
_ALIASES = {"s": "sin", "t": "tanh", "g": "gelu", "sine": "sin"}


def activation_name(name: str) -> str:
    """Canonical name of an activation (``"sin"``, ``"tanh"``, ``"gelu"``, ``"softplus"``)."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return key


def _layer_activation(net: Any, i: int):
    # the first hidden layer is always a sine (SIREN); the others use the chosen activation
    return _sin if i == 0 else ACTIVATIONS[net.activ]


def _n_second(order: str | None, k: int) -> int:
    return {None: 0, "laplacian": 1, "hessian": k * k}[order]


def _split_outputs(out: torch.Tensor, bias: torch.Tensor, k: int, order: str | None):
    """(N, S, P) output streams -> value (N, P), jac (N, P, K), second or None."""
    n = out.shape[0]
    value = out[:, 0] + bias
    jac = out[:, 1 : 1 + k].transpose(1, 2)
    sec = None
    if order == "laplacian":
        sec = out[:, 1 + k]
    elif order == "hessian":
        sec = out[:, 1 + k :].reshape(n, k, k, -1).permute(0, 3, 1, 2)
    return value, jac, sec


def _activate(
    net: Any, i: int, z: torch.Tensor, bias: torch.Tensor, k: int, order: str | None,
    out: torch.Tensor, third: bool = False,
):
    """Write the streams of ``a = σ(z + b)`` into ``out`` (N, S, H), from the streams ``z``
    (N, S, H) of hidden layer ``i``; return ``(σ', σ'', ∂z)`` for the backward pass, and with
    ``third`` (Laplacian order only) ``(σ', σ'', ∂z, σ''', Δz)``."""
    n = z.shape[0]
    if third:
        f0, f1, f2, f3 = _layer_activation(net, i)(z[:, 0] + bias, third=True)
    else:
        f0, f1, f2 = _layer_activation(net, i)(z[:, 0] + bias)
    jz = z[:, 1 : 1 + k]  # (N, K, H)
    out[:, 0] = f0
    out[:, 1 : 1 + k] = f1[:, None] * jz
    if order == "laplacian":
        out[:, 1 + k] = f1 * z[:, 1 + k] + f2 * (jz * jz).sum(1)
    elif order == "hessian":
        hz = z[:, 1 + k :].reshape(n, k, k, -1)
        sec = f1[:, None, None] * hz + f2[:, None, None] * jz[:, :, None] * jz[:, None]
        out[:, 1 + k :] = sec.reshape(n, k * k, -1)
    if third:
        return f1, f2, jz, f3, z[:, 1 + k]
    return f1, f2, jz


# ---------------------------------------------------------------------------- buffered streams
def _bounds(net: Any) -> list[int]:
    """Column bounds of the blocks of the stream buffer: block 0 holds the input features,
    block ``b >= 1`` the activations of hidden layer ``b - 1``."""
    bounds = [0, net.n_features]
    for lin in net.hidden:
        bounds.append(bounds[-1] + lin.out_features)
    return bounds


def _reads(net: Any, i: int) -> list[int]:
    """Blocks read by linear layer ``i`` (the hidden layers, then the output layer)."""
    return list(range(i + 1)) if net.dense else [i]


def stream_forward(
    net: Any,
    params: list[torch.Tensor],
    x: torch.Tensor,
    dx: torch.Tensor,
    order: str | None,
    save: bool = False,
    third: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, Any] | None]:
    """Value and derivative streams of a :class:`~napari_mrepinn.networks.PINN`, no graph.

    Parameters
    ----------
    net : PINN
        The network (its layout: ``hidden``, ``output``, ``dense``, ``activ``).
    params : list of Tensor
        ``[W_0, b_0, W_1, b_1, ..., W_out, b_out]`` (the network's own parameters).
    x : Tensor, (N, n_features)
        Network inputs.
    dx : Tensor, (n_features, K)
        Constant Jacobian of the inputs with respect to the K differentiated coordinates.
    order : {"laplacian", "hessian", None}
    save : bool
        Also return what :func:`stream_backward` needs.
    third : bool
        With ``save`` and ``order="laplacian"``: also keep the third derivative of the
        activations, which a backward pass through the Laplacian stream needs.

    Returns
    -------
    value (N, P), jac (N, P, K), second (N, P) / (N, P, K, K) / None, saved (or None)
    """
    n, k = x.shape[0], dx.shape[1]
    n_streams = 1 + k + _n_second(order, k)
    bounds = _bounds(net)
    n_feat = bounds[1]
    buf = x.new_empty(n, n_streams, bounds[-1])
    buf[:, 0, :n_feat] = x
    buf[:, 1 : 1 + k, :n_feat] = dx.T.to(x.dtype)
    buf[:, 1 + k :, :n_feat] = 0  # the inputs are affine in the coordinates
    flat = buf.view(n * n_streams, bounds[-1])
    per_layer = []
    for i in range(len(net.hidden)):
        w, b = params[2 * i], params[2 * i + 1]
        blocks = _reads(net, i)
        lo, hi = bounds[blocks[0]], bounds[blocks[-1] + 1]
        z = (flat[:, lo:hi] @ w.T).view(n, n_streams, -1)
        a = buf[:, :, bounds[i + 1] : bounds[i + 2]]  # this layer's block, written in place
        derivs = _activate(net, i, z, b, k, order, out=a, third=third)
        if save:
            per_layer.append(derivs)
    w, b = params[-2], params[-1]
    blocks = _reads(net, len(net.hidden))
    lo, hi = bounds[blocks[0]], bounds[blocks[-1] + 1]
    out = (flat[:, lo:hi] @ w.T).view(n, n_streams, -1)
    value, jac, sec = _split_outputs(out, b, k, order)
    saved = dict(buf=buf, per_layer=per_layer, bounds=bounds, third=third) if save else None
    return value, jac, sec, saved


def stream_backward(
    net: Any,
    params: list[torch.Tensor],
    saved: dict[str, Any],
    g_value: torch.Tensor | None,
    g_jac: torch.Tensor | None,
    n_grad: int,
    g_sec: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Parameter gradients of a loss through the first ``n_grad`` streams.

    ``n_grad = 1``: through the value only; ``n_grad = 1 + K``: through the value and the first
    derivatives (the forward pass must then have had ``order=None``); ``n_grad = 1 + K + 1``:
    through the value, the first derivatives and the Laplacian (the forward pass must then have
    had ``order="laplacian"`` and ``third=True``; ``g_sec`` is read only then).

    Through ``a = σ(z)``, the gradients ``(Ga, Gj_k, GL)`` of the value, first-derivative and
    Laplacian streams of ``a`` give those of the streams of ``z``::

        Gz     = Ga σ' + σ'' Σ_k Gj_k ∂_k z + GL (σ'' Δz + σ''' Σ_k (∂_k z)²)
        G∂_k z = Gj_k σ' + 2 GL σ'' ∂_k z
        GΔz    = GL σ'

    The linear layers apply one matrix to every stream, so their weight gradients sum over all
    the streams; the biases shift the value only.

    Returns
    -------
    list of Tensor
        Gradients in the order of ``params``.
    """
    buf, per_layer, bounds = saved["buf"], saved["per_layer"], saved["bounds"]
    n, n_streams, width = buf.shape
    # lap: the Laplacian stream carries gradient too (value, K first derivatives, Laplacian)
    lap = bool(saved.get("third")) and n_grad == n_streams
    k = n_streams - 2 if lap else (n_streams - 1 if n_grad > 1 else 0)
    # rows of the buffer that carry gradient, as one (N·n_grad, width) matrix
    src = buf.view(n * n_streams, width) if n_grad == n_streams else buf[:, 0]
    n_out = params[-1].shape[0]
    g_out = buf.new_zeros(n, n_grad, n_out)
    if g_value is not None:
        g_out[:, 0] = g_value
    if n_grad > 1 and g_jac is not None:
        g_out[:, 1 : 1 + k] = g_jac.transpose(1, 2)
    if lap and g_sec is not None:
        g_out[:, 1 + k] = g_sec
    n_layers = len(net.hidden) + 1
    gz: dict[int, torch.Tensor] = {n_layers - 1: g_out.view(n * n_grad, n_out)}
    grads: list[torch.Tensor] = [torch.empty(0)] * len(params)
    for i in range(n_layers - 1, -1, -1):
        if i < n_layers - 1:
            # gradient of the activations of hidden layer i (block i + 1), summed over the
            # later layers that read it
            ga = None
            for layer in range(i + 1, n_layers):
                blocks = _reads(net, layer)
                if i + 1 not in blocks:
                    continue
                col = bounds[i + 1] - bounds[blocks[0]]
                w_block = params[2 * layer][:, col : col + bounds[i + 2] - bounds[i + 1]]
                ga = gz[layer] @ w_block if ga is None else ga.addmm_(gz[layer], w_block)
            assert ga is not None
            ga = ga.view(n, n_grad, -1)
            f1, f2, jz = per_layer[i][:3]
            if n_grad == 1:
                g = ga[:, 0] * f1
            elif lap:
                f3, lz = per_layer[i][3:]
                gj, gl = ga[:, 1 : 1 + k], ga[:, 1 + k]
                f2_gl = f2 * gl
                g = torch.empty_like(ga)
                g0 = (gj * jz).sum(1).mul_(f2)  # σ'' Σ_k Gj_k ∂_k z first: it reads gj
                g0.addcmul_(ga[:, 0], f1).addcmul_(f2_gl, lz)
                g0.addcmul_(gl * f3, (jz * jz).sum(1))
                torch.mul(gj, f1[:, None], out=g[:, 1 : 1 + k])
                g[:, 1 : 1 + k].addcmul_(f2_gl[:, None], jz, value=2)
                torch.mul(gl, f1, out=g[:, 1 + k])
                g[:, 0] = g0
            else:
                g = torch.empty_like(ga)
                torch.mul(ga[:, 1:], f1[:, None], out=g[:, 1:])
                g[:, 0] = ga[:, 0] * f1 + f2 * (ga[:, 1:] * jz[:, :k]).sum(1)
            gz[i] = g.reshape(n * n_grad, -1)
        blocks = _reads(net, i)
        lo, hi = bounds[blocks[0]], bounds[blocks[-1] + 1]
        grads[2 * i] = gz[i].T @ src[:, lo:hi]
        grads[2 * i + 1] = gz[i].view(n, n_grad, -1)[:, 0].sum(0)  # the bias shifts the value only
    return grads


class _StreamFunction(torch.autograd.Function):
    """Buffered streams with a hand-written backward through the first ``n_grad`` streams:
    1, ``1 + K`` (``order=None``) or ``1 + K + 1`` (``order="laplacian"``)."""

    @staticmethod
    def forward(ctx, net, x, dx, order, n_grad, *params):
        # a gradient through the Laplacian stream needs σ''' in the backward pass
        third = order == "laplacian" and n_grad == 2 + dx.shape[1]
        value, jac, sec, saved = stream_forward(
            net, list(params), x, dx, order, save=True, third=third
        )
        ctx.net, ctx.saved, ctx.n_grad = net, saved, n_grad
        ctx.save_for_backward(*params)
        # outputs must not be views of one another for autograd to track them separately
        jac = jac.contiguous()
        sec = sec.contiguous() if sec is not None else x.new_empty(0)
        # one call: each call replaces the previous set
        if n_grad == 1:
            ctx.mark_non_differentiable(jac, sec)
        elif not third:
            ctx.mark_non_differentiable(sec)
        return value, jac, sec

    @staticmethod
    @once_differentiable  # a graph through these gradients would need higher derivatives
    def backward(ctx, g_value, g_jac, g_sec):
        params = list(ctx.saved_tensors)
        grads = stream_backward(
            ctx.net, params, ctx.saved, g_value, g_jac, ctx.n_grad, g_sec=g_sec
        )
        ctx.saved = None  # free the buffer now rather than with the graph
        return (None, None, None, None, None, *grads)


# ---------------------------------------------------------------------------- autograd streams
def taylor_autograd(
    net: Any, x: torch.Tensor, dx: torch.Tensor, order: str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The same streams with ordinary tensor operations, differentiable through all of them."""
    n, k = x.shape[0], dx.shape[1]
    n_sec = _n_second(order, k)
    s = torch.zeros(n, 1 + k + n_sec, x.shape[1], dtype=x.dtype, device=x.device)
    s[:, 0] = x
    s[:, 1 : 1 + k] = dx.T.to(x.dtype)
    for i, lin in enumerate(net.hidden):
        z = s @ lin.weight.T
        a = z.new_empty(z.shape)  # filled in place: autograd tracks the slice writes
        _activate(net, i, z, lin.bias, k, order, out=a)
        s = torch.cat([s, a], dim=2) if net.dense else a
    return _split_outputs(s @ net.output.weight.T, net.output.bias, k, order)


# ---------------------------------------------------------------------------- dispatch
def taylor(
    net: Any,
    x: torch.Tensor,
    dx: torch.Tensor,
    order: str | None = "laplacian",
    derivative_graph: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Value, Jacobian and Laplacian/Hessian of a PINN's raw outputs by forward propagation.

    Parameters
    ----------
    net : PINN
    x : Tensor, (N, n_features)
        Network inputs (without polar features).
    dx : Tensor, (n_features, K)
        Constant Jacobian of the inputs with respect to the K differentiated coordinates.
    order : {"laplacian", "hessian", None}
    derivative_graph : bool
        With grad mode on: ``True`` keeps the graph of every returned tensor, ``False`` only of
        the value (the derivatives are then constants, as the detached wave in the PDE).
        ``False``, and ``True`` with ``order`` None or ``"laplacian"``, back-propagate by hand
        (:class:`_StreamFunction`); ``True`` with the Hessian, and any graph to ``x`` or
        ``dx``, go through :func:`taylor_autograd`.

    Returns
    -------
    value (N, P), jac (N, P, K), second (N, P) or (N, P, K, K) or None
    """
    params = [t for lin in (*net.hidden, net.output) for t in (lin.weight, lin.bias)]
    tracked = torch.is_grad_enabled() and any(p.requires_grad for p in params)
    if x.requires_grad or dx.requires_grad:
        return taylor_autograd(net, x, dx, order)
    if not tracked:
        return stream_forward(net, params, x, dx, order)[:3]
    if not derivative_graph:
        n_grad = 1
    elif order is None:
        n_grad = 1 + dx.shape[1]
    elif order == "laplacian":
        n_grad = 1 + dx.shape[1] + 1
    else:  # a graph through the K² Hessian streams: rare, left to autograd
        return taylor_autograd(net, x, dx, order)
    value, jac, sec = _StreamFunction.apply(net, x, dx, order, n_grad, *params)
    return value, jac, sec if order is not None else None
