"""Benchmarks behind ``mrepinn benchmark``.

In one run on one machine (:func:`run_benchmark`, the command via :func:`main`):

* direct inversion (:mod:`.direct`): AHI and MDEV on a synthetic volume;
* training paths (:mod:`.paths`): the seconds per training iteration of (a) the reference
  derivative engine (reverse-mode autograd, as the published method) and (b) the default
  one, split into data / model / loss / step, interleaved ``a, b, a, b, ...`` so that a
  drifting load on a shared machine hits both alike; each iteration is the training step
  itself, ``MREPINNModel.step(timed=True)``; and a same-batch check that both give the same
  loss;
* memory (:mod:`.memory`): the peak memory of each path, a fresh process each;
* time to accuracy (:mod:`.accuracy`): Pearson R of ``|G*|`` against training time while
  the default ``fit`` trains on the four-target slice and box, with AHI as the reference;
* thread policy under load (:mod:`.contention`): the slowdown of a short default fit beside
  a busy core and beside another fit, with and without ``OMP_WAIT_POLICY=PASSIVE``.

The overhead of the napari dock's Qt worker is measured by ``benchmarks/gui_overhead.py``
(the library never imports Qt). Performance figures belong here and in the docs, never in
a timed test. Only numpy is imported at module level, so importing this package never
pulls in torch.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .accuracy import ahi_reference, time_to_accuracy
from .contention import measure_contention
from .direct import benchmark_baselines, format_baseline_benchmark, synthetic_wave_example
from .memory import measure_memory
from .paths import same_batch_check, time_training_paths, timed_step
from .report import format_markdown
from .spec import BenchmarkConfig, build_timing_model, four_target_box, loadavg, middle_slice

__all__ = [
    "PARTS",
    "BenchmarkConfig",
    "ahi_reference",
    "benchmark_baselines",
    "build_timing_model",
    "format_baseline_benchmark",
    "format_markdown",
    "main",
    "measure_contention",
    "measure_memory",
    "run_benchmark",
    "same_batch_check",
    "synthetic_wave_example",
    "time_to_accuracy",
    "time_training_paths",
    "timed_step",
]

#: what :func:`run_benchmark` can measure
PARTS = ("baselines", "import", "paths", "memory", "accuracy", "contention")
GUI_OVERHEAD_HINT = (
    "the Qt worker's overhead is measured outside the library (it needs napari and a Qt "
    "binding): python benchmarks/gui_overhead.py (from a source checkout)"
)


def _machine(devices: Sequence[str]) -> dict[str, Any]:
    """What the figures were measured on."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "devices": list(devices),
    }
    if "cuda" in devices:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _resolve_devices(device: str | None) -> list[str]:
    """``None``: the CPU, and CUDA when torch sees a GPU; else the one device named."""
    import torch

    from ..config import resolve_device

    if device is None:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [resolve_device(device)]


def _device_run(box, path: str, dev: str, cfg: BenchmarkConfig, parts: Collection[str],
                say: Any) -> dict[str, Any]:
    """Everything measured on one device (see :func:`run_benchmark`)."""
    from ..recipe import resolved_threads

    res: dict[str, Any] = {}
    if "paths" in parts:
        say(f"[{dev}] same-batch check of the two paths ...")
        res["check"] = same_batch_check(box, cfg, dev)
        say(f"[{dev}] timing {cfg.blocks} interleaved blocks ...")
        t = res["timing"] = time_training_paths(box, cfg, dev)
        res["ratio"] = t["reference"]["total_s"] / t["default"]["total_s"]
        res["warmup_ratio"] = t["reference_warmup"]["total_s"] / t["default_warmup"]["total_s"]
    if "memory" in parts and cfg.memory_iters > 0:
        say(f"[{dev}] memory probes (one process per path) ...")
        res["memory"] = measure_memory(path, cfg, dev, threads=resolved_threads(cfg.threads))
    if "accuracy" in parts:
        res["accuracy"], res["ahi"] = {}, {}
        runs = [("slice", middle_slice(box), cfg.slice_iters)]
        if cfg.box_iters != 0:
            runs.append(("box", box, cfg.box_iters))
        for name, ex, iters in runs:
            say(f"[{dev}] time to accuracy: default fit of the {name} ...")
            res["ahi"][name] = ahi_reference(ex)
            res["accuracy"][name] = time_to_accuracy(
                ex, iters, eval_every=cfg.eval_every, device=dev, seed=cfg.seed,
                threads=cfg.threads, **cfg.fit_options,
            )
    return res


