"""The direct-inversion dock (AHI / MDEV / k-MDEV).

The viewer parameter is annotated ``"napari.viewer.Viewer"`` on purpose (napari injects the
viewer only for that annotation), so this module avoids ``from __future__ import
annotations``.
"""

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton

from .. import _layers, baselines
from ..data import MREInputError
from ._common import show_error

if TYPE_CHECKING:  # pragma: no cover
    import napari
    import xarray as xr

__all__ = ["InversionWidget"]

log = logging.getLogger(__name__)


class InversionWidget(Container):
    """Direct inversion (AHI, MDEV or k-MDEV) of an example layer into ``mu_ahi`` /
    ``mu_mdev`` (complex G*) or the ``kmdev_*`` maps (speed shown as ``kmdev_speed``).

    Fast (finite differences on the grid), so it runs in the GUI thread.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer holding the example layers (injected by napari).
    """

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = viewer
        params = inspect.signature(baselines.ahi).parameters
        defaults = {name: p.default for name, p in params.items()}
        self.example_layer = ComboBox(
            name="example_layer", label="example layer",
            choices=lambda *_: [(ly.name, ly) for ly in _layers.example_layers(self.viewer)],
        )
        self.extend([
            self.example_layer,
            ComboBox(name="method", choices=("AHI", "MDEV", "k-MDEV"), value="AHI"),
            ComboBox(name="smoothing", label="pre-smoothing",
                     choices=("none", "gaussian", "savgol"),
                     value=defaults["smoothing"] or "none",
                     tooltip="Smoothing of the wave before the Laplacian."),
            FloatSpinBox(name="sigma", label="Gaussian σ (voxels)",
                         value=float(defaults["sigma"]), min=0.0, max=20.0, step=0.05),
            CheckBox(name="despeckle", label="despeckle", value=bool(defaults["despeckle"]),
                     tooltip="Clamp outliers of the Laplacian before inverting."),
        ])
        self.run_button = PushButton(name="run_button", text="Run inversion")
        self.status = Label(name="status", label="status", value="idle")
        self.extend([self.run_button, self.status])
        self.run_button.clicked.connect(self._run_clicked)
        if viewer is not None:
            events = viewer.layers.events
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).connect(self._layers_changed)
        self.example_layer.reset_choices()

    def _layers_changed(self, *_: Any) -> None:
        try:
            self.example_layer.reset_choices()
        except RuntimeError:  # the Qt widget was deleted before the viewer: nothing to show
            log.debug("layer change after the inversion dock was deleted")

    def _run_clicked(self, *_: Any) -> None:
        self.run()

    def run(self) -> "xr.DataArray | None":
        """Run the chosen inversion and add or update its layer.

        Returns
        -------
        xarray.DataArray or None
            The modulus map (complex Pa; k-MDEV: the speed map, m/s), or None if refused (a
            notification says why).
        """
        self.example_layer.reset_choices()
        layer = self.example_layer.value
        ex = None if layer is None else _layers.example_from_layers(layer)
        if ex is None:
            show_error("Select an example layer first: open MRE data or File › Open Sample › "
                       "MRE-PINN.")
            return None
        method = str(self.method.value).lower()
        smoothing = None if self.smoothing.value == "none" else str(self.smoothing.value)
        t0 = time.perf_counter()
        out = ex.copy()
        try:
            if method == "k-mdev":
                from ..kmdev import kmdev

                # k-MDEV band-passes in k-space: no Laplacian to despeckle, no savgol
                maps = kmdev(ex, smoothing="gaussian" if smoothing == "gaussian" else None,
                             sigma=float(self.sigma.value))
                out.ds.update(maps)
                mu = maps["kmdev_speed"]
            else:
                mu = getattr(baselines, method)(
                    ex, smoothing=smoothing, sigma=float(self.sigma.value),
                    despeckle=bool(self.despeckle.value),
                )
                out.ds[mu.name or f"mu_{method}"] = mu
        except MREInputError as exc:  # the example does not suit the method
            show_error(f"{method.upper()} inversion refused: {exc}")
            self.status.value = "refused"
            return None
        _layers.update_result_layers(self.viewer, out)
        self.status.value = f"{method.upper()} done in {time.perf_counter() - t0:.2f} s"
        return mu
