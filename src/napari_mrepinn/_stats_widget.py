"""napari dock: ROI statistics of a result layer in the regions of a Labels layer.

Pick a result layer (``mu_pred``, ``mu_ahi``, ``mu_mdev``, ``kmdev_speed`` or the ground
truth ``mre``) and a Labels layer (the example's ``mre_mask`` or one drawn in napari);
*Compute* fills the table with the median, IQR and mean ± sd of every readout per region
(:func:`napari_mrepinn.stats.roi_statistics`, display units), *Export CSV* writes it
atomically. The computation is fast (array reductions), so it runs in the GUI thread.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Table

from .data import MREExample, MREInputError

if TYPE_CHECKING:  # pragma: no cover
    import napari
    import pandas as pd

__all__ = ["METHOD_OF_LAYER", "StatsWidget", "labels_on_grid"]

#: result layer name -> readout method of :func:`napari_mrepinn.readouts.readout_maps`
METHOD_OF_LAYER = {
    "mu_pred": "pinn",
    "mu_ahi": "ahi",
    "mu_mdev": "mdev",
    "kmdev_speed": "kmdev",
    "mre": "truth",
}

#: columns shown in the dock (the CSV has them all)
_SHOWN = ("method", "region_name", "readout", "frequency_hz", "unit", "n_valid", "median",
          "q25", "q75", "mean", "sd")


def _error(message: str) -> None:
    from napari.utils import notifications

    notifications.show_error(message)


def labels_on_grid(data: Any, example: MREExample) -> np.ndarray:
    """A napari Labels layer's data as labels on the example's ``(x, y[, z])`` grid.

    napari layers are ordered ``([sliders,] [z,] y, x)``; leading slider axes (frequency,
    component) are merged by taking the largest label along them, so a region painted on
    any slider position counts.

    Raises
    ------
    MREInputError
        If the spatial shape does not match the example's grid.
    """
    arr = np.asarray(data)
    sdims = example.spatial_dims
    expected = tuple(example.ds.sizes[d] for d in reversed(sdims))
    n = len(expected)
    if arr.ndim > n:
        arr = arr.reshape(-1, *arr.shape[arr.ndim - n:]).max(axis=0)
    if arr.ndim == n - 1 and expected[0] == 1:  # a one-slice volume shown as 2-D
        arr = arr[None]
    if arr.shape != expected:
        raise MREInputError(
            f"the Labels layer has shape {np.shape(data)}, but the result's grid is "
            f"{expected} (napari order {', '.join(reversed(sdims))}); draw the ROI on a "
            "Labels layer made for this image (Layers › New Labels layer)."
        )
    return np.ascontiguousarray(np.transpose(arr))


class StatsWidget(Container):
    """ROI statistics dock: result layer + Labels layer -> table -> CSV.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer (injected by napari).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.table_data: pd.DataFrame | None = None
        self.result_layer = ComboBox(
            name="result_layer", label="result layer",
            choices=lambda *_: [(ly.name, ly) for ly in self._result_layers()],
            tooltip="The map whose readouts are summarised (|G*|, speed, ...).",
        )
        self.labels_layer = ComboBox(
            name="labels_layer", label="regions (Labels)",
            choices=lambda *_: [(ly.name, ly) for ly in self._labels_layers()],
            tooltip="Each label > 0 is one region; 0 is left out.",
        )
        self.compute_button = PushButton(name="compute_button", text="Compute statistics")
        self.table = Table(name="table", label="")
        self.csv_path = FileEdit(name="csv_path", label="CSV file", mode="w",
                                 filter="*.csv", value="roi_stats.csv")
        self.export_button = PushButton(name="export_button", text="Export CSV")
        self.status = Label(name="status", label="status", value="idle")
        self.extend([self.result_layer, self.labels_layer, self.compute_button, self.table,
                     self.csv_path, self.export_button, self.status])
        self.compute_button.clicked.connect(self._compute_clicked)
        self.export_button.clicked.connect(self._export_clicked)
        if viewer is not None:
            events = viewer.layers.events
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).connect(self._layers_changed)
        self._layers_changed()

    # ------------------------------------------------------------------ layers
    def _result_layers(self) -> list[Any]:
        if self.viewer is None:
            return []
        out = []
        for layer in self.viewer.layers:
            meta = getattr(layer, "metadata", {}) or {}
            if (meta.get("mre_variable") in METHOD_OF_LAYER
                    and isinstance(meta.get("mre_example"), MREExample)):
                out.append(layer)
        return out

    def _labels_layers(self) -> list[Any]:
        if self.viewer is None:
            return []
        from napari.layers import Labels

        return [ly for ly in self.viewer.layers if isinstance(ly, Labels)]

    def _layers_changed(self, *_: Any) -> None:
        with contextlib.suppress(RuntimeError):  # widget deleted before the viewer
            self.result_layer.reset_choices()
            self.labels_layer.reset_choices()

    # ------------------------------------------------------------------ actions
    def _compute_clicked(self, *_: Any) -> None:
        self.compute()

    def _export_clicked(self, *_: Any) -> None:
        self.export()

    def compute(self) -> pd.DataFrame | None:
        """Compute the table for the chosen layers, show it and return it.

        Returns None (with an error notification) when a layer is missing or the labels do
        not fit the result's grid.
        """
        self._layers_changed()
        result, labels = self.result_layer.value, self.labels_layer.value
        if result is None or labels is None:
            _error("Choose a result layer (e.g. mu_pred, mu_ahi) and a Labels layer first.")
            return None
        example = result.metadata["mre_example"]
        method = METHOD_OF_LAYER[result.metadata["mre_variable"]]
        try:
            from .stats import roi_statistics

            roi = labels_on_grid(labels.data, example)
            table = roi_statistics(example, roi, methods=[method])
        except MREInputError as exc:
            _error(str(exc))
            self.status.value = "failed"
            return None
        self.table_data = table
        shown = table.loc[:, list(_SHOWN)].copy()
        for col in ("median", "q25", "q75", "mean", "sd", "frequency_hz"):
            shown[col] = [("" if not np.isfinite(v) else f"{v:.4g}") for v in shown[col]]
        self.table.value = shown
        n_regions = table["region"].nunique()
        self.status.value = f"{len(table)} rows: {n_regions} region(s), method {method}"
        return table

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the last table as CSV (atomically) to ``path`` or the chosen file."""
        if self.table_data is None and self.compute() is None:
            return None
        target = Path(path) if path is not None else Path(self.csv_path.value)
        if target.suffix.lower() != ".csv":
            target = target.with_suffix(".csv")
        try:
            from .stats import write_csv

            out = write_csv(self.table_data, target)
        except (MREInputError, OSError) as exc:
            _error(f"CSV export failed: {exc}")
            self.status.value = "export failed"
            return None
        self.status.value = f"wrote {out}"
        return out
