"""What ``mrepinn benchmark`` measures (:class:`BenchmarkConfig`), on which data, and the
model whose iterations it times (:func:`build_timing_model`).

Only the standard library is imported at module level: torch comes in when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENGINE_OF_PATH",
    "PATHS",
    "BenchmarkConfig",
    "build_timing_model",
    "four_target_box",
    "loadavg",
    "middle_slice",
    "sync",
]

#: the two derivative engines compared, in the order they are run within each block
PATHS = ("reference", "default")
#: ``TrainingConfig.engine`` behind each path name (see :mod:`napari_mrepinn.physics`)
ENGINE_OF_PATH = {"reference": "reference", "default": "fast"}


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
        layers, dense sine, ``omega`` = SIREN ω0 of the normalised input, both networks).
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
        Timed iterations of each warm-up (PDE weight 0) variant per block.
    memory_iters : int
        Iterations run in each memory probe (a fresh subprocess per path); 0 skips the
        memory probes.
    slice_iters, box_iters : int or None
        Iterations of the time-to-accuracy fits (None: the recipe's ``iters``);
        ``box_iters = 0`` skips the 3D box.
    eval_every : int
        Period (iterations) of the Pearson-R records of those fits.
    fit_options : dict
        Fields of :class:`~napari_mrepinn.config.TrainingConfig` changed in the
        time-to-accuracy and contention fits (empty = the default recipe; the quick
        configuration shrinks the networks).
    contention_iters : int
        Iterations of each fit of the thread-policy measurement (0 skips it).
    contention_repeats : int
        Interleaved rounds ``idle, beside a busy core, beside another fit`` per wait policy.
    contention_passive : tuple of bool
        The OpenMP wait policies tried: False = the OpenMP runtime's default, True =
        ``OMP_WAIT_POLICY=PASSIVE`` in the environment of the spawned fits.
    contention_threads : int
        Torch threads of those fits (0 = the default policy,
        :func:`~napari_mrepinn.config.default_threads`).
    threads : int
        Torch threads of everything timed in this process and of the memory probes (0 = the
        default policy).
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
    contention_iters: int = 300
    contention_repeats: int = 3
    contention_passive: tuple[bool, ...] = (False, True)
    contention_threads: int = 0
    threads: int = 0
    seed: int = 0
    rtol: float = 1e-5

    @classmethod
    def full(cls) -> BenchmarkConfig:
        """The configuration of the README figures."""
        return cls()

    @classmethod
    def quick(cls) -> BenchmarkConfig:
        """A smoke run of every part in a minute or two on 2 CPU cores (tiny networks,
        a coarse box, a few iterations); its figures mean nothing."""
        return cls(
            shape=(40, 50, 2), spacing=2e-3, n_layers=3, n_hidden=32, n_points=128,
            blocks=2, iters_per_block=1, warmup_iters_per_block=1, memory_iters=2,
            slice_iters=20, box_iters=10, eval_every=10,
            fit_options={"n_layers": 3, "n_hidden": 16}, contention_iters=20,
            contention_repeats=1,
        )


def sync(device: Any) -> None:
    """Wait for queued GPU work, so that a clock read after it measures it."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def four_target_box(cfg: BenchmarkConfig):
    """The four-target phantom of ``cfg`` (3D box, one frequency)."""
    from .. import simulate

    return simulate.four_target(cfg.frequency, shape=cfg.shape, spacing=cfg.spacing)


def middle_slice(example):
    """The middle z slice (kept as a z dim of length 1), as ``mrepinn fit`` fits it."""
    from ..data import MREExample

    nz = example.ds.sizes["z"]
    return MREExample(example.ds.isel(z=[nz // 2]), source="four-target phantom, middle slice")


def build_timing_model(example, cfg: BenchmarkConfig, engine: str, device: str):
    """The compiled ``MREPINNModel`` whose iterations are timed, built by the recipe.

    Both engines get the same network (``cfg.n_layers`` × ``cfg.n_hidden``, ω0 =
    ``cfg.omega``), a fixed modulus prior of 3 kPa (no AHI: the set-up is identical and
    cheap in every process), the PDE active from the first iteration (no warm-up), wave and
    PDE loss weights 1, Adam at 1e-4, and, from ``cfg.seed``, the same weights and batches.

    Parameters
    ----------
    example : MREExample
        Single-frequency example.
    cfg : BenchmarkConfig
    engine : {"reference", "fast"}
        ``TrainingConfig.engine``: the derivative engine of the wave equation.
    device : str

    Returns
    -------
    MREPINNModel
    """
    from ..config import TrainingConfig
    from ..recipe import build_model

    config = TrainingConfig(
        pde=cfg.pde, engine=engine, derivative_axes="in-plane", loss_weights=(1.0, 0.0, 1.0, 0.0),
        pde_warmup_iters=0, n_points=cfg.n_points, lr=1e-4, n_layers=cfg.n_layers,
        n_hidden=cfg.n_hidden, omega=cfg.omega, mu_omega=cfg.omega, ahi=False,
        seed=cfg.seed, device=device, threads=cfg.threads,
    )
    return build_model(example, config, mu_prior=3000.0)


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the system has none)."""
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
