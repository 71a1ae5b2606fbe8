"""Joint multi-frequency MRE-PINN: one model for every frequency of an exam.

MRE exams are multi-frequency by design (MDEV, k-MDEV and the BIOQIC protocols combine 3–8
frequencies); each frequency is another look at the same tissue. The joint model fits them
together:

* **wave**: one wave network per frequency (:class:`FrequencyHeads`), each with its SIREN
  input frequency matched to its own wavelength (one shared network with a head per
  frequency fitted the noise at the low frequencies: R 0.71 against 0.81 at 20 dB). Each
  frequency is standardised by its own RMS in the mask (higher frequencies are damped
  more; the equation is linear in ``u``, so a per-frequency scale changes nothing in the
  physics).
* **modulus**: a springpot (power-law) model ``G*(x, f) = G*_ref(x) · (f / f_ref)^α(x)``
  with ``α = 2φ/π``, where ``G*_ref`` is the modulus at the reference frequency ``f_ref``
  and ``φ`` its phase angle (a springpot's phase angle does not depend on the frequency).
  The modulus network of the single-frequency model gives ``G*_ref`` unchanged, so every
  frequency constrains the same two maps, ``|G*_ref|`` and ``α``.
  With ``frequency_model="free"`` the modulus network instead gives one ``G*`` per
  frequency (no coupling through the modulus; ``mu_pred`` is the map at ``f_ref``).
* **PDE**: the residual of each frequency, made dimensionless by its own ``ρω²``; the PDE
  loss is the mean over all of them (the sum over frequencies, scaled). With
  ``frequency_weights="omega2"`` each frequency's residual is multiplied by ``(f/f_max)²``
  first: the same error in a wave's second derivatives then counts as much at every
  frequency, where dividing by each ``ρω²`` makes it count ``(f_max/f)²`` more at a low one.

The joint model is a :class:`~napari_mrepinn.training.MREPINNModel` on a *stacked* view of
the example (:func:`stack_frequencies`: frequencies side by side as wave components, the
other variables at ``f_ref``), with :class:`JointEquation` as its physics, so training,
callbacks, checkpoints and the dock's worker are the single-frequency ones.
:func:`napari_mrepinn.recipe.fit` uses it whenever the example has several frequencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from .analytic import springpot_exponent, springpot_modulus
from .config import FREQUENCY_MODELS, FREQUENCY_WEIGHTS
from .data import MREExample, MREInputError
from .physics import WaveEquation
from .training import MREPINNModel

__all__ = [
    "FrequencyHeads",
    "JointEquation",
    "JointFrequencyModel",
    "component_labels",
    "reference_frequency",
    "springpot_modulus",
    "stack_frequencies",
    "unstack_components",
]

#: separator between the component and the frequency in a stacked component label
STACK_SEP = "@"


def reference_frequency(frequencies: Sequence[float], requested: float | None = None) -> float:
    """The reference frequency ``f_ref`` (Hz) of a joint fit: ``requested`` when given (any
    positive value; it need not be measured), else the measured frequency nearest the
    geometric mean (the middle of the band on a log scale, where the springpot
    extrapolates least)."""
    f = np.asarray(frequencies, float)
    if requested is not None:
        if not np.isfinite(requested) or requested <= 0:
            raise MREInputError(
                f"reference_frequency must be a positive number of Hz, got {requested!r}.")
        return float(requested)
    gm = float(np.exp(np.mean(np.log(f))))
    return float(f[np.argmin(np.abs(np.log(f / gm)))])


def component_labels(example: MREExample) -> list[str] | None:
    """The wave's component labels, or None for a scalar wave."""
    wave = example.ds["wave"]
    return [str(c) for c in example.ds["component"].values] if "component" in wave.dims else None


