"""Hooks into :meth:`MREPINNModel.train <napari_mrepinn.training.MREPINNModel.train>`:
the base :class:`Callback`, collocation-point resampling, learning-rate decay and a progress
bar. The napari dock's Qt worker is one more callback (``napari_mrepinn._worker``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from .training import MREPINNModel

__all__ = ["Callback", "Convergence", "LRDecay", "ProgressBar", "Resampler"]


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


class ProgressBar(Callback):
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
            pde = record["loss_pde"]
            # the residual is not built during the wave-only warm-up: say so, not "nan"
            self.bar.set_postfix(loss=f"{record['loss']:.3g}",
                                 pde="warm-up" if math.isnan(pde) else f"{pde:.3g}")

    def on_train_end(self, model: MREPINNModel) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Convergence(Callback):
    """Stop training once the modulus map has stopped changing.

    Every ``every`` iterations after the PDE warm-up (and after at least ``min_iters``
    iterations of PDE training), the modulus is evaluated on a fixed set of probe points
    (the held-out points, or the first ``n_probe`` masked points); the run stops when the
    median relative change of ``|G*|`` since the previous check stays below ``tol`` for
    ``patience`` checks in a row. ``model.converged_at`` then holds the iteration.

    A stop criterion on the modulus rather than on the losses: the PDE loss keeps falling
    slowly while the wave network's derivatives sharpen, long after the map (what the user
    reports) has settled.
    """

    def __init__(self, tol: float, every: int = 100, patience: int = 3,
                 min_iters: int = 500, n_probe: int = 4096) -> None:
        self.tol = float(tol)
        self.every = max(1, int(every))
        self.patience = max(1, int(patience))
        self.min_iters = int(min_iters)
        self.n_probe = int(n_probe)
        self._last: np.ndarray | None = None
        self._calm = 0
        self.changes: list[tuple[int, float]] = []  # (iteration, median relative change)

    def on_train_begin(self, model: MREPINNModel) -> None:
        self._last, self._calm = None, 0
        model.converged_at = None

    def on_iteration_end(self, model: MREPINNModel) -> None:
        start = model.pde_warmup_iters + self.min_iters
        if self.tol <= 0 or model.iteration < start or model.iteration % self.every:
            return
        mag = model.probe_modulus(self.n_probe)
        if self._last is not None:
            change = float(np.median(np.abs(mag - self._last) / self._last))
            self.changes.append((model.iteration, change))
            self._calm = self._calm + 1 if change < self.tol else 0
            if self._calm >= self.patience:
                model.converged_at = model.iteration
                model.stop_training = True
        self._last = mag
