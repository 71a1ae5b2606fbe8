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

With ``detach=True`` (the published setting) the PDE loss trains only the modulus network and
the wave loss only the wave network; the weights then only matter through the PDE weight
schedule (0 during the warmup, then ``pde_init_weight · pde_step_factor^k`` every
``pde_step_iters`` iterations up to ``loss_weights[2]``).

A step whose loss or gradient is not finite is rejected: the model and optimizer go back to the
last good state, the learning rate is halved and a warning is issued.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.nn.utils import get_total_norm

from .data import MREExample, MREInputError
from .networks import MREPINN, resolve_modulus_prior
from .physics import WaveEquation

__all__ = [
    "Callback",
    "LRDecay",
    "MREPINNModel",
    "Resampler",
    "build_model",
    "fit",
    "msae_loss",
]

log = logging.getLogger(__name__)

LOSS_NAMES = ("wave", "elast", "pde", "anat")
#: consecutive rejected (non-finite) steps after which training stops
MAX_REJECTIONS = 20


def msae_loss(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Mean squared absolute error ``mean |y_true − y_pred|²`` (complex-safe)."""
    d = y_true - y_pred
    if d.is_complex():
        return (d.real**2 + d.imag**2).mean()
    return (d**2).mean()


# ---------------------------------------------------------------------------- callbacks
class Callback:
    """Hooks called by :meth:`MREPINNModel.train` (all run in the training thread).

    A GUI pauses training by blocking inside :meth:`on_iteration_end` and stops it by setting
    ``model.stop_training = True`` (from any thread).
    """

    def on_train_begin(self, model: MREPINNModel) -> None:
        """Before the first iteration of a ``train`` call."""

    def on_iteration_end(self, model: MREPINNModel) -> None:
        """After each iteration (``model.iteration`` already incremented)."""

    def on_display(self, model: MREPINNModel, record: dict[str, float]) -> None:
        """When a history record is made (every ``display_every`` iterations)."""

    def on_test(self, model: MREPINNModel, results: xr.Dataset) -> None:
        """After a full-grid test (every ``test_every`` iterations)."""

    def on_train_end(self, model: MREPINNModel) -> None:
        """After the last iteration (also when stopped)."""


class Resampler(Callback):
    """Redraw the collocation points from the training part of the mask every ``period``
    iterations (``period=1``: a fresh batch each iteration, as in the published code)."""

    def __init__(self, period: int = 1000) -> None:
        if int(period) < 1:
            raise ValueError("Resampler period must be >= 1 iteration")
        self.period = int(period)

    def on_iteration_end(self, model: MREPINNModel) -> None:
        if model.iteration % self.period == 0:
            model.resample()


class LRDecay(Callback):
    """Cosine decay of the learning rate from its value at the start of ``train`` down to
    ``final_factor`` times it over ``n_iters`` iterations, starting at iteration ``start``.

    Late small steps average out the noise of the random collocation batches. Steps rejected
    for non-finite losses still lower the rate (the decay multiplies the lowered rate).
    """

    def __init__(self, n_iters: int, final_factor: float = 0.1, start: int = 0) -> None:
        self.n_iters = max(1, int(n_iters))
        self.final_factor = float(final_factor)
        self.start = int(start)
        self.base: float | None = None

    def on_train_begin(self, model: MREPINNModel) -> None:
        self.base = model.lr
        self._scale = model.lr_scale

    def on_iteration_end(self, model: MREPINNModel) -> None:
        if self.base is None:
            return
        t = min(1.0, max(0.0, (model.iteration - self.start) / self.n_iters))
        f = self.final_factor + (1 - self.final_factor) * 0.5 * (1 + np.cos(np.pi * t))
        model._set_lr(self.base * f * model.lr_scale / self._scale)


class _ProgressBar(Callback):
    """A tqdm progress bar with the latest total loss."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar = None

    def on_train_begin(self, model: MREPINNModel) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc="MRE-PINN", unit="it", leave=False)

    def on_iteration_end(self, model: MREPINNModel) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_display(self, model: MREPINNModel, record: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.3g}", pde=f"{record['loss_pde']:.3g}")

    def on_train_end(self, model: MREPINNModel) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---------------------------------------------------------------------------- the model
