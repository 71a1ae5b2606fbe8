"""napari sample data: simulated phantoms with their ground truth.

Both are computed in code (no download), so they work offline and in CI.
"""

from __future__ import annotations

from ._layers import LayerDataTuple, example_to_layer_data

__all__ = ["four_target_phantom", "liver_phantom"]


def four_target_phantom() -> list[LayerDataTuple]:
    """The BIOQIC-like four-target box at 90 Hz: ``wave``, ``mre`` (|G*| kPa), ``mre_mask``."""
    from . import simulate  # lazy: keeps plugin discovery fast

    return example_to_layer_data(simulate.four_target(90))


def liver_phantom() -> list[LayerDataTuple]:
    """The synthetic liver slab at 60 Hz: ``anat``, ``wave``, ``mre``, ``mre_mask``."""
    from . import simulate

    return example_to_layer_data(simulate.liver())