def stack_frequencies(example: MREExample, f_ref: float) -> tuple[MREExample, np.ndarray]:
    """A single-frequency view of a multi-frequency example for the joint model.

    Parameters
    ----------
    example : MREExample
        Example with a ``frequency`` dimension (Hz).
    f_ref : float
        Reference frequency in Hz (the view's ``frequency``; variables other than the wave
        that depend on the frequency are taken at the measured frequency nearest to it).

    Returns
    -------
    (MREExample, ndarray)
        The view, whose wave has ``F × C`` components labelled ``"<component>@<f> Hz"``
        (frequency-major; ``"@<f> Hz"`` for a scalar wave), each frequency divided by its
        RMS in the mask; and those ``F`` scales (units of the wave).
    """
    ds = example.ds
    freqs = example.frequencies
    wave = ds["wave"]
    mask = np.asarray(example.mask.values, bool)
    if "component" not in wave.dims:
        wave = wave.expand_dims(component=[""], axis=-1)
    comps = [str(c) for c in wave["component"].values]
    scales = np.empty(len(freqs))
    parts = []
    for k, f in enumerate(freqs):
        w = wave.isel(frequency=k, drop=True)
        vals = np.asarray(w.values)[mask]
        scales[k] = float(np.sqrt(np.mean(np.abs(vals) ** 2)))
        if not np.isfinite(scales[k]) or scales[k] <= 0:
            raise MREInputError(
                f"{example.source + ': ' if example.source else ''}the wave at {f:g} Hz is "
                "zero (or not finite) everywhere in the mask; drop that frequency "
                "(example.select_frequency) or check the data.")
        labels = [f"{c}{STACK_SEP}{f:g} Hz" for c in comps]
        parts.append((w / scales[k]).assign_coords(component=labels))
    stacked = xr.concat(parts, dim="component")
    i_ref = int(np.argmin(np.abs(freqs - f_ref)))
    base = ds.drop_vars("wave").isel(frequency=i_ref, drop=True) if "frequency" in ds.dims \
        else ds.drop_vars("wave")
    base = base.drop_vars("component", errors="ignore")
    base["wave"] = stacked.transpose(*[d for d in wave.dims if d != "frequency"])
    base.attrs["frequency"] = float(f_ref)
    return MREExample(base, source=example.source), scales


def unstack_components(stacked: xr.DataArray, frequencies: np.ndarray, components:
                       list[str] | None, scales: np.ndarray | None = None) -> xr.DataArray:
    """Back from the stacked ``F × C`` component axis to ``(frequency, ..., [component])``,
    each frequency multiplied by its scale (when given)."""
    n_c = len(components) if components is not None else 1
    parts = []
    for k in range(len(frequencies)):
        part = stacked.isel(component=slice(k * n_c, (k + 1) * n_c))
        if scales is not None:
            part = part * scales[k]
        if components is None:
            part = part.isel(component=0, drop=True)
        else:
            part = part.assign_coords(component=components)
        parts.append(part)
    out = xr.concat(parts, dim=xr.DataArray(np.asarray(frequencies, float), dims="frequency",
                                            name="frequency"))
    out.attrs = dict(stacked.attrs)
    return out


