"""napari dock widgets: MRE-PINN training and direct inversion (AHI / MDEV).

* :mod:`._training` — :class:`TrainingWidget`, the training dock (a QThread worker, live
  layers and loss curves);
* :mod:`._controls` — its option controls, made from the table of
  :func:`napari_mrepinn.config.options` (adding a ``TrainingConfig`` field with
  ``widget=True`` adds its control);
* :mod:`._results` — its result layers, made ahead of the predictions;
* :mod:`._inversion` — :class:`InversionWidget`, the direct-inversion dock.

``napari.yaml`` names ``napari_mrepinn._widget:TrainingWidget`` and
``napari_mrepinn._widget:InversionWidget``.
"""

from .._layers import example_layers
from ._inversion import InversionWidget
from ._training import TrainingWidget

__all__ = ["InversionWidget", "TrainingWidget", "example_layers"]
