"""Overhead of the napari dock's Qt training worker over the plain training loop.

Not part of the library (which never imports Qt) nor of the test suite. Needs napari's
dependencies and a Qt binding (``pip install -e .[qt]``); no display (offscreen Qt)::

    python benchmarks/gui_overhead.py            # 200 iterations × 5 interleaved repeats
    python benchmarks/gui_overhead.py --quick    # a smoke run; its figures mean nothing

Three runs per repeat, interleaved: ``cli`` (``model.train`` as ``mrepinn fit`` runs it),
``gui_loop`` (the dock's ``TrainingWorker`` in a ``QThread`` driven by a ``TrainingRunner``
and a ``QCoreApplication`` event loop, snapshots off: the cost of the thread, the signals
and the bridge callback) and ``gui`` (the same with a full-grid snapshot every
``refresh_every`` iterations, each consumed as the dock does). Each run trains a fresh model
of the recipe (``recipe.build_model``) built with the same seed, with the PDE active from
the first iteration; the clock covers the ``train`` call only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch
from qtpy.QtCore import QCoreApplication

from napari_mrepinn import recipe, training
from napari_mrepinn._worker import TrainingRunner, TrainingWorker
from napari_mrepinn.config import TrainingConfig

RUNS = ("cli", "gui_loop", "gui")


def _clocked(model) -> dict[str, float]:
    """Wrap ``model.train`` so that its wall and process-CPU seconds land in the dict
    returned (process CPU covers every thread: the worker's and the event loop's)."""
    clock: dict[str, float] = {}
    train = model.train

    def run(*args: Any, **kwargs: Any):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return train(*args, **kwargs)
        finally:
            clock["s"] = time.perf_counter() - t0
            clock["cpu"] = time.process_time() - c0

    model.train = run  # an instance attribute: the worker calls this one
    return clock


def _cli_run(model, n_iters: int, display_every: int) -> dict[str, float]:
    clock = _clocked(model)
    model.train(n_iters, display_every=display_every, test_every=0,
                callbacks=[training.Resampler(1)])
    return clock


def _gui_run(model, n_iters: int, display_every: int, refresh: int) -> dict[str, float]:
    clock = _clocked(model)
    worker = TrainingWorker(lambda: model, n_iters, display_every=display_every,
                            refresh_every=refresh, resample_every=1, threads=1)
    runner = TrainingRunner()
    errors: list[str] = []
    runner.failed.connect(lambda msg, tb: errors.append(msg))
    runner.snapshot.connect(lambda snap: worker.snapshot_consumed())  # as the dock does
    runner.start(worker)
    if not runner.wait(timeout=3600) or errors:
        raise RuntimeError(f"the Qt worker did not finish: {errors or 'timeout'}")
    QCoreApplication.processEvents()
    return clock


def measure_gui_overhead(
    example,
    *,
    n_iters: int = 200,
    repeats: int = 5,
    refresh_every: int = 100,
    display_every: int = 10,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Median seconds per iteration of the three runs (see the module docstring).

    Parameters
    ----------
    example : MREExample
        Single-frequency example.
    n_iters, repeats : int
        Iterations per run; interleaved repeats.
    refresh_every, display_every : int
        Snapshot and history periods of the ``gui`` run (the dock's defaults).
    seed : int
    **options
        Fields of :class:`~napari_mrepinn.config.TrainingConfig` (the recipe otherwise).

    Returns
    -------
    dict
        ``cli_s``, ``gui_loop_s``, ``gui_s`` and ``*_cpu_s`` (medians per iteration),
        ``gui_loop_overhead`` and ``gui_overhead`` (relative to ``cli_s``), the same on the
        CPU clock (``*_cpu_overhead``), the raw ``runs`` and the settings. The dock trains
        on one thread, so every run does.
    """
    app = QCoreApplication.instance() or QCoreApplication([])  # noqa: F841 (kept alive)
    config = TrainingConfig(iters=n_iters, pde_warmup_iters=0, seed=seed, threads=1,
                            **options)
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in RUNS}
    with recipe.torch_threads(1):
        for _ in range(int(repeats)):
            for name in RUNS:
                model = recipe.build_model(example, config)
                if name == "cli":
                    runs[name].append(_cli_run(model, n_iters, display_every))
                else:
                    refresh = n_iters + 1 if name == "gui_loop" else refresh_every
                    runs[name].append(_gui_run(model, n_iters, display_every, refresh))
    net = model.net.config
    out: dict[str, Any] = {"runs": runs, "n_iters": int(n_iters), "repeats": int(repeats),
                           "refresh_every": int(refresh_every), "threads": 1,
                           "n_layers": int(net["n_layers"]), "n_hidden": int(net["n_hidden"])}
    for key, suffix in (("s", "_s"), ("cpu", "_cpu_s")):
        med = {k: statistics.median(r[key] for r in v) / n_iters for k, v in runs.items()}
        out.update({f"{k}{suffix}": v for k, v in med.items()})
        tag = "" if key == "s" else "_cpu"
        out[f"gui_loop{tag}_overhead"] = med["gui_loop"] / med["cli"] - 1.0
        out[f"gui{tag}_overhead"] = med["gui"] / med["cli"] - 1.0
    return out


def format_table(r: dict[str, Any]) -> str:
    """The result as a markdown table."""
    return "\n".join([
        f"Networks {r['n_layers']} × {r['n_hidden']}, PDE active, {r['n_iters']} iterations "
        f"× {r['repeats']} interleaved repeats, {r['threads']} torch thread.",
        "",
        "| run | s/iter | vs CLI | CPU s/iter | vs CLI (CPU) |",
        "|---|---|---|---|---|",
        f"| CLI (`train`) | {r['cli_s']:.3g} | – | {r['cli_cpu_s']:.3g} | – |",
        f"| Qt worker, no snapshots | {r['gui_loop_s']:.3g} | "
        f"{100 * r['gui_loop_overhead']:+.1f} % | {r['gui_loop_cpu_s']:.3g} | "
        f"{100 * r['gui_loop_cpu_overhead']:+.1f} % |",
        f"| Qt worker, snapshot every {r['refresh_every']} it | {r['gui_s']:.3g} | "
        f"{100 * r['gui_overhead']:+.1f} % | {r['gui_cpu_s']:.3g} | "
        f"{100 * r['gui_cpu_overhead']:+.1f} % |",
    ])


def main(argv: list[str] | None = None) -> int:
    from napari_mrepinn.benchmark import BenchmarkConfig
    from napari_mrepinn.benchmark.spec import four_target_box, middle_slice

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    cfg = BenchmarkConfig.quick() if args.quick else BenchmarkConfig.full()
    example = middle_slice(four_target_box(cfg))
    kwargs = ({"n_iters": 10, "repeats": 1, "refresh_every": 5, **cfg.fit_options}
              if args.quick else {})
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load {os.getloadavg()}",
          file=sys.stderr)
    print(format_table(measure_gui_overhead(example, **kwargs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
