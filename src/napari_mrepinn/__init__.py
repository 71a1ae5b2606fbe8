"""napari-mrepinn: tissue elasticity from MR elastography with physics-informed networks.

The public API is listed in ``__all__``. Submodules are imported lazily so that
napari can discover the plugin (and ``import napari_mrepinn`` stays fast)
without importing torch.

Units inside the library are SI: metres, hertz, pascals, kg/m³.
"""

from __future__ import annotations

import importlib
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
    "fit": "training",
}
_SUBMODULES = {
    "data",
    "simulate",
    "baselines",
    "metrics",
    "physics",
    "networks",
    "training",
    "io",
    "figures",
    "benchmark",
    "forward3d",
}

__all__ = [
    "MREPINN",
    "PINN",
    "MREExample",
    "MREInputError",
    "MREPINNModel",
    "Resampler",
    "WaveEquation",
    "__version__",
    "baselines",
    "benchmark",
    "data",
    "figures",
    "fit",
    "forward3d",
    "io",
    "metrics",
    "msae_loss",
    "networks",
    "physics",
    "simulate",
    "training",
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
        baselines,
        benchmark,
        data,
        figures,
        io,
        metrics,
        networks,
        physics,
        simulate,
        training,
    )
    from .data import MREExample, MREInputError
    from .networks import MREPINN, PINN
    from .physics import WaveEquation
    from .training import MREPINNModel, Resampler, fit, msae_loss