def run_benchmark(
    cfg: BenchmarkConfig | None = None,
    *,
    devices: Sequence[str] | None = None,
    parts: Collection[str] = PARTS,
    log: Any = print,
) -> dict[str, Any]:
    """Everything ``mrepinn benchmark`` measures, as one dict (JSON-serialisable).

    Parameters
    ----------
    cfg : BenchmarkConfig, optional
        Default :meth:`BenchmarkConfig.full`.
    devices : sequence of str, optional
        ``["cpu"]``, and ``"cuda"`` when torch sees a GPU.
    parts : collection of str
        What to measure (:data:`PARTS`): ``baselines`` (AHI/MDEV timing), ``paths``
        (iteration timing and same-batch check), ``memory`` (also off with
        ``cfg.memory_iters = 0``), ``accuracy`` (time to accuracy and the AHI reference),
        ``contention`` (thread policy under load, on the CPU; also off with
        ``cfg.contention_iters = 0``).
    log : callable
        Progress messages (``print``; ``None`` for silence).

    Returns
    -------
    dict
        ``machine``, ``config``, ``load_before`` / ``load_after`` (1, 5, 15-minute load
        averages); ``baselines`` (:func:`benchmark_baselines`); per device under
        ``devices[dev]``: ``timing`` (:func:`time_training_paths`), ``ratio`` (reference /
        default total s/iter, PDE active) and ``warmup_ratio``, ``check``
        (:func:`same_batch_check`), ``memory`` (:func:`measure_memory`), ``accuracy``
        ({"slice", "box"}: :func:`time_to_accuracy`) and ``ahi`` ({"slice", "box"}:
        :func:`ahi_reference`); ``contention`` (:func:`measure_contention`).
    """
    from ..recipe import torch_threads

    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown benchmark part(s) {sorted(unknown)}; the parts are {PARTS}")
    cfg = BenchmarkConfig.full() if cfg is None else cfg
    devs = list(devices) if devices is not None else _resolve_devices(None)
    say = log or (lambda *a, **k: None)
    with torch_threads(cfg.threads):
        out: dict[str, Any] = {"machine": _machine(devs), "config": asdict(cfg),
                               "load_before": loadavg(), "devices": {}}
        if "baselines" in parts:
            say("direct inversion (AHI, MDEV) on 128 × 80 × 25 × 3 components × 8 "
                "frequencies ...")
            out["baselines"] = benchmark_baselines(repeats=1 if cfg.blocks < 5 else 3)
        if "import" in parts:
            from ..acquisition import benchmark_import

            shape = (128, 128, 32) if cfg.blocks >= 5 else (48, 48, 8)
            say(f"scanner import of a {shape} exam (8 offsets, 3 directions, 4 frequencies) ...")
            out["import"] = benchmark_import(shape, unwrap=("laplacian",))
        say(f"building the four-target box {cfg.shape} ...")
        box = four_target_box(cfg)
        with tempfile.TemporaryDirectory(prefix="mrepinn-bench-") as tmp:
            box_path, slice_path = str(Path(tmp) / "box.nc"), str(Path(tmp) / "slice.nc")
            box.save(box_path)
            if set(parts) & {"paths", "memory", "accuracy"}:
                for dev in devs:
                    out["devices"][dev] = _device_run(box, box_path, dev, cfg, parts, say)
            if "contention" in parts and cfg.contention_iters > 0:
                middle_slice(box).save(slice_path)
                out["contention"] = measure_contention(slice_path, cfg, log=say)
        out["load_after"] = loadavg()
    return out


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars, tuples, int dict keys, NaN as null)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _parts(args: Any) -> list[str]:
    if getattr(args, "contention_only", False):
        return ["contention"]
    skip = set()
    if getattr(args, "skip_accuracy", False):
        skip.add("accuracy")
    if getattr(args, "skip_contention", False):
        skip.add("contention")
    return [p for p in PARTS if p not in skip]


def main(args: Any) -> int:
    """``mrepinn benchmark``: time both training paths, check them, time to accuracy, the
    thread policy under load.

    Parameters
    ----------
    args : argparse.Namespace
        ``quick`` (bool), ``device`` (None, ``"cpu"`` or ``"cuda"``), ``skip_accuracy``,
        ``skip_contention``, ``contention_only`` (bool), ``threads`` (int, 0 = the default
        policy; also the threads of the contention fits), ``output`` (None or a JSON
        path); ``gui_overhead`` (bool) only says where that measurement went.

    Returns
    -------
    int
        0, or 1 when the reference and default losses differ beyond the tolerance.

    Raises
    ------
    MREInputError
        A device torch cannot use, a negative thread count, or ``--gui-overhead``.
    """
    from ..data import MREInputError
    from ..outputs import check_writable, write_text

    if getattr(args, "gui_overhead", False):
        raise MREInputError(GUI_OVERHEAD_HINT)
    output = getattr(args, "output", None)
    if output:
        check_writable(output)  # before the minutes of timing, not after
    cfg = BenchmarkConfig.quick() if getattr(args, "quick", False) else BenchmarkConfig.full()
    threads = int(getattr(args, "threads", 0) or 0)
    if threads < 0:
        raise MREInputError(f"--threads must be ≥ 0 (0 = the default policy), got {threads}.")
    cfg.threads = cfg.contention_threads = threads
    devices = _resolve_devices(getattr(args, "device", None))
    result = run_benchmark(cfg, devices=devices, parts=_parts(args),
                           log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_markdown(result))
    if output:
        write_text(output, json.dumps(_jsonable(result), indent=1))
        print(f"\nwrote {output}")
    ok = all(r["check"]["passed"] for r in result["devices"].values() if "check" in r)
    if not ok:
        print("mrepinn benchmark: the reference and default losses differ beyond the "
              "tolerance", file=sys.stderr)
    return 0 if ok else 1
