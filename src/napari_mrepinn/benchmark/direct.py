"""Direct inversion timing: AHI, MDEV and k-MDEV on a synthetic multi-frequency volume."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["benchmark_baselines", "format_baseline_benchmark", "synthetic_wave_example"]


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
    from ..data import MREExample

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
    """Time AHI (every frequency), MDEV and k-MDEV on a synthetic volume.

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
    from .. import baselines

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    t0 = time.perf_counter()
    example = synthetic_wave_example(shape, n_components, n_frequencies, seed=seed)
    build_s = time.perf_counter() - t0
    from ..kmdev import kmdev

    ahi_t, ahi_cpu = _time(lambda: baselines.ahi(example, **ahi_mdev_kwargs), repeats)
    mdev_t, mdev_cpu = _time(lambda: baselines.mdev(example, **ahi_mdev_kwargs), repeats)
    kmdev_t, kmdev_cpu = _time(lambda: kmdev(example), repeats)  # its own defaults
    return {
        "kmdev_s": statistics.median(kmdev_t),
        "kmdev_min_s": min(kmdev_t),
        "kmdev_times_s": kmdev_t,
        "kmdev_cpu_s": min(kmdev_cpu),
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
        f"{'k-MDEV':<8}{result['kmdev_s']:>10.3f}{result['kmdev_min_s']:>10.3f}"
        f"{result['kmdev_cpu_s']:>10.3f}",
    ]
    return "\n".join(lines)

