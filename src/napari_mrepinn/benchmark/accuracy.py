"""Time to accuracy: Pearson R of ``|G*|`` against training time while the default ``fit``
trains, with AHI as the reference line."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .spec import sync

__all__ = ["ahi_reference", "time_to_accuracy"]

#: points per batch of the modulus network on the grid
_EVAL_BATCH = 16384


def _accuracy_clock(example, every: int, n_iters: int):
    """A ``training.Callback`` recording Pearson R of ``|G*|`` in the mask against the
    ground truth every ``every`` iterations, on a training clock that excludes its own
    evaluation time (and everything ``fit`` does before and after ``train``)."""
    import torch

    from ..metrics import pearson_r
    from ..training import Callback

    sdims = example.spatial_dims
    truth = np.asarray(example["mre"].transpose(*sdims).values)
    mask = np.asarray(example.ds["mre_mask"].transpose(*sdims).values)

    class AccuracyClock(Callback):
        def __init__(self) -> None:
            self.records: list[dict[str, float]] = []
            self.t0 = self.c0 = 0.0
            self.excluded = self.excluded_cpu = 0.0

        def on_train_begin(self, model) -> None:
            sync(model.device)
            self.t0, self.c0 = time.perf_counter(), time.process_time()
            self.excluded = self.excluded_cpu = 0.0

        def on_iteration_end(self, model) -> None:
            it = int(model.iteration)
            if it % every and it != n_iters:
                return
            sync(model.device)
            t, c = time.perf_counter(), time.process_time()
            # only the modulus network on the grid: cheaper than results(), same map
            with torch.no_grad():
                x = model.x_all
                mu = torch.cat([model.net.mu(x[s : s + _EVAL_BATCH])[:, 0]
                                for s in range(0, x.shape[0], _EVAL_BATCH)])
            r = pearson_r(mu.cpu().numpy().reshape(truth.shape), truth, mask)
            self.records.append({"iteration": it,
                                 "train_s": t - self.t0 - self.excluded,
                                 "train_cpu_s": c - self.c0 - self.excluded_cpu,
                                 "pearson_r": r})
            sync(model.device)
            self.excluded += time.perf_counter() - t
            self.excluded_cpu += time.process_time() - c

    return AccuracyClock()


def time_to_accuracy(
    example,
    iters: int | None = None,
    *,
    eval_every: int = 100,
    device: str = "cpu",
    seed: int = 0,
    threads: int = 0,
    target_r: float = 0.8,
    **fit_options: Any,
) -> dict[str, Any]:
    """Train the default fit and record Pearson R of ``|G*|`` against wall time.

    Parameters
    ----------
    example : MREExample
        Single-frequency example with ground truth ``mre`` and ``mre_mask``.
    iters : int, optional
        Iterations (default: the recipe's, ``TrainingConfig().iters``).
    eval_every : int
        Period of the R records (iterations); the last iteration is always recorded.
    device : str
    seed : int
    threads : int
        Torch threads of the fit (0: the default policy).
    target_r : float
        The R whose first crossing is reported as ``time_to_target_s``.
    **fit_options
        Fields of :class:`~napari_mrepinn.config.TrainingConfig` (none: the recipe).

    Returns
    -------
    dict
        ``records`` (``iteration``, ``train_s``: training seconds excluding the R
        evaluations, ``train_cpu_s``: the same on the process CPU clock, all threads, which
        other processes on a shared machine disturb less; ``pearson_r``), ``final_r`` (of
        the returned ``mu_pred``), ``iters``, ``train_s``, ``train_cpu_s``, ``s_per_iter``,
        ``fit_wall_s`` (the whole ``fit`` call: AHI, set-up, training, final full-grid
        results; R evaluations excluded), ``time_to_target_s``, ``cpu_to_target_s`` and
        ``iters_to_target`` (None when never reached), ``target_r``, ``n_voxels``.
    """
    from ..config import TrainingConfig
    from ..metrics import pearson_r
    from ..recipe import fit

    config = TrainingConfig(device=device, seed=seed, threads=threads, **fit_options)
    if iters is not None:
        config = config.replace(iters=int(iters))
    clock = _accuracy_clock(example, max(1, int(eval_every)), config.iters)
    t0 = time.perf_counter()
    result = fit(example, config, progress=False, callbacks=[clock])
    fit_wall = time.perf_counter() - t0 - clock.excluded
    final_r = pearson_r(result["mu_pred"], result["mre"], result.ds["mre_mask"])
    hit = next((r for r in clock.records if r["pearson_r"] >= target_r), None)
    last = clock.records[-1] if clock.records else {}
    train_s = last.get("train_s", float("nan"))
    return {
        "records": clock.records,
        "final_r": final_r,
        "iters": config.iters,
        "train_s": train_s,
        "s_per_iter": train_s / max(1, config.iters),
        "fit_wall_s": fit_wall,
        "train_cpu_s": last.get("train_cpu_s", float("nan")),
        "time_to_target_s": hit["train_s"] if hit else None,
        "cpu_to_target_s": hit["train_cpu_s"] if hit else None,
        "iters_to_target": hit["iteration"] if hit else None,
        "target_r": target_r,
        "n_voxels": int((np.asarray(example.ds["mre_mask"].values) > 0).sum()),
    }


def ahi_reference(example) -> dict[str, Any]:
    """Time and Pearson R of AHI as ``fit`` runs it (Gaussian σ = 1 voxel): the reference
    line of the time-to-accuracy figures."""
    from .. import baselines
    from ..metrics import pearson_r

    t0 = time.perf_counter()
    mu = baselines.ahi(example, smoothing="gaussian", sigma=1.0)
    seconds = time.perf_counter() - t0
    if "frequency" in mu.dims:
        mu = mu.isel(frequency=0, drop=True)
    return {"seconds": seconds,
            "pearson_r": pearson_r(mu, example["mre"], example.ds["mre_mask"])}
