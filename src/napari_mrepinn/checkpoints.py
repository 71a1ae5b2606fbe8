"""Model checkpoints: what a training state is saved with, and the checks on restoring it.

A checkpoint (``.pt``, a torch ``state_dict`` bundle loaded with ``weights_only=True``) holds
the networks, the optimiser, the iteration, the history, the sampling state and a
*manifest*: what the model was trained on (grid, spacing, frequency, components, number of
masked voxels, the networks' shape), its :class:`~napari_mrepinn.config.TrainingConfig` and
the version that wrote it. :func:`restore` refuses a checkpoint trained on something else
with one message that lists the differences, unless the caller asks for a *warm start*
(network weights only, a fresh run on the new example).

Version 0.1 wrote checkpoints without a manifest (``format`` ``napari-mrepinn-model-1``):
they restore when their sampling indices fit the model's example, and are refused otherwise.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import TrainingConfig
from .data import MREInputError
from .outputs import atomic_open

if TYPE_CHECKING:  # pragma: no cover
    from .training import MREPINNModel

__all__ = ["FORMAT", "load_state", "manifest", "restore", "save"]

FORMAT = "napari-mrepinn-model-2"
_LEGACY_FORMAT = "napari-mrepinn-model-1"
#: manifest keys that must agree for a checkpoint to continue a run, with their labels
_MUST_MATCH = {
    "dims": "grid axes",
    "shape": "grid shape (voxels)",
    "spacing_mm": "voxel spacing (mm)",
    "frequency_hz": "frequency (Hz)",
    "components": "wave components",
    "n_masked": "voxels in the mask",
    "network": "networks",
}


def manifest(model: MREPINNModel) -> dict[str, Any]:
    """What ``model`` trains on, as JSON-able values (lengths in mm, rounded so that a file
    round trip compares equal)."""
    from . import __version__

    ex = model.example
    comps = ex.ds["component"].values.tolist() if "component" in ex.ds.coords else []
    return {
        "version": __version__,
        "source": ex.source or "",
        "dims": list(ex.spatial_dims),
        "shape": [int(n) for n in ex.spatial_shape],
        "spacing_mm": {d: round(v * 1e3, 6) for d, v in ex.spacing.items()},
        "frequency_hz": round(float(ex.frequency), 6),
        "components": [str(c) for c in comps],
        "n_masked": int(np.count_nonzero(np.asarray(ex.mask.values))),
        "network": _jsonable(model.net.config),
        "config": model.config.to_dict(),
    }


def save(model: MREPINNModel, path: str | os.PathLike) -> str:
    """Write ``model``'s training state to ``path`` atomically (a unique temporary file in
    the same folder, then a rename: an earlier file survives any failure)."""
    if model.optimizer is None:
        model.compile()
    assert model.optimizer is not None
    state = {
        "format": FORMAT,
        "manifest_json": json.dumps(manifest(model)),
        "model": model.net.state_dict(),
        "optimizer_name": model.optimizer_name,
        "optimizer": model.optimizer.state_dict(),
        "lr": model.lr,
        "iteration": model.iteration,
        "history_json": json.dumps(model.history),
        "generator": model._generator.get_state(),
        "batch_idx": model.batch_idx.cpu(),
        "train_idx": model.train_idx.cpu(),
        "test_idx": model.test_idx.cpu(),
        "settings_json": json.dumps(model.settings()),
    }
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    return os.fspath(path)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """The raw state of a checkpoint file, or one clear error if it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MREInputError(f"{path}: no such checkpoint file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's unpickler raises anything on junk (KeyError...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MREInputError(
            f"{path}: not a napari-mrepinn checkpoint (a .pt file written by 'Save "
            f"checkpoint' or MREPINNModel.save); torch could not read it: {first[:120]}"
        ) from None
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, _LEGACY_FORMAT):
        raise MREInputError(
            f"{path}: not a napari-mrepinn checkpoint (a .pt file written by 'Save "
            "checkpoint' or MREPINNModel.save)."
        )
    return state


