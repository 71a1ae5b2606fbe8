"""Throughput of ``mrepinn batch``: exams per hour with 1 and 2 local workers, and the
scheduling overhead per exam as a share of the fit time.

Not a test (``testpaths = ["tests"]``); run it explicitly::

    OMP_NUM_THREADS=1 python benchmarks/bench_batch.py [--exams 6] [--iters 300] [-o out.json]

Each setting runs the same PINN fits (cylinder phantoms, 32 × 32 voxels, distinct noise
seeds) into a fresh results folder, in one process, one after the other:

* ``loop``: :func:`napari_mrepinn.batch.run_exam` called in this process, one exam after the
  other: no Dask (the reference);
* ``workers=N``: :func:`napari_mrepinn.batch.run_batch` on a local cluster of N worker
  processes.

Reported per setting: the wall time, the cluster start-up (processes + imports), exams per
hour with and without the start-up, the mean fit time (the ``seconds`` column), the
scheduling overhead per exam, ``(run × workers − Σ task time) / exams`` with ``run`` the
time from the first submission to the last result (the worker-seconds spent outside any
task: scheduling, transfers, the driver's bookkeeping, and a worker idle at the end when the
exams do not divide evenly) and its share of the mean fit time, and the time a task spends
reading, computing statistics and writing besides the fit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def bench_batch(n_exams: int = 6, workers: tuple[int, ...] = (1, 2), iters: int = 300,
                folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """Time the same fits in a plain loop and through ``run_batch`` with each worker count.

    Returns
    -------
    dict
        ``settings`` (what ran, the machine's load average before and after) and
        ``results`` (one entry per setting, times in seconds).
    """
    from napari_mrepinn import batch, simulate
    from napari_mrepinn.config import TrainingConfig

    root = Path(folder or tempfile.mkdtemp(prefix="bench-batch-"))
    inputs = root / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    clean = simulate.cylinder().downsample(2)
    for i in range(n_exams):
        clean.add_gaussian_noise(1e-3, seed=i).save(inputs / f"cyl{i}.nc")
    config = TrainingConfig(iters=iters, pde_warmup_iters=iters // 2, threads=1)
    load_before = _loadavg()
    results: dict[str, Any] = {}

    # the reference: the same task function, in this process, no Dask
    out = root / "loop"
    out.mkdir(exist_ok=True)
    exams = batch.find_exams([inputs])
    keys = {"pinn": batch.method_key("pinn", config)}
    warm = root / "warm"
    warm.mkdir(exist_ok=True)
    # imports and first-call costs, untimed (the workers import during start-up)
    batch.run_exam(exams[0], ["pinn"], str(warm), config_json=config.to_json())
    t0 = time.perf_counter()
    fit_s = task_s = 0.0
    for exam in exams:
        payload = batch.run_exam(exam, ["pinn"], str(out), config_json=config.to_json(),
                                 keys=keys)
        fit_s += payload["rows"][0]["seconds"]
        task_s += payload["task_seconds"]
    wall = time.perf_counter() - t0
    results["loop"] = _numbers(n_exams, 1, wall, 0.0, wall, task_s, fit_s)

    for n in workers:
        df = batch.run_batch(inputs, root / f"workers-{n}", methods=["pinn"], config=config,
                             workers=n, progress=False)
        assert (df["status"] == "done").all(), df[["id", "status", "error"]]
        t = df.attrs["timing"]
        results[f"workers={n}"] = _numbers(n_exams, n, t["wall_s"], t["startup_s"],
                                           t["run_s"], t["tasks_s"],
                                           float(df["seconds"].sum()))
        results[f"workers={n}"]["fit_s"] = df["seconds"].round(2).tolist()
    return {
        "settings": {"exams": n_exams, "iters": iters, "grid": list(clean.spatial_shape),
                     "config": json.loads(config.to_json()), "cpu_count": os.cpu_count(),
                     "loadavg_before": load_before, "loadavg_after": _loadavg()},
        "results": results,
    }


def _numbers(n: int, workers: int, wall: float, startup: float, run: float, tasks: float,
             fit: float) -> dict:
    """``run``: first submission to last result; ``tasks``: summed task times (read, fit,
    statistics, write); ``fit``: summed fit times."""
    scheduling = (run * workers - tasks) / n  # worker-seconds outside any task
    io = (tasks - fit) / n  # reading, statistics and writing inside the task
    return {
        "workers": workers, "wall_s": round(wall, 2), "startup_s": round(startup, 2),
        "run_s": round(run, 2),
        "exams_per_hour": round(n / wall * 3600, 1),
        "exams_per_hour_after_startup": round(n / run * 3600, 1),
        "fit_s_per_exam": round(fit / n, 2),
        "scheduling_s_per_exam": round(scheduling, 3),
        "scheduling_share_of_fit": round(scheduling / (fit / n), 4),
        "read_stats_write_s_per_exam": round(io, 3),
    }


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exams", type=int, default=6)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("-o", "--output", help="write the numbers as JSON here")
    args = p.parse_args(argv)
    out = bench_batch(args.exams, tuple(args.workers), args.iters)
    text = json.dumps(out, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
