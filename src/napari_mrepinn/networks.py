"""The MRE-PINN networks: a dense SIREN-like MLP and the wave + modulus pair.

:class:`PINN` is a coordinate MLP with sine activations, SIREN initialisation and optional
DenseNet-style connectivity (each layer sees the input and all previous hidden outputs), as in
Ragoza & Batmanghelich (MICCAI 2023). Besides the ordinary forward pass it propagates the
value, Jacobian and Laplacian (or Hessian) of its outputs through the layers in one batched pass
(:meth:`PINN.taylor`, "forward Laplacian"), which is the fast derivative engine of
:mod:`napari_mrepinn.physics`.

:class:`MREPINN` holds one network for the complex wave and one for the complex shear modulus
(plus the anatomical channels when the example has ``anat``):

* inputs are the physical coordinates in metres, centred on the grid, divided by one length
  for every axis (:func:`input_length`) and multiplied by ``omega`` (the SIREN frequency ω0,
  *not* the vibration frequency);
* the wave network predicts the standardised wave ``u / scale(u)`` with ``scale(u)`` the RMS
  of the data in the mask (no offset, so the wave equation stays linear in the prediction);
* the modulus network predicts ``G* = G0 · exp(s) · e^{iφ}`` with ``|s| < ln 100`` and
  ``0 < φ < π/2``, so ``G' > 0`` and ``G'' >= 0`` always hold. ``G0`` is a *physical prior*
  (a robust median of a direct-inversion estimate in the mask, a stated value or range, or by
  default a least-squares homogeneous Helmholtz fit of the data). The ground truth ``mre`` is
  never read. The last layer starts at zero, so training starts from the prior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from ._taylor import ACTIVATIONS, activation_name, taylor
from .data import MREExample, MREInputError
from .derivatives import func_derivatives

__all__ = ["MREPINN", "PINN", "estimate_modulus_prior"]

# magnitude of the modulus may leave the prior by at most this factor either way
MU_RANGE_FACTOR = 100.0
# phase of G* is kept in (0, π/2): G' > 0 and G'' >= 0 (passive viscoelastic media); the
# bound stays a little below π/2 so that cos(φ) > 0 survives float32 rounding
MU_PHASE_MAX = 0.999 * math.pi / 2
DEFAULT_PHASE = 0.1  # rad, used when a prior gives no phase


# ---------------------------------------------------------------------------- PINN
class PINN(nn.Module):
    """Dense SIREN-like MLP mapping (already normalised) coordinates to outputs.

    Parameters
    ----------
    n_input : int
        Number of input coordinates.
    n_output : int
        Number of outputs (complex outputs count once; the last layer then has ``2·n_output``
        units, interleaved real/imaginary or magnitude/phase).
    n_layers : int
        Linear layers including the output layer (``n_layers - 1`` hidden layers).
    n_hidden : int
        Width of each hidden layer.
    activ : str
        Activation of the hidden layers after the first, which is always ``sin``:
        ``"sin"``, ``"tanh"``, ``"gelu"`` or ``"softplus"``.
    dense : bool
        DenseNet connectivity: each layer receives the input and all previous hidden outputs.
    polar_input : bool
        Append ``r = √(x²+y²)``, ``x/(r+1)``, ``y/(r+1)`` of the first two inputs.
    complex_output : bool
        :meth:`forward` returns complex values built from pairs of units.
    polar_output : bool
        With ``complex_output``, pairs are (magnitude, phase) instead of (real, imaginary).
    zero_output : bool
        Start the output layer at zero (the network then outputs 0 until trained), used to
        start the modulus at its prior.

    Notes
    -----
    SIREN initialisation: the first layer's weights are ``U(±1/fan_in)``, all later weights
    ``U(±√(6/fan_in))``; biases keep the PyTorch default. With inputs scaled by ω0 this equals
    SIREN with first-layer frequency ω0.
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_layers: int = 5,
        n_hidden: int = 128,
        activ: str = "sin",
        dense: bool = True,
        polar_input: bool = False,
        complex_output: bool = False,
        polar_output: bool = False,
        zero_output: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 2:
            raise ValueError("n_layers must be >= 2 (one hidden layer and the output layer)")
        self.n_input = int(n_input)
        self.n_output = int(n_output)
        self.dense = bool(dense)
        self.polar_input = bool(polar_input)
        self.complex_output = bool(complex_output)
        self.polar_output = bool(polar_output)
        self.activ = activation_name(activ)
        n_feat = self.n_input + (3 if polar_input else 0)
        self.n_features = n_feat
        layers = []
        fan_in = n_feat
        for _ in range(n_layers - 1):
            layers.append(nn.Linear(fan_in, n_hidden))
            fan_in = fan_in + n_hidden if dense else n_hidden
        n_raw = 2 * self.n_output if complex_output else self.n_output
        self.hidden = nn.ModuleList(layers)
        self.output = nn.Linear(fan_in, n_raw)
        self.init_weights(zero_output)

    @torch.no_grad()
    def init_weights(self, zero_output: bool = False) -> None:
        """SIREN initialisation (see the class notes)."""
        first = self.hidden[0]
        first.weight.uniform_(-1 / first.in_features, 1 / first.in_features)
        for lin in [*self.hidden[1:], self.output]:
            bound = math.sqrt(6 / lin.in_features)
            lin.weight.uniform_(-bound, bound)
        if zero_output:
            self.output.weight.zero_()
            self.output.bias.zero_()

    @property
    def n_raw_outputs(self) -> int:
        return self.output.out_features

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.polar_input:
            return x
        r = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
        return torch.cat([x, torch.stack([r, x[:, 0] / (r + 1), x[:, 1] / (r + 1)], 1)], 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Real outputs of the last layer, shape ``(N, n_raw_outputs)``."""
        h = self._features(x)
        act = ACTIVATIONS[self.activ]
        for i, lin in enumerate(self.hidden):
            z = lin(h)
            a = torch.sin(z) if i == 0 else act(z)[0]
            h = torch.cat([h, a], dim=1) if self.dense else a
        return self.output(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs, complex when ``complex_output``: ``(N, n_output)``."""
        y = self.raw(x)
        if not self.complex_output:
            return y
        a, b = y[:, 0::2], y[:, 1::2]
        if self.polar_output:
            return torch.polar(a, b) if a.dtype != torch.float16 else a * torch.exp(1j * b)
        return torch.complex(a, b)

    def taylor(
        self,
        x: torch.Tensor,
        dx: torch.Tensor,
        order: str | None = "laplacian",
        derivative_graph: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Raw outputs with their Jacobian and Laplacian/Hessian by forward propagation.

        Parameters
        ----------
        x : Tensor, (N, n_input)
            Network inputs.
        dx : Tensor, (n_input, K)
            Constant Jacobian of the inputs with respect to the K differentiated coordinates
            (the inputs are an affine map of the physical coordinates).
        order : {"laplacian", "hessian", None}
        derivative_graph : bool
            With grad mode on, ``False`` keeps the graph of the value only (see
            :func:`napari_mrepinn._taylor.taylor`).

        Returns
        -------
        value (N, P), jac (N, P, K), second (N, P) or (N, P, K, K) or None
        """
        if not self.polar_input:
            return taylor(self, x, dx, order, derivative_graph)
        # the polar features are not affine in x: differentiate raw() with torch.func in
        # input space and chain with the constant input Jacobian
        full = list(range(self.n_input))
        v, j, h = func_derivatives(self.raw, x, full, "hessian" if order else None)
        jac = j @ dx.to(j.dtype)  # (N, P, K)
        sec = None
        if order == "laplacian":
            sec = torch.einsum("npij,ik,jk->np", h, dx, dx)
        elif order == "hessian":
            sec = torch.einsum("npij,ik,jl->npkl", h, dx, dx)
        if not derivative_graph:
            jac = jac.detach()
            sec = sec.detach() if sec is not None else None
        return v, jac, sec


# ---------------------------------------------------------------------------- priors
def _complex_median(values: np.ndarray) -> complex:
    """Robust typical complex modulus: median magnitude and median phase."""
    v = np.asarray(values).ravel()
    v = v[np.isfinite(v)]
    if np.iscomplexobj(v):
        v = v[v.real > 0]
        if v.size == 0:
            raise MREInputError("mu_prior: no voxel with a positive storage modulus in the mask.")
        mag = float(np.median(np.abs(v)))
        phase = float(np.median(np.angle(v)))
    else:
        v = v[v > 0]
        if v.size == 0:
            raise MREInputError("mu_prior: no positive modulus value in the mask.")
        mag, phase = float(np.median(v)), DEFAULT_PHASE
    return mag * np.exp(1j * phase)


def estimate_modulus_prior(example: MREExample) -> complex:
    """A homogeneous least-squares Helmholtz estimate of G* (Pa) from the wave alone.

    Solves ``min_G Σ |G ∇²u + ρω²u|²`` over the interior of the mask with a lightly smoothed
    wave (Gaussian, σ = 1 voxel) and central differences in-plane. Noise inflates the
    Laplacian, so the estimate is biased low at low SNR; it only sets the scale the modulus
    network starts from (the network can move a factor of 100 either way).
    """
    from scipy import ndimage

    u = np.asarray(example["wave"].values)
    sdims = example.spatial_dims
    spacing = example.spacing
    omega = 2 * np.pi * example.frequency
    rho = example.density
    comp = u.ndim > len(sdims)
    if not comp:
        u = u[..., None]
    sig = [1.0, 1.0] + [0.0] * (len(sdims) - 2) + [0.0]

    def smooth(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sig, mode="nearest")

    us = smooth(u.real) + 1j * smooth(u.imag) if np.iscomplexobj(u) else smooth(u)
    lap = np.zeros_like(us)
    for ax, d in enumerate(sdims[:2]):
        h = spacing[d]
        lap += (np.roll(us, -1, ax) - 2 * us + np.roll(us, 1, ax)) / h**2
    interior = np.zeros(example.spatial_shape, bool)
    interior[2:-2, 2:-2, ...] = True
    mask = np.asarray(example.mask.values) & interior
    if mask.sum() < 4:
        mask = np.asarray(example.mask.values)
    lm, um = lap[mask], us[mask]
    g = -rho * omega**2 * np.sum(np.conj(lm) * um) / max(np.sum(np.abs(lm) ** 2), 1e-300)
    g = complex(g)
    if not np.isfinite(g) or g.real <= 0:
        # fall back to a typical soft-tissue value rather than fail
        g = 3000.0 * np.exp(1j * DEFAULT_PHASE)
    return g


def resolve_modulus_prior(example: MREExample, mu_prior: Any) -> complex:
    """Turn ``mu_prior`` into one complex modulus ``G0`` in Pa.

    ``None``: :func:`estimate_modulus_prior`; a number: ``|G*|`` (real, phase 0.1 rad) or
    ``G*`` (complex) in Pa; a ``(low, high)`` pair: the geometric mean of a stated range in Pa;
    an array or DataArray on the spatial grid (e.g. an AHI map): the median magnitude and
    phase in the mask.
    """
    if mu_prior is None:
        g = estimate_modulus_prior(example)
    elif isinstance(mu_prior, xr.DataArray | np.ndarray):
        arr = mu_prior
        if isinstance(arr, xr.DataArray):
            if "frequency" in arr.dims:
                arr = arr.isel(frequency=0)
            arr = arr.values
        arr = np.asarray(arr)
        mask = np.asarray(example.mask.values)
        sel = arr[mask] if arr.shape == mask.shape else arr
        g = _complex_median(sel)
    elif isinstance(mu_prior, tuple | list) and len(mu_prior) == 2:
        lo, hi = (float(v) for v in mu_prior)
        if not (0 < lo <= hi):
            raise MREInputError(f"mu_prior range must be 0 < low <= high Pa, got {mu_prior!r}")
        g = math.sqrt(lo * hi) * np.exp(1j * DEFAULT_PHASE)
    else:
        g = complex(mu_prior)
        if not np.isfinite(g) or g.real <= 0:
            raise MREInputError(f"mu_prior must have a positive real part (Pa), got {mu_prior!r}")
        if g.imag == 0:
            g = abs(g) * np.exp(1j * DEFAULT_PHASE)
    mag = abs(g)
    # keep the phase strictly inside (0, π/2) so the sigmoid has a finite offset
    phase = float(np.clip(np.angle(g), 0.01, MU_PHASE_MAX - 0.01))
    return complex(mag * np.exp(1j * phase))


def input_length(example: MREExample) -> float:
    """The length (metres) that divides every coordinate before the networks: the smallest
    in-plane extent (``x``, ``y``) of the grid."""
    return float(min(e for d, e in example.extent.items() if d != "z"))


# ---------------------------------------------------------------------------- fields
class _Field:
    """A field view of :class:`MREPINN` usable by :mod:`napari_mrepinn.physics`."""

    def __init__(self, model: MREPINN, which: str) -> None:
        self._model = model
        self._which = which
        self.components = model.components if which == "wave" else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self._model
        return m.wave_std(x) if self._which == "wave" else m.mu(x)

    def taylor(
        self, x: torch.Tensor, dims: Sequence[int], order: str | None,
        derivative_graph: bool = True,
    ):
        return self._model._taylor(self._which, x, list(dims), order, derivative_graph)


class MREPINN(nn.Module):
    """Wave network + modulus network for one single-frequency MRE example.

    Parameters
    ----------
    example : MREExample
        The data (its grid, wave statistics, anatomical channels and mask are read; the
        ground-truth ``mre`` is not).
    omega : float
        SIREN input frequency ω0 (dimensionless): the normalised coordinates
        ``(x - centre) / length`` are multiplied by it. 60 in the published simulation runs.
    n_layers, n_hidden, activ, dense, polar_input
        Passed to both :class:`PINN` networks.
    mu_prior : None, float, complex, (low, high), ndarray or DataArray
        Physical prior of the modulus in Pa that scales the modulus output (see
        :func:`resolve_modulus_prior`); e.g. the AHI map ``mu_ahi``.
    mu_omega : float, optional
        Input frequency of the modulus network (default ``omega``): a modulus map may have
        sharper edges than the wave is allowed wiggles.

    Notes
    -----
    ``forward(x)`` returns ``(u, mu, a)``: the wave in the data's units, the complex modulus
    in Pa and the anatomical channels in their units (``(N, 0)`` without ``anat``).
    """

    def __init__(
        self,
        example: MREExample,
        omega: float = 60,
        n_layers: int = 5,
        n_hidden: int = 128,
        activ: str = "sin",
        dense: bool = True,
        polar_input: bool = False,
        mu_prior: Any = None,
        mu_omega: float | None = None,
    ) -> None:
        super().__init__()
        if len(example.frequencies) != 1:
            raise MREInputError(
                f"{example.source + ': ' if example.source else ''}MREPINN inverts one "
                f"frequency at a time; this example has {len(example.frequencies)} "
                "(select one with example.select_frequency(f), or fit them jointly with "
                "napari_mrepinn.fit, see napari_mrepinn.multifreq)."
            )
        ds = example.ds
        self.spatial_dims = example.spatial_dims
        self.n_dims = len(self.spatial_dims)
        wave = ds["wave"]
        self.components: list[str] | None = (
            [str(c) for c in ds["component"].values] if "component" in wave.dims else None
        )
        self.n_components = example.n_components
        self.is_complex = bool(np.iscomplexobj(wave.values))
        self.omega = float(omega)
        self.mu_omega = float(omega if mu_omega is None else mu_omega)
        self.frequency = example.frequency
        self.config = dict(
            omega=float(omega), mu_omega=self.mu_omega, n_layers=int(n_layers),
            n_hidden=int(n_hidden), activ=activ, dense=bool(dense),
            polar_input=bool(polar_input),
        )

        # input normalisation: the grid centre and one length for every axis (metres). The
        # published code divides each axis by its own extent, which gives a thin stack (10
        # slices of an 80 × 100 mm box) ten times the bandwidth per metre through-plane as
        # in-plane, and the wave network then fits each slice on its own (four-target box:
        # R 0.79 per-axis, 0.84 with one length; the slice and the cylinder are unchanged)
        center = [float(ds[d].values[0] + ds[d].values[-1]) / 2 for d in self.spatial_dims]
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32))
        # one entry per axis (all equal), so checkpoints of either normalisation restore
        self.register_buffer(
            "extent", torch.full((self.n_dims,), input_length(example), dtype=torch.float32)
        )

        # wave scale: RMS of the data in the mask, all components together (one scale keeps
        # the vector equations consistent); no offset so the PDE stays linear in the output
        mask = np.asarray(example.mask.values)
        u = np.asarray(wave.values)
        um = u[mask] if u.ndim == mask.ndim else u[mask, ...]
        u_scale = float(np.sqrt(np.mean(np.abs(um) ** 2)))
        if not np.isfinite(u_scale) or u_scale <= 0:
            raise MREInputError("wave: the wave is zero everywhere in the mask.")
        self.register_buffer("u_scale", torch.tensor(u_scale, dtype=torch.float64))

        # anatomical channels, standardised per channel in the mask
        self.n_anat = 0
        a_loc = a_scale = np.zeros(0)
        if "anat" in ds:
            a = np.asarray(ds["anat"].values, dtype=float)
            a = a[..., None] if a.ndim == self.n_dims else a
            am = a[mask]
            self.n_anat = a.shape[-1]
            a_loc = am.mean(0)
            a_scale = np.where(am.std(0) > 0, am.std(0), 1.0)
        self.register_buffer("a_loc", torch.tensor(a_loc, dtype=torch.float32))
        self.register_buffer("a_scale", torch.tensor(a_scale, dtype=torch.float32))

        # modulus prior: a physical estimate, never the ground truth
        g0 = resolve_modulus_prior(example, mu_prior)
        self.mu_prior = g0
        self.register_buffer("mu0", torch.tensor(abs(g0), dtype=torch.float32))
        frac = np.angle(g0) / MU_PHASE_MAX
        self.register_buffer(
            "phase_offset", torch.tensor(math.log(frac / (1 - frac)), dtype=torch.float32)
        )

        net = dict(n_layers=n_layers, n_hidden=n_hidden, activ=activ, dense=dense,
                   polar_input=polar_input)
        self.u_pinn = PINN(self.n_dims, self.n_components, complex_output=self.is_complex, **net)
        self.n_moduli = 1  # moduli per point (a free joint fit: one per frequency)
        self.mu_pinn = PINN(self.n_dims, 2 + self.n_anat, zero_output=True, **net)
        self.wave_field = _Field(self, "wave")
        self.mu_field = _Field(self, "mu")

    def use_frequency_heads(self, input_scales: Sequence[float]) -> None:
        """Give each frequency of a stacked joint-fit view its own wave network
        (:class:`napari_mrepinn.multifreq.FrequencyHeads`), whose input is the model's
        scaled by ``input_scales[k]`` (its input frequency over :attr:`omega`)."""
        from .multifreq import FrequencyHeads

        n_f = len(input_scales)
        if n_f < 1 or self.n_components % n_f:
            raise ValueError(f"{self.n_components} wave components are not {n_f} frequencies")
        c = self.config
        nets = [PINN(self.n_dims, self.n_components // n_f, complex_output=self.is_complex,
                     n_layers=c["n_layers"], n_hidden=c["n_hidden"], activ=c["activ"],
                     dense=c["dense"], polar_input=c["polar_input"]) for _ in range(n_f)]
        self.u_pinn = FrequencyHeads(nets, input_scales).to(self.center.device)
        self.config["wave_heads"] = [float(v) for v in input_scales]

    def use_moduli(self, n: int) -> None:
        """Give the modulus network ``n`` moduli per point (a joint fit with a free G* per
        frequency); a fresh, zero-output network (every modulus starts at the prior)."""
        c = self.config
        self.n_moduli = int(n)
        self.mu_pinn = PINN(self.n_dims, 2 * self.n_moduli + self.n_anat, zero_output=True,
                            n_layers=c["n_layers"], n_hidden=c["n_hidden"], activ=c["activ"],
                            dense=c["dense"], polar_input=c["polar_input"]).to(self.center.device)
        self.config["moduli"] = self.n_moduli

    # .......................................................................... transforms
    def normalize_input(self, x: torch.Tensor, which: str = "wave") -> torch.Tensor:
        """``(x - centre) / length · omega`` (x in metres, :func:`input_length`);
        ``mu_omega`` for the modulus."""
        omega = self.omega if which == "wave" else self.mu_omega
        return (x - self.center) / self.extent * omega

    def _input_jacobian(self, dims: list[int], dtype: torch.dtype, which: str) -> torch.Tensor:
        omega = self.omega if which == "wave" else self.mu_omega
        dx = torch.zeros(self.n_dims, len(dims), dtype=dtype, device=self.center.device)
        for k, d in enumerate(dims):
            dx[d, k] = omega / self.extent[d]
        return dx

    def _wave_from_raw(self, r: torch.Tensor) -> torch.Tensor:
        return torch.complex(r[:, 0::2], r[:, 1::2]) if self.is_complex else r

    def _mu_from_raw(self, r: torch.Tensor) -> torch.Tensor:
        m = 2 * self.n_moduli  # raw pairs (log-magnitude, phase), one per modulus
        b = math.log(MU_RANGE_FACTOR)
        s = b * torch.tanh(r[:, 0:m:2] / b)
        phase = MU_PHASE_MAX * torch.sigmoid(r[:, 1:m:2] + self.phase_offset)
        return torch.polar(self.mu0 * torch.exp(s), phase)

    def wave_std(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised wave ``u / scale(u)`` at points x (metres), ``(N, C)``."""
        return self._wave_from_raw(self.u_pinn.raw(self.normalize_input(x)))

    def u(self, x: torch.Tensor) -> torch.Tensor:
        """Wave in the data's units at points x (metres), ``(N, C)``."""
        return self.wave_from_std(self.wave_std(x))

    def wave_from_std(self, u_std: torch.Tensor) -> torch.Tensor:
        """The standardised wave ``u / scale(u)`` back in the data's units."""
        return u_std * self.u_scale.to(u_std.real.dtype)

    def mu(self, x: torch.Tensor) -> torch.Tensor:
        """Complex shear modulus in Pa at points x (metres), ``(N, n_moduli)``."""
        return self._mu_from_raw(self.mu_pinn.raw(self.normalize_input(x, "mu")))

    def mu_and_anat(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Modulus (Pa) and anatomical channels from one pass of the modulus network."""
        r = self.mu_pinn.raw(self.normalize_input(x, "mu"))
        return self._mu_from_raw(r), r[:, 2 * self.n_moduli:] * self.a_scale + self.a_loc

    def anat_std(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised anatomical channels ``(N, n_anat)``."""
        return self.mu_pinn.raw(self.normalize_input(x, "mu"))[:, 2 * self.n_moduli:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(u, mu, a)`` at points x in metres (wave units, Pa, anat units)."""
        mu, a = self.mu_and_anat(x)
        return self.u(x), mu, a

    def _taylor(
        self, which: str, x: torch.Tensor, dims: list[int], order: str | None,
        derivative_graph: bool = True,
    ):
        net = self.u_pinn if which == "wave" else self.mu_pinn
        dx = self._input_jacobian(dims, x.dtype, which)
        v, j, s = net.taylor(self.normalize_input(x, which), dx, order, derivative_graph)
        if which == "wave":
            if not self.is_complex:
                return v, j, s
            return self._wave_from_raw(v), self._wave_from_raw(j), (
                self._wave_from_raw(s) if s is not None else None
            )
        if order is not None:
            raise ValueError("only first derivatives of the modulus are available")
        # chain rule through the magnitude/phase transform: dG = G (ds + i dφ)
        m = 2 * self.n_moduli
        b = math.log(MU_RANGE_FACTOR)
        t = torch.tanh(v[:, 0:m:2] / b)
        sig = torch.sigmoid(v[:, 1:m:2] + self.phase_offset)
        mu = torch.polar(self.mu0 * torch.exp(b * t), MU_PHASE_MAX * sig)
        ds = (1 - t * t)[..., None] * j[:, 0:m:2]
        dphi = (MU_PHASE_MAX * sig * (1 - sig))[..., None] * j[:, 1:m:2]
        return mu, mu[..., None] * torch.complex(ds, dphi), None
