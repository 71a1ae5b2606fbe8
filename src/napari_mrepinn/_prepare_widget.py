"""napari dock widget "Prepare MRE data": scanner phase images to a wave field, step by step.

The dock reads an exam (a DICOM folder, or raw phase NIfTI from dcm2niix) with
:func:`napari_mrepinn.scanner.import_exam` and shows each step of the preparation as
layers: ``wrapped phase`` and ``unwrapped phase`` (sliders: series, offset, z) and then the
example itself (``anat``, ``wave`` per frequency/component, ``mre_mask``) through
:func:`napari_mrepinn._layers.example_to_layer_data`, so the training and inversion docks
find it like any opened example. Changing an option and pressing "Import" again replaces
the layers. The import runs in a worker thread; :meth:`PrepareWidget.run` is the blocking
call for scripts and tests.

The viewer parameter is annotated ``"napari.viewer.Viewer"`` on purpose (napari injects the
viewer for that exact annotation), so this module avoids ``from __future__ import
annotations``.
"""

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    TextEdit,
)

from .data import MREExample, MREInputError

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["PrepareWidget"]

STEP_LAYERS = ("wrapped phase", "unwrapped phase")


def _error(message: str) -> None:
    from napari.utils import notifications

    notifications.show_error(message)


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise MREInputError(f"{what}: give numbers separated by spaces, got {text!r}.") from None


