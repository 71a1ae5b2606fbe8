"""Peak memory of a few training iterations of each path, each in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import asdict
from typing import Any

from .spec import ENGINE_OF_PATH, BenchmarkConfig, build_timing_model

__all__ = ["measure_memory"]

MB = 1024.0**2
#: (name in the report, path, PDE weight) of each probe
PROBES = (("reference", "reference", 1.0), ("default", "default", 1.0),
          ("default_warmup", "default", 0.0))


def _rss_bytes() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _maxrss_bytes() -> int:
    import resource

    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


class _PeakSampler:
    """Samples the RSS every millisecond in a thread: torch frees the graph before an
    iteration returns, so only a sample inside it sees the peak."""

    def __init__(self) -> None:
        self.peak = _rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            r = _rss_bytes()
            if r is not None and r > self.peak:
                self.peak = r
            self._stop.wait(0.001)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _memory_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of ``spec["iters"]`` training iterations of one path (in this process)."""
    import torch

    from ..data import MREExample
    from .paths import timed_step

    torch.set_num_threads(int(spec["threads"]))
    cfg = BenchmarkConfig(**spec["config"])
    device = spec["device"]
    model = build_timing_model(MREExample.load(spec["path"]), cfg,
                               ENGINE_OF_PATH[spec["path_name"]], device)
    is_cuda = torch.device(device).type == "cuda"
    if is_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    rss_before, maxrss_before = _rss_bytes(), _maxrss_bytes()
    with _PeakSampler() as sampler:
        for _ in range(int(spec["iters"])):
            timed_step(model, float(spec["w_pde"]))
    maxrss_after = _maxrss_bytes()
    out: dict[str, Any] = {
        "maxrss_before_mb": maxrss_before / MB,
        "maxrss_after_mb": maxrss_after / MB,
        "maxrss_delta_mb": (maxrss_after - maxrss_before) / MB,
    }
    if rss_before is not None:
        out["rss_before_mb"] = rss_before / MB
        out["rss_peak_mb"] = sampler.peak / MB
        out["rss_peak_delta_mb"] = (sampler.peak - rss_before) / MB
    if is_cuda:
        peak = torch.cuda.max_memory_allocated(device)
        out["cuda_peak_delta_mb"] = (peak - cuda_before) / MB
        out["cuda_peak_mb"] = peak / MB
    return out


def _memory_probe_cli(spec_json: str) -> None:
    """Entry point of the probe subprocess: prints its result as one JSON line."""
    print(json.dumps(_memory_probe(json.loads(spec_json))))


def _run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    code = ("import sys; from napari_mrepinn.benchmark.memory import _memory_probe_cli; "
            "_memory_probe_cli(sys.argv[1])")
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)],
                              capture_output=True, text=True, timeout=900, check=False)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"probe exited with {proc.returncode}: {tail}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        return {"error": f"unreadable probe output: {exc}"}


def measure_memory(
    example_path: str, cfg: BenchmarkConfig, device: str = "cpu", threads: int = 1
) -> dict[str, dict[str, Any]]:
    """Peak memory of each path, each in a fresh Python process.

    A fresh process per path, because the allocator keeps what the other path freed and a
    high-water mark never goes down. On the CPU, ``tracemalloc`` does not see torch's
    allocations: the figures are the resident set size (RSS) of the process: its peak
    during ``cfg.memory_iters`` iterations minus its value just before (sampled every
    millisecond with psutil, when installed), and the growth of the kernel's high-water
    mark ``ru_maxrss`` over those iterations (which misses whatever fits under the peak of
    the set-up). On CUDA also ``torch.cuda.max_memory_allocated`` minus the memory held
    before (networks, data, no graph).

    Parameters
    ----------
    example_path : str
        The example saved as ``.nc`` (each probe loads it).
    cfg : BenchmarkConfig
    device : str
    threads : int
        Torch threads of each probe.

    Returns
    -------
    dict
        Per path (``reference``, ``default``, ``default_warmup``): the probe's figures in
        MB (2^20 bytes), or ``{"error": message}``.
    """
    cfg_dict = asdict(cfg)
    out: dict[str, dict[str, Any]] = {}
    for name, path_name, w in PROBES:
        spec = {"path": example_path, "path_name": path_name, "w_pde": w,
                "iters": cfg.memory_iters, "device": device, "threads": int(threads),
                "config": cfg_dict}
        out[name] = _run_probe(spec)
    return out
