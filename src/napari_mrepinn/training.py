"""The Qt-free MRE-PINN training loop shared by the CLI, scripts and the napari dock.

:class:`MREPINNModel` couples an :class:`~napari_mrepinn.networks.MREPINN` and a
:class:`~napari_mrepinn.physics.WaveEquation` with the data of one example, all kept on the
device; each iteration indexes a batch of collocation points out of the masked region.

Losses are dimensionless, so one set of default weights works at any data scale:

* wave loss: ``mean |u_pred − u| ² / scale(u)²`` (the network predicts ``u / scale(u)``,
  ``scale(u)`` = RMS of the data in the mask);
* PDE loss: ``mean |r|²`` with ``r = residual / (ρω² · scale(u))`` — the residual of the
  standardised wave divided by ``ρω²``, i.e. relative to the inertia term;
* elastogram loss (supervised, off by default): ``mean |G*_pred − G*_true|² / |G0|²``;
* anatomy loss: ``mean |a_pred − a|²`` on per-channel standardised images.

The terms are listed once, in :data:`napari_mrepinn.config.LOSS_TERMS`; their weights are
``config.loss_weights`` (:class:`~napari_mrepinn.config.LossWeights`). The PDE weight
follows a schedule (0 during the warm-up, then ``pde_init_weight · pde_step_factor^k`` every
``pde_step_iters`` iterations up to the PDE weight). By default
(``config.pde_trains_wave``) the PDE loss trains both networks; with it off (the published
setting, the equation's ``detach=True``) it trains only the modulus network and the wave
loss only the wave network.

Every option comes from one :class:`~napari_mrepinn.config.TrainingConfig`; the recipe that
builds and trains a model (:func:`~napari_mrepinn.recipe.fit`) lives in
:mod:`napari_mrepinn.recipe`.

A step whose loss or gradient is not finite is rejected: the model and optimizer go back to the
last good state, the learning rate is halved and a warning is issued.

The full-grid evaluation behind :meth:`MREPINNModel.test` and :meth:`MREPINNModel.results`
(batched predictions, the ``pred``/``diff``/``true`` dataset) is in
:mod:`napari_mrepinn.full_grid`.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.nn.utils import get_total_norm

from . import checkpoints
from .callbacks import Callback, LRDecay, ProgressBar, Resampler
from .config import LOSS_TERMS, TV_TERM, TrainingConfig, resolve_device
from .data import MREExample, MREInputError
from .full_grid import grid_comparison, grid_predictions, public_results
from .networks import MREPINN
from .physics import WaveEquation

__all__ = [
    "Callback",
    "LRDecay",
    "MREPINNModel",
    "ProgressBar",
    "Resampler",
    "StepResult",
    "msae_loss",
]

log = logging.getLogger(__name__)

#: consecutive rejected (non-finite) steps after which training stops
MAX_REJECTIONS = 20


def msae_loss(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Mean squared absolute error ``mean |y_true − y_pred|²`` (complex-safe)."""
    d = y_true - y_pred
    if d.is_complex():
        return (d.real**2 + d.imag**2).mean()
    return (d**2).mean()


# ---------------------------------------------------------------------------- the model
@dataclass
class StepResult:
    """What one :meth:`MREPINNModel.step` did.

    Attributes
    ----------
    losses : dict of str to float
        The unweighted loss terms on the batch, before the step (keys of
        :data:`~napari_mrepinn.config.LOSS_TERMS`, and ``tv``).
    total : float
        The weighted total.
    accepted : bool
        False when the loss or a gradient was not finite (the step was not applied).
    timings : dict of str to float
        Seconds spent evaluating the networks and their derivatives (``model``), computing
        and back-propagating the loss (``loss``) and checking and applying the step
        (``step``); filled only when the step was timed (it then synchronises the device).
    """

    losses: dict[str, float]
    total: float
    accepted: bool
    timings: dict[str, float] = field(default_factory=dict)


