"""The default MRE-PINN recipe: build a model from an example and a configuration, train it,
and return the example with the results.

:func:`fit` is what ``mrepinn fit``, the napari training dock (through :func:`build_model`)
and scripts run; every option is a field of :class:`~napari_mrepinn.config.TrainingConfig`.

Examples
--------
>>> import napari_mrepinn as mp
>>> example = mp.simulate.cylinder(frequency=60).add_gaussian_noise(1e-3, seed=0)
>>> result = mp.fit(example, iters=3000)                     # doctest: +SKIP
>>> config = mp.TrainingConfig(iters=3000, n_points=2048)
>>> result = mp.fit(example, config, lr=5e-4)                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from . import multifreq
from .callbacks import Callback, Convergence, LRDecay, ProgressBar, Resampler
from .config import TrainingConfig, default_threads
from .data import MREExample, MREInputError, warn_implausible_modulus
from .networks import MREPINN, resolve_modulus_prior
from .physics import WaveEquation
from .training import MREPINNModel

log = logging.getLogger(__name__)

__all__ = [
    "AUTO_WIDTH_COMPLEXITY",
    "ENSEMBLE_MAPS",
    "FIT_RESULTS",
    "RUN_RECORD",
    "auto_omega",
    "build_model",
    "drop_earlier_run",
    "fit",
    "result_attrs",
    "result_config",
    "schedule_callbacks",
    "torch_threads",
    "wave_complexity",
]


#: the variables a fit adds to its example (a joint multi-frequency fit: the last two too)
FIT_RESULTS = ("wave_pred", "mu_pred", "pde_residual", "mu_pred_f", "mu_alpha")
#: the maps an ensemble adds beside its mean ``mu_pred`` (:mod:`napari_mrepinn.uncertainty`)
ENSEMBLE_MAPS = ("mu_spread", "mu_uncertainty")
#: the attrs that record a run (:func:`result_attrs`; the napari dock adds the iteration)
RUN_RECORD = ("mrepinn_config_json", "mrepinn_settings_json", "mrepinn_history_json",
              "mrepinn_version", "mrepinn_iteration")


def drop_earlier_run(example: MREExample) -> list[str]:
    """Remove, in place, what an earlier fit left in ``example``: its results
    (:data:`FIT_RESULTS`, :data:`ENSEMBLE_MAPS`) and its record (:data:`RUN_RECORD`).

    A result file opened as the input of a new fit carries them; kept, an old ensemble's
    ``mu_uncertainty`` or an old joint fit's ``mu_pred_f`` would be saved beside the new
    ``mu_pred`` as if they described it. The inputs, the direct inversions (``mu_ahi``,
    ``mu_mdev``, ``kmdev_speed``) and other attrs stay.

    Returns
    -------
    list of str
        The names removed (variables, then attrs).
    """
    names = [n for n in (*FIT_RESULTS, *ENSEMBLE_MAPS) if n in example.ds.data_vars]
    attrs = [k for k in RUN_RECORD if k in example.ds.attrs]
    if names:
        example.ds = example.ds.drop_vars(names)
    for key in attrs:
        del example.ds.attrs[key]
    return names + attrs


def _config(config: TrainingConfig | None, overrides: dict[str, Any]) -> TrainingConfig:
    if config is not None and not isinstance(config, TrainingConfig):
        raise TypeError(
            f"config must be a TrainingConfig (options go as keywords: fit(example, "
            f"iters=...)), got {config!r}"
        )
    config = config or TrainingConfig()
    return config.replace(**overrides) if overrides else config


def build_model(
    example: MREExample,
    config: TrainingConfig | None = None,
    *,
    mu_prior: Any = None,
    **overrides: Any,
) -> MREPINNModel:
    """The compiled :class:`~napari_mrepinn.training.MREPINNModel` of the recipe (what
    :func:`fit` trains).

    Runs the AHI (stored as ``mu_ahi`` in a *copy* of the example, ``model.example``), takes
    its robust median as the modulus prior, picks the SIREN input frequencies from the prior
    wavelength (:func:`auto_omega`) and the width from the field's complexity
    (:func:`wave_complexity`), and builds and compiles the model. The GUI and the benchmark
    use it to train exactly what :func:`fit` trains.

    A multi-frequency example gets the joint model of :mod:`napari_mrepinn.multifreq`
    (one wave head per frequency, a springpot modulus, the PDE at every frequency; the AHI
    prior at the reference frequency).

    Parameters
    ----------
    example : MREExample
        The example (not modified): one frequency, or several for a joint fit.
    config : TrainingConfig, optional
        The options (default: the recipe's); checked with :meth:`TrainingConfig.check`.
    mu_prior : optional
        Overrides the AHI prior (see
        :func:`~napari_mrepinn.networks.resolve_modulus_prior`): a number in Pa, a
        ``(low, high)`` range in Pa, or a map.
    **overrides
        Fields of ``config`` to change.
    """
    config = _config(config, overrides).check(example)
    example.check_signal()  # a wave without motion holds no stiffness
    out = example.copy()
    dropped = drop_earlier_run(out)  # a result file as input: this run's results replace them
    if dropped:
        log.info("%s: the results of an earlier fit (%s) are not carried into this one",
                 example.source or "the example", ", ".join(dropped))
    freqs = out.frequencies
    multi = len(freqs) > 1
    f_ref = freqs[0]
    if multi:
        f_ref = multifreq.reference_frequency(freqs, config.reference_frequency)

    # direct inversion: a baseline to show and the physical prior of the modulus
    if config.ahi:
        from . import baselines

        # the prior differentiates along the same axes as the PDE
        dims = "xy" if config.in_plane(out) else "".join(out.spatial_dims)
        mu_ahi = baselines.ahi(out, smoothing="gaussian", sigma=config.ahi_sigma, dims=dims)
        if "frequency" in mu_ahi.dims:  # the AHI at the (measured) frequency nearest f_ref
            i_ref = int(np.argmin(np.abs(freqs - f_ref)))
            mu_ahi = mu_ahi.isel(frequency=i_ref, drop=True)
            mu_ahi.attrs["frequency"] = float(freqs[i_ref])
        out.ds["mu_ahi"] = mu_ahi
        if mu_prior is None:
            mu_prior = mu_ahi

    if config.seed is not None:
        torch.manual_seed(int(config.seed))
    # the networks see one frequency: the example itself, or the joint fit's stacked view
    # (every frequency's wave as extra components, the other variables at f_ref)
    view, scales = multifreq.stack_frequencies(out, f_ref) if multi else (out, None)
    mu_prior = resolve_modulus_prior(view, mu_prior)
    # the shortest wavelength sets the detail both networks may resolve (a joint fit's
    # modulus map is as sharp as its highest frequency allows)
    f_wave = float(freqs.max())
    n_hidden = config.n_hidden
    if n_hidden == 0:  # auto: wider networks for complex wave fields
        # per frequency at the highest one (a joint fit's view has F x C components; each
        # frequency has its own wave network, see multifreq.FrequencyHeads)
        complexity = wave_complexity(view, mu_prior, frequency=f_wave) / len(freqs)
        n_hidden = 64 * (2 if complexity > AUTO_WIDTH_COMPLEXITY else 1)
    omega = config.omega
    if omega is None:
        omega = auto_omega(view, mu_prior, config.omega_factor, frequency=f_wave)
    mu_omega = config.mu_omega
    if mu_omega is None:
        mu_omega = auto_omega(view, mu_prior, config.mu_omega_factor, frequency=f_wave)
    net = MREPINN(
        view, omega=float(omega), mu_omega=float(mu_omega), n_layers=config.n_layers,
        n_hidden=n_hidden, activ=config.activ, dense=config.dense,
        polar_input=config.polar_input, mu_prior=mu_prior,
    )
    if multi:  # one wave network per frequency, each as detailed as its own wavelength
        net.use_frequency_heads([float(f) / f_wave for f in freqs])  # ω0 ∝ wavenumber ∝ f
    eq = WaveEquation.from_name(
        config.pde, omega=view.frequency, rho=out.density, detach=not config.pde_trains_wave,
        engine=config.engine,
        no_z=config.in_plane(out),
    )
    if multi:
        if config.frequency_model == "free":
            net.use_moduli(len(freqs))
        eq = multifreq.JointEquation(eq, freqs, f_ref, multifreq.component_labels(out),
                                     config.frequency_model, config.frequency_weights)
        model: MREPINNModel = multifreq.JointFrequencyModel(out, view, scales, net, eq, config)
    else:
        model = MREPINNModel(out, net, eq, config)
    model.compile()
    return model


def fit(
    example: MREExample,
    config: TrainingConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    mu_prior: Any = None,
    **overrides: Any,
) -> MREExample:
    """Invert one example with the default MRE-PINN recipe.

    The recipe (:func:`build_model`, then training and the full-grid test):

    1. **AHI** (``baselines.ahi``, Gaussian pre-smoothing σ = 1 voxel) gives ``mu_ahi``;
       its robust median in the mask is the **modulus prior** ``G0``: the modulus network
       starts exactly at ``G0`` and its output is ``G0·exp(s)·e^{iφ}``. The ground truth
       ``mre`` is never used.
    2. **Networks** of 4 layers × 64 units (dense, sine): on a CPU the published 5 × 128 with
       ω0 = 60 fits the noise, and its Laplacian is wrong by several times its size; 128
       units when the field is complex (``auto_width``: many wavelengths × components, e.g.
       a three-component 80 × 100 mm slice at 90 Hz), where 64 cannot fit the wave. The
       SIREN input frequency is matched to the prior's wavelength (:func:`auto_omega`):
       ``omega_factor = 1.0`` for the wave (smooth: its Laplacian must not follow the noise;
       on the cylinder at 20 dB, noise seeds 0/1/2, 1.5 gave R 0.863 / 0.773 / 0.812 and 1.0
       gives 0.859 / 0.840 / 0.849, at a cost of 0.01–0.02 at 30 dB) and
       ``mu_omega_factor = 2.5`` for the modulus (sharper edges).
    3. **Wave-only warmup** of ``pde_warmup_iters`` (2500, half the run) iterations: they
       cost a quarter of a PDE iteration, and a wave fit whose derivatives are still wrong
       pulls the modulus away from the prior (on the three-component four-target slice at
       90 Hz, a direct inversion of the wave network's Laplacian gives R = 0.48 after 1000
       wave-only iterations and 0.57 after 3000; 2500 + 2500 PDE iterations instead of
       1000 + 3000 take that fit from R = 0.83 to 0.85 and the cylinder from 0.87 to
       0.88 for about the same CPU time). Then the PDE weight ramps ×10 per 100
       iterations from 0.01 to 1 (the published schedule, shortened). The PDE loss trains
       both networks (``pde_trains_wave``; the published code trains only the modulus
       network with it): a wave network fitted to the data alone can match the values to
       1 % with a Laplacian that is wrong, and letting the PDE correct it raised R on every
       2-D case of the validation family (median 0.802 → 0.841 at 30 dB, 0.776 → 0.854 at
       20 dB) and on the 3-D cases (0.442 → 0.575 at 30 dB).
    4. **Adam** at ``lr = 1e-3`` with a cosine decay to 0.1× after the warmup (late small
       steps average out the noise of the random batches), 1024 fresh points per
       iteration, at most 5000 iterations in all (``config.iters``); the published 100 000
       iterations at 1e-4 would take hours on a CPU.
    5. **Converged stop** (:class:`~napari_mrepinn.callbacks.Convergence`): from 500
       iterations after the warm-up, every 100 iterations the median relative change of
       ``|G*|`` on the held-out points is measured; two checks in a row below 0.2 %
       (``stop_tol``) end the run. The map forms within a few hundred PDE iterations, and
       small targets keep sharpening after the median has nearly stopped changing (a 1 %
       tolerance stopped the cylinder at CTE 78 % instead of 84 %): the family's median
       run stops at 4 100 iterations at 30 dB, 4 950 at 20 dB.

    Losses are dimensionless (see :mod:`napari_mrepinn.training`), so these defaults do not
    depend on the units or scale of the wave. Torch uses ``config.threads`` CPU threads
    during the fit (0: :func:`~napari_mrepinn.config.default_threads`, one on machines with
    two cores or fewer) and the caller's setting afterwards.

    Parameters
    ----------
    example : MREExample
        The example: one frequency, or several, which are then fitted jointly
        (:mod:`napari_mrepinn.multifreq`: ``mu_pred`` is then G* at the reference
        frequency, with ``mu_pred_f`` at every frequency and the springpot exponent
        ``mu_alpha``).
    config : TrainingConfig, optional
        Every option, with the recipe's defaults (see
        :class:`~napari_mrepinn.config.TrainingConfig`).
    callbacks : sequence of Callback
        Extra callbacks (a GUI, logging...).
    progress : bool
        Show a tqdm progress bar.
    mu_prior : optional
        Overrides the AHI prior (see :func:`build_model`).
    **overrides
        Fields of ``config`` to change: ``fit(example, iters=3000, lr=5e-4)``. With
        ``ensemble_members=n`` (> 1) the recipe runs ``n`` times with consecutive seeds
        and reports their mean, ``mu_spread`` and ``mu_uncertainty``
        (:func:`napari_mrepinn.uncertainty.fit_ensemble`).

    Returns
    -------
    MREExample
        A copy with ``wave_pred``, ``mu_pred``, ``pde_residual`` and ``mu_ahi`` added and the
        attrs ``mrepinn_config_json`` (the configuration), ``mrepinn_settings_json`` (what
        the recipe chose from the data, and the time), ``mrepinn_history_json`` and
        ``mrepinn_version`` (:func:`result_attrs`).
    """
    config = _config(config, overrides)
    if config.ensemble_members > 1:
        if callbacks or mu_prior is not None:
            raise MREInputError(
                "an ensemble fit (ensemble_members > 1) runs its members in other "
                "processes: it takes no callbacks or mu_prior; fit them one by one instead.")
        from .uncertainty import fit_ensemble

        return fit_ensemble(example, config.replace(ensemble_members=1),
                            members=config.ensemble_members, progress=progress)
    with torch_threads(config.threads):
        model = build_model(example, config, mu_prior=mu_prior)
        out = model.result_example
        cbs: list[Callback] = [Resampler(period=config.resample_every)]
        cbs.extend(schedule_callbacks(model, config))
        if progress:
            cbs.append(ProgressBar(config.iters))
        cbs.extend(callbacks)
        t0 = time.perf_counter()
        model.train(config.iters, callbacks=cbs)
        seconds = time.perf_counter() - t0
        res = model.results(progress=progress)
    for name in FIT_RESULTS:
        if name in res:
            out.ds[name] = res[name]
    warn_implausible_modulus(out["mu_pred"], out.mask, name="mu_pred", source=out.source)
    out.ds.attrs.update(result_attrs(model, config, seconds))
    return out


def result_attrs(model: MREPINNModel, config: TrainingConfig, seconds: float
                 ) -> dict[str, str]:
    """The record of a finished run that :func:`fit` writes into its result's attrs
    (the napari dock writes it for the members of an ensemble too).

    Parameters
    ----------
    model : MREPINNModel
        The trained model.
    config : TrainingConfig
        The configuration it was built and trained with.
    seconds : float
        Training time (s).

    Returns
    -------
    dict
        ``mrepinn_config_json`` (the configuration), ``mrepinn_settings_json`` (what the
        recipe chose from the data, the iterations run, the convergence, the time and the
        threads), ``mrepinn_history_json`` (the loss records) and ``mrepinn_version``.
    """
    from . import __version__

    settings = model.settings()
    settings.update(iters=model.iteration, converged_at=model.converged_at,
                    seconds=round(seconds, 3),
                    threads=resolved_threads(config.threads))
    return {
        "mrepinn_config_json": config.to_json(),
        "mrepinn_settings_json": json.dumps(settings),
        "mrepinn_history_json": json.dumps(model.history),
        "mrepinn_version": __version__,
    }


def schedule_callbacks(model: MREPINNModel, config: TrainingConfig) -> list[Callback]:
    """The recipe's schedule of a fresh run, after the PDE warm-up: the cosine decay of the
    learning rate and the convergence stop (what :func:`fit` and the napari dock add besides
    resampling and progress)."""
    out: list[Callback] = []
    start = model.pde_warmup_iters
    if config.lr_decay < 1:
        out.append(LRDecay(config.iters - start, final_factor=config.lr_decay, start=start))
    if config.stop_tol > 0:
        out.append(Convergence(config.stop_tol, config.stop_every, config.stop_patience))
    return out


def result_config(result: MREExample) -> TrainingConfig:
    """The configuration a result of :func:`fit` was made with (0.1 results included).

    Raises
    ------
    MREInputError
        When the example carries no MRE-PINN result settings.
    """
    attrs = result.ds.attrs
    if "mrepinn_config_json" in attrs:
        return TrainingConfig.from_json(attrs["mrepinn_config_json"])
    if "mrepinn_settings_json" in attrs:  # written by 0.1
        return TrainingConfig.from_legacy_settings(json.loads(attrs["mrepinn_settings_json"]))
    raise MREInputError(
        f"{result.source or 'this example'}: no MRE-PINN result settings "
        "(mrepinn_config_json); it was not written by napari_mrepinn.fit."
    )


def resolved_threads(threads: int) -> int:
    """The CPU threads a config's ``threads`` means (0: :func:`default_threads`)."""
    return int(threads) if threads and threads > 0 else default_threads()


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` torch CPU threads (0: the default policy), then put
    the caller's setting back."""
    n = resolved_threads(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


#: above this :func:`wave_complexity` the recipe doubles the network width
AUTO_WIDTH_COMPLEXITY = 12.0


def wave_complexity(example: MREExample, mu_prior: complex,
                    frequency: float | None = None) -> float:
    """How much a wave network has to represent: the in-plane field of view in squared prior
    wavelengths (at ``frequency`` Hz, default the example's) times the number of components
    (the 64 mm cylinder at 60 Hz and 3 kPa: ~5; an 80 × 100 mm three-component slice at 90
    Hz: ~65)."""
    f = example.frequency if frequency is None else float(frequency)
    lam = np.sqrt(abs(mu_prior) / example.density) / f
    area = np.prod([e for d, e in example.extent.items() if d != "z"])
    return float(area / lam**2 * example.n_components)


def auto_omega(example: MREExample, mu_prior: complex, factor: float = 2.0,
               frequency: float | None = None) -> float:
    """SIREN input frequency ω0 matched to the expected wavelength.

    The networks see ``(x − centre)/L · ω0`` with ``L`` the smallest in-plane extent
    (:func:`~napari_mrepinn.networks.input_length`); with ``ω0 = factor · k0 · extent`` (k0 =
    ``ω√(ρ/|G0|)`` the wavenumber of the prior, ``extent`` the largest in-plane grid extent)
    one unit of network input is ``(L/extent)/(factor·k0)`` metres: ``1/(factor·k0)`` on a
    square field of view, whatever its size, so the wave network starts as smooth on a small
    field of view as on a large one (a fixed ω0 on a small grid fits the wave with wiggles
    whose Laplacian is wrong by several times its size), and a little more detailed on an
    oblong one (the factors were tuned on the square cylinder and the 80 × 100 mm slice).
    """
    f = example.frequency if frequency is None else float(frequency)  # Hz
    k0 = 2 * np.pi * f * np.sqrt(example.density / abs(mu_prior))
    extent = max(e for d, e in example.extent.items() if d != "z")
    return float(factor * k0 * extent)


