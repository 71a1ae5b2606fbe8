"""Seconds per training iteration of the reference and the default derivative engines, and
a same-batch check that both compute the same loss.

Every timed iteration is :meth:`MREPINNModel.step` (``timed=True``), the step that
:meth:`~napari_mrepinn.training.MREPINNModel.train` runs: the benchmark times the training
loop itself, not a copy of it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .spec import ENGINE_OF_PATH, PATHS, BenchmarkConfig, build_timing_model, sync

__all__ = ["PHASES", "same_batch_check", "time_training_paths", "timed_step"]

#: phases of one iteration: drawing the batch, then the three of ``StepResult.timings``
PHASES = ("data", "model", "loss", "step")
#: the published code builds the residual during its warm-up and multiplies it by 0; the
#: step builds it only for a weight > 0, so the benchmark weighs it by this: the same work,
#: and far below float32 resolution of the total (a weight of 1e-30 would make denormal
#: gradients, which are slow on a CPU and would distort the timing)
NEGLIGIBLE_PDE_WEIGHT = 1e-12


def timed_step(model, pde_weight: float) -> dict[str, float]:
    """One training iteration as ``train`` runs it, clocked by phase.

    Draws a batch (``data``), then runs ``model.step(timed=True, pde_weight=...)``
    (``model``: networks and derivatives; ``loss``: losses and back-propagation; ``step``:
    finite check and optimiser step) and counts the iteration as ``train`` does, so that
    the last-good-state snapshot runs every 10th step as in a fit.

    Parameters
    ----------
    model : MREPINNModel
        A compiled model.
    pde_weight : float
        PDE weight of this step (0: the residual is not built, as during the warm-up).

    Returns
    -------
    dict
        Seconds of each phase, ``total`` (wall) and ``cpu`` (process CPU seconds, all
        threads).
    """
    sync(model.device)
    c0, t0 = time.process_time(), time.perf_counter()
    model.resample()
    sync(model.device)
    t1 = time.perf_counter()
    result = model.step(timed=True, pde_weight=pde_weight)  # synchronised at its end
    t2 = time.perf_counter()
    model.iteration += 1
    return {"data": t1 - t0, **result.timings, "total": t2 - t0,
            "cpu": time.process_time() - c0}


def _summarise(samples: list[dict[str, float]], n_points: int) -> dict[str, Any]:
    """Medians (and extremes) of per-iteration phase times."""
    out: dict[str, Any] = {"n": len(samples)}
    for key in (*PHASES, "total", "cpu"):
        out[f"{key}_s"] = statistics.median(s.get(key, 0.0) for s in samples)
    totals = [s["total"] for s in samples]
    out["min_total_s"] = min(totals)
    out["max_total_s"] = max(totals)
    out["it_per_s"] = 1.0 / out["total_s"]
    out["points_per_s"] = n_points / out["total_s"]
    out["samples"] = samples
    return out


def time_training_paths(
    example, cfg: BenchmarkConfig, device: str = "cpu"
) -> dict[str, dict[str, Any]]:
    """Seconds per training iteration of the reference and the default path, interleaved.

    Four variants, on one model per engine built with the same seed (same weights, same
    batches): ``reference`` and ``default`` with the PDE loss active (weight 1);
    ``reference_warmup`` (the residual built and weighed by ~0, as the published code does
    during its warm-up) and ``default_warmup`` (PDE weight 0: the default loop skips the
    residual). Each variant runs one untimed iteration first (allocator and kernel
    warm-up), then ``cfg.blocks`` rounds ``reference, default, reference_warmup,
    default_warmup``.

    Returns
    -------
    dict
        Per variant: median ``data_s``, ``model_s``, ``loss_s``, ``step_s``, ``total_s``
        (median of the totals, so the phases need not add up to it exactly), ``cpu_s``
        (process CPU seconds per iteration, all threads), ``min_total_s``, ``max_total_s``,
        ``it_per_s``, ``points_per_s``, ``n`` and the raw ``samples``.
    """
    models = {p: build_timing_model(example, cfg, ENGINE_OF_PATH[p], device) for p in PATHS}
    variants = {
        "reference": (models["reference"], 1.0, cfg.iters_per_block),
        "default": (models["default"], 1.0, cfg.iters_per_block),
        "reference_warmup": (models["reference"], NEGLIGIBLE_PDE_WEIGHT,
                             cfg.warmup_iters_per_block),
        "default_warmup": (models["default"], 0.0, cfg.warmup_iters_per_block),
    }
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for model, w, _ in variants.values():
        timed_step(model, w)  # untimed warm-up
    for _ in range(cfg.blocks):
        for name, (model, w, n) in variants.items():
            samples[name].extend(timed_step(model, w) for _ in range(n))
    return {name: _summarise(s, cfg.n_points) for name, s in samples.items()}


def same_batch_check(example, cfg: BenchmarkConfig, device: str = "cpu") -> dict[str, Any]:
    """Losses of the reference and default paths on the same weights and the same batch.

    At initialisation the modulus network's output layer is zero (training starts from the
    prior), so ``∇G*`` vanishes and the ``∇G*·∇u`` term of ``hetero`` would not be compared;
    both models therefore get the same small random output layer first. The losses and the
    gradients are those of one :meth:`MREPINNModel.step` (PDE weight 1), the step timed.

    Returns
    -------
    dict
        ``losses`` ({path: {name: value}}; ``total`` with wave and PDE weights 1),
        ``rel_diff`` ({name: |ref − def| / |ref|}), ``grad_rel_diff`` (relative difference of
        the modulus network's gradient), ``residual_max_rel_diff`` (largest pointwise
        difference of the normalised residuals over the largest residual), ``rtol``,
        ``n_points`` and ``passed`` (every loss within ``rtol``).
    """
    import torch

    models = {p: build_timing_model(example, cfg, ENGINE_OF_PATH[p], device) for p in PATHS}
    ref, dflt = models["reference"], models["default"]
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():
        out = ref.net.mu_pinn.output
        out.weight.copy_(0.01 * torch.randn(out.weight.shape, generator=gen))
        out.bias.copy_(0.01 * torch.randn(out.bias.shape, generator=gen))
    dflt.net.load_state_dict(ref.net.state_dict())
    dflt.batch_idx = ref.batch_idx.clone()
    # the mean of squares averages errors out; the residuals themselves, point by point,
    # before the step changes the weights
    x = ref.x_all[ref.batch_idx]
    r_ref, r_def = (m.pde.normalized(x, m.net.wave_field, m.net.mu_field, create_graph=False)
                    for m in (ref, dflt))
    res_rel = float((r_ref - r_def).abs().max() / max(float(r_ref.abs().max()), 1e-300))
    losses: dict[str, dict[str, float]] = {}
    grads: dict[str, torch.Tensor] = {}
    for name, m in models.items():
        result = m.step(pde_weight=1.0)  # losses before the step; gradients kept after it
        losses[name] = {**result.losses, "total": result.total}
        grads[name] = torch.cat([p.grad.detach().reshape(-1).double()
                                 for p in m.net.mu_pinn.parameters() if p.grad is not None])
    rel = {
        k: abs(losses["reference"][k] - losses["default"][k])
        / max(abs(losses["reference"][k]), 1e-300)
        for k in losses["reference"]
    }
    g_ref, g_def = grads["reference"], grads["default"]
    grad_rel = float((g_ref - g_def).norm() / max(float(g_ref.norm()), 1e-300))
    return {
        "losses": losses,
        "rel_diff": rel,
        "grad_rel_diff": grad_rel,
        "residual_max_rel_diff": res_rel,
        "rtol": cfg.rtol,
        "n_points": len(ref.batch_idx),
        "passed": all(v <= cfg.rtol for v in rel.values()),
    }