class MREPINNModel:
    """An MRE-PINN with its data, optimiser, schedule and history.

    Parameters
    ----------
    example : MREExample
        Single-frequency example. Its ground truth ``mre`` is read only for the supervised
        elastogram loss (weight ``loss_weights.elast``, 0 by default) and for display in
        :meth:`test`.
    pinn : MREPINN
        The networks (moved to the config's device).
    pde : WaveEquation
        The physics (``omega`` in Hz should be the example's frequency).
    config : TrainingConfig, optional
        Every training option (default: the recipe's). The model reads the loss weights, the
        PDE schedule (with the warm-up capped at half of ``config.iters``, see
        :attr:`TrainingConfig.warmup_iters`), ``n_points``, ``optimizer``, ``lr``,
        ``test_fraction``, ``mu_tv_weight``, ``seed`` and ``device``.
    **overrides
        Fields of ``config`` to change (``MREPINNModel(ex, net, pde, n_points=256)``).
    """

    def __init__(
        self,
        example: MREExample,
        pinn: MREPINN,
        pde: WaveEquation,
        config: TrainingConfig | None = None,
        **overrides: Any,
    ) -> None:
        config = (config or TrainingConfig()).replace(**overrides) if overrides else (
            config or TrainingConfig())
        config.check()
        if len(example.frequencies) != 1:
            raise MREInputError(
                "MREPINNModel trains on one frequency; select one with "
                "example.select_frequency(f), or fit them jointly with napari_mrepinn.fit "
                "(see napari_mrepinn.multifreq)."
            )
        self.config = config
        self.example = example
        self.pde = pde
        self.weights = config.loss_weights
        self.pde_warmup_iters = config.warmup_iters
        g0 = abs(pinn.mu_prior)
        self._k0 = 2 * np.pi * example.frequency * np.sqrt(example.density / g0)  # rad/m
        self.device = torch.device(resolve_device(config.device))
        self.seed = config.seed
        self.net = pinn.to(self.device)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.stop_training = False
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_name: str | None = None
        self.lr: float | None = None  # the current rate (decays, halves on rejected steps)
        self.lr_scale = 1.0  # product of the lr cuts of rejected steps
        self.loss_fn: Callable = msae_loss
        self.last_results: xr.Dataset | None = None
        self.prior: complex = complex(pinn.mu_prior)
        self.converged_at: int | None = None  # set by the Convergence callback
        self._good_state: dict[str, Any] | None = None
        self._rejections = 0
        self._generator = torch.Generator(device="cpu")
        seed = config.seed
        self._generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**31))
        if abs(pde.omega - example.frequency) > 1e-6 * example.frequency:
            warnings.warn(
                f"the PDE frequency ({pde.omega:g} Hz) differs from the example's "
                f"({example.frequency:g} Hz)",
                stacklevel=2,
            )
        self._load_data(config.test_fraction)
        self.resample()

    @property
    def result_example(self) -> MREExample:
        """The example the results belong to (:func:`~napari_mrepinn.recipe.fit` adds them
        to it); a joint multi-frequency model trains on a view of it."""
        return self.example

    #: which of the modulus network's moduli is ``mu_pred`` (a free joint fit: f_ref's)
    result_modulus: int = 0

    @property
    def n_points(self) -> int:
        """Collocation points per iteration."""
        return self.config.n_points

    # .......................................................................... data
    def _load_data(self, test_fraction: float) -> None:
        """Put the whole example on the device once (the loop only indexes it)."""
        ex, dev = self.example, self.device
        sdims = ex.spatial_dims
        grids = np.meshgrid(*[np.asarray(ex.ds[d].values, float) for d in sdims], indexing="ij")
        x = np.stack([g.ravel() for g in grids], axis=1)
        self.x_all = torch.tensor(x, dtype=torch.float32, device=dev)
        n = x.shape[0]
        u = np.asarray(ex["wave"].values).reshape(n, -1)
        u_scale = float(self.net.u_scale)
        dtype = torch.complex64 if np.iscomplexobj(u) else torch.float32
        self.u_all = torch.tensor(u / u_scale, dtype=dtype, device=dev)  # standardised
        self.a_all = None
        if self.net.n_anat:
            a = np.asarray(ex["anat"].values, float).reshape(n, -1)
            a = (a - self.net.a_loc.cpu().numpy()) / self.net.a_scale.cpu().numpy()
            self.a_all = torch.tensor(a, dtype=torch.float32, device=dev)
        self.mu_true_all = None
        if self.weights.elast > 0:
            if "mre" not in ex:
                raise MREInputError("the elastogram loss weight is > 0 but there is no 'mre'.")
            mre = np.asarray(ex["mre"].values).reshape(n) / abs(self.net.mu_prior)
            self.mu_true_all = torch.tensor(mre, dtype=torch.complex64, device=dev)[:, None]
        if self.weights.anat > 0 and self.a_all is None:
            raise MREInputError("the anatomy loss weight is > 0 but the example has no 'anat'.")
        mask = np.flatnonzero(np.asarray(ex.mask.values).ravel())
        perm = torch.randperm(len(mask), generator=self._generator).numpy()
        n_test = round(test_fraction * len(mask)) if len(mask) >= 20 else 0
        self.test_idx = torch.tensor(mask[perm[:n_test]], device=dev)
        self.train_idx = torch.tensor(np.sort(mask[perm[n_test:]]), device=dev)

    def resample(self) -> None:
        """Draw ``n_points`` collocation points (without replacement) from the training set."""
        n = len(self.train_idx)
        k = min(self.n_points, n)
        sel = torch.randperm(n, generator=self._generator)[:k].to(self.device)
        self.batch_idx = self.train_idx[sel]

    # .......................................................................... optimiser
    def compile(
        self,
        optimizer: str | None = None,
        lr: float | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = msae_loss,
    ) -> MREPINNModel:
        """Choose the optimiser (``"adam"`` or ``"L-BFGS"``), learning rate and loss function
        (default: the config's optimiser and rate).

        Recompiling keeps the networks and the history but starts a fresh optimiser state.
        """
        optimizer = self.config.optimizer if optimizer is None else optimizer
        lr = self.config.lr if lr is None else lr
        name = str(optimizer).lower().replace("-", "").replace("_", "")
        params = list(self.net.parameters())
        if name == "adam":
            # the fused kernel: one pass over all parameters (4× faster steps on a CPU)
            fused = self.device.type in ("cpu", "cuda")
            self.optimizer = torch.optim.Adam(params, lr=float(lr), fused=fused)
            self.optimizer_name = "adam"
        elif name == "lbfgs":
            # one L-BFGS step (with line search) per iteration, so callbacks and stopping
            # keep their per-iteration meaning
            self.optimizer = torch.optim.LBFGS(
                params, lr=float(lr), max_iter=1, max_eval=25, history_size=50,
                line_search_fn="strong_wolfe",
            )
            self.optimizer_name = "L-BFGS"
        else:
            raise MREInputError(f"optimizer must be 'adam' or 'L-BFGS', got {optimizer!r}")
        self.lr = float(lr)
        self.loss_fn = loss
        self._good_state = None
        return self

    def _set_lr(self, lr: float) -> None:
        self.lr = float(lr)
        assert self.optimizer is not None
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr

    # .......................................................................... losses
    def pde_weight(self, iteration: int | None = None) -> float:
        """PDE loss weight at ``iteration`` (default: the current one)."""
        it = self.iteration if iteration is None else int(iteration)
        c = self.config
        w_max = self.weights.pde
        k = it - self.pde_warmup_iters
        if w_max <= 0 or k < 0:
            return 0.0
        ramp = c.pde_init_weight * c.pde_step_factor ** (k // c.pde_step_iters)
        return float(min(w_max, ramp))

    def predict(self, idx: torch.Tensor, w_pde: float) -> dict[str, torch.Tensor]:
        """The network outputs each active loss term compares, at points ``idx`` (with
        graphs), by term name (:data:`~napari_mrepinn.config.LOSS_TERMS`, and ``tv``)."""
        net, w = self.net, self.weights
        x = self.x_all[idx]
        out: dict[str, torch.Tensor] = {}
        if w.wave > 0 and w_pde <= 0:
            out["wave"] = net.wave_std(x)
        if w.elast > 0 or w.anat > 0:
            r = net.mu_pinn.raw(net.normalize_input(x, "mu"))
            if w.elast > 0:
                out["elast"] = net._mu_from_raw(r) / abs(net.mu_prior)
            if w.anat > 0:
                out["anat"] = r[:, 2 * net.n_moduli:]
        if w_pde > 0:
            tv = self.config.mu_tv_weight > 0
            fields: dict[str, torch.Tensor] = {}
            out["pde"] = self.pde.loss_residual(
                x, net.wave_field, net.mu_field, need_mu_grad=tv, fields=fields
            )
            if w.wave > 0:  # the PDE's pass of the wave network serves the data loss too
                out["wave"] = fields["u"]
            if tv:
                g = fields["dmu"] / fields["mu"][..., None]  # ∇G*/G* = ∇log|G*| + i∇φ
                g2 = (g.real**2 + g.imag**2).sum(dim=(1, 2)) / self._k0**2
                out["tv"] = torch.sqrt(g2 + 1e-4)
        return out

    def losses(self, idx: torch.Tensor, pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each loss term of ``pred`` against its target at points ``idx``."""
        targets = {"wave": self.u_all, "elast": self.mu_true_all, "anat": self.a_all}
        out: dict[str, torch.Tensor] = {}
        for term in LOSS_TERMS:
            if term.name not in pred:
                continue
            p = pred[term.name]
            target = torch.zeros_like(p) if term.name == "pde" else targets[term.name][idx]
            out[term.name] = self.loss_fn(target, p)
        if TV_TERM.name in pred:
            out[TV_TERM.name] = pred[TV_TERM.name].mean()
        return out

    def term_weights(self, w_pde: float) -> dict[str, float]:
        """The weight of each loss term now (the PDE weight follows its schedule)."""
        weights = {t.name: self.weights[t.name] for t in LOSS_TERMS}
        weights["pde"] = w_pde
        # the regulariser follows the PDE schedule (relative weight mu_tv_weight)
        weights[TV_TERM.name] = self.config.mu_tv_weight * w_pde / max(self.weights.pde, 1e-30)
        return weights

    def total(self, losses: dict[str, torch.Tensor], w_pde: float) -> torch.Tensor:
        """The weighted sum of ``losses``."""
        weights = self.term_weights(w_pde)
        total = sum(weights[k] * v for k, v in losses.items())
        if not isinstance(total, torch.Tensor):  # nothing to train
            total = torch.zeros((), device=self.device, requires_grad=True)
        return total

    # .......................................................................... training
    def _snapshot(self) -> None:
        assert self.optimizer is not None
        self._good_state = {
            "model": copy.deepcopy(self.net.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def _reject(self, why: str) -> None:
        """Undo a non-finite step: restore the last good state and halve the lr."""
        assert self.optimizer is not None
        self._rejections += 1
        if self._good_state is not None:
            self.net.load_state_dict(self._good_state["model"])
            self.optimizer.load_state_dict(self._good_state["optimizer"])
        self._set_lr(self.lr * 0.5)
        self.lr_scale *= 0.5
        msg = (
            f"iteration {self.iteration}: {why}; step rejected, last good state restored, "
            f"learning rate lowered to {self.lr:.3g}"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)
        if self._rejections >= MAX_REJECTIONS:
            warnings.warn(
                f"{MAX_REJECTIONS} non-finite steps in a row; training stopped", RuntimeWarning,
                stacklevel=3,
            )
            self.stop_training = True

    def _grad_norms(self) -> tuple[float, float]:
        def norm(params: Iterable[torch.nn.Parameter]) -> float:
            sq = [p.grad.detach().pow(2).sum() for p in params if p.grad is not None]
            return float(torch.sqrt(sum(sq))) if sq else 0.0

        return norm(self.net.u_pinn.parameters()), norm(self.net.mu_pinn.parameters())

    def _finite(self, total: torch.Tensor) -> bool:
        """Whether the loss and every gradient are finite, with one device sync (a NaN or
        inf anywhere makes the total gradient norm non-finite: one fused reduction)."""
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        norm = get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        return bool(torch.isfinite(total + norm))

    def step(self, *, timed: bool = False, pde_weight: float | None = None) -> StepResult:
        """One optimisation step on the current batch (:attr:`batch_idx`).

        :meth:`train` calls it once per iteration; :meth:`benchmark` and ``mrepinn
        benchmark`` time it. A step whose loss or gradient is not finite is not applied
        (``accepted`` is False); :meth:`train` then restores the last good state.

        Parameters
        ----------
        timed : bool
            Synchronise the device between phases and fill ``StepResult.timings``.
        pde_weight : float, optional
            Use this PDE weight instead of the schedule's (the benchmark times the PDE
            during the warm-up).

        Returns
        -------
        StepResult
        """
        if self.optimizer is None:
            self.compile()
        opt = self.optimizer
        assert opt is not None
        idx = self.batch_idx
        w_pde = self.pde_weight() if pde_weight is None else float(pde_weight)
        state: dict[str, Any] = {}
        clock = _Clock(self.device if timed else None)

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            clock.start()
            pred = self.predict(idx, w_pde)
            clock.lap("model")
            losses = self.losses(idx, pred)
            total = self.total(losses, w_pde)
            if total.requires_grad:
                total.backward()
            clock.lap("loss")
            if "total" not in state:  # record the loss at the start of the step
                state["losses"], state["total"] = losses, total
            return total

        if self.optimizer_name == "L-BFGS":
            if self._good_state is None:
                self._snapshot()
            opt.step(closure)
            ok = bool(torch.isfinite(state["total"])) and all(
                bool(torch.isfinite(p).all()) for p in self.net.parameters()
            )
        else:
            closure()
            ok = self._finite(state["total"])
            if ok:
                if self._good_state is None or self.iteration % 10 == 0:
                    self._snapshot()
                opt.step()
        clock.lap("step")
        losses = {k: float(v.detach()) for k, v in state["losses"].items()}
        return StepResult(losses, float(state["total"].detach()), ok, clock.laps)

    def train(
        self,
        n_iters: int | None = None,
        display_every: int | None = None,
        test_every: int | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> list[dict[str, float]]:
        """Train for ``n_iters`` iterations (continuing from :attr:`iteration`).

        Parameters
        ----------
        n_iters : int, optional
            Iterations to run in this call (default: the config's ``iters``).
        display_every : int, optional
            Period of the history records (and ``on_display``); the last iteration of the call
            is always recorded. Default: the config's.
        test_every : int, optional
            Period of the full-grid :meth:`test` (and ``on_test``); 0 = never. Default: the
            config's.
        callbacks : sequence of Callback, optional
            Hooks (see :class:`Callback`). Unless one of them is a :class:`Resampler`, Adam
            draws fresh collocation points every iteration (as the published code does) and
            L-BFGS keeps its points fixed (it needs a deterministic loss); a ``Resampler``
            sets the period explicitly.

        Returns
        -------
        list of dict
            The whole history (:attr:`history`).
        """
        c = self.config
        n_iters = c.iters if n_iters is None else n_iters
        display_every = c.display_every if display_every is None else display_every
        test_every = c.test_every if test_every is None else test_every
        if self.optimizer is None:
            self.compile()
        callbacks = list(callbacks or [])
        auto_resample = self.optimizer_name != "L-BFGS" and not any(
            isinstance(cb, Resampler) for cb in callbacks
        )
        self.stop_training = False
        self._rejections = 0
        display_every = max(1, int(display_every))
        end = self.iteration + int(n_iters)
        for cb in callbacks:
            cb.on_train_begin(self)
        t_last, it_last = time.perf_counter(), self.iteration
        try:
            while self.iteration < end and not self.stop_training:
                result = self.step()
                if not result.accepted:
                    self._reject("non-finite loss or gradient")
                else:
                    self._rejections = 0
                self.iteration += 1
                if result.accepted and (
                    self.iteration % display_every == 0 or self.iteration == end
                ):
                    now = time.perf_counter()
                    spi = (now - t_last) / max(1, self.iteration - it_last)
                    record = self._record(result, spi)
                    t_last, it_last = now, self.iteration
                    self.history.append(record)
                    for cb in callbacks:
                        cb.on_display(self, record)
                if auto_resample:
                    self.resample()
                for cb in callbacks:
                    cb.on_iteration_end(self)
                if test_every and self.iteration % int(test_every) == 0:
                    results = self.test()
                    for cb in callbacks:
                        cb.on_test(self, results)
        finally:
            for cb in callbacks:
                cb.on_train_end(self)
        return self.history

    def _record(self, result: StepResult, s_per_iter: float) -> dict[str, float]:
        gu, gm = self._grad_norms()
        rec: dict[str, float] = {"iteration": float(self.iteration), "loss": result.total}
        for term in LOSS_TERMS:
            rec[f"loss_{term.name}"] = result.losses.get(term.name, float("nan"))
        if TV_TERM.name in result.losses:
            rec[f"loss_{TV_TERM.name}"] = result.losses[TV_TERM.name]
        rec.update(self._test_losses())
        rec.update(
            pde_weight=self.pde_weight(self.iteration - 1),
            grad_norm_u=gu,
            grad_norm_mu=gm,
            s_per_iter=float(s_per_iter),
            lr=float(self.lr or 0.0),
        )
        return rec

    @torch.no_grad()
    def probe_modulus(self, n: int = 4096) -> np.ndarray:
        """``|G*|`` (Pa) at up to ``n`` fixed probe points: the held-out points, or the
        first training points when nothing is held out (for convergence checks)."""
        idx = self.test_idx if len(self.test_idx) else self.train_idx
        mu = self.net.mu(self.x_all[idx[:n]])
        return mu.abs().reshape(-1).cpu().numpy().astype(float)

    @torch.no_grad()
    def _test_losses(self) -> dict[str, float]:
        """Wave and PDE losses on the held-out points."""
        if len(self.test_idx) == 0:
            return {}
        idx = self.test_idx[: max(self.n_points, 1)]
        x = self.x_all[idx]
        fields: dict[str, torch.Tensor] = {}
        r = self.pde.normalized(x, self.net.wave_field, self.net.mu_field, create_graph=False,
                                fields=fields)
        return {
            "test_loss_wave": float(self.loss_fn(self.u_all[idx], fields["u"])),
            "test_loss_pde": float(self.loss_fn(torch.zeros_like(r), r)),
        }

    # .......................................................................... evaluation
    def _grid_eval(self, batch_size: int = 4096, progress: bool = False
                   ) -> dict[str, np.ndarray]:
        """Predictions on the full grid in batches of ``batch_size`` points, as flat numpy
        arrays (:func:`napari_mrepinn.full_grid.grid_predictions`)."""
        return grid_predictions(self, batch_size, progress)

    def test(self, batch_size: int = 4096, progress: bool = False) -> xr.Dataset:
        """Evaluate on the full grid.

        Returns
        -------
        xarray.Dataset
            ``u`` (wave, data units), ``mu`` (Pa), ``pde`` (dimensionless residual) and, when
            available, ``direct`` (the AHI map ``mu_ahi``) and ``anat``, each with
            ``variable = ["pred", "diff", "true"]`` (``diff = true − pred``; ``true`` is NaN
            when unknown; the PDE's ``true`` is 0).
        """
        ev = self._grid_eval(batch_size, progress)
        # the (first) modulus map; a free joint fit keeps one per frequency (mu_all)
        self._mu_all = ev["mu"]
        ds = grid_comparison(self, ev)
        self.last_results = ds
        return ds

    def results(self, progress: bool = False) -> xr.Dataset:
        """The public result variables on the full grid.

        ``wave_pred`` (complex, dims of ``wave``), ``mu_pred`` (complex Pa, spatial dims),
        ``pde_residual`` (dimensionless, dims of ``wave``) and ``mu_ahi`` when the example has
        it.
        """
        return public_results(self, self.test(progress=progress))

    def benchmark(self, n_iters: int = 100) -> dict[str, float]:
        """Seconds per iteration spent drawing points (``data``), evaluating the networks and
        their derivatives (``model``), computing and back-propagating the loss (``loss``)
        and checking and applying the step (``step``), over ``n_iters`` timed
        :meth:`step` calls.

        The parameters, optimiser, iteration, history and sampling state are put back as
        they were afterwards. The PDE term is timed even during the warm-up (with weight 1).
        """
        if self.optimizer is None:
            self.compile()
        assert self.optimizer is not None
        saved = {
            "net": copy.deepcopy(self.net.state_dict()),
            "opt": copy.deepcopy(self.optimizer.state_dict()),
            "gen": self._generator.get_state(),
            "batch": self.batch_idx,
            "lr": self.lr,
            "good": self._good_state,
            "iteration": self.iteration,
        }
        w_pde = self.pde_weight() or (1.0 if self.weights.pde > 0 else 0.0)
        t = {"data": 0.0, "model": 0.0, "loss": 0.0, "step": 0.0}
        try:
            for _ in range(int(n_iters)):
                clock = _Clock(self.device)
                clock.start()
                self.resample()
                clock.lap("data")
                result = self.step(timed=True, pde_weight=w_pde)
                self.iteration += 1  # as train() does: the good-state snapshot every 10
                for k, v in {**clock.laps, **result.timings}.items():
                    t[k] += v
        finally:
            self.net.load_state_dict(saved["net"])
            self.optimizer.load_state_dict(saved["opt"])
            self._generator.set_state(saved["gen"])
            self.batch_idx = saved["batch"]
            self._set_lr(saved["lr"])
            self._good_state = saved["good"]
            self.iteration = saved["iteration"]
        out = {k: v / max(1, int(n_iters)) for k, v in t.items()}
        out["total"] = sum(out.values())
        return out

    # .......................................................................... persistence
    def manifest(self) -> dict[str, Any]:
        """What this model trains on (grid, frequency, components, networks, configuration,
        version): stored in checkpoints and checked by :meth:`restore`."""
        return checkpoints.manifest(self)

    def save(self, path: str | os.PathLike) -> str:
        """Save the networks, optimiser, iteration, history, sampling state and
        :meth:`manifest` (``.pt``, written atomically)."""
        return checkpoints.save(self, path)

    def restore(self, path: str | os.PathLike, *, warm_start: bool = False) -> MREPINNModel:
        """Load a state written by :meth:`save`.

        Parameters
        ----------
        path : path
            The checkpoint.
        warm_start : bool
            False (default): the checkpoint must have been trained on this model's grid,
            frequency, components and networks; training then continues the same run and
            loss curve. True: take only the network weights (the networks must have the
            same shape) and start a fresh run on this model's example.

        Raises
        ------
        MREInputError
            The file is not a checkpoint, or (without ``warm_start``) it was trained on
            something else: the message lists what differs.
        """
        checkpoints.restore(self, path, warm_start=warm_start)
        return self

    def settings(self) -> dict[str, Any]:
        """What this run is (JSON-serialisable): the config and what the recipe chose from
        the data (frequency, density, prior, network, device)."""
        return {
            "config": self.config.to_dict(),
            "frequency_hz": self.pde.omega,
            "density": self.pde.rho,
            "pde_warmup_iters_run": self.pde_warmup_iters,
            "derivative_axes_run": "in-plane" if self.pde.no_z else "3d",
            "mu_prior_pa": [float(np.real(self.prior)), float(np.imag(self.prior))],
            "network": dict(self.net.config),
            "device": str(self.device),
            "optimizer": self.optimizer_name,
            "lr_now": self.lr,
        }


class _Clock:
    """Phase timings of one step (``device=None``: not timed, no device syncs)."""

    def __init__(self, device: torch.device | None) -> None:
        self.device = device
        self.laps: dict[str, float] = {}
        self._t: float | None = None

    def _now(self) -> float:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        if self.device is not None:
            self._t = self._now()

    def lap(self, name: str) -> None:
        if self.device is None or self._t is None:
            return
        now = self._now()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._t
        self._t = now


def __getattr__(name: str) -> Any:
    # fit and build_model moved to napari_mrepinn.recipe (which imports this module)
    if name in ("fit", "build_model"):
        from . import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