class PrepareWidget(Container):
    """Import and prepare MRE scanner data, showing wrapped → unwrapped → first harmonic.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer to add the layers to (injected by napari).
    """

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = viewer
        self.folder = FileEdit(name="folder", label="exam folder", mode="d",
                               tooltip="A DICOM folder (one or several series) or a folder "
                               "of dcm2niix NIfTI files.")
        self.more_paths = LineEdit(
            name="more_paths", label="more paths",
            tooltip="Further series folders or files, separated by ';', in series order "
            "(frequency by frequency, direction by direction).",
        )
        self.frequency = LineEdit(name="frequency", label="frequency (Hz)",
                                  tooltip="Vibration frequency per series group, e.g. '60' or "
                                  "'30 40 50 60'. Never guessed; empty = from mre.json.")
        self.directions = LineEdit(name="directions", label="directions",
                                   tooltip="Motion-encoding direction of each series of a "
                                   "frequency, e.g. 'x y z' (x: image columns, y: rows, z: "
                                   "slice normal). Empty = from mre.json.")
        self.unwrap = ComboBox(name="unwrap", label="unwrapping",
                               choices=("laplacian", "skimage", "none"), value="laplacian")
        self.mask_threshold = FloatSpinBox(name="mask_threshold", label="mask threshold",
                                           value=0.1, min=0.0, max=0.99, step=0.01,
                                           tooltip="Magnitude fraction of its robust max; "
                                           "0 = no mask.")
        self.smoothing = FloatSpinBox(name="smoothing", label="smoothing σ (voxels)",
                                      value=0.0, min=0.0, max=10.0, step=0.05,
                                      tooltip="Complex Gaussian, in-plane; 0 = off.")
        self.phase_range = LineEdit(name="phase_range", label="phase range",
                                    tooltip="Rescaled values mapping to −π and +π, e.g. "
                                    "'-4096 4096'; empty = the full stored range.")
        self.divergence = CheckBox(name="divergence", label="remove compressional wave",
                                   value=False)
        self.reverse = CheckBox(name="reverse", label="offsets run backwards", value=False)
        self.show_steps = CheckBox(name="show_steps", label="show phase steps", value=True)
        self.import_button = PushButton(name="import_button", text="Import")
        self.status = Label(name="status", label="status", value="idle")
        self.summary = TextEdit(name="summary", label="summary", value="")
        self.summary.read_only = True
        self.extend([
            self.folder, self.more_paths, self.frequency, self.directions, self.unwrap,
            self.mask_threshold, self.smoothing, self.phase_range, self.divergence,
            self.reverse, self.show_steps, self.import_button, self.status, self.summary,
        ])
        self.import_button.clicked.connect(self._import_clicked)
        self._worker: Any = None
        self.example: MREExample | None = None

    # ------------------------------------------------------------------ options
    def options(self) -> tuple[list[Path], dict[str, Any]]:
        """The paths and the :func:`~napari_mrepinn.scanner.import_exam` options set."""
        paths: list[Path] = []
        folder = str(self.folder.value or "").strip()
        if folder and folder != ".":
            paths.append(Path(folder))
        paths += [Path(p.strip()) for p in str(self.more_paths.value).split(";") if p.strip()]
        if not paths:
            raise MREInputError("choose the exam folder (or NIfTI files) first.")
        opts: dict[str, Any] = {"unwrap": str(self.unwrap.value)}
        freqs = _numbers(str(self.frequency.value), "frequency")
        if freqs:
            opts["frequency"] = freqs[0] if len(freqs) == 1 else freqs
        dirs = str(self.directions.value).replace(",", " ").split()
        if dirs:
            opts["directions"] = dirs
        opts["mask_threshold"] = float(self.mask_threshold.value) or None
        if float(self.smoothing.value) > 0:
            opts["smoothing"] = float(self.smoothing.value)
        rng = _numbers(str(self.phase_range.value), "phase range")
        if rng:
            if len(rng) != 2:
                raise MREInputError("phase range: give two numbers, low and high.")
            opts["phase_range"] = (rng[0], rng[1])
        if self.divergence.value:
            opts["divergence_removal"] = True
        if self.reverse.value:
            opts["reverse_offsets"] = True
        return paths, opts

    # ------------------------------------------------------------------ running
    def _import_clicked(self, *_: Any) -> None:
        self.start()

    def _compute(self, paths: list[Path], opts: dict[str, Any]) -> tuple[MREExample, dict]:
        from .scanner import import_exam

        return import_exam(paths, return_steps=bool(self.show_steps.value), **opts) \
            if self.show_steps.value else (import_exam(paths, **opts), {})

    def run(self) -> MREExample | None:
        """Import with the current options in this thread and add the layers.

        Returns
        -------
        MREExample or None
            The prepared example, or None when refused (the message is notified).
        """
        try:
            paths, opts = self.options()
            t0 = time.perf_counter()
            self.status.value = "importing…"
            example, steps = self._compute(paths, opts)
        except MREInputError as exc:
            self._failed(str(exc))
            return None
        self._show(example, steps, time.perf_counter() - t0)
        return example

    def start(self) -> bool:
        """Import in a worker thread (the button); False if refused or already running."""
        if self._worker is not None:
            return False
        try:
            paths, opts = self.options()
        except MREInputError as exc:
            self._failed(str(exc))
            return False
        from napari.qt.threading import create_worker

        t0 = time.perf_counter()

        def compute() -> tuple[Any, Any]:
            # bad input comes back as a message: an exception in a worker would reach
            # napari's exception hook as a traceback
            try:
                return self._compute(paths, opts)
            except MREInputError as exc:
                return None, str(exc)
            except Exception as exc:
                return None, f"import failed: {type(exc).__name__}: {exc}"

        def done(result: tuple[Any, Any]) -> None:
            example, steps = result
            if example is None:
                self._failed(steps)
            else:
                self._show(example, steps, time.perf_counter() - t0)

        worker = create_worker(compute)
        worker.returned.connect(done)
        worker.finished.connect(self._finished)
        self._worker = worker
        self.status.value = "importing…"
        self.import_button.enabled = False
        worker.start()
        return True

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def _finished(self) -> None:
        self._worker = None
        with contextlib.suppress(RuntimeError):  # widget deleted
            self.import_button.enabled = True

    def _failed(self, message: str) -> None:
        self.status.value = "failed"
        _error(message)

    # ------------------------------------------------------------------ layers
    def _show(self, example: MREExample, steps: dict, seconds: float) -> None:
        from napari.layers import Layer

        from ._layers import example_to_layer_data
        from .scanner import summary_text

        self.example = example
        viewer = self.viewer
        # replace what an earlier import of this dock added
        for layer in list(viewer.layers):
            if layer.metadata.get("mre_prepare") is True:
                viewer.layers.remove(layer)
        sp = example.spacing
        inplane = (sp["x"] + sp["y"]) / 2  # one slice has no z spacing; any value shows it
        mm = [(sp[d] if np.isfinite(sp[d]) else inplane) * 1e3 for d in ("z", "y", "x")]
        origin = [float(example.ds[d].values[0]) * 1e3 for d in ("z", "y", "x")]
        for name in STEP_LAYERS:
            key = name.split()[0]
            if key not in steps:
                continue
            # (series, offset, x, y, z) -> (series, offset, z, y, x)
            data = np.transpose(steps[key], (0, 1, 4, 3, 2))
            viewer.add_image(
                data, name=name, colormap="twilight_shifted" if key == "wrapped" else "PiYG",
                scale=(1, 1, *mm), translate=(0, 0, *origin), visible=False,
                axis_labels=("series", "offset", "z", "y", "x"),
                metadata={"mre_prepare": True},
            )
        for data, kwargs, layer_type in example_to_layer_data(example):
            kwargs = dict(kwargs)
            kwargs["metadata"] = dict(kwargs.get("metadata", {}), mre_prepare=True)
            viewer.add_layer(Layer.create(data, kwargs, layer_type))
        self.summary.value = summary_text(example)
        self.status.value = f"imported in {seconds:.1f} s"
