"""Derivatives of the PINN's fields with respect to the physical coordinates (metres).

Two derivative engines compute the same numbers:

``"reference"``
    Written the way the published method does it: reverse-mode autograd, first derivatives one
    output at a time, then second derivatives one output and axis at a time, each with
    ``create_graph=True``; with ``detach=True`` the wave derivatives are detached afterwards.
``"fast"`` (default)
    Forward-mode: a field that offers ``taylor(x, dims, order, derivative_graph)`` (the
    networks of :mod:`napari_mrepinn.networks` do) propagates the value, the Jacobian and the
    Laplacian (or Hessian) through the network in one batched pass per layer ("forward
    Laplacian", :mod:`napari_mrepinn._taylor`). Any other callable is differentiated with
    ``torch.func`` (``jacfwd``/``hessian`` under ``vmap``). With ``detach=True`` the wave
    derivatives carry no graph: only the wave's *value* keeps one, so the same pass serves the
    data loss, and its backward runs through the value stream alone. Only what the chosen
    equation needs is computed (a Laplacian for ``helmholtz``/``hetero``, a Hessian for
    ``general``; no modulus gradient for ``helmholtz``).

A *field* below is a callable mapping points ``x`` of shape ``(N, D)`` (metres) to values of
shape ``(N, M)`` (real or complex).

The wave equations (:mod:`napari_mrepinn.physics`) call :func:`derivatives`; the networks
(:mod:`napari_mrepinn.networks`) offer the ``taylor`` method of the fast engine
(:mod:`napari_mrepinn._taylor`) and fall back on :func:`func_derivatives`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["ENGINES", "Derivs", "Field", "derivatives", "func_derivatives"]

ENGINES = ("fast", "reference")
Field = Callable[[torch.Tensor], torch.Tensor]
#: (value (N, M), first derivatives (N, M, K), Laplacian (N, M) or Hessian (N, M, K, K) or None)
Derivs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def derivatives(
    field: Field,
    x: torch.Tensor,
    dims: Sequence[int],
    order: str | None = "laplacian",
    *,
    engine: str = "fast",
    create_graph: bool = True,
    value_graph: bool = False,
) -> Derivs:
    """Value and spatial derivatives of a field.

    Parameters
    ----------
    field : callable
        Maps ``(N, D)`` points in metres to ``(N, M)`` values (real or complex).
    x : Tensor, shape (N, D)
        Points in metres.
    dims : sequence of int
        Indices of the input axes to differentiate (``K`` of them).
    order : {"laplacian", "hessian", None}
        Second-order information wanted: the Laplacian over ``dims``, the full Hessian over
        ``dims``, or nothing (first derivatives only).
    engine : {"fast", "reference"}
        Which engine (see the module docstring).
    create_graph : bool
        Keep the graph to the field's parameters (needed when the result enters a loss whose
        gradient must reach the field). ``False`` computes without any parameter graph.
    value_graph : bool
        With ``create_graph=False``, still keep the graph of the *value* (the derivatives stay
        constants): one pass of the wave network then serves both the data loss and the
        detached wave of the PDE.

    Returns
    -------
    value : Tensor, (N, M)
    jac : Tensor, (N, M, K)
        ``∂f_m/∂x_k`` in value units per metre.
    second : Tensor or None
        ``(N, M)`` Laplacian or ``(N, M, K, K)`` Hessian (value units per m²), or None.
    """
    dims = list(dims)
    if order not in (None, "laplacian", "hessian"):
        raise ValueError(f"order must be 'laplacian', 'hessian' or None, got {order!r}")
    if engine == "reference":
        return _reference_derivatives(field, x, dims, order, create_graph, value_graph)
    if engine != "fast":
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    taylor = getattr(field, "taylor", None)
    if taylor is not None:
        ctx = torch.enable_grad() if create_graph or value_graph else torch.no_grad()
        with ctx:
            return taylor(x, dims, order, derivative_graph=create_graph)
    with torch.enable_grad() if create_graph else torch.no_grad():
        y, jac, sec = func_derivatives(field, x, dims, order)
    if value_graph and not create_graph:
        with torch.enable_grad():
            y = field(x)
    return y, jac, sec


def _reference_derivatives(
    field: Field,
    x: torch.Tensor,
    dims: list[int],
    order: str | None,
    create_graph: bool,
    value_graph: bool = False,
) -> Derivs:
    """Reverse-mode autograd, one output (real and imaginary part) and one axis at a time."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = field(x)
        is_complex = y.is_complex()
        parts = [y.real, y.imag] if is_complex else [y]
        n, m = y.shape
        k = len(dims)
        jac_parts, sec_parts = [], []
        for p in parts:
            jac_p, sec_p = [], []
            for i in range(m):
                g = torch.autograd.grad(p[:, i].sum(), x, create_graph=True)[0][:, dims]
                jac_p.append(g)
                if order is None:
                    continue
                rows = []
                for a in range(k):
                    # the published method differentiates each first derivative again
                    h = torch.autograd.grad(g[:, a].sum(), x, create_graph=True)[0][:, dims]
                    rows.append(h[:, a] if order == "laplacian" else h)
                if order == "laplacian":
                    sec_p.append(torch.stack(rows, dim=-1).sum(-1))
                else:
                    sec_p.append(torch.stack(rows, dim=1))  # (N, K, K)
            jac_parts.append(torch.stack(jac_p, dim=1))
            if order is not None:
                sec_parts.append(torch.stack(sec_p, dim=1))
        if is_complex:
            jac = torch.complex(jac_parts[0], jac_parts[1])
            sec = torch.complex(sec_parts[0], sec_parts[1]) if order is not None else None
        else:
            jac = jac_parts[0]
            sec = sec_parts[0] if order is not None else None
        assert jac.shape == (n, m, k)
    if not create_graph:
        # the published code evaluates the wave once and detaches its derivatives
        y = y if value_graph else y.detach()
        jac = jac.detach()
        sec = sec.detach() if sec is not None else None
    return y, jac, sec


def func_derivatives(field: Field, x: torch.Tensor, dims: list[int], order: str | None) -> Derivs:
    """Forward-mode derivatives of any field with ``torch.func`` (``jacfwd``, ``vmap``).

    Used by the fast engine for fields without a ``taylor`` method (and by the networks for
    options the forward-Laplacian propagation does not cover, e.g. polar input).
    """
    from torch.func import jacfwd, vmap

    probe = field(x[:1])
    is_complex = probe.is_complex()
    m = probe.shape[1]

    def f(xi: torch.Tensor) -> torch.Tensor:
        y = field(xi[None])[0]
        return torch.view_as_real(y).reshape(-1) if is_complex else y

    def f_jac(xi: torch.Tensor) -> torch.Tensor:
        return jacfwd(f)(xi)[:, dims]

    y = field(x)
    jac = vmap(f_jac)(x)  # (N, P, K)
    sec = None
    if order is not None:
        hess = vmap(jacfwd(f_jac))(x)[..., dims]  # (N, P, K, K)
        sec = torch.diagonal(hess, dim1=-2, dim2=-1).sum(-1) if order == "laplacian" else hess

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not is_complex:
            return t
        t = t.reshape(t.shape[0], m, 2, *t.shape[2:])
        return torch.complex(t[:, :, 0], t[:, :, 1])

    return y, pack(jac), pack(sec) if sec is not None else None
