"""The checkpoint half of the training dock: save, load and warm-start.

:class:`CheckpointActions` is mixed into :class:`~._training.TrainingWidget` (it uses the
dock's runner, controls and result layers). Loading reads the checkpoint's configuration
(:func:`napari_mrepinn.checkpoints.checkpoint_config`) into the controls, rebuilds the model
with :func:`napari_mrepinn.recipe.build_model` and the checkpoint's modulus prior, and
restores it; a checkpoint trained on something else is refused with the library's message
unless ``warm start`` is checked.

Like ``_training``, this module avoids ``from __future__ import annotations`` (napari reads
the dock's annotations).
"""

import json
import os
import time
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QCoreApplication
from qtpy.QtWidgets import QFileDialog

from .. import checkpoints
from ..data import MREInputError
from ..recipe import build_model
from ._common import JOINT, show_error, show_info
from ._controls import set_controls

if TYPE_CHECKING:  # pragma: no cover
    from ..training import MREPINNModel

__all__ = ["CheckpointActions"]


class CheckpointActions:
    """Save and load checkpoints (a mixin of the training dock)."""

    def save_checkpoint(self, path: "str | os.PathLike[str]") -> str:
        """Save the model (weights, optimizer, history, configuration) to ``path``.

        While training, the run is paused for the save and then continues.
        """
        if self._model is None:
            raise RuntimeError("no model to save: start a run or load a checkpoint first")
        resume_after = self.is_running and not self.is_paused
        if resume_after:
            self._runner.pause()
            t0 = time.perf_counter()
            while self.is_running and not self.is_paused:
                QCoreApplication.processEvents()
                time.sleep(0.005)
                if time.perf_counter() - t0 > 60:
                    raise TimeoutError("training did not pause for the checkpoint")
        try:
            self._model.save(os.fspath(path))
        finally:
            if resume_after and self.is_running:
                self._runner.resume()
        return os.fspath(path)

    def load_checkpoint(self, path: "str | os.PathLike[str]", *,
                        warm_start: bool | None = None) -> "MREPINNModel":
        """Restore a model saved by :meth:`save_checkpoint`; :meth:`resume` continues it.

        The controls are set from the checkpoint's configuration (the device and thread
        count stay this machine's), the model is rebuilt on the selected example with the
        checkpoint's modulus prior and its state restored; the loss curve and the
        prediction layers then show the restored state.

        Parameters
        ----------
        path : path
            The checkpoint (``.pt``).
        warm_start : bool, optional
            Take only the network weights and start a new run on the selected example
            (its own AHI prior), for a checkpoint trained on another example; default:
            the ``warm start`` check box.

        Raises
        ------
        MREInputError
            Not a checkpoint, invalid controls, or (without a warm start) a checkpoint
            trained on something else; the message is also shown as a notification.
        """
        if self.is_running:
            raise RuntimeError("stop training before loading a checkpoint")
        warm = bool(self.warm_start.value if warm_start is None else warm_start)
        try:
            model = self._restore(os.fspath(path), warm)
        except MREInputError as exc:
            show_error(str(exc))
            raise
        self._model = model
        self._seconds = 0.0  # the checkpoint's own training time is not recorded in it
        self._example = model.result_example
        self._history = [dict(r) for r in model.history]
        self.loss_plot.set_history(self._history)
        self._iteration = model.iteration
        self.loss_plot.set_x_range(max(1, self._iteration))
        self.progress_bar.max = max(self.progress_bar.max, self._iteration, 1)
        self.progress_bar.value = min(self._iteration, self.progress_bar.max)
        self._show_results(model.results().copy(deep=True))
        self._result_layers.flush()  # a blocking user action anyway: show it all now
        self.status.value = (
            f"warm start from {os.path.basename(os.fspath(path))}: Resume trains it" if warm
            else f"checkpoint loaded at iteration {self._iteration}"
        )
        self._update_buttons()
        return model

    def _restore(self, path: str, warm: bool) -> "MREPINNModel":
        """Set the controls from the checkpoint at ``path``, build its model, restore it."""
        state = checkpoints.load_state(path)
        here = self.config()
        saved = checkpoints.checkpoint_config(state).replace(
            device=here.device, threads=here.threads).check()
        set_controls(self, saved)
        self._base_config = saved
        settings = json.loads(state.get("settings_json") or "{}")
        freq = settings.get("frequency_hz")
        if len(settings.get("frequencies_hz") or ()) > 1:  # a joint fit of every frequency
            freq = JOINT
        elif freq is not None:
            freq = float(freq)
        if not warm and freq is not None and freq in self.frequency.choices:
            self.frequency.value = freq
        example, config, err = self.validate()
        if err is not None:
            raise MREInputError(err)
        prior = settings.get("mu_prior_pa")
        # a warm start fits another example: its own AHI prior normalises the networks
        mu_prior = complex(prior[0], prior[1]) if prior and not warm else None
        model = build_model(example, config, mu_prior=mu_prior)
        model.restore(path, warm_start=warm)
        return model

    def _save_clicked(self, *_: Any) -> None:
        path, _filter = QFileDialog.getSaveFileName(
            self.native, "Save MRE-PINN checkpoint", "mrepinn.pt", "Checkpoint (*.pt)"
        )
        if path:
            try:
                self.save_checkpoint(path)
            except (OSError, RuntimeError) as exc:  # a full disk, no permission, no model
                show_error(f"Could not save the checkpoint: {exc}")
            else:
                show_info(f"Checkpoint saved to {path}")

    def _load_clicked(self, *_: Any) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self.native, "Load MRE-PINN checkpoint", "", "Checkpoint (*.pt);;All files (*)"
        )
        if path:
            try:
                self.load_checkpoint(path)
            except MREInputError:
                pass  # load_checkpoint showed the message
