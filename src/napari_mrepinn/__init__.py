"""napari-mrepinn: tissue elasticity from MR elastography with physics-informed networks.

The public API is listed in ``__all__``. Submodules are imported lazily so that
napari can discover the plugin (and ``import napari_mrepinn`` stays fast)
without importing torch.

Units inside the library are SI: metres, hertz, pascals, kg/m³.
"""

from __future__ import annotations

import importlib
import os

# torch's OpenMP threads spin while they wait for work: on a heavily loaded machine a 2-thread
# fit burned 11× the CPU (45.6 vs 4.0 CPU-s, `mrepinn benchmark --contention-only --threads
# 2`); on a quiet one passive waiting costs 4–7 %. It must be chosen before torch is
# imported, so it is set here, unless the user has chosen otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> submodule that defines it
_LAZY = {
    "MREExample": "data",
    "MREInputError": "data",
    "WaveEquation": "physics",
    "PINN": "networks",
    "MREPINN": "networks",
    "MREPINNModel": "training",
    "Resampler": "training",
    "msae_loss": "training",
    "LossWeights": "config",
    "TrainingConfig": "config",
    "build_model": "recipe",
    "fit": "recipe",
}
_SUBMODULES = {
    "batch",
    "callbacks",
    "checkpoints",
    "config",
    "data",
    "derivatives",
    "recipe",
    "simulate",
    "baselines",
    "metrics",
    "physics",
    "networks",
    "training",
    "io",
    "figures",
    "benchmark",
    "kmdev",
    "readouts",
    "stats",
    "preprocess",
    "scanner",
    "dicom",
    "phase_nifti",
    "acquisition",
    "outputs",
    "forward3d",
    "analytic",
    "finite_differences",
    "forward2d",
    "liver_phantom",
    "navier3d",
    "phase_unwrap",
    "wave_filters",
}

__all__ = [
    "MREPINN",
    "PINN",
    "LossWeights",
    "MREExample",
    "MREInputError",
    "MREPINNModel",
    "Resampler",
    "TrainingConfig",
    "WaveEquation",
    "__version__",
    "acquisition",
    "analytic",
    "baselines",
    "batch",
    "benchmark",
    "build_model",
    "callbacks",
    "checkpoints",
    "config",
    "data",
    "derivatives",
    "dicom",
    "figures",
    "finite_differences",
    "fit",
    "forward2d",
    "forward3d",
    "io",
    "kmdev",
    "liver_phantom",
    "metrics",
    "msae_loss",
    "navier3d",
    "networks",
    "outputs",
    "phase_nifti",
    "phase_unwrap",
    "physics",
    "preprocess",
    "readouts",
    "recipe",
    "scanner",
    "simulate",
    "stats",
    "training",
    "wave_filters",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(__all__)


if TYPE_CHECKING:  # pragma: no cover - for static analysis and IDEs only
    from . import (
        acquisition,
        analytic,
        baselines,
        batch,
        benchmark,
        callbacks,
        checkpoints,
        config,
        data,
        derivatives,
        dicom,
        figures,
        finite_differences,
        forward2d,
        io,
        kmdev,
        liver_phantom,
        metrics,
        navier3d,
        networks,
        outputs,
        phase_nifti,
        phase_unwrap,
        physics,
        preprocess,
        readouts,
        recipe,
        scanner,
        simulate,
        stats,
        training,
        wave_filters,
    )
    from .config import LossWeights, TrainingConfig
    from .data import MREExample, MREInputError
    from .networks import MREPINN, PINN
    from .physics import WaveEquation
    from .recipe import build_model, fit
    from .training import MREPINNModel, Resampler, msae_loss
