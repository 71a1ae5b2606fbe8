"""Benchmarks behind ``mrepinn benchmark``.

Two families:

* direct inversion (:func:`benchmark_baselines`): AHI and MDEV on a synthetic volume;
* MRE-PINN training (:func:`run_benchmark`, the ``mrepinn benchmark`` command via
  :func:`main`): in one run on one machine and one network, the seconds per training
  iteration of (a) the reference derivative path (reverse-mode autograd, as the published
  method) and (b) the default path, split into data / model / loss / step, interleaved
  ``a, b, a, b, ...`` so that a drifting load on a shared machine hits both alike; the peak
  memory of each path (a fresh process each); a same-batch check that both give the same
  loss; and time to accuracy: Pearson R of ``|G*|`` against wall time while the default
  ``fit`` trains on the four-target slice and box, with AHI as the reference line.
  Optionally the overhead of the napari dock's Qt worker (:func:`measure_gui_overhead`,
  ``mrepinn benchmark --gui-overhead``).

Performance figures belong here and in the README, never in a timed test.

Only numpy is imported at module level, so importing this module never pulls in torch;
each benchmark imports what it needs when it runs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BenchmarkConfig",
    "benchmark_baselines",
    "build_timing_model",
    "format_baseline_benchmark",
    "format_markdown",
    "main",
    "measure_gui_overhead",
    "run_benchmark",
    "same_batch_check",
    "synthetic_wave_example",
    "time_to_accuracy",
    "time_training_paths",
    "timed_iteration",
]


def synthetic_wave_example(
    shape: Sequence[int] = (128, 80, 25),
    n_components: int = 3,
    n_frequencies: int = 8,
    *,
    spacing: float = 1.5e-3,
    frequencies: Sequence[float] | None = None,
    modulus: complex = 3000 + 1000j,
    n_waves: int = 3,
    noise: float = 0.01,
    density: float = 1000.0,
    seed: int = 0,
):
    """A multi-frequency wave volume for timing: sums of damped plane waves plus noise.

    Each component at each frequency is a sum of ``n_waves`` plane waves
    ``exp(-i k d·x)`` of random direction ``d`` and amplitude in a homogeneous medium of
    modulus ``modulus`` (Pa), so the field has realistic interference nodes. Plane waves
    are separable, so the volume is built from outer products of 1-D factors (fast).

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(x, y, z)`` (or ``(x, y)``) in voxels.
    n_components : int
        Number of displacement components (1 to 3).
    n_frequencies : int
        Number of frequencies (evenly spaced over 30–100 Hz unless given).
    spacing : float
        Isotropic voxel size in metres.
    frequencies : sequence of float, optional
        Frequencies in Hz (overrides ``n_frequencies``).
    modulus : complex
        ``G*`` in Pa of the medium.
    n_waves : int
        Plane waves per component and frequency.
    noise : float
        Standard deviation of complex Gaussian noise relative to the wave amplitude.
    density : float
        kg/m³.
    seed : int
        Random seed.

    Returns
    -------
    MREExample
        With dims ``(frequency, x, y[, z], component)``.
    """
    from .data import MREExample

    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in shape)
    if frequencies is None:
        frequencies = np.linspace(30.0, 100.0, n_frequencies)
    freqs = np.asarray(frequencies, dtype=float)
    coords = [spacing * np.arange(n) for n in shape]
    wave = np.zeros((len(freqs), *shape, n_components), complex)
    for i, f in enumerate(freqs):
        # principal root: Im k < 0, the wave decays along its travel (MRE convention)
        k = 2 * np.pi * f * np.sqrt(density / complex(modulus))
        for c in range(n_components):
            for _ in range(n_waves):
                d = rng.normal(size=len(shape))
                d /= np.linalg.norm(d)
                field = np.asarray(rng.normal() + 1j * rng.normal())
                for ax, (x, dx) in enumerate(zip(coords, d, strict=True)):
                    factor = np.exp(-1j * k * dx * x)
                    field = field[..., None] * factor.reshape((1,) * ax + (-1,))
                wave[i, ..., c] += field.reshape(shape)
    if noise > 0:
        scale = noise * np.sqrt(np.mean(np.abs(wave) ** 2) / 2.0)
        wave += rng.normal(0.0, scale, wave.shape) + 1j * rng.normal(0.0, scale, wave.shape)
    return MREExample.from_numpy(
        wave, frequency=freqs, spacing=spacing, density=density,
        components=list("zyx"[:n_components]), spatial_ndim=len(shape),
    )


def _time(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def benchmark_baselines(
    shape: Sequence[int] = (128, 80, 25),
    n_components: int = 3,
    n_frequencies: int = 8,
    repeats: int = 3,
    *,
    seed: int = 0,
    **ahi_mdev_kwargs: Any,
) -> dict[str, Any]:
    """Time AHI (every frequency) and MDEV on a synthetic volume.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape in voxels.
    n_components, n_frequencies : int
        Wave components and frequencies of the synthetic example.
    repeats : int
        Timed calls per method (no untimed warm-up; see ``*_min_s`` for the best call).
    seed : int
        Seed of the synthetic wave.
    **ahi_mdev_kwargs
        Options passed to both :func:`~napari_mrepinn.baselines.ahi` and
        :func:`~napari_mrepinn.baselines.mdev` (e.g. ``smoothing="gaussian"``); their
        defaults otherwise (AHI despeckles, MDEV does not).

    Returns
    -------
    dict
        ``ahi_s`` / ``mdev_s``: median wall-clock seconds per call; ``ahi_min_s`` /
        ``mdev_min_s``: fastest call; ``ahi_times_s`` / ``mdev_times_s``: every call;
        ``ahi_cpu_s`` / ``mdev_cpu_s``: least process CPU seconds of a call (the inversions
        run on one thread, so on a busy shared machine this is the figure that says what
        an idle one would take); plus ``shape``,
        ``n_components``, ``n_frequencies``, ``repeats``, ``n_values`` (wave values per
        call) and ``build_s`` (seconds to build the synthetic wave).
    """
    from . import baselines

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    t0 = time.perf_counter()
    example = synthetic_wave_example(shape, n_components, n_frequencies, seed=seed)
    build_s = time.perf_counter() - t0
    ahi_t, ahi_cpu = _time(lambda: baselines.ahi(example, **ahi_mdev_kwargs), repeats)
    mdev_t, mdev_cpu = _time(lambda: baselines.mdev(example, **ahi_mdev_kwargs), repeats)
    return {
        "ahi_s": statistics.median(ahi_t),
        "mdev_s": statistics.median(mdev_t),
        "ahi_min_s": min(ahi_t),
        "mdev_min_s": min(mdev_t),
        "ahi_times_s": ahi_t,
        "mdev_times_s": mdev_t,
        "ahi_cpu_s": min(ahi_cpu),
        "mdev_cpu_s": min(mdev_cpu),
        "shape": tuple(int(n) for n in shape),
        "n_components": int(n_components),
        "n_frequencies": int(n_frequencies),
        "repeats": int(repeats),
        "n_values": int(example.ds["wave"].size),
        "build_s": build_s,
    }


def format_baseline_benchmark(result: dict[str, Any]) -> str:
    """A small text table of :func:`benchmark_baselines` (seconds per call)."""
    shape = " × ".join(str(n) for n in result["shape"])
    lines = [
        f"direct inversion on {shape} voxels, {result['n_components']} components, "
        f"{result['n_frequencies']} frequencies ({result['repeats']} calls each)",
        f"{'method':<8}{'median s':>10}{'best s':>10}{'CPU s':>10}",
        f"{'-' * 8}{'-' * 30}",
        f"{'AHI':<8}{result['ahi_s']:>10.3f}{result['ahi_min_s']:>10.3f}"
        f"{result['ahi_cpu_s']:>10.3f}",
        f"{'MDEV':<8}{result['mdev_s']:>10.3f}{result['mdev_min_s']:>10.3f}"
        f"{result['mdev_cpu_s']:>10.3f}",
    ]
    return "\n".join(lines)


# ============================================================================ training paths
#: the two derivative engines compared, in the order they are run within each block
PATHS = ("reference", "default")
#: physics engine behind each path name (see :mod:`napari_mrepinn.physics`)
ENGINE_OF_PATH = {"reference": "reference", "default": "fast"}
PHASES = ("data", "model", "loss", "step")


@dataclass
class BenchmarkConfig:
    """What ``mrepinn benchmark`` measures and how long it tries.

    Parameters
    ----------
    shape : (int, int, int)
        Voxels of the four-target box (x, y, z); the time per iteration does not depend on
        it (a batch is ``n_points`` points), the time-to-accuracy runs do.
    spacing : float
        Voxel size in metres.
    frequency : float
        Vibration frequency in Hz.
    n_layers, n_hidden, omega : int, int, float
        Network of the iteration timing, for both paths (``MREPINN``: ``n_layers`` linear
        layers, dense sine, ``omega`` = SIREN ω0 of the normalised input).
    n_points : int
        Collocation points per iteration.
    pde : str
        Wave equation (``"hetero"``).
    blocks : int
        Interleaved rounds ``reference, default, reference, default, ...``; the load of a
        shared machine drifts, and interleaving spreads the drift over both paths alike.
    iters_per_block : int
        Timed iterations of each PDE-active path per block.
    warmup_iters_per_block : int
        Timed iterations of each warmup (PDE weight 0) variant per block.
    memory_iters : int
        Iterations run in each memory probe (a fresh subprocess per path); 0 skips the
        memory probes.
    slice_iters, box_iters : int or None
        Iterations of the time-to-accuracy fits (None: the default of ``training.fit``);
        ``box_iters = 0`` skips the 3D box.
    eval_every : int
        Period (iterations) of the Pearson-R records of those fits.
    fit_options : dict
        Extra options of ``training.fit`` in the time-to-accuracy runs (empty = the default
        recipe; the quick configuration shrinks the networks).
    gui_iters, gui_repeats : int
        Iterations per run and interleaved repeats of the Qt-worker overhead measurement.
    seed : int
        Seeds the networks and the point sampling.
    rtol : float
        Relative tolerance of the same-batch loss check.
    """

    shape: tuple[int, int, int] = (80, 100, 10)
    spacing: float = 1e-3
    frequency: float = 90.0
    n_layers: int = 5
    n_hidden: int = 128
    omega: float = 60.0
    n_points: int = 1024
    pde: str = "hetero"
    blocks: int = 10
    iters_per_block: int = 3
    warmup_iters_per_block: int = 2
    memory_iters: int = 3
    slice_iters: int | None = None
    box_iters: int | None = None
    eval_every: int = 100
    fit_options: dict[str, Any] = field(default_factory=dict)
    gui_iters: int = 200
    gui_repeats: int = 5
    seed: int = 0
    rtol: float = 1e-5

    @classmethod
    def full(cls) -> BenchmarkConfig:
        """The configuration of the README figures."""
        return cls()

    @classmethod
    def quick(cls) -> BenchmarkConfig:
        """A smoke run of every part in well under a minute on 2 CPU cores (tiny networks,
        a coarse box, a few iterations); its figures mean nothing."""
        return cls(
            shape=(40, 50, 2), spacing=2e-3, n_layers=3, n_hidden=32, n_points=128,
            blocks=2, iters_per_block=1, warmup_iters_per_block=1, memory_iters=2,
            slice_iters=20, box_iters=10, eval_every=10,
            fit_options={"n_layers": 3, "n_hidden": 16}, gui_iters=10, gui_repeats=1,
        )


def _sync(device: Any) -> None:
    """Wait for queued GPU work, so that a clock read after it measures it."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _four_target(cfg: BenchmarkConfig):
    from . import simulate

    return simulate.four_target(cfg.frequency, shape=cfg.shape, spacing=cfg.spacing)


