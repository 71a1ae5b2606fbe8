"""MRE exams from raw phase NIfTI files, as dcm2niix writes them.

:func:`load_phase_nifti` reads ``(x, y, z, offset)`` — one series — or
``(x, y, z, offset, direction)`` — one series per direction — phase files: stored integers
with ``scl_slope``/``scl_inter`` (the full ``bits_stored`` range maps to −π…π, as dcm2niix
does not record BitsStored), or floating-point radians. A file is phase when its JSON
sidecar's ``ImageType`` holds ``P``/``PHASE``, or, without a sidecar, when its name ends in
``_ph`` (or ``_phase``); other files are magnitude images (the anatomy), and the magnitude
dcm2niix writes next to a ``_ph`` file is found by name.

Geometry: the voxel axes are ``x``, ``y``, ``z``; the spacing comes from the header's zooms
in its xyz unit, the origin from a diagonal affine (a rotated or flipped one starts the grid
at 0, with a note). Frequencies, directions (sidecar ``"frequency"``, ``"direction"`` /
``"directions"``) and the assembly: :mod:`napari_mrepinn.phase_series`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import FREQUENCY_KEYS, MREExample, MREInputError
from .phase_series import (
    _DIR_KEYS,
    PathLike,
    _as_list,
    _finish,
    _Grid,
    _image_kind,
    _meta_value,
    _path_list,
    _phase_span_note,
    _progress_bar,
    _read_json,
    _Series,
)
from .preprocess import phase_to_radians

__all__ = ["is_phase_nifti", "load_phase_nifti"]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_phase_nifti(path: PathLike) -> bool:
    """Whether ``path`` is a raw phase NIfTI: name ending in ``_ph`` or a sidecar with
    ImageType ``P``/``PHASE`` (cheap: reads the sidecar only)."""
    p = Path(path)
    name = p.name.lower()
    if not name.endswith(_NIFTI_SUFFIXES):
        return False
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]
    if stem.endswith("_ph") or stem.endswith("_phase"):
        return True
    side = p.with_name(p.name[: len(stem)] + ".json")
    if side.exists():
        try:
            content = json.loads(side.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(content, dict) and _image_kind(content.get("ImageType")) == "P"
    return False


def _nifti_stem(p: Path) -> str:
    name = p.name
    for suf in (".nii.gz", ".nii", ".NII.GZ", ".NII"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def _nifti_kind(p: Path, meta: Mapping[str, Any]) -> str:
    if "imagetype" in meta:
        kind = _image_kind(meta["imagetype"])
        if kind:
            return kind
    stem = _nifti_stem(p).lower()
    return "P" if stem.endswith(("_ph", "_phase")) else "M"


def load_phase_nifti(
    paths: PathLike | Sequence[PathLike],
    *,
    frequency: float | Sequence[float] | None = None,
    directions: str | Sequence[str] | None = None,
    unwrap: str = "laplacian",
    spacing: float | Sequence[float] | None = None,
    phase_range: tuple[float, float] | str | None = None,
    bits_stored: int = 12,
    progress: bool | Callable[[int, int], None] = False,
    workers: int = 1,
    **prepare_options: Any,
) -> MREExample:
    """Read raw MRE phase series from NIfTI files as dcm2niix writes them.

    Parameters
    ----------
    paths : path or sequence of paths
        ``.nii``/``.nii.gz`` files, or folders of them; phase files (ImageType ``P`` in the
        JSON sidecar, or a name ending in ``_ph``) are ``(x, y, z, offset)`` — one series —
        or ``(x, y, z, offset, direction)`` — one series per direction; other files are
        magnitude images (the anatomy). Taken in the order given (in a folder: by name).
    frequency, directions, unwrap, spacing, phase_range, progress, **prepare_options
        As in :func:`load_dicom`; sidecars may hold ``"frequency"`` and ``"direction"`` /
        ``"directions"``.
    bits_stored : int
        Stored bit depth of integer phase data (dcm2niix does not record it; 12 for
        most MRE sequences): the full range maps to −π…π.
    workers : int
        Accepted for symmetry with :func:`load_dicom`; NIfTI files are read in one process.

    Returns
    -------
    MREExample
    """
    import nibabel as nib

    plist = _path_list(paths, "the phase NIfTI file(s)")
    files: list[tuple[Path, Path]] = []
    for p in plist:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.name.lower().endswith(_NIFTI_SUFFIXES))
            if not found:
                raise MREInputError(f"{p}: no NIfTI files (*.nii, *.nii.gz).")
            files += [(f, p) for f in found]
        else:
            files.append((p, p))
            # dcm2niix writes the magnitude next to the phase, without the _ph suffix
            stem = _nifti_stem(p)
            if stem.lower().endswith("_ph"):
                for suf in _NIFTI_SUFFIXES:
                    sib = p.with_name(stem[:-3] + suf)
                    if sib.exists() and all(sib != g for g, _ in files) and sib not in plist:
                        files.append((sib, p))
    series: list[_Series] = []
    grids: list[_Grid] = []
    mags: list[tuple[np.ndarray, Path]] = []
    notes: list[str] = []
    bar = _progress_bar(progress, len(files), "reading NIfTI")
    top_meta: dict[str, Any] = {}
    for f, p in files:
        side = f.with_name(_nifti_stem(f) + ".json")
        meta = _read_json(side) if side.exists() else {}
        kind = _nifti_kind(f, meta)
        try:
            img = nib.load(str(f))
            # each file is decompressed once: magnitudes scaled, phases as stored
            raw = np.asarray(img.dataobj, np.float32) if kind == "M" \
                else np.asarray(img.dataobj.get_unscaled())
        except Exception as exc:
            raise MREInputError(
                f"{f}: not a readable NIfTI file ({type(exc).__name__}: {exc}). Is it truncated?"
            ) from None
        if bar is not None:
            bar.update(1)
        if kind == "M":
            mags.append((raw, f))
            continue
        if raw.ndim not in (4, 5):
            raise MREInputError(
                f"{f}: phase image of shape {raw.shape}; expected (x, y, z, offset) or "
                "(x, y, z, offset, direction) as dcm2niix writes a phase-offset series."
            )
        slope = float(img.dataobj.slope) if np.isfinite(img.dataobj.slope) else 1.0
        inter = float(img.dataobj.inter) if np.isfinite(img.dataobj.inter) else 0.0
        label = f"{f.name}"
        if np.issubdtype(raw.dtype, np.integer):
            signed = np.issubdtype(raw.dtype, np.signedinteger) and raw.min() < 0
            if phase_range is None and raw.size and (raw.max() >= 2**bits_stored
                                                     or raw.min() < -(2 ** (bits_stored - 1))):
                raise MREInputError(
                    f"{f}: stored phase values {raw.min()}…{raw.max()} exceed {bits_stored} "
                    "bits; pass the scanner's bit depth (bits_stored=) or its phase range "
                    "(--phase-range LOW HIGH in rescaled units)."
                )
            rng_used: Any = phase_range
            phase = phase_to_radians(raw, slope=slope if slope != 0 else 1.0, intercept=inter,
                                     bits_stored=bits_stored, signed=bool(signed),
                                     value_range=phase_range, source=str(f))
        else:
            vals = raw.astype(np.float64) * (slope if slope != 0 else 1.0) + inter
            rng_used = phase_range
            if phase_range is None:
                if np.nanmax(np.abs(vals)) > np.pi + 1e-3:
                    raise MREInputError(
                        f"{f}: floating-point phase values reach {np.nanmax(np.abs(vals)):g}; "
                        "pass the range that maps to −π…π (--phase-range LOW HIGH)."
                    )
                rng_used = "radians"
            phase = phase_to_radians(vals, value_range=rng_used, source=str(f))
        note = _phase_span_note(phase, label)
        if note:
            notes.append(note)
        zooms = np.asarray(img.header.get_zooms()[:3], float)
        unit = img.header.get_xyzt_units()[0] or "unknown"
        to_m = {"meter": 1.0, "mm": 1e-3, "micron": 1e-6}.get(unit, 1e-3)
        if spacing is not None:
            sp = tuple(float(v) for v in np.broadcast_to(np.asarray(spacing, float), (3,)))
        else:
            if np.any(~np.isfinite(zooms)) or np.any(zooms <= 0):
                raise MREInputError(f"{f}: no valid voxel size in the header; pass spacing=.")
            sp = tuple(float(v) for v in zooms * to_m)
        aff = np.asarray(img.affine, float)
        lin = aff[:3, :3]
        if np.allclose(lin, np.diag(np.diag(lin))) and np.all(np.diag(lin) > 0):
            origin = tuple(float(v) for v in aff[:3, 3] * to_m)
        else:
            origin = (0.0, 0.0, 0.0)
            notes.append(f"{f.name}: rotated or flipped affine; the grid starts at 0.")
        shape = tuple(int(v) for v in raw.shape[:3])
        info = {
            "series": label,
            "files": 1,
            "slices": shape[2],
            "offsets": int(raw.shape[3]),
            "offsets_ordered_by": "NIfTI volume order",
            "rescale": {"slope": slope, "intercept": inter},
            "bits_stored": bits_stored,
            "phase_range": list(rng_used) if isinstance(rng_used, tuple | list)
            else (rng_used or "full stored range"),
        }
        sdirs = _as_list(_meta_value(meta, _DIR_KEYS))
        vols = [phase] if raw.ndim == 4 else [phase[..., d] for d in range(raw.shape[4])]
        for d, vol in enumerate(vols):
            smeta = {k: v for k, v in meta.items() if k in FREQUENCY_KEYS}
            if sdirs is not None and len(sdirs) == len(vols):
                smeta["direction"] = sdirs[d]
            lab = label if len(vols) == 1 else f"{label} [direction {d + 1}]"
            series.append(_Series(phase=np.moveaxis(vol, 3, 0), label=lab, path=str(p),
                                  meta=smeta, info=dict(info, series=lab)))
            grids.append(_Grid(shape=shape, spacing=sp, origin=origin,
                               key=(shape, tuple(np.round(sp, 7))), source=lab))
    if bar is not None:
        bar.close()
    if not series:
        raise MREInputError(
            f"{', '.join(map(str, plist))}: only magnitude images; MRE needs the phase series "
            "(a dcm2niix file ending in _ph, or a sidecar with ImageType P)."
        )
    magnitudes = []
    for arr, f in mags:
        if arr.shape[:3] != grids[0].shape:
            notes.append(f"{f.name}: magnitude on another grid; not used.")
            continue
        magnitudes.append(arr.reshape((*arr.shape[:3], -1)).mean(axis=-1))
    return _finish(series, grids, magnitudes, frequency=frequency, directions=directions,
                   top_meta=top_meta, fmt="NIfTI", paths=plist, unwrap=unwrap,
                   progress=progress, prepare_options=prepare_options, notes=notes)
