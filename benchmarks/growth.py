"""Growth with the exam: one default fit of a liver-exam-sized volume.

A 128 × 128 × 32 three-component four-target volume at 1.5 mm (192 × 192 × 48 mm; the
four targets keep their positions and sizes in mm), 60 Hz, with a truly 3-D wave
(``kz`` = a third of the in-plane wavenumber of the background, so that the field varies
through-plane), 30 dB noise, fitted with the default recipe (3-D derivatives, converged
stop). Reports the training and full-grid evaluation times, the peak resident memory
(``ru_maxrss``) and R, CTE and the background bias against the closed-form-separable truth.

Usage::

    python benchmarks/growth.py [--shape 128,128,32] [--out growth.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from napari_mrepinn import recipe, simulate
from napari_mrepinn.metrics import evaluate
from napari_mrepinn.outputs import write_text


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(shape: tuple[int, int, int], frequency: float = 60.0, spacing: float = 1.5e-3,
         noise: float = 1e-3, **options) -> dict:
    t0 = time.perf_counter()
    k = 2 * np.pi * frequency * np.sqrt(1000.0 / 3000.0)  # background wavenumber, rad/m
    ex = simulate.four_target(frequency, shape=shape, spacing=spacing, kz=k / 3)
    ex = ex.add_gaussian_noise(noise, seed=0)
    t_sim = time.perf_counter() - t0
    rss_data = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    out = recipe.fit(ex, progress=True, **options)
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    s = json.loads(out.ds.attrs["mrepinn_settings_json"])
    res = evaluate(out.ds["mu_pred"], ex.ds["mre"], ex.ds["mre_mask"])
    ahi = evaluate(out.ds["mu_ahi"], ex.ds["mre"], ex.ds["mre_mask"])
    bg = res["median_pred_pa"][1] / res["median_true_pa"][1] - 1
    report = {
        "shape": list(shape), "voxels": int(np.prod(shape)), "components": ex.n_components,
        # wall seconds, and CPU seconds of this process (one torch thread: the figure to
        # compare when other work shared the cores)
        "simulate_s": round(t_sim, 1), "fit_s": round(t_fit, 1), "fit_cpu_s": round(c_fit, 1),
        "train_s": s["seconds"], "evaluation_and_setup_s": round(t_fit - s["seconds"], 1),
        "iterations": s["iters"], "derivative_axes": s["derivative_axes_run"],
        "n_hidden": s["network"]["n_hidden"], "peak_rss_mb_data": round(rss_data),
        "peak_rss_mb": round(peak_rss_mb()), "R": round(res["pearson_r"], 3),
        "CTE": {str(k): round(v, 1) for k, v in res["cte_percent"].items()},
        "bg_bias_percent": round(100 * bg, 1), "ahi_R": round(ahi["pearson_r"], 3),
        "ahi_CTE": {str(k): round(v, 1) for k, v in ahi["cte_percent"].items()},
    }
    return report


if __name__ == "__main__":  # pragma: no cover - a benchmark run, not a test
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="128,128,32")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    rep = main(tuple(int(v) for v in a.shape.split(",")))
    print(json.dumps(rep, indent=1))
    if a.out:
        write_text(a.out, json.dumps(rep, indent=1))
