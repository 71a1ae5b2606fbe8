"""Time-harmonic elastic wave equations: the residuals the PINN minimises.

The residuals follow the MRE convention of ``CONTRIBUTING.md``: ``u(x, t) = Re{U(x) e^{+iωt}}``
and ``G* = G' + iG''``. Each equation returns ``r = f_trac + f_body`` with the body force
``f_body = ρω²U``, so ``r = 0`` where the wave obeys the equation:

``helmholtz``  ``G* ∇²U_i + ρω² U_i`` (locally homogeneous medium)
``hetero``     ``∇·(G* ∇U_i) + ρω² U_i`` (scalar heterogeneous form, per component)
``general``    ``∇·[G*(∇U + ∇Uᵀ)] + ∇(λ ∇·U) + ρω² U`` (Navier–Cauchy, ``λ = 0`` by default)

Derivatives are taken by automatic differentiation of the networks with respect to the
physical coordinates (metres). With ``no_z=True`` (the default, as in the published MRE-PINN)
only the in-plane axes ``x`` and ``y`` are differentiated, so a 3D stack is inverted slice-wise;
``no_z=False`` uses every spatial axis of the input.

The derivatives come from :mod:`napari_mrepinn.derivatives` (engines ``"fast"``, the
default, and ``"reference"``, the published method). Equations are registered by name in
:data:`EQUATIONS` (:func:`register_equation`); the CLI's ``--pde`` and the widget's PDE
choices read the same list through :class:`~napari_mrepinn.config.TrainingConfig`.

A *field* below is a callable mapping points ``x`` of shape ``(N, D)`` (metres) to values of
shape ``(N, M)`` (real or complex).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .derivatives import ENGINES, Field, derivatives

__all__ = [
    "EQUATIONS",
    "GeneralEquation",
    "HelmholtzEquation",
    "HeteroEquation",
    "WaveEquation",
    "register_equation",
]

#: the equations by name (see :func:`register_equation`)
EQUATIONS: dict[str, type[WaveEquation]] = {}


# ---------------------------------------------------------------------------- equations
class WaveEquation:
    """Residual of a time-harmonic viscoelastic wave equation.

    Parameters
    ----------
    omega : float
        Vibration frequency **in Hz** (named as in the published code); ``ω = 2π·omega`` is
        used inside.
    rho : float
        Density in kg/m³.
    lambda_ : float or complex
        Second Lamé parameter in Pa (``general`` only; 0 = the incompressible-like default).
    detach : bool
        Treat the wave as data in the residual: the wave derivatives carry no gradient, so
        the PDE loss trains only the modulus network (the published setting).
    engine : {"fast", "reference"}
        Derivative engine (see the module docstring).
    no_z : bool
        Differentiate only the in-plane axes ``x``, ``y`` (published); ``False`` uses all
        spatial axes of the input points.

    Notes
    -----
    Call it as ``pde(x, u, mu)`` with fields ``u`` (``(N, C)`` displacement) and ``mu``
    (``(N, 1)`` complex modulus in Pa); the residual has the units of ``Pa · [u] / m²``. The
    training loop passes the *standardised* wave ``u / scale(u)`` and divides by ``ρω²``, which
    makes the residual dimensionless (see :meth:`normalized`).
    """

    name = "wave"
    #: second-order information of the wave needed by the equation
    wave_order: str = "laplacian"
    #: whether the modulus gradient enters the equation
    needs_mu_grad: bool = True

    def __init__(
        self,
        omega: float,
        rho: float = 1000.0,
        lambda_: float | complex = 0.0,
        detach: bool = True,
        engine: str = "fast",
        no_z: bool = True,
    ) -> None:
        if omega is None or not math.isfinite(float(omega)) or float(omega) <= 0:
            raise ValueError(f"omega must be the vibration frequency in Hz (> 0), got {omega!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.omega = float(omega)
        self.rho = float(rho)
        self.lambda_ = lambda_
        self.detach = bool(detach)
        self.engine = engine
        self.no_z = bool(no_z)

    # .......................................................................... construction
    @staticmethod
    def from_name(name: str, **kwargs: Any) -> WaveEquation:
        """The equation called ``name``: ``"helmholtz"``, ``"hetero"`` or ``"general"``.

        Keyword arguments go to the constructor (``omega`` in Hz, ``rho``, ``detach``,
        ``engine``, ``no_z``, ``lambda_``).
        """
        key = str(name).lower()
        if key not in EQUATIONS:
            raise ValueError(f"unknown PDE {name!r}; choose one of {sorted(EQUATIONS)}")
        return EQUATIONS[key](**kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(omega={self.omega:g} Hz, rho={self.rho:g}, "
            f"detach={self.detach}, engine={self.engine!r}, no_z={self.no_z})"
        )

    @property
    def angular_frequency(self) -> float:
        """ω = 2π·omega in rad/s."""
        return 2.0 * math.pi * self.omega

    @property
    def body_coefficient(self) -> float:
        """ρω² in kg/(m³·s²); dividing a residual of the standardised wave by it makes it
        dimensionless."""
        return self.rho * self.angular_frequency**2

    def derivative_dims(self, n_dims: int) -> list[int]:
        """Input axes differentiated for points with ``n_dims`` spatial coordinates."""
        return list(range(min(2, n_dims))) if self.no_z else list(range(n_dims))

    # .......................................................................... evaluation
    def __call__(
        self,
        x: torch.Tensor,
        u: Field,
        mu: Field,
        *,
        components: Sequence[str] | None = None,
        create_graph: bool | None = None,
        need_mu_grad: bool = False,
        fields: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Residual ``f_trac + f_body`` at points ``x``.

        Parameters
        ----------
        x : Tensor, (N, D)
            Points in metres; columns are the spatial axes ``x, y[, z]`` in that order.
        u, mu : field
            Wave ``(N, C)`` and complex modulus ``(N, 1)`` in Pa.
        components : sequence of str, optional
            Axis label (``"x"``, ``"y"``, ``"z"``) of each wave component; needed by
            ``general`` to pair components with derivative axes. Defaults to
            ``u.components`` when the field has it; a scalar wave is treated as out-of-plane.
        create_graph : bool, optional
            Keep the graph to the modulus network (default: when grad mode is on).
        need_mu_grad : bool
            Compute the modulus gradient even when the equation does not use it.
        fields : dict, optional
            Filled with the intermediate values ``u``, ``du``, ``d2u``, ``mu``, ``dmu`` (for
            the data loss, regularisers and diagnostics, without a second network pass).
            ``u`` keeps its graph to the wave network when ``create_graph`` is on, also with
            ``detach`` (the residual then uses a detached copy).

        Returns
        -------
        Tensor, (N, C)
            Residual in ``Pa · [u] / m²``.
        """
        dims, uv, du, d2u, muv, dmu = self.evaluate_fields(
            x, u, mu, create_graph=create_graph, need_mu_grad=need_mu_grad, fields=fields)
        if components is None:
            components = getattr(u, "components", None)
        trac = self.traction(uv, du, d2u, muv, dmu, self._axes(components, dims, uv.shape[1]))
        return trac + self.body(uv)

    def evaluate_fields(
        self,
        x: torch.Tensor,
        u: Field,
        mu: Field,
        *,
        create_graph: bool | None = None,
        need_mu_grad: bool = False,
        fields: dict[str, torch.Tensor] | None = None,
    ) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor,
               torch.Tensor | None]:
        """The wave and modulus with the derivatives the equation needs (arguments as for
        :meth:`__call__`): ``(dims, u, du, d2u, mu, dmu)``, the wave's detached when the
        equation detaches it; ``fields`` is filled as :meth:`__call__` documents."""
        if create_graph is None:
            create_graph = torch.is_grad_enabled()
        dims = self.derivative_dims(x.shape[1])
        u_graph = create_graph and not self.detach
        # the wave value keeps its graph even when detached here, so that the caller can use
        # it for the data loss without a second pass of the wave network
        uv, du, d2u = derivatives(
            u, x, dims, self.wave_order, engine=self.engine, create_graph=u_graph,
            value_graph=create_graph,
        )
        u_value = uv
        if self.needs_mu_grad or need_mu_grad:
            muv, dmu, _ = derivatives(
                mu, x, dims, None, engine=self.engine, create_graph=create_graph
            )
        else:
            ctx = torch.enable_grad() if create_graph else torch.no_grad()
            with ctx:
                muv, dmu = mu(x), None
        if self.detach:
            uv, du = uv.detach(), du.detach()
            d2u = d2u.detach() if d2u is not None else None
        if fields is not None:
            fields.update(u=u_value, du=du, d2u=d2u, mu=muv, dmu=dmu)
        return dims, uv, du, d2u, muv, dmu

    def normalized(
        self, x: torch.Tensor, u: Field, mu: Field, **kwargs: Any
    ) -> torch.Tensor:
        """Residual divided by ``ρω²``: dimensionless when ``u`` is the standardised wave."""
        return self(x, u, mu, **kwargs) / self.body_coefficient

    def loss_residual(
        self, x: torch.Tensor, u: Field, mu: Field, **kwargs: Any
    ) -> torch.Tensor:
        """The residual the PDE loss is taken of: :meth:`normalized` here; a joint
        multi-frequency equation weighs its frequencies
        (:meth:`napari_mrepinn.multifreq.JointEquation.loss_residual`)."""
        return self.normalized(x, u, mu, **kwargs)

    def body(self, u: torch.Tensor) -> torch.Tensor:
        """Body (inertia) term ``ρω²u``."""
        return self.body_coefficient * u

    def traction(
        self,
        u: torch.Tensor,
        du: torch.Tensor,
        d2u: torch.Tensor | None,
        mu: torch.Tensor,
        dmu: torch.Tensor | None,
        axes: list[int | None],
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """The traction term ``f_trac`` of the equation at N points (the residual is
        ``traction + body``).

        Parameters
        ----------
        u : Tensor, (N, C)
            Wave values (C components; complex or real).
        du : Tensor, (N, C, K)
            First derivatives ``∂U_c/∂x_k`` over the K derivative axes
            (:meth:`derivative_dims`), in 1/m times the wave's unit.
        d2u : Tensor or None
            ``(N, C)`` Laplacians over the K axes when ``wave_order == "laplacian"``;
            ``(N, C, K, K)`` Hessians when ``"hessian"``.
        mu : Tensor, (N, 1)
            Complex modulus G* in Pa.
        dmu : Tensor or None, (N, 1, K)
            Its gradient (Pa/m); None when the equation does not need it
            (``needs_mu_grad`` False).
        axes : list of int or None, length C
            For each component, its position among the K derivative axes, or None when its
            axis is not differentiated (``z`` in-plane, a scalar wave).

        Returns
        -------
        Tensor, (N, C)
            ``f_trac`` in Pa times the wave's unit per m².
        """
        raise NotImplementedError

    @staticmethod
    def _axes(components: Sequence[str] | None, dims: list[int], n_comp: int) -> list[int | None]:
        """For each wave component, its position among the derivative axes (None if the
        component's axis is not differentiated, e.g. ``z`` with ``no_z`` or a scalar wave)."""
        if components is None or len(components) != n_comp:
            return [None] * n_comp
        names = ["x", "y", "z"]
        out: list[int | None] = []
        for c in components:
            ax = names.index(str(c)) if str(c) in names else None
            out.append(dims.index(ax) if ax is not None and ax in dims else None)
        return out


def register_equation(cls: type[WaveEquation]) -> type[WaveEquation]:
    """Class decorator: make an equation available by its ``name`` (``--pde``, the widget,
    :meth:`WaveEquation.from_name`)."""
    EQUATIONS[cls.name] = cls
    return cls


@register_equation
class HelmholtzEquation(WaveEquation):
    """``G* ∇²U_i + ρω² U_i`` (locally homogeneous; no modulus gradient)."""

    name = "helmholtz"
    wave_order = "laplacian"
    needs_mu_grad = False

    def traction(self, u, du, d2u, mu, dmu, axes):
        return mu * d2u


@register_equation
class HeteroEquation(WaveEquation):
    """``∇·(G* ∇U_i) + ρω² U_i = G*∇²U_i + ∇G*·∇U_i + ρω²U_i`` for each component."""

    name = "hetero"
    wave_order = "laplacian"
    needs_mu_grad = True

    def traction(self, u, du, d2u, mu, dmu, axes):
        # dmu: (N, 1, K), du: (N, C, K)
        return mu * d2u + (dmu * du).sum(-1)


@register_equation
class GeneralEquation(WaveEquation):
    """``∇·[G*(∇U + ∇Uᵀ)] + ∇(λ ∇·U) + ρω²U`` (Navier–Cauchy with constant λ).

    Sums run over the derivative axes; a component whose axis is not differentiated (``z``
    with ``no_z``, or a scalar wave, treated as out-of-plane) has no transpose or divergence
    coupling, so for a scalar wave this equals ``hetero``.
    """

    name = "general"
    wave_order = "hessian"
    needs_mu_grad = True

    def traction(self, u, du, d2u, mu, dmu, axes):
        # du: (N, C, K); d2u: (N, C, K, K) Hessian; mu (N, 1); dmu (N, 1, K)
        n_comp = u.shape[1]
        lap = torch.diagonal(d2u, dim1=-2, dim2=-1).sum(-1)  # (N, C)
        out = mu * lap + (dmu * du).sum(-1)  # ∇·(G*∇U_i)
        # the transpose term ∂_j[G* ∂_i U_j] = ∂_jG* ∂_iU_j + G* ∂_i∂_j U_j, over components
        # whose axes are differentiated; and ∂_i(λ ∇·U) = λ Σ_j ∂_i∂_j U_j
        lam = self.lambda_
        cols = []
        for i in range(n_comp):
            ai = axes[i]
            term = torch.zeros_like(out[:, i])
            if ai is not None:
                for j in range(n_comp):
                    aj = axes[j]
                    if aj is None:
                        continue
                    term = term + dmu[:, 0, aj] * du[:, j, ai] + mu[:, 0] * d2u[:, j, ai, aj]
                    if lam != 0:
                        term = term + lam * d2u[:, j, ai, aj]
            cols.append(term)
        return out + torch.stack(cols, dim=1)