def checkpoint_config(state: dict[str, Any]) -> TrainingConfig:
    """The training configuration a checkpoint was written with (0.1 ones included)."""
    if "manifest_json" in state:
        return TrainingConfig.from_dict(json.loads(state["manifest_json"])["config"])
    settings = json.loads(state.get("settings_json") or "{}")
    return TrainingConfig.from_legacy_settings(settings)


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two manifests (keys of :data:`_MUST_MATCH`)."""
    out = []
    for key, label in _MUST_MATCH.items():
        a, b = saved.get(key), current.get(key)
        if not _same(a, b):
            out.append(f"{label}: checkpoint {_short(a)}, this model {_short(b)}")
    return out


def restore(model: MREPINNModel, path: str | os.PathLike, *, warm_start: bool = False) -> None:
    """Load the checkpoint at ``path`` into ``model`` (see :meth:`MREPINNModel.restore`)."""
    path = os.fspath(path)
    state = load_state(path)
    if "manifest_json" in state:
        diffs = differences(json.loads(state["manifest_json"]), manifest(model))
    else:
        diffs = _legacy_differences(model, state)
    if warm_start:
        _load_weights(model, path, state, params_only=True)
        return
    if diffs:
        raise MREInputError(
            f"{path}: this checkpoint was trained on something else ("
            + "; ".join(diffs)
            + "). Open the example it was trained on, or restore with warm_start=True "
            "(GUI: 'warm start') to start a new run from its network weights."
        )
    _load_weights(model, path, state, params_only=False)
    model.compile(state["optimizer_name"] or "adam", lr=state["lr"] or model.config.lr,
                  loss=model.loss_fn)
    assert model.optimizer is not None
    model.optimizer.load_state_dict(state["optimizer"])
    model._set_lr(state["lr"])
    model.iteration = int(state["iteration"])
    model.history = json.loads(state["history_json"])
    model._generator.set_state(state["generator"])
    model.batch_idx = state["batch_idx"].to(model.device)
    model.train_idx = state["train_idx"].to(model.device)
    model.test_idx = state["test_idx"].to(model.device)


def _load_weights(model: MREPINNModel, path: str, state: dict[str, Any],
                  params_only: bool) -> None:
    weights = state["model"]
    if params_only:
        # a warm start keeps the new example's normalisation buffers (its centre, extent,
        # wave scale and prior): only the learned parameters carry over
        names = {n for n, _ in model.net.named_parameters()}
        weights = {k: v for k, v in weights.items() if k in names}
    try:
        model.net.load_state_dict(weights, strict=not params_only)
    except RuntimeError as exc:
        raise MREInputError(
            f"{path}: the checkpoint's networks do not fit this model (another number of "
            f"layers, width or components?): {str(exc).splitlines()[0][:160]}"
        ) from None


def _legacy_differences(model: MREPINNModel, state: dict[str, Any]) -> list[str]:
    """A 0.1 checkpoint has no manifest: its sampling indices must fit the example."""
    n_voxels = int(model.x_all.shape[0])
    n_masked = len(model.train_idx) + len(model.test_idx)
    idx = [state.get(k) for k in ("train_idx", "test_idx", "batch_idx")]
    biggest = max((int(t.max()) for t in idx if t is not None and t.numel()), default=-1)
    saved_masked = sum(int(state[k].numel()) for k in ("train_idx", "test_idx") if k in state)
    out = []
    if biggest >= n_voxels:
        out.append(f"grid: checkpoint indexes voxel {biggest}, this model has {n_voxels}")
    if saved_masked != n_masked:
        out.append(f"voxels in the mask: checkpoint {saved_masked}, this model {n_masked}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            fa, fb = float(a), float(b)
            # NaN is "unknown" (the spacing along a single slice's z): equal to itself
            return (math.isnan(fa) and math.isnan(fb)) or math.isclose(
                fa, fb, rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def _short(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "×".join(map(str, v)) if all(isinstance(x, int) for x in v) else str(list(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else
                                 str(o)))