class MREPINNModel:
    """An MRE-PINN with its data, optimiser, schedule and history.

    Parameters
    ----------
    example : MREExample
        Single-frequency example. Its ground truth ``mre`` is read only for the supervised
        elastogram loss (weight ``loss_weights[1]``, 0 by default) and for display in
        :meth:`test`.
    pinn : MREPINN
        The networks (moved to ``device``).
    pde : WaveEquation
        The physics (``omega`` in Hz should be the example's frequency).
    loss_weights : sequence of 4 floats
        ``[wave, elast, pde, anat]`` weights of the dimensionless losses; the PDE weight is the
        cap of the schedule.
    pde_warmup_iters : int
        Iterations with PDE weight 0 (the wave network fits the data first).
    pde_step_iters, pde_init_weight, pde_step_factor
        After the warmup the PDE weight is ``pde_init_weight · pde_step_factor^⌊k /
        pde_step_iters⌋`` (k = iterations since the warmup), capped at ``loss_weights[2]``.
    n_points : int
        Collocation (and data) points per iteration.
    device : str or torch.device, optional
        Default ``"cuda"`` when available, else ``"cpu"``.
    seed : int, optional
        Seed of the point sampling (and of the held-out split).
    test_fraction : float
        Fraction of the masked points held out from training (for the ``test_loss_*``
        records).
    mu_tv_weight : float
        Weight of an optional total-variation regulariser of the log-modulus,
        ``mean √(|∇G*/G*|²/k0² + ε²)`` (k0 the prior's wavenumber; dimensionless), active with
        the PDE weight (it follows the same schedule). Not in the published method; 0 = off.
    """

    def __init__(
        self,
        example: MREExample,
        pinn: MREPINN,
        pde: WaveEquation,
        loss_weights: Sequence[float] = (1.0, 0.0, 1.0, 0.0),
        pde_warmup_iters: int = 1000,
        pde_step_iters: int = 100,
        pde_init_weight: float = 1e-2,
        pde_step_factor: float = 10.0,
        n_points: int = 1024,
        device: str | torch.device | None = None,
        seed: int | None = None,
        test_fraction: float = 0.1,
        mu_tv_weight: float = 0.0,
    ) -> None:
        if len(example.frequencies) != 1:
            raise MREInputError(
                "MREPINNModel trains on one frequency; select one with "
                "example.select_frequency(f)."
            )
        if len(loss_weights) != 4:
            raise ValueError("loss_weights must be [wave, elast, pde, anat]")
        self.example = example
        self.pde = pde
        self.loss_weights = [float(w) for w in loss_weights]
        self.pde_warmup_iters = int(pde_warmup_iters)
        self.pde_step_iters = max(1, int(pde_step_iters))
        self.pde_init_weight = float(pde_init_weight)
        self.pde_step_factor = float(pde_step_factor)
        self.n_points = int(n_points)
        self.mu_tv_weight = float(mu_tv_weight)
        g0 = abs(pinn.mu_prior)
        self._k0 = 2 * np.pi * example.frequency * np.sqrt(example.density / g0)  # rad/m
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.seed = seed
        self.net = pinn.to(self.device)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.stop_training = False
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_name: str | None = None
        self.lr: float | None = None
        self.lr_scale = 1.0  # product of the lr cuts of rejected steps
        self.loss_fn: Callable = msae_loss
        self.last_results: xr.Dataset | None = None
        self.recipe: dict[str, Any] = {}  # options of build_model(), when built by it
        self._good_state: dict[str, Any] | None = None
        self._rejections = 0
        self._generator = torch.Generator(device="cpu")
        self._generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**31))
        if abs(pde.omega - example.frequency) > 1e-6 * example.frequency:
            warnings.warn(
                f"the PDE frequency ({pde.omega:g} Hz) differs from the example's "
                f"({example.frequency:g} Hz)",
                stacklevel=2,
            )
        self._load_data(float(test_fraction))
        self.resample()

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
        if self.loss_weights[1] > 0:
            if "mre" not in ex:
                raise MREInputError("the elastogram loss weight is > 0 but there is no 'mre'.")
            mre = np.asarray(ex["mre"].values).reshape(n) / abs(self.net.mu_prior)
            self.mu_true_all = torch.tensor(mre, dtype=torch.complex64, device=dev)[:, None]
        if self.loss_weights[3] > 0 and self.a_all is None:
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
        optimizer: str = "adam",
        lr: float = 1e-4,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = msae_loss,
    ) -> MREPINNModel:
        """Choose the optimiser (``"adam"`` or ``"L-BFGS"``), learning rate and loss function.

        Recompiling keeps the networks and the history but starts a fresh optimiser state.
        """
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
            raise ValueError(f"optimizer must be 'adam' or 'L-BFGS', got {optimizer!r}")
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
        w_max = self.loss_weights[2]
        k = it - self.pde_warmup_iters
        if w_max <= 0 or k < 0:
            return 0.0
        ramp = self.pde_init_weight * self.pde_step_factor ** (k // self.pde_step_iters)
        return float(min(w_max, ramp))

    def _predict(self, idx: torch.Tensor, w_pde: float) -> dict[str, torch.Tensor]:
        """Network outputs needed by the losses at points ``idx`` (with graphs)."""
        net, w = self.net, self.loss_weights
        x = self.x_all[idx]
        out: dict[str, torch.Tensor] = {}
        if w[0] > 0 and w_pde <= 0:
            out["wave"] = net.wave_std(x)
        if w[1] > 0 or w[3] > 0:
            r = net.mu_pinn.raw(net.normalize_input(x, "mu"))
            if w[1] > 0:
                out["elast"] = net._mu_from_raw(r) / abs(net.mu_prior)
            if w[3] > 0:
                out["anat"] = r[:, 2:]
        if w_pde > 0:
            tv = self.mu_tv_weight > 0
            fields: dict[str, torch.Tensor] = {}
            out["pde"] = self.pde.normalized(
                x, net.wave_field, net.mu_field, need_mu_grad=tv, fields=fields
            )
            if w[0] > 0:  # the PDE's pass of the wave network serves the data loss too
                out["wave"] = fields["u"]
            if tv:
                g = fields["dmu"] / fields["mu"][..., None]  # ∇G*/G* = ∇log|G*| + i∇φ
                g2 = (g.real**2 + g.imag**2).sum(dim=(1, 2)) / self._k0**2
                out["tv"] = torch.sqrt(g2 + 1e-4)
        return out

    def _losses(self, idx: torch.Tensor, pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = self.loss_fn
        out: dict[str, torch.Tensor] = {}
        if "wave" in pred:
            out["wave"] = loss(self.u_all[idx], pred["wave"])
        if "elast" in pred:
            out["elast"] = loss(self.mu_true_all[idx], pred["elast"])
        if "anat" in pred:
            out["anat"] = loss(self.a_all[idx], pred["anat"])
        if "pde" in pred:
            out["pde"] = loss(torch.zeros_like(pred["pde"]), pred["pde"])
        if "tv" in pred:
            out["tv"] = pred["tv"].mean()
        return out

    def _total(self, losses: dict[str, torch.Tensor], w_pde: float) -> torch.Tensor:
        weights = dict(zip(LOSS_NAMES, self.loss_weights, strict=True))
        weights["pde"] = w_pde
        # the regulariser follows the PDE schedule (relative weight mu_tv_weight)
        weights["tv"] = self.mu_tv_weight * w_pde / max(self.loss_weights[2], 1e-30)
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

    def _step(self) -> tuple[dict[str, float], float, bool]:
        """One optimisation step on the current batch; returns (losses, total, accepted)."""
        if self.optimizer is None:
            self.compile()
        opt = self.optimizer
        assert opt is not None
        idx = self.batch_idx
        w_pde = self.pde_weight()
        state: dict[str, Any] = {}

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            losses = self._losses(idx, self._predict(idx, w_pde))
            total = self._total(losses, w_pde)
            if total.requires_grad:
                total.backward()
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
        losses = {k: float(v.detach()) for k, v in state["losses"].items()}
        return losses, float(state["total"].detach()), ok

    def train(
        self,
        n_iters: int,
        display_every: int = 100,
        test_every: int = 1000,
        callbacks: Sequence[Callback] | None = None,
    ) -> list[dict[str, float]]:
        """Train for ``n_iters`` iterations (continuing from :attr:`iteration`).

        Parameters
        ----------
        n_iters : int
            Iterations to run in this call.
        display_every : int
            Period of the history records (and ``on_display``); the last iteration of the call
            is always recorded.
        test_every : int
            Period of the full-grid :meth:`test` (and ``on_test``); 0 = never.
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
                losses, total, ok = self._step()
                if not ok:
                    self._reject("non-finite loss or gradient")
                else:
                    self._rejections = 0
                self.iteration += 1
                if ok and (self.iteration % display_every == 0 or self.iteration == end):
                    now = time.perf_counter()
                    spi = (now - t_last) / max(1, self.iteration - it_last)
                    record = self._record(losses, total, spi)
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

    def _record(
        self, losses: dict[str, float], total: float, s_per_iter: float
    ) -> dict[str, float]:
        gu, gm = self._grad_norms()
        rec: dict[str, float] = {"iteration": float(self.iteration), "loss": total}
        for name in LOSS_NAMES:
            rec[f"loss_{name}"] = losses.get(name, float("nan"))
        if "tv" in losses:
            rec["loss_tv"] = losses["tv"]
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
    def _grid_eval(self, batch_size: int = 4096) -> dict[str, np.ndarray]:
        """Predictions on the full grid in batches, as flat numpy arrays."""
        net = self.net
        parts: dict[str, list[np.ndarray]] = {"u": [], "mu": [], "a": [], "pde": []}
        was_training = net.training
        net.eval()
        try:
            for s in range(0, self.x_all.shape[0], batch_size):
                x = self.x_all[s : s + batch_size]
                with torch.no_grad():
                    # the residual's own passes of the networks give the wave and modulus
                    fields: dict[str, torch.Tensor] = {}
                    r = self.pde.normalized(x, net.wave_field, net.mu_field,
                                            create_graph=False, fields=fields)
                    u = net.wave_from_std(fields["u"])
                    mu = fields["mu"]
                    if net.n_anat:
                        parts["a"].append(net.mu_and_anat(x)[1].cpu().numpy())
                parts["u"].append(u.cpu().numpy())
                parts["mu"].append(mu[:, 0].cpu().numpy())
                parts["pde"].append(r.cpu().numpy())
        finally:
            net.train(was_training)
        return {k: np.concatenate(v, 0) for k, v in parts.items() if v}

    def test(self, batch_size: int = 4096) -> xr.Dataset:
        """Evaluate on the full grid.

        Returns
        -------
        xarray.Dataset
            ``u`` (wave, data units), ``mu`` (Pa), ``pde`` (dimensionless residual) and, when
            available, ``direct`` (the AHI map ``mu_ahi``) and ``anat``, each with
            ``variable = ["pred", "diff", "true"]`` (``diff = true − pred``; ``true`` is NaN
            when unknown; the PDE's ``true`` is 0).
        """
        ev = self._grid_eval(batch_size)
        ex = self.example
        wave = ex["wave"]
        shape = ex.spatial_shape
        wdims = wave.dims
        coords = {d: ex.ds[d] for d in wdims}
        sdims = ex.spatial_dims
        scoords = {d: ex.ds[d] for d in sdims}

        def triple(pred: np.ndarray, true: np.ndarray | None, dims, crd) -> xr.DataArray:
            if true is None:
                true = np.full_like(pred, np.nan)
            arr = np.stack([pred, true - pred, true])
            return xr.DataArray(
                arr, dims=("variable", *dims), coords={"variable": ["pred", "diff", "true"], **crd}
            )

        u_pred = ev["u"].reshape(wave.shape)
        r_pred = ev["pde"].reshape(wave.shape)
        mu_pred = ev["mu"].reshape(shape)
        mre = np.asarray(ex["mre"].values) if "mre" in ex and ex["mre"].dims == sdims else None
        ds = xr.Dataset(
            {
                "u": triple(u_pred, np.asarray(wave.values), wdims, coords),
                "mu": triple(mu_pred, mre, sdims, scoords),
                "pde": triple(r_pred, np.zeros_like(r_pred), wdims, coords),
            }
        )
        ds["mu"].attrs["units"] = "Pa"
        ds["pde"].attrs["units"] = "1"
        if "mu_ahi" in ex and ex["mu_ahi"].dims == sdims:
            ds["direct"] = triple(np.asarray(ex["mu_ahi"].values), mre, sdims, scoords)
        if self.net.n_anat and "anat" in ex:
            anat = ex["anat"]
            a_pred = ev["a"].reshape(anat.shape)
            ds["anat"] = triple(a_pred, np.asarray(anat.values, float), anat.dims,
                                {d: ex.ds[d] for d in anat.dims if d in ex.ds.coords})
        ds["mask"] = ex.mask
        ds.attrs["iteration"] = int(self.iteration)
        self.last_results = ds
        return ds

    def results(self) -> xr.Dataset:
        """The public result variables on the full grid.

        ``wave_pred`` (complex, dims of ``wave``), ``mu_pred`` (complex Pa, spatial dims),
        ``pde_residual`` (dimensionless, dims of ``wave``) and ``mu_ahi`` when the example has
        it.
        """
        t = self.test()
        out = xr.Dataset(
            {
                "wave_pred": t["u"].sel(variable="pred", drop=True),
                "mu_pred": t["mu"].sel(variable="pred", drop=True),
                "pde_residual": t["pde"].sel(variable="pred", drop=True),
            }
        )
        out["wave_pred"].attrs["units"] = self.example["wave"].attrs.get("units", "")
        out["mu_pred"].attrs["units"] = "Pa"
        out["pde_residual"].attrs["units"] = "1"
        if "mu_ahi" in self.example:
            out["mu_ahi"] = self.example["mu_ahi"]
        out.attrs["iteration"] = int(self.iteration)
        return out

    def benchmark(self, n_iters: int = 100) -> dict[str, float]:
        """Seconds per iteration spent drawing points (``data``), evaluating the networks and
        their derivatives (``model``) and computing and back-propagating the loss (``loss``).

        The parameters, optimiser and sampling state are left as they were (no step is
        taken). The PDE term is timed even during the warmup (with weight 1).
        """
        gen_state = self._generator.get_state()
        batch = self.batch_idx
        t = {"data": 0.0, "model": 0.0, "loss": 0.0}
        w_pde = self.pde_weight() or (1.0 if self.loss_weights[2] > 0 else 0.0)
        for _ in range(int(n_iters)):
            t0 = time.perf_counter()
            self.resample()
            idx = self.batch_idx
            t1 = time.perf_counter()
            pred = self._predict(idx, w_pde)
            t2 = time.perf_counter()
            total = self._total(self._losses(idx, pred), w_pde)
            if total.requires_grad:
                total.backward()
            self.net.zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            t["data"] += t1 - t0
            t["model"] += t2 - t1
            t["loss"] += t3 - t2
        self._generator.set_state(gen_state)
        self.batch_idx = batch
        out = {k: v / max(1, int(n_iters)) for k, v in t.items()}
        out["total"] = sum(out.values())
        return out

    # .......................................................................... persistence
    def save(self, path: str | os.PathLike) -> str:
        """Save the networks, optimiser, iteration, history and sampling state (``.pt``)."""
        if self.optimizer is None:
            self.compile()
        assert self.optimizer is not None
        state = {
            "format": "napari-mrepinn-model-1",
            "model": self.net.state_dict(),
            "optimizer_name": self.optimizer_name,
            "optimizer": self.optimizer.state_dict(),
            "lr": self.lr,
            "iteration": self.iteration,
            "history_json": json.dumps(self.history),
            "generator": self._generator.get_state(),
            "batch_idx": self.batch_idx.cpu(),
            "train_idx": self.train_idx.cpu(),
            "test_idx": self.test_idx.cpu(),
            "settings_json": json.dumps(self.settings()),
        }
        path = os.fspath(path)
        tmp = path + ".partial"
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def restore(self, path: str | os.PathLike) -> MREPINNModel:
        """Load a state written by :meth:`save` into this (identically built) model; training
        then continues the same run and loss curve."""
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        if state.get("format") != "napari-mrepinn-model-1":
            raise MREInputError(f"{path}: not a napari-mrepinn model checkpoint.")
        try:
            self.net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise MREInputError(
                f"{path}: the checkpoint does not fit this model (other network size or "
                f"data?): {str(exc).splitlines()[0]}"
            ) from None
        self.compile(state["optimizer_name"] or "adam", lr=state["lr"] or 1e-4, loss=self.loss_fn)
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])
        self._set_lr(state["lr"])
        self.iteration = int(state["iteration"])
        self.history = json.loads(state["history_json"])
        self._generator.set_state(state["generator"])
        self.batch_idx = state["batch_idx"].to(self.device)
        self.train_idx = state["train_idx"].to(self.device)
        self.test_idx = state["test_idx"].to(self.device)
        return self

    def settings(self) -> dict[str, Any]:
        """The settings of this run (JSON-serialisable)."""
        return {
            "pde": self.pde.name,
            "pde_engine": self.pde.engine,
            "pde_detach": self.pde.detach,
            "pde_no_z": self.pde.no_z,
            "frequency_hz": self.pde.omega,
            "density": self.pde.rho,
            "loss_weights": self.loss_weights,
            "pde_warmup_iters": self.pde_warmup_iters,
            "pde_step_iters": self.pde_step_iters,
            "pde_init_weight": self.pde_init_weight,
            "pde_step_factor": self.pde_step_factor,
            "n_points": self.n_points,
            "mu_tv_weight": self.mu_tv_weight,
            "optimizer": self.optimizer_name,
            "lr": self.lr,
            "seed": self.seed,
            "device": str(self.device),
            "mu_prior_pa": [float(np.real(self.net.mu_prior)), float(np.imag(self.net.mu_prior))],
            **{f"net_{k}": v for k, v in self.net.config.items()},
        }


# ---------------------------------------------------------------------------- the recipe
def build_model(
    example: MREExample,
    iters: int | None = None,
    device: str | None = None,
    *,
    pde: str = "hetero",
    n_points: int = 1024,
    loss_weights: Sequence[float] | None = None,
    lr: float | None = None,
    seed: int | None = 0,
    **options: Any,
) -> MREPINNModel:
    """The compiled :class:`MREPINNModel` of the default recipe (what :func:`fit` trains).

    Runs the AHI (stored as ``mu_ahi`` in a *copy* of the example, ``model.example``), takes
    its robust median as the modulus prior, picks the SIREN input frequencies from the prior
    wavelength (:func:`auto_omega`) and builds and compiles the model. The GUI and the
    benchmark use it to train exactly what :func:`fit` trains. Arguments as in :func:`fit`;
    ``model.recipe`` holds the options used.
    """
    if len(example.frequencies) != 1:
        raise MREInputError(
            f"{example.source + ': ' if example.source else ''}the PINN inverts one frequency "
            f"at a time and this example has {len(example.frequencies)} "
            f"({', '.join(f'{f:g}' for f in example.frequencies)} Hz); select one with "
            "example.select_frequency(f) (CLI: --frequency)."
        )
    opts = dict(DEFAULTS)
    unknown = set(options) - set(opts) - {"mu_prior", "ahi_options"}
    if unknown:
        raise TypeError(f"unknown options: {sorted(unknown)}")
    opts.update(options)
    auto_width = opts["auto_width"] and "n_hidden" not in options
    iters = int(DEFAULT_ITERS if iters is None else iters)
    lr = float(DEFAULT_LR if lr is None else lr)
    weights = list(loss_weights) if loss_weights is not None else [1.0, 0.0, 1.0, 0.0]
    out = example.copy()

    # direct inversion: a baseline to show and the physical prior of the modulus
    mu_prior = options.get("mu_prior")
    if opts["ahi"]:
        from . import baselines

        ahi_kw = {"smoothing": "gaussian", "sigma": 1.0}
        ahi_kw.update(options.get("ahi_options") or {})
        mu_ahi = baselines.ahi(out, **ahi_kw)
        if "frequency" in mu_ahi.dims:
            mu_ahi = mu_ahi.isel(frequency=0, drop=True)
        out.ds["mu_ahi"] = mu_ahi
        if mu_prior is None:
            mu_prior = mu_ahi

    if seed is not None:
        torch.manual_seed(int(seed))
    mu_prior = resolve_modulus_prior(out, mu_prior)
    if auto_width and wave_complexity(out, mu_prior) > AUTO_WIDTH_COMPLEXITY:
        opts["n_hidden"] = 2 * int(opts["n_hidden"])
    omega, mu_omega = opts["omega"], opts["mu_omega"]
    if omega == "auto":
        omega = auto_omega(out, mu_prior, opts["omega_factor"])
    if mu_omega == "auto":
        mu_omega = auto_omega(out, mu_prior, opts["mu_omega_factor"])
    net = MREPINN(
        out, omega=float(omega), mu_omega=None if mu_omega is None else float(mu_omega),
        n_layers=opts["n_layers"], n_hidden=opts["n_hidden"],
        activ=opts["activ"], dense=opts["dense"], polar_input=opts["polar_input"],
        mu_prior=mu_prior,
    )
    eq = WaveEquation.from_name(
        pde, omega=out.frequency, rho=out.density, detach=True, engine=opts["engine"],
        no_z=opts["no_z"],
    )
    model = MREPINNModel(
        out, net, eq, loss_weights=weights,
        pde_warmup_iters=min(opts["pde_warmup_iters"], max(0, iters // 2)),
        pde_step_iters=opts["pde_step_iters"], pde_init_weight=opts["pde_init_weight"],
        pde_step_factor=opts["pde_step_factor"], n_points=n_points, device=device, seed=seed,
        mu_tv_weight=opts["mu_tv_weight"],
    )
    model.compile("adam", lr=lr)
    opts.pop("mu_prior", None)
    opts.pop("ahi_options", None)
    model.recipe = opts
    return model


def fit(
    example: MREExample,
    iters: int | None = None,
    device: str | None = None,
    *,
    pde: str = "hetero",
    n_points: int = 1024,
    loss_weights: Sequence[float] | None = None,
    lr: float | None = None,
    seed: int | None = 0,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    **options: Any,
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
       iterations from 0.01 to 1 (the published schedule, shortened; with
       ``detach=True`` the PDE trains only the modulus network).
    4. **Adam** at ``lr = 1e-3`` with a cosine decay to 0.1× after the warmup (late small
       steps average out the noise of the random batches), 1024 fresh points per
       iteration, 5000 iterations in all (:data:`DEFAULT_ITERS`); the published 100 000
       iterations at 1e-4 would take hours on a CPU.

    Losses are dimensionless (see the module docstring), so these defaults do not depend on
    the units or scale of the wave.

    Parameters
    ----------
    example : MREExample
        Single-frequency example (select one first for multi-frequency data).
    iters : int, optional
        Training iterations (default :data:`DEFAULT_ITERS`).
    device : str, optional
        ``"cuda"`` when available, else ``"cpu"``.
    pde : {"hetero", "helmholtz", "general"}
    n_points : int
        Collocation points per iteration.
    loss_weights : [wave, elast, pde, anat], optional
        Default ``[1, 0, 1, 0]`` (``anat`` 0 even with anatomical images).
    lr : float, optional
        Adam learning rate (default :data:`DEFAULT_LR`).
    seed : int, optional
        Seeds network initialisation and sampling.
    callbacks : sequence of Callback
        Extra callbacks (a GUI, logging...).
    progress : bool
        Show a tqdm progress bar.
    **options
        See :data:`DEFAULTS`: ``omega`` and ``mu_omega`` (a number or ``"auto"``),
        ``omega_factor``, ``mu_omega_factor``, ``n_layers``, ``n_hidden``, ``activ``,
        ``dense``, ``polar_input``, ``auto_width`` (double ``n_hidden`` for fields of more
        than :data:`AUTO_WIDTH_COMPLEXITY` squared wavelengths × components, see
        :func:`wave_complexity`, unless ``n_hidden`` is given),
        ``engine`` (``"fast"``/``"reference"``), ``no_z``,
        ``pde_warmup_iters``, ``pde_step_iters``, ``pde_init_weight``, ``pde_step_factor``,
        ``resample_every``, ``lr_decay`` (final lr factor; 1 = constant),
        ``display_every``, ``test_every``, ``ahi`` (False: no AHI); and ``mu_prior``
        (overrides the AHI prior, see :func:`~napari_mrepinn.networks.resolve_modulus_prior`)
        and ``ahi_options`` (keywords of ``baselines.ahi``).

    Returns
    -------
    MREExample
        A copy with ``wave_pred``, ``mu_pred``, ``pde_residual`` and ``mu_ahi`` added and the
        attrs ``mrepinn_settings_json``, ``mrepinn_history_json``, ``mrepinn_version``.
    """
    from . import __version__

    if len(example.frequencies) != 1:
        raise MREInputError(
            f"{example.source + ': ' if example.source else ''}the PINN inverts one frequency "
            f"at a time and this example has {len(example.frequencies)} "
            f"({', '.join(f'{f:g}' for f in example.frequencies)} Hz); select one with "
            "example.select_frequency(f) (CLI: --frequency)."
        )
    iters = int(DEFAULT_ITERS if iters is None else iters)
    model = build_model(
        example, iters, device, pde=pde, n_points=n_points, loss_weights=loss_weights, lr=lr,
        seed=seed, **options,
    )
    out = model.example
    opts = model.recipe

    # (3) training
    cbs: list[Callback] = [Resampler(period=int(opts["resample_every"]))]
    if opts["lr_decay"] < 1:
        start = model.pde_warmup_iters
        cbs.append(LRDecay(iters - start, final_factor=opts["lr_decay"], start=start))
    if progress:
        cbs.append(_ProgressBar(iters))
    cbs.extend(callbacks)
    t0 = time.perf_counter()
    model.train(iters, display_every=opts["display_every"], test_every=opts["test_every"],
                callbacks=cbs)
    seconds = time.perf_counter() - t0

    # (4) results on the full grid
    res = model.results()
    for name in ("wave_pred", "mu_pred", "pde_residual"):
        out.ds[name] = res[name]
    settings = model.settings()
    settings.update(iters=iters, seconds=round(seconds, 3),
                    options={k: v for k, v in opts.items() if _jsonable(v)})
    out.ds.attrs["mrepinn_settings_json"] = json.dumps(settings)
    out.ds.attrs["mrepinn_history_json"] = json.dumps(model.history)
    out.ds.attrs["mrepinn_version"] = __version__
    return out


#: above this :func:`wave_complexity` the recipe doubles the network width
AUTO_WIDTH_COMPLEXITY = 12.0


def wave_complexity(example: MREExample, mu_prior: complex) -> float:
    """How much a wave network has to represent: the in-plane field of view in squared prior
    wavelengths times the number of components (the 64 mm cylinder at 60 Hz and 3 kPa: ~5;
    an 80 × 100 mm three-component slice at 90 Hz: ~65)."""
    lam = np.sqrt(abs(mu_prior) / example.density) / example.frequency
    area = np.prod([e for d, e in example.extent.items() if d != "z"])
    return float(area / lam**2 * example.n_components)


def auto_omega(example: MREExample, mu_prior: complex, factor: float = 2.0) -> float:
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
    k0 = 2 * np.pi * example.frequency * np.sqrt(example.density / abs(mu_prior))
    extent = max(e for d, e in example.extent.items() if d != "z")
    return float(factor * k0 * extent)


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except TypeError:
        return False
    return True


#: default number of iterations of :func:`fit`
DEFAULT_ITERS = 5000
#: default Adam learning rate of :func:`fit`
DEFAULT_LR = 1e-3
#: default options of :func:`fit` (see its docstring)
DEFAULTS: dict[str, Any] = {
    "omega": "auto",
    "omega_factor": 1.0,
    "mu_omega": "auto",
    "mu_omega_factor": 2.5,
    "n_layers": 4,
    "n_hidden": 64,
    "auto_width": True,
    "activ": "sin",
    "dense": True,
    "polar_input": False,
    "engine": "fast",
    "no_z": True,
    "pde_warmup_iters": 2500,
    "pde_step_iters": 100,
    "pde_init_weight": 1e-2,
    "pde_step_factor": 10.0,
    "resample_every": 1,
    "display_every": 50,
    "test_every": 0,
    "ahi": True,
    "lr_decay": 0.1,
    "mu_tv_weight": 0.0,
}