def _middle_slice(example):
    """The middle z slice (kept as a z dim of length 1), as ``mrepinn fit`` fits it."""
    from .data import MREExample

    nz = example.ds.sizes["z"]
    return MREExample(example.ds.isel(z=[nz // 2]), source="four-target phantom, middle slice")


def build_timing_model(example, cfg: BenchmarkConfig, engine: str, device: str):
    """An ``MREPINNModel`` of the timing network, compiled with Adam.

    Parameters
    ----------
    example : MREExample
        Single-frequency example (its grid and wave; the prior is a fixed 3 kPa).
    cfg : BenchmarkConfig
        Network, points, PDE and seed.
    engine : {"reference", "fast"}
        Derivative engine of the wave equation.
    device : str

    Returns
    -------
    MREPINNModel
        The same ``cfg.seed`` gives both engines the same weights and the same batches.
    """
    import torch

    from .networks import MREPINN
    from .physics import WaveEquation
    from .training import MREPINNModel

    torch.manual_seed(cfg.seed)
    # a fixed prior (Pa) keeps the set-up identical and cheap in every process
    net = MREPINN(example, omega=cfg.omega, n_layers=cfg.n_layers, n_hidden=cfg.n_hidden,
                  mu_prior=3000.0)
    eq = WaveEquation.from_name(cfg.pde, omega=example.frequency, rho=example.density,
                                detach=True, engine=engine, no_z=True)
    model = MREPINNModel(example, net, eq, loss_weights=(1.0, 0.0, 1.0, 0.0),
                         pde_warmup_iters=0, n_points=cfg.n_points, device=device,
                         seed=cfg.seed)
    model.compile("adam", lr=1e-4)
    return model


def timed_iteration(model, w_pde: float, *, build_pde: bool | None = None) -> dict[str, float]:
    """One Adam training iteration, clocked by phase (mirrors ``MREPINNModel._step``).

    Phases: ``data`` (draw the batch), ``model`` (networks and derivatives), ``loss``
    (losses and back-propagation), ``step`` (finite check, optimiser step, reading the loss
    values). ``build_pde=True`` with ``w_pde=0`` builds the residual and weighs it by 0, as
    the published code does during its warmup.

    Parameters
    ----------
    model : MREPINNModel
        A compiled model (Adam).
    w_pde : float
        PDE loss weight of this iteration.
    build_pde : bool, optional
        Build the residual even when ``w_pde`` is 0 (default: only when ``w_pde > 0``).

    Returns
    -------
    dict
        Seconds of each phase, ``total`` and ``cpu`` (process CPU seconds, all threads).
    """
    dev = model.device
    opt = model.optimizer
    build = w_pde > 0 if build_pde is None else build_pde
    _sync(dev)
    c0, t0 = time.process_time(), time.perf_counter()
    model.resample()
    idx = model.batch_idx
    _sync(dev)
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    pred = model._predict(idx, 1.0 if build else 0.0)
    _sync(dev)
    t2 = time.perf_counter()
    losses = model._losses(idx, pred)
    total = model._total(losses, w_pde)
    if total.requires_grad:
        total.backward()
    _sync(dev)
    t3 = time.perf_counter()
    if model._finite(total):
        opt.step()
    _ = {k: float(v.detach()) for k, v in losses.items()}
    _sync(dev)
    t4 = time.perf_counter()
    return {"data": t1 - t0, "model": t2 - t1, "loss": t3 - t2, "step": t4 - t3,
            "total": t4 - t0, "cpu": time.process_time() - c0}


def _summarise(samples: list[dict[str, float]], n_points: int) -> dict[str, Any]:
    """Medians (and extremes) of per-iteration phase times."""
    out: dict[str, Any] = {"n": len(samples)}
    for key in (*PHASES, "total", "cpu"):
        vals = [s[key] for s in samples]
        out[f"{key}_s"] = statistics.median(vals)
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

    Four variants, each on its own model built with the same seed (same weights, same
    batches): ``reference`` and ``default`` with the PDE loss active (weight 1);
    ``reference_warmup`` (PDE weight 0 but the residual built and multiplied by 0, as the
    published code does during its warmup) and ``default_warmup`` (PDE weight 0: the default
    loop skips the residual). Each variant runs one untimed iteration first (allocator and
    kernel warm-up), then ``cfg.blocks`` rounds ``reference, default, reference_warmup,
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
        "reference": (models["reference"], 1.0, True, cfg.iters_per_block),
        "default": (models["default"], 1.0, True, cfg.iters_per_block),
        "reference_warmup": (models["reference"], 0.0, True, cfg.warmup_iters_per_block),
        "default_warmup": (models["default"], 0.0, False, cfg.warmup_iters_per_block),
    }
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for model, w, build, _ in variants.values():
        timed_iteration(model, w, build_pde=build)  # untimed warm-up
    for _ in range(cfg.blocks):
        for name, (model, w, build, n) in variants.items():
            for _ in range(n):
                samples[name].append(timed_iteration(model, w, build_pde=build))
    return {name: _summarise(s, cfg.n_points) for name, s in samples.items()}


# ============================================================================ same-batch check
def same_batch_check(example, cfg: BenchmarkConfig, device: str = "cpu") -> dict[str, Any]:
    """Losses of the reference and default paths on the same weights and the same batch.

    At initialisation the modulus network's output layer is zero (training starts from the
    prior), so ``∇G*`` vanishes and the ``∇G*·∇u`` term of ``hetero`` would not be compared;
    both models therefore get the same small random output layer first.

    Returns
    -------
    dict
        ``losses`` ({path: {name: value}}; ``total`` with wave and PDE weights 1),
        ``rel_diff`` ({name: |ref − def| / |ref|}), ``grad_rel_diff`` (relative difference of
        the modulus network's gradient), ``residual_max_rel_diff`` (largest pointwise
        difference of the normalised residuals over the largest residual), ``rtol`` and
        ``passed`` (every loss within ``rtol``).
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
    losses: dict[str, dict[str, float]] = {}
    grads: dict[str, torch.Tensor] = {}
    for name, m in models.items():
        m.net.zero_grad(set_to_none=True)
        parts = m._losses(m.batch_idx, m._predict(m.batch_idx, 1.0))
        total = m._total(parts, 1.0)
        total.backward()
        losses[name] = {k: float(v.detach()) for k, v in parts.items()}
        losses[name]["total"] = float(total.detach())
        grads[name] = torch.cat([p.grad.detach().reshape(-1).double()
                                 for p in m.net.mu_pinn.parameters() if p.grad is not None])
        m.net.zero_grad(set_to_none=True)
    rel = {
        k: abs(losses["reference"][k] - losses["default"][k])
        / max(abs(losses["reference"][k]), 1e-300)
        for k in losses["reference"]
    }
    g_ref, g_def = grads["reference"], grads["default"]
    grad_rel = float((g_ref - g_def).norm() / max(float(g_ref.norm()), 1e-300))
    # the mean of squares averages errors out; the residuals themselves, point by point
    x = ref.x_all[ref.batch_idx]
    r_ref, r_def = (m.pde.normalized(x, m.net.wave_field, m.net.mu_field, create_graph=False)
                    for m in (ref, dflt))
    res_rel = float((r_ref - r_def).abs().max() / max(float(r_ref.abs().max()), 1e-300))
    return {
        "losses": losses,
        "rel_diff": rel,
        "grad_rel_diff": grad_rel,
        "residual_max_rel_diff": res_rel,
        "rtol": cfg.rtol,
        "n_points": len(ref.batch_idx),
        "passed": all(v <= cfg.rtol for v in rel.values()),
    }


# ============================================================================ memory
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


def _memory_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of ``n`` training iterations of one path (run in a fresh process)."""
    import threading

    import torch

    from .data import MREExample

    torch.set_num_threads(int(spec["threads"]))
    cfg = BenchmarkConfig(**spec["config"])
    example = MREExample.load(spec["path"])
    device = spec["device"]
    model = build_timing_model(example, cfg, ENGINE_OF_PATH[spec["path_name"]], device)
    is_cuda = torch.device(device).type == "cuda"
    if is_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    # a sampling thread catches the RSS peak inside an iteration (torch frees the graph
    # before the iteration returns); ru_maxrss is the kernel's own high-water mark
    peak = {"rss": _rss_bytes() or 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            r = _rss_bytes()
            if r is not None and r > peak["rss"]:
                peak["rss"] = r
            stop.wait(0.001)

    rss_before, maxrss_before = _rss_bytes(), _maxrss_bytes()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        for _ in range(int(spec["iters"])):
            timed_iteration(model, float(spec["w_pde"]))
    finally:
        stop.set()
        thread.join()
    mb = 1024.0**2
    out: dict[str, Any] = {
        "maxrss_before_mb": maxrss_before / mb,
        "maxrss_after_mb": _maxrss_bytes() / mb,
        "maxrss_delta_mb": (_maxrss_bytes() - maxrss_before) / mb,
    }
    if rss_before is not None:
        out["rss_before_mb"] = rss_before / mb
        out["rss_peak_mb"] = peak["rss"] / mb
        out["rss_peak_delta_mb"] = (peak["rss"] - rss_before) / mb
    if is_cuda:
        out["cuda_peak_delta_mb"] = (torch.cuda.max_memory_allocated(device) - cuda_before) / mb
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / mb
    return out


def _memory_probe_cli(spec_json: str) -> None:
    """Entry point of the probe subprocess: prints its result as one JSON line."""
    print(json.dumps(_memory_probe(json.loads(spec_json))))


def measure_memory(
    example_path: str, cfg: BenchmarkConfig, device: str = "cpu", threads: int | None = None
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

    Returns
    -------
    dict
        Per path (``reference``, ``default``, ``default_warmup``): the probe's figures in
        MB (2^20 bytes), or ``{"error": message}``.
    """
    import torch

    threads = torch.get_num_threads() if threads is None else int(threads)
    cfg_dict = asdict(cfg)
    cfg_dict["shape"] = list(cfg.shape)
    out: dict[str, dict[str, Any]] = {}
    for name, path_name, w in (("reference", "reference", 1.0), ("default", "default", 1.0),
                               ("default_warmup", "default", 0.0)):
        spec = {"path": example_path, "path_name": path_name, "w_pde": w,
                "iters": cfg.memory_iters, "device": device, "threads": threads,
                "config": cfg_dict}
        code = ("import sys; from napari_mrepinn.benchmark import _memory_probe_cli; "
                "_memory_probe_cli(sys.argv[1])")
        try:
            proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)],
                                  capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                out[name] = {"error": f"probe exited with {proc.returncode}: {tail}"}
            else:
                out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError, OSError) as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


# ============================================================================ time to accuracy
def _accuracy_clock(example, every: int, n_iters: int):
    """A ``training.Callback`` recording Pearson R of ``|G*|`` in the mask against the
    ground truth every ``every`` iterations, on a training clock that excludes its own
    evaluation time (and everything ``fit`` does before and after ``train``)."""
    import torch

    from .metrics import pearson_r
    from .training import Callback

    sdims = example.spatial_dims
    truth = np.asarray(example["mre"].transpose(*sdims).values)
    mask = np.asarray(example.ds["mre_mask"].transpose(*sdims).values)
    shape = truth.shape

    class AccuracyClock(Callback):
        def __init__(self) -> None:
            self.records: list[dict[str, float]] = []
            self.t0 = self.c0 = 0.0
            self.excluded = self.excluded_cpu = 0.0

        def on_train_begin(self, model) -> None:
            _sync(model.device)
            self.t0, self.c0 = time.perf_counter(), time.process_time()
            self.excluded = self.excluded_cpu = 0.0

        def on_iteration_end(self, model) -> None:
            it = int(model.iteration)
            if it % every and it != n_iters:
                return
            _sync(model.device)
            t, c = time.perf_counter(), time.process_time()
            train_s = t - self.t0 - self.excluded
            train_cpu_s = c - self.c0 - self.excluded_cpu
            # only the modulus network on the grid: cheaper than results(), same map
            with torch.no_grad():
                x = model.x_all
                mu = torch.cat([model.net.mu(x[s : s + 16384])[:, 0]
                                for s in range(0, x.shape[0], 16384)])
            r = pearson_r(mu.cpu().numpy().reshape(shape), truth, mask)
            self.records.append({"iteration": it, "train_s": train_s,
                                 "train_cpu_s": train_cpu_s, "pearson_r": r})
            _sync(model.device)
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
    target_r: float = 0.8,
    **fit_options: Any,
) -> dict[str, Any]:
    """Train the default fit and record Pearson R of ``|G*|`` against wall time.

    Parameters
    ----------
    example : MREExample
        Single-frequency example with ground truth ``mre`` and ``mre_mask``.
    iters : int, optional
        Iterations (default: ``training.DEFAULT_ITERS``).
    eval_every : int
        Period of the R records (iterations); the last iteration is always recorded.
    device : str
    seed : int
    target_r : float
        The R whose first crossing is reported as ``time_to_target_s``.
    **fit_options
        Passed to ``training.fit`` (none: the default recipe).

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
    from . import training
    from .metrics import pearson_r

    n_iters = int(training.DEFAULT_ITERS if iters is None else iters)
    clock = _accuracy_clock(example, max(1, int(eval_every)), n_iters)
    t0 = time.perf_counter()
    result = training.fit(example, n_iters, device=device, seed=seed, progress=False,
                          callbacks=[clock], **fit_options)
    fit_wall = time.perf_counter() - t0 - clock.excluded
    final_r = pearson_r(result["mu_pred"], result["mre"], result.ds["mre_mask"])
    hit = next((r for r in clock.records if r["pearson_r"] >= target_r), None)
    train_s = clock.records[-1]["train_s"] if clock.records else float("nan")
    return {
        "records": clock.records,
        "final_r": final_r,
        "iters": n_iters,
        "train_s": train_s,
        "s_per_iter": train_s / max(1, n_iters),
        "fit_wall_s": fit_wall,
        "train_cpu_s": clock.records[-1]["train_cpu_s"] if clock.records else float("nan"),
        "time_to_target_s": hit["train_s"] if hit else None,
        "cpu_to_target_s": hit["train_cpu_s"] if hit else None,
        "iters_to_target": hit["iteration"] if hit else None,
        "target_r": target_r,
        "n_voxels": int((np.asarray(example.ds["mre_mask"].values) > 0).sum()),
    }


def ahi_reference(example) -> dict[str, Any]:
    """Time and Pearson R of AHI as ``fit`` runs it (Gaussian σ = 1 voxel): the reference
    line of the time-to-accuracy figures."""
    from . import baselines
    from .metrics import pearson_r

    t0 = time.perf_counter()
    mu = baselines.ahi(example, smoothing="gaussian", sigma=1.0)
    seconds = time.perf_counter() - t0
    if "frequency" in mu.dims:
        mu = mu.isel(frequency=0, drop=True)
    return {"seconds": seconds,
            "pearson_r": pearson_r(mu, example["mre"], example.ds["mre_mask"])}


# ============================================================================ Qt worker
def measure_gui_overhead(
    example,
    *,
    n_iters: int = 100,
    repeats: int = 3,
    refresh_every: int = 100,
    display_every: int = 10,
    threads: int = 1,
    device: str = "cpu",
    seed: int = 0,
    **fit_options: Any,
) -> dict[str, Any]:
    """Seconds per iteration of ``MREPINNModel.train`` run directly (as the CLI does) and
    inside the dock's Qt worker (``_worker.TrainingWorker`` in a ``QThread``, driven by a
    ``TrainingRunner`` and a ``QCoreApplication`` event loop: no viewer, no display).

    Three runs per repeat, interleaved: ``cli`` (``train`` with ``test_every=0``, as
    ``fit``), ``gui_loop`` (the worker with snapshots off: the cost of the thread, the
    signals and the bridge callback) and ``gui`` (the worker with a full-grid snapshot every
    ``refresh_every`` iterations, as the dock does by default). Each run trains a fresh model
    built with the same seed (the default-recipe networks, ``fit_options`` overriding);
    the clock covers the ``train`` call only. The dock trains on one thread
    (``single_thread=True``); ``threads`` sets the thread count of all three so that only
    the worker differs.

    Returns
    -------
    dict
        ``cli_s``, ``gui_loop_s``, ``gui_s`` (median seconds per iteration),
        ``gui_loop_overhead`` and ``gui_overhead`` (relative to ``cli_s``), the same on the
        process CPU clock (``*_cpu_s``, ``*_cpu_overhead``: all threads, the GUI thread's
        event loop included; less disturbed by other processes), the raw ``runs`` and
        ``runs_cpu`` and the settings.
    """
    import os

    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import torch
    from qtpy.QtCore import QCoreApplication

    from . import training
    from ._worker import TrainingRunner, TrainingWorker

    app = QCoreApplication.instance() or QCoreApplication([])

    built: dict[str, Any] = {}

    def build():
        # what fit trains (training.build_model: AHI prior, the recipe's networks), with the
        # PDE active from the first iteration: the iterations timed are the expensive ones
        model = training.build_model(example, n_iters, device=device, seed=seed,
                                     **{"pde_warmup_iters": 0, **fit_options})
        built.update(model.net.config)  # the widths actually trained (auto_width)
        return model

    def timed(model) -> dict[str, float]:
        clock: dict[str, float] = {}
        train = model.train

        def run(*args: Any, **kwargs: Any):
            # process CPU covers every thread: the worker's and the GUI thread's event loop
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return train(*args, **kwargs)
            finally:
                clock["s"] = time.perf_counter() - t0
                clock["cpu"] = time.process_time() - c0

        model.train = run  # instance attribute: the worker calls this one
        return clock

    def gui_run(refresh: int) -> tuple[float, float]:
        model = build()
        clock = timed(model)
        worker = TrainingWorker(lambda: model, n_iters, display_every=display_every,
                                refresh_every=refresh, resample_every=1, single_thread=True)
        runner = TrainingRunner()
        errors: list[str] = []
        runner.failed.connect(lambda msg, tb: errors.append(msg))
        runner.start(worker)
        if not runner.wait(timeout=3600) or errors:
            raise RuntimeError(f"the Qt worker did not finish: {errors or 'timeout'}")
        app.processEvents()
        return clock["s"] / n_iters, clock["cpu"] / n_iters

    prev = torch.get_num_threads()
    runs: dict[str, list[float]] = {"cli": [], "gui_loop": [], "gui": []}
    cpu: dict[str, list[float]] = {"cli": [], "gui_loop": [], "gui": []}
    try:
        # the worker sets 1 thread itself (single_thread=True); the CLI run gets the same
        torch.set_num_threads(int(threads))
        for _ in range(int(repeats)):
            model = build()
            t0, c0 = time.perf_counter(), time.process_time()
            model.train(n_iters, display_every=display_every, test_every=0,
                        callbacks=[training.Resampler(1)])
            runs["cli"].append((time.perf_counter() - t0) / n_iters)
            cpu["cli"].append((time.process_time() - c0) / n_iters)
            for name, refresh in (("gui_loop", n_iters + 1), ("gui", refresh_every)):
                wall, c = gui_run(refresh)
                runs[name].append(wall)
                cpu[name].append(c)
    finally:
        torch.set_num_threads(prev)
    med = {k: statistics.median(v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "cli_s": med["cli"],
        "gui_loop_s": med["gui_loop"],
        "gui_s": med["gui"],
        "gui_loop_overhead": med["gui_loop"] / med["cli"] - 1.0,
        "gui_overhead": med["gui"] / med["cli"] - 1.0,
        "cli_cpu_s": med_cpu["cli"],
        "gui_loop_cpu_s": med_cpu["gui_loop"],
        "gui_cpu_s": med_cpu["gui"],
        "gui_loop_cpu_overhead": med_cpu["gui_loop"] / med_cpu["cli"] - 1.0,
        "gui_cpu_overhead": med_cpu["gui"] / med_cpu["cli"] - 1.0,
        "runs": runs,
        "runs_cpu": cpu,
        "n_iters": int(n_iters),
        "repeats": int(repeats),
        "refresh_every": int(refresh_every),
        "display_every": int(display_every),
        "threads": int(threads),
        "n_layers": int(built["n_layers"]),
        "n_hidden": int(built["n_hidden"]),
        "n_voxels": int(np.prod(example.spatial_shape)),
    }


# ============================================================================ the whole run
def _machine(devices: Sequence[str]) -> dict[str, Any]:
    """What the figures were measured on."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
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


def _loadavg() -> list[float] | None:
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _resolve_devices(device: str | None) -> list[str]:
    import torch

    from .data import MREInputError

    if device is None:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    dev = str(device).lower()
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MREInputError(
                "--device cuda: torch sees no GPU here; leave --device out (CPU) or install "
                "a CUDA build of torch."
            )
        return ["cuda"]
    if dev != "cpu":
        raise MREInputError(f"--device must be cpu or cuda, got {device!r}.")
    return ["cpu"]


def run_benchmark(
    cfg: BenchmarkConfig | None = None,
    *,
    devices: Sequence[str] | None = None,
    accuracy: bool = True,
    memory: bool = True,
    gui_overhead: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Everything ``mrepinn benchmark`` measures, as one dict (JSON-serialisable).

    Parameters
    ----------
    cfg : BenchmarkConfig, optional
        Default :meth:`BenchmarkConfig.full`.
    devices : sequence of str, optional
        ``["cpu"]`` and ``"cuda"`` when torch sees a GPU.
    accuracy : bool
        Run the time-to-accuracy fits (slice, 3D box) and the AHI reference.
    memory : bool
        Run the per-path memory probes (one subprocess each; also off with
        ``cfg.memory_iters = 0``).
    gui_overhead : bool
        Measure the Qt worker's overhead (needs a Qt binding).
    log : callable
        Progress messages (``print``; ``None`` for silence).

    Returns
    -------
    dict
        ``machine``, ``config``, ``load_before`` / ``load_after`` (1, 5, 15-minute load
        averages), and per device under ``devices[dev]``: ``timing``
        (:func:`time_training_paths`), ``ratio`` (reference / default total s/iter, PDE
        active) and ``warmup_ratio``, ``check`` (:func:`same_batch_check`), ``memory``
        (:func:`measure_memory`), ``accuracy`` ({"slice", "box"}: :func:`time_to_accuracy`)
        and ``ahi`` ({"slice", "box"}: :func:`ahi_reference`); ``gui`` when asked.
    """
    import tempfile
    from pathlib import Path

    cfg = BenchmarkConfig.full() if cfg is None else cfg
    memory = memory and cfg.memory_iters > 0
    devs = list(devices) if devices is not None else _resolve_devices(None)
    say = log or (lambda *a, **k: None)
    out: dict[str, Any] = {"machine": _machine(devs), "config": asdict(cfg),
                           "load_before": _loadavg(), "devices": {}}
    say("direct inversion (AHI, MDEV) on 128 × 80 × 25 × 3 components × 8 frequencies ...")
    out["baselines"] = benchmark_baselines(repeats=1 if cfg.blocks < 5 else 3)
    say(f"building the four-target box {cfg.shape} ...")
    box = _four_target(cfg)
    with tempfile.TemporaryDirectory(prefix="mrepinn-bench-") as tmp:
        path = str(Path(tmp) / "box.nc")
        if memory:
            box.save(path)
        for dev in devs:
            res: dict[str, Any] = {}
            say(f"[{dev}] same-batch check of the two paths ...")
            res["check"] = same_batch_check(box, cfg, dev)
            say(f"[{dev}] timing {cfg.blocks} interleaved blocks ...")
            res["timing"] = time_training_paths(box, cfg, dev)
            t = res["timing"]
            res["ratio"] = t["reference"]["total_s"] / t["default"]["total_s"]
            res["warmup_ratio"] = (t["reference_warmup"]["total_s"]
                                   / t["default_warmup"]["total_s"])
            if memory:
                say(f"[{dev}] memory probes (one process per path) ...")
                res["memory"] = measure_memory(path, cfg, dev)
            if accuracy:
                res["accuracy"], res["ahi"] = {}, {}
                runs = [("slice", _middle_slice(box), cfg.slice_iters)]
                if cfg.box_iters != 0:
                    runs.append(("box", box, cfg.box_iters))
                for name, ex, iters in runs:
                    say(f"[{dev}] time to accuracy: default fit of the {name} ...")
                    res["ahi"][name] = ahi_reference(ex)
                    res["accuracy"][name] = time_to_accuracy(
                        ex, iters, eval_every=cfg.eval_every, device=dev, seed=cfg.seed,
                        **cfg.fit_options,
                    )
            out["devices"][dev] = res
    if gui_overhead:
        say("Qt worker overhead ...")
        try:
            out["gui"] = measure_gui_overhead(
                _middle_slice(box), n_iters=cfg.gui_iters, repeats=cfg.gui_repeats,
                device=devs[0], seed=cfg.seed, **cfg.fit_options,
            )
        except ImportError as exc:
            out["gui"] = {"error": f"no Qt binding: {exc}"}
    out["load_after"] = _loadavg()
    return out


# ============================================================================ report
def _f(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "–"
    try:
        fv = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if not np.isfinite(fv) else format(fv, spec)


_VARIANT_LABELS = {
    "reference": "(a) reference, PDE active",
    "default": "(b) default, PDE active",
    "reference_warmup": "(a) reference, warmup (residual × 0)",
    "default_warmup": "(b) default, warmup (PDE weight 0)",
}


def _memory_cell(mem: dict[str, Any] | None) -> str:
    if not mem:
        return "–"
    if "error" in mem:
        return "error"
    if "cuda_peak_delta_mb" in mem:
        return _f(mem["cuda_peak_delta_mb"], ".0f")
    return _f(mem.get("rss_peak_delta_mb", mem.get("maxrss_delta_mb")), ".0f")


def format_markdown(result: dict[str, Any]) -> str:
    """The benchmark as markdown tables, ready to paste into the README."""
    m = result["machine"]
    cfg = result["config"]
    lines = [
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} with "
        f"{m['torch_threads']} threads{', GPU ' + m['gpu'] if 'gpu' in m else ''}; "
        f"{m['date']}; load average (1/5/15 min) {result.get('load_before')} before, "
        f"{result.get('load_after')} after.",
        "",
        f"Network: {cfg['n_layers']} dense sine layers × {cfg['n_hidden']} (ω0 = "
        f"{cfg['omega']:g}), {cfg['n_points']} points per iteration, `{cfg['pde']}`, "
        f"four-target box {' × '.join(str(n) for n in cfg['shape'])}, 3 complex components, "
        f"3D coordinates; medians of {cfg['blocks']} interleaved blocks.",
    ]
    if "baselines" in result:
        b = result["baselines"]
        lines += [
            "",
            "### Direct inversion (numpy/scipy, one thread)",
            "",
            "| method | volume | median s | best s | CPU s |",
            "|---|---|---|---|---|",
        ]
        vol = (f"{' × '.join(str(n) for n in b['shape'])}, {b['n_components']} components, "
               f"{b['n_frequencies']} frequencies")
        for name, key in (("AHI", "ahi"), ("MDEV", "mdev")):
            lines.append(f"| {name} | {vol} | {_f(b[key + '_s'])} | {_f(b[key + '_min_s'])} | "
                         f"{_f(b[key + '_cpu_s'])} |")
    for dev, res in result["devices"].items():
        t = res["timing"]
        mem = res.get("memory", {})
        mem_key = {"reference": "reference", "default": "default",
                   "default_warmup": "default_warmup"}
        mem_label = "GPU MB" if dev == "cuda" else "peak RSS +MB"
        lines += [
            "",
            f"### Time per training iteration ({dev})",
            "",
            f"| path | data s | model s | loss s | step s | total s/iter | it/s | points/s "
            f"| CPU s/iter | {mem_label} | n |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, label in _VARIANT_LABELS.items():
            r = t[name]
            lines.append(
                f"| {label} | {_f(r['data_s'])} | {_f(r['model_s'])} | {_f(r['loss_s'])} | "
                f"{_f(r['step_s'])} | {_f(r['total_s'])} | {_f(r['it_per_s'])} | "
                f"{_f(r['points_per_s'], '.0f')} | {_f(r['cpu_s'])} | "
                f"{_memory_cell(mem.get(mem_key.get(name, ''))) if name in mem_key else '–'} "
                f"| {r['n']} |"
            )
        chk = res["check"]
        worst = max(chk["rel_diff"].values())
        lines += [
            "",
            f"Ratio (a)/(b), PDE active: **{res['ratio']:.1f}×**; warmup iterations: "
            f"{res['warmup_ratio']:.1f}×. Same-batch check ({chk['n_points']} points, same "
            f"weights): total loss {chk['losses']['reference']['total']:.6g} vs "
            f"{chk['losses']['default']['total']:.6g}, largest relative difference "
            f"{worst:.1e} (tolerance {chk['rtol']:.0e}): "
            f"**{'passed' if chk['passed'] else 'FAILED'}**; modulus-gradient relative "
            f"difference {chk['grad_rel_diff']:.1e}; pointwise residual difference "
            f"{chk['residual_max_rel_diff']:.1e} of the largest residual.",
        ]
        if mem and dev == "cpu":
            lines.append(
                "Memory: peak resident set size during the iterations minus before them, each "
                "path in a fresh process (psutil, sampled every ms)."
            )
        acc = res.get("accuracy")
        if acc:
            lines += [
                "",
                f"### Time to accuracy ({dev}): default fit, Pearson R of |G*| in the mask",
                "",
                "| run | voxels | iterations | train s | CPU s | s/iter | final R | "
                "time to R ≥ 0.8 | fit wall s |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for name, a in acc.items():
                ttt = a["time_to_target_s"]
                reach = (f"{ttt:.0f} s ({a['iters_to_target']} it)" if ttt is not None
                         else "not reached")
                lines.append(
                    f"| MRE-PINN, {name} | {a['n_voxels']} | {a['iters']} | "
                    f"{_f(a['train_s'], '.0f')} | {_f(a['train_cpu_s'], '.0f')} | "
                    f"{_f(a['s_per_iter'])} | "
                    f"{_f(a['final_r'], '.3f')} | {reach} | {_f(a['fit_wall_s'], '.0f')} |"
                )
            for name, h in res.get("ahi", {}).items():
                lines.append(
                    f"| AHI (Gaussian σ = 1), {name} | {acc[name]['n_voxels']} | – | "
                    f"{_f(h['seconds'], '.2f')} | – | – | {_f(h['pearson_r'], '.3f')} | "
                    f"{_f(h['seconds'], '.2f') + ' s' if h['pearson_r'] >= 0.8 else 'not reached'}"
                    f" | {_f(h['seconds'], '.2f')} |"
                )
            lines += ["", "R versus training seconds (wall and process CPU; evaluation "
                      "excluded):", "",
                      "| run | iteration | train s | CPU s | R |",
                      "|---|---|---|---|---|"]
            for name, a in acc.items():
                for rec in a["records"]:
                    lines.append(f"| {name} | {rec['iteration']} | "
                                 f"{_f(rec['train_s'], '.1f')} | "
                                 f"{_f(rec['train_cpu_s'], '.1f')} | "
                                 f"{_f(rec['pearson_r'], '.3f')} |")
    gui = result.get("gui")
    if gui:
        lines += ["", "### Qt worker overhead", ""]
        if "error" in gui:
            lines.append(f"not measured: {gui['error']}")
        else:
            lines += [
                f"`fit`'s networks ({gui['n_layers']} layers × {gui['n_hidden']}) on the middle "
                f"slice, PDE active, {gui['n_iters']} "
                f"iterations × {gui['repeats']} interleaved repeats, {gui['threads']} torch "
                "thread(s) in every run (the dock trains on one).",
                "",
                "| run | s/iter | vs CLI | CPU s/iter | vs CLI (CPU) |",
                "|---|---|---|---|---|",
                f"| CLI (`train`) | {_f(gui['cli_s'])} | – | {_f(gui['cli_cpu_s'])} | – |",
                f"| Qt worker, no snapshots | {_f(gui['gui_loop_s'])} | "
                f"{100 * gui['gui_loop_overhead']:+.1f} % | {_f(gui['gui_loop_cpu_s'])} | "
                f"{100 * gui['gui_loop_cpu_overhead']:+.1f} % |",
                f"| Qt worker, snapshot every {gui['refresh_every']} it | {_f(gui['gui_s'])} | "
                f"{100 * gui['gui_overhead']:+.1f} % | {_f(gui['gui_cpu_s'])} | "
                f"{100 * gui['gui_cpu_overhead']:+.1f} % |",
            ]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars, tuples, int dict keys)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def main(args: Any) -> int:
    """``mrepinn benchmark``: time both training paths, check them, time to accuracy.

    Parameters
    ----------
    args : argparse.Namespace
        ``quick`` (bool), ``device`` (None, ``"cpu"`` or ``"cuda"``), ``skip_accuracy``
        (bool), ``output`` (None or a JSON path); optional ``gui_overhead`` (bool).

    Returns
    -------
    int
        0, or 1 when the reference and default losses differ beyond the tolerance.
    """
    from .outputs import check_writable, write_text

    output = getattr(args, "output", None)
    if output:
        check_writable(output)  # before the minutes of timing, not after
    cfg = BenchmarkConfig.quick() if getattr(args, "quick", False) else BenchmarkConfig.full()
    devices = _resolve_devices(getattr(args, "device", None))
    result = run_benchmark(
        cfg, devices=devices, accuracy=not getattr(args, "skip_accuracy", False),
        gui_overhead=bool(getattr(args, "gui_overhead", False)),
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(format_markdown(result))
    if output:
        write_text(output, json.dumps(_jsonable(result), indent=1))
        print(f"\nwrote {output}")
    ok = all(r["check"]["passed"] for r in result["devices"].values())
    if not ok:
        print("mrepinn benchmark: the reference and default losses differ beyond the "
              "tolerance", file=sys.stderr)
    return 0 if ok else 1