class FrequencyHeads(torch.nn.Module):
    """The joint model's wave network: one network per frequency, side by side.

    Each frequency has its own wave network, whose SIREN input frequency is matched to its
    own wavelength: one shared network with a head per frequency is as detailed at 50 Hz
    as the 100 Hz wave needs, and at 20 dB its low-frequency heads fit the noise (four-target
    slice at 50–100 Hz, 20 dB: R 0.71 and CTE 19 % for the largest target, against 0.78 for
    the median single-frequency fit).

    Parameters
    ----------
    nets : list of PINN
        One network per frequency (``C`` complex outputs each), in the order of the
        frequencies.
    input_scales : sequence of float
        Factor on the shared network input for each network: ``ω0_k / ω0`` (its input
        frequency over the model's).

    Notes
    -----
    Offers the two methods :class:`~napari_mrepinn.networks.MREPINN` calls on its wave
    network (``raw`` and ``taylor``); the outputs are concatenated frequency by frequency,
    the layout of :func:`stack_frequencies`.
    """

    def __init__(self, nets: Sequence[torch.nn.Module], input_scales: Sequence[float]) -> None:
        super().__init__()
        if len(nets) != len(input_scales):
            raise ValueError("one input scale per network")
        self.nets = torch.nn.ModuleList(nets)
        self.register_buffer("input_scales", torch.tensor(list(input_scales),
                                                          dtype=torch.float32))

    def raw(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([net.raw(z * s) for net, s in zip(self.nets, self.input_scales,
                                                          strict=True)], dim=1)

    def taylor(self, z: torch.Tensor, dz: torch.Tensor, order: str | None = "laplacian",
               derivative_graph: bool = True):
        parts = [net.taylor(z * s, dz * s.to(dz.dtype), order, derivative_graph)
                 for net, s in zip(self.nets, self.input_scales, strict=True)]
        second = None if parts[0][2] is None else torch.cat([p[2] for p in parts], dim=1)
        return (torch.cat([p[0] for p in parts], dim=1),
                torch.cat([p[1] for p in parts], dim=1), second)


class JointEquation(WaveEquation):
    """The residuals of one wave equation at every frequency of a joint fit.

    Parameters
    ----------
    base : WaveEquation
        The equation (its traction term, derivative axes, engine, density and ``detach``);
        its ``omega`` is ignored.
    frequencies : sequence of float
        The frequencies in Hz, in the order of the stacked wave's heads.
    f_ref : float
        Reference frequency in Hz: the modulus field is ``G*_ref``.
    components : list of str or None
        The wave's own component labels (``"x"``, ``"y"``, ``"z"``), the same at every
        frequency.
    model : {"springpot", "free"}
        ``"springpot"``: the modulus field is ``G*_ref`` ``(N, 1)`` and
        ``G*(f) = G*_ref (f/f_ref)^(2φ/π)``; ``"free"``: the modulus field gives one
        ``G*`` per frequency ``(N, F)``.
    weights : {"equal", "omega2"}
        Weight of each frequency's normalised residual in the loss
        (:meth:`loss_residual`): 1, or ``(f/f_max)²``.

    Notes
    -----
    Called with the stacked standardised wave ``(N, F·C)`` and the modulus field, it
    returns the ``(N, F·C)`` residuals, frequency-major; :meth:`normalized` divides each
    frequency's block by its own ``ρω²``. The springpot modulus at ``f`` and its gradient
    follow from ``G*_ref`` and ``∇G*_ref`` by the chain rule:
    ``∇G*(f) = G*(f) (∇G*_ref/G*_ref + (2/π) ln(f/f_ref) ∇φ)``.
    """

    def __init__(self, base: WaveEquation, frequencies: Sequence[float], f_ref: float,
                 components: list[str] | None, model: str = "springpot",
                 weights: str = "equal") -> None:
        if model not in FREQUENCY_MODELS:
            raise MREInputError(f"frequency_model must be one of {FREQUENCY_MODELS}, "
                                f"got {model!r}.")
        if weights not in FREQUENCY_WEIGHTS:
            raise MREInputError(f"frequency_weights must be one of {FREQUENCY_WEIGHTS}, "
                                f"got {weights!r}.")
        self.model = model
        self.weights = weights
        super().__init__(f_ref, rho=base.rho, lambda_=base.lambda_, detach=base.detach,
                         engine=base.engine, no_z=base.no_z)
        self.base = base
        self.name = f"{model}-{base.name}"
        self.wave_order = base.wave_order
        self.needs_mu_grad = base.needs_mu_grad or model == "springpot"  # ∇φ in G*(f)
        self.frequencies = np.asarray(frequencies, float)
        self.f_ref = float(f_ref)
        self.components = components
        self.n_components = len(components) if components is not None else 1
        # ln(f/f_ref)·2/π: the exponent of the springpot per unit phase angle (the torch
        # side of analytic.springpot_exponent / springpot_modulus)
        self._log_ratio = [2 / math.pi * math.log(f / self.f_ref) for f in self.frequencies]

    def __repr__(self) -> str:
        fs = ", ".join(f"{f:g}" for f in self.frequencies)
        return (f"JointEquation({self.base!r}, frequencies=[{fs}] Hz, f_ref={self.f_ref:g}, "
                f"model={self.model!r}, weights={self.weights!r})")

    def body_coefficients(self) -> list[float]:
        """``ρω²`` of each frequency (kg/(m³·s²))."""
        return [self.rho * (2 * math.pi * f) ** 2 for f in self.frequencies]

    def frequency_weights(self) -> list[float]:
        """Weight of each frequency's normalised residual in the loss: 1 (``"equal"``) or
        ``(f/f_max)²`` (``"omega2"``)."""
        if self.weights == "omega2":
            f_max = float(self.frequencies.max())
            return [(f / f_max) ** 2 for f in self.frequencies]
        return [1.0] * len(self.frequencies)

    def modulus_at(self, k: int, mu: torch.Tensor, dmu: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The modulus (Pa) and its gradient at frequency ``k``: the springpot's from
        ``G*_ref``, or the free model's own column ``k``."""
        if self.model == "free":
            return mu[:, k : k + 1], None if dmu is None else dmu[:, k : k + 1]
        c = self._log_ratio[k]
        if c == 0.0:
            return mu, dmu
        gk = mu * torch.exp(c * torch.angle(mu))
        if dmu is None:
            return gk, None
        rel = dmu / mu[..., None]  # ∇G/G = ∇ln|G| + i∇φ
        return gk, gk[..., None] * (rel + c * rel.imag)

    def __call__(
        self,
        x: torch.Tensor,
        u: Any,
        mu: Any,
        *,
        components: Sequence[str] | None = None,
        create_graph: bool | None = None,
        need_mu_grad: bool = False,
        fields: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Residuals ``(N, F·C)`` in ``Pa · [u] / m²`` (see the class notes)."""
        dims, uv, du, d2u, muv, dmu = self.evaluate_fields(
            x, u, mu, create_graph=create_graph, need_mu_grad=need_mu_grad, fields=fields)
        n_c = self.n_components
        axes = self._axes(self.components, dims, n_c)
        out = []
        for k, rb in enumerate(self.body_coefficients()):
            sl = slice(k * n_c, (k + 1) * n_c)
            gk, dgk = self.modulus_at(k, muv, dmu)
            d2 = d2u[:, sl] if d2u is not None else None
            trac = self.base.traction(uv[:, sl], du[:, sl], d2, gk,
                                      dgk if self.base.needs_mu_grad else None, axes)
            out.append(trac + rb * uv[:, sl])
        return torch.cat(out, dim=1)

    def normalized(self, x: torch.Tensor, u: Any, mu: Any, **kwargs: Any) -> torch.Tensor:
        """Each frequency's residual divided by its own ``ρω²`` (dimensionless)."""
        r = self(x, u, mu, **kwargs)
        coef = torch.tensor(self.body_coefficients(), dtype=r.real.dtype, device=r.device)
        return r / coef.repeat_interleave(self.n_components)

    def loss_residual(self, x: torch.Tensor, u: Any, mu: Any, **kwargs: Any) -> torch.Tensor:
        """:meth:`normalized`, each frequency's block times its :meth:`frequency_weights`
        (the residual maps shown stay :meth:`normalized`)."""
        r = self.normalized(x, u, mu, **kwargs)
        if self.weights == "equal":
            return r
        w = torch.tensor(self.frequency_weights(), dtype=r.real.dtype, device=r.device)
        return r * w.repeat_interleave(self.n_components)


class JointFrequencyModel(MREPINNModel):
    """:class:`~napari_mrepinn.training.MREPINNModel` of a joint multi-frequency fit.

    It trains on the stacked view (:func:`stack_frequencies`) with a
    :class:`JointEquation`; :meth:`results` gives the maps on the original example's
    axes.

    Parameters
    ----------
    original : MREExample
        The multi-frequency example (with ``mu_ahi`` when the recipe computed it).
    stacked : MREExample
        Its stacked view.
    scales : ndarray
        The per-frequency wave scales of the view.
    pinn, pde, config, **overrides
        As for :class:`~napari_mrepinn.training.MREPINNModel` (``pde`` a
        :class:`JointEquation`).
    """

    def __init__(self, original: MREExample, stacked: MREExample, scales: np.ndarray,
                 pinn: Any, pde: JointEquation, config: Any = None,
                 **overrides: Any) -> None:
        super().__init__(stacked, pinn, pde, config, **overrides)
        if pde.model == "free":  # mu_pred: the map at the reference frequency
            self.result_modulus = int(np.argmin(np.abs(original.frequencies - pde.f_ref)))
        self.original = original
        self.scales = np.asarray(scales, float)
        self.frequencies = original.frequencies
        self.f_ref = pde.f_ref
        self.components = component_labels(original)

    @property
    def result_example(self) -> MREExample:
        """The multi-frequency example the results belong to."""
        return self.original

    def results(self, progress: bool = False) -> xr.Dataset:
        """The public result variables on the original axes.

        ``wave_pred`` and ``pde_residual`` with the example's ``frequency`` axis;
        ``mu_pred`` is ``G*_ref`` (complex Pa at ``f_ref``, attrs ``frequency``);
        ``mu_pred_f`` the springpot modulus at every frequency (``frequency, x, y[, z]``);
        ``mu_alpha`` the springpot exponent ``α = 2φ/π`` (dimensionless, 0 = elastic, 1 =
        viscous).
        """
        stacked = super().results(progress=progress)
        freqs, comps = self.frequencies, self.components
        wave = unstack_components(stacked["wave_pred"], freqs, comps, self.scales)
        resid = unstack_components(stacked["pde_residual"], freqs, comps)
        wdims = self.original["wave"].dims
        out = xr.Dataset({
            "wave_pred": wave.transpose(*wdims),
            "pde_residual": resid.transpose(*wdims),
        })
        mu = stacked["mu_pred"]
        out["mu_pred"] = mu
        out["mu_pred"].attrs.update(units="Pa", frequency=self.f_ref,
                                    long_name=f"G* at the reference frequency {self.f_ref:g} Hz")
        fdim = xr.DataArray(freqs, dims="frequency", name="frequency")
        if self.pde.model == "free":
            maps = [mu.copy(data=self._mu_all[:, k].reshape(mu.shape))
                    for k in range(len(freqs))]
            out["mu_pred_f"] = xr.concat(maps, dim=fdim)
            out["mu_pred_f"].attrs.update(units="Pa", long_name="G*(f), one map per frequency")
        else:
            out["mu_pred_f"] = xr.concat([springpot_modulus(mu, f, self.f_ref) for f in freqs],
                                         dim=fdim)
            out["mu_pred_f"].attrs.update(units="Pa", long_name="springpot G*(f)")
            out["mu_alpha"] = xr.DataArray(
                springpot_exponent(mu.values), dims=mu.dims, coords=mu.coords,
                attrs={"units": "1", "long_name": "springpot exponent α"})
        out["wave_pred"].attrs["units"] = self.original["wave"].attrs.get("units", "")
        out["pde_residual"].attrs["units"] = "1"
        if "mu_ahi" in self.original:
            out["mu_ahi"] = self.original["mu_ahi"]
        out.attrs["iteration"] = int(self.iteration)
        return out

    def settings(self) -> dict[str, Any]:
        s = super().settings()
        s.update(frequencies_hz=[float(f) for f in self.frequencies],
                 reference_frequency_hz=self.f_ref, frequency_model=self.pde.model,
                 frequency_weights=self.pde.frequency_weights(),
                 wave_scales=[float(v) for v in self.scales])
        return s
