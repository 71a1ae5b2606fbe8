"""MRE examples as folders of NIfTI files: the reader of :mod:`napari_mrepinn.io` and
:func:`save_nifti_folder`.

The layout: ``wave*.nii[.gz]`` as real/imaginary or magnitude/phase parts (or one complex
NIfTI), optional ``anat*``, ``mask*``/``liver*`` and ``mre*`` images, and a JSON sidecar
with ``"frequency"`` in Hz (or another key of :data:`~napari_mrepinn.data.FREQUENCY_KEYS`).
Input files are only ever opened for reading; every problem is one
:class:`~napari_mrepinn.data.MREInputError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .data import (
    FREQUENCY_KEYS,
    SPATIAL_DIMS,
    MREExample,
    MREInputError,
    MREMissingFrequency,
    _in_file_order,
    _per_axis,
    _reason,
    parse_frequencies,
)

__all__ = ["is_mre_folder", "save_nifti_folder"]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
# NIfTI spatial unit codes (nibabel's names) -> metres; "unknown" is read as mm, the
# unit nearly every scanner converter writes
_NIFTI_UNIT_M = {"meter": 1.0, "mm": 1e-3, "micron": 1e-6, "unknown": 1e-3}


def is_mre_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds at least one ``wave*.nii[.gz]`` file (cheap, reads nothing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return any(_role(f) == "wave" for f in _nifti_files(folder))


def save_nifti_folder(
    example: MREExample,
    folder: str | os.PathLike,
    *,
    parts: str = "real_imag",
) -> Path:
    """Write an example as a folder of NIfTI files plus an ``mre.json`` sidecar.

    The layout is the one :func:`~napari_mrepinn.io.load_example` reads:
    ``wave_real/wave_imag`` (or ``wave_mag/wave_phase``), ``mre_real/mre_imag``, ``anat``,
    ``mask`` and ``mre.json`` with the frequency in Hz. Spacing goes into the header zooms
    in mm. NIfTI axes are ``(x, y, z, component, frequency)``: a 2-D wave with components
    is written as ``(x, y, 1, component)`` (the NIfTI vector convention), and the
    sidecar's ``"spatial_dims"`` says that the singleton z is not a slice. Multi-frequency
    waves put the frequency axis last.

    The files are written whole or not at all (see :func:`napari_mrepinn.outputs.atomic_folder`):
    a new folder appears complete; in an existing folder every file is replaced at once at
    the end, other files are left alone, and parts an earlier save wrote that this one does
    not (e.g. ``wave_mag`` after ``wave_real``) are removed so they cannot be read with the
    new ones.

    Parameters
    ----------
    example : MREExample
        The example to write.
    folder : str or PathLike
        Target folder (created if needed).
    parts : {"real_imag", "mag_phase"}
        How the complex wave is split into two real images.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    MREOutputError
        (an :class:`MREInputError`) if the folder cannot be written.
    """
    import gzip

    import nibabel as nib

    from .outputs import atomic_folder, check_writable

    if parts not in ("real_imag", "mag_phase"):
        raise ValueError(f"parts must be 'real_imag' or 'mag_phase', got {parts!r}")
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    # float32 images, gzip rarely worse than 1:1
    check_writable(existing / ".probe", need_bytes=int(example.ds.nbytes // 2))
    sdims = example.spatial_dims
    spacing_m = np.array([example.spacing[d] for d in sdims], dtype=float)
    if len(sdims) == 3 and not np.isfinite(spacing_m[2]):
        spacing_m[2] = spacing_m[0]  # one slice: any positive slab thickness will do
    origin_m = np.array([float(example.ds[d].values[0]) for d in sdims])
    affine = np.eye(4)
    affine[: len(sdims), : len(sdims)] = np.diag(spacing_m * 1e3)
    affine[: len(sdims), 3] = origin_m * 1e3

    def nifti_bytes(arr: np.ndarray) -> bytes:
        img = nib.Nifti1Image(np.asarray(arr), affine)
        img.header.set_xyzt_units("mm", "sec")
        zooms = list(img.header.get_zooms())
        zooms[: len(sdims)] = spacing_m * 1e3
        img.header.set_zooms(zooms)
        # mtime=0: the same example gives the same bytes
        return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)

    def nifti_order(var: xr.DataArray) -> np.ndarray:
        values = _in_file_order(var, SPATIAL_DIMS)  # NIfTI i, j, k are x, y, z
        if len(sdims) == 2 and "component" in var.dims:
            values = np.expand_dims(values, 2)  # (x, y, 1, component...): axis 4 is the vector
        return values

    images: dict[str, np.ndarray] = {}
    wave = nifti_order(example.ds["wave"])
    if parts == "real_imag":
        images["wave_real"] = wave.real.astype(np.float32)
        images["wave_imag"] = wave.imag.astype(np.float32)
    else:
        images["wave_mag"] = np.abs(wave).astype(np.float32)
        images["wave_phase"] = np.angle(wave).astype(np.float32)
    if "mre" in example:
        mre = nifti_order(example.ds["mre"])
        images["mre_real"] = mre.real.astype(np.float32)
        images["mre_imag"] = mre.imag.astype(np.float32)
    if "anat" in example:
        images["anat"] = nifti_order(example.ds["anat"]).astype(np.float32)
    if "mre_mask" in example:
        images["mask"] = nifti_order(example.ds["mre_mask"]).astype(np.int16)
    freqs = example.frequencies.tolist()
    meta: dict[str, Any] = {
        "frequency": freqs[0] if len(freqs) == 1 else freqs,
        "density": example.density,
        "spatial_dims": list(sdims),
    }
    if "component" in example.ds.coords:
        meta["components"] = [str(c) for c in example.ds["component"].values]
    with atomic_folder(folder, replaces=_SAVED_NAMES) as stage:
        for name, arr in images.items():
            stage.write_bytes(f"{name}.nii.gz", nifti_bytes(arr))
        stage.write_bytes("mre.json", json.dumps(meta, indent=2).encode())
    return folder


# every file save_nifti_folder may write: a save removes those it does not write this time
_SAVED_NAMES = (
    *(f"{n}.nii.gz" for n in ("wave_real", "wave_imag", "wave_mag", "wave_phase",
                              "mre_real", "mre_imag", "anat", "mask")),
    "mre.json",
)


# ====================================================================== reading
def _claims_nifti(p: Path) -> bool:
    if p.is_dir():
        return is_mre_folder(p)
    # one file of a NIfTI folder stands for its folder (drag-and-drop of a file)
    return p.name.lower().endswith((*_NIFTI_SUFFIXES, ".json")) and is_mre_folder(p.parent)


def _load_nifti(p: Path, *overrides: Any) -> MREExample:
    return _load_nifti_folder(p if p.is_dir() else p.parent, *overrides)



def _nifti_files(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(_NIFTI_SUFFIXES)
    )


def _stem(f: Path) -> str:
    name = f.name.lower()
    for suf in _NIFTI_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def _role(f: Path) -> str | None:
    stem = _stem(f)
    if stem.startswith("wave"):
        return "wave"
    if stem.startswith("anat"):
        return "anat"
    if stem.startswith(("mask", "liver", "mre_mask")):
        return "mask"
    if stem.startswith("mre"):
        return "mre"
    return None


def _part(f: Path) -> str | None:
    """Which part of a complex image a file holds, from the tokens after its prefix."""
    tokens = set(re.split(r"[_\-.\s]+", _stem(f))[1:])
    if tokens & {"real", "re", "r"}:
        return "real"
    if tokens & {"imag", "imaginary", "im", "i"}:
        return "imag"
    if tokens & {"mag", "magnitude", "abs", "amp", "amplitude"}:
        return "mag"
    if tokens & {"phase", "pha", "ph", "angle", "phi"}:
        return "phase"
    return None


def _read_nifti(f: Path) -> tuple[np.ndarray, Any]:
    import nibabel as nib

    try:
        img = nib.load(str(f))
        data = np.asarray(img.dataobj)  # no scaling surprises: dataobj applies slope/inter
    except MemoryError:
        raise
    except Exception as exc:
        raise MREInputError(
            f"{f}: not a readable NIfTI file ({_reason(exc)}). Is it truncated?"
        ) from None
    return data, img


def _combine_parts(role: str, files: list[Path]) -> tuple[np.ndarray, Any, list[Path]]:
    """One complex array from the part files of ``role`` (real/imag or mag/phase)."""
    by_part: dict[str, Path] = {}
    for f in files:
        part = _part(f)
        if part is None:
            if len(files) == 1:
                by_part["whole"] = f
                continue
            raise MREInputError(
                f"{f}: cannot tell which part of the {role} this file is; name the parts "
                f"{role}_real/{role}_imag or {role}_mag/{role}_phase."
            )
        if part in by_part:
            raise MREInputError(
                f"{f}: a second '{part}' part of the {role} (also {by_part[part].name})."
            )
        by_part[part] = f
    if "whole" in by_part:
        f = by_part["whole"]
        data, img = _read_nifti(f)
        if not np.iscomplexobj(data) and role == "wave":
            raise MREInputError(
                f"{f}: the wave is a single real image; an MRE wave is complex. Give "
                "wave_real + wave_imag (or wave_mag + wave_phase), or a complex NIfTI."
            )
        return data, img, [f]
    if {"real", "imag"} <= set(by_part):
        keys = ("real", "imag")
    elif {"mag", "phase"} <= set(by_part):
        keys = ("mag", "phase")
    else:
        found = ", ".join(f.name for f in by_part.values())
        raise MREInputError(
            f"{files[0].parent}: the {role} needs two parts (real + imag, or mag + phase); "
            f"found only {found}."
        )
    (a, img), (b, _) = (_read_nifti(by_part[k]) for k in keys)
    fa, fb = by_part[keys[0]], by_part[keys[1]]
    if a.shape != b.shape:
        raise MREInputError(
            f"{fb}: shape {b.shape} does not match {fa.name} {a.shape}; the {role} parts must "
            "have the same shape."
        )
    if keys == ("real", "imag"):
        data = a.astype(np.float64) + 1j * b.astype(np.float64)
    else:
        if np.nanmax(np.abs(b)) > 2 * np.pi + 1e-3:
            raise MREInputError(
                f"{fb}: phase values reach {np.nanmax(np.abs(b)):g}; phase must be in "
                "radians (convert scanner units first)."
            )
        data = a.astype(np.float64) * np.exp(1j * b.astype(np.float64))
    return data, img, [fa, fb]


def _sidecar(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """Merged content of the JSON sidecars and a list of unreadable ones."""
    meta: dict[str, Any] = {}
    bad: list[str] = []
    for f in sorted(folder.glob("*.json")):
        try:
            content = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            bad.append(f"{f} ({_reason(exc)})")
            continue
        if isinstance(content, dict):
            for k, v in content.items():
                meta.setdefault(k.lower(), (v, f))
    return meta, bad


def _frequency_from_meta(meta: Mapping[str, Any], folder: Path) -> list[float] | None:
    for key in FREQUENCY_KEYS:  # the first one stated wins (see FREQUENCY_KEYS)
        if key in meta:
            value, f = meta[key]
            try:
                freqs, _ = parse_frequencies(value)
            except MREInputError as exc:
                raise MREInputError(f"{f}: '{key}': {exc}") from None
            return freqs.tolist()
    return None


def _load_nifti_folder(
    folder: Path,
    frequency: Any,
    spacing: Any,
    components: Sequence[str] | None,
) -> MREExample:
    groups: dict[str, list[Path]] = {}
    for f in _nifti_files(folder):
        role = _role(f)
        if role is not None:
            groups.setdefault(role, []).append(f)
    if "wave" not in groups:
        raise MREInputError(
            f"{folder}: no wave*.nii[.gz] files; an MRE folder needs the complex wave as "
            "wave_real + wave_imag (or wave_mag + wave_phase) NIfTI files."
        )
    wave, img, wave_files = _combine_parts("wave", groups["wave"])
    meta, bad_json = _sidecar(folder)

    # ---- frequency: keyword > sidecar
    if frequency is not None:
        freqs = np.atleast_1d(np.asarray(frequency, dtype=float)).tolist()
    else:
        freqs = _frequency_from_meta(meta, folder)
    if freqs is None:
        hint = f" (unreadable: {'; '.join(bad_json)})" if bad_json else ""
        raise MREMissingFrequency(
            f"{folder}: the vibration frequency is missing; add a sidecar mre.json with "
            f'{{"frequency": <Hz>}} (or one of the keys {", ".join(FREQUENCY_KEYS)}){hint} '
            "or pass frequency= in Hz (CLI: --frequency)."
        )

    # ---- axes: NIfTI is (i, j, k[, component][, frequency]) = (x, y, z, ...)
    multi = len(freqs) > 1
    if multi:
        if wave.shape[-1] != len(freqs):
            raise MREInputError(
                f"{wave_files[0]}: {len(freqs)} frequencies in the sidecar but the last axis "
                f"has {wave.shape[-1]} entries; put the frequency axis last."
            )
        wave = np.moveaxis(wave, -1, 0)
    rest = wave.shape[1:] if multi else wave.shape
    # nibabel keeps trailing singleton axes of 3-D-with-one-slice data; a 2-D image is (x, y)
    ndim = len(rest)
    if ndim not in (2, 3, 4):
        raise MREInputError(
            f"{wave_files[0]}: wave has shape {wave.shape}; expected (x, y[, z][, component])"
            f"{' plus a last frequency axis' if multi else ''}."
        )
    if components is None and "components" in meta:
        value, f = meta["components"]
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise MREInputError(
                f"{f}: 'components' must be a list of labels like [\"z\", \"y\", \"x\"], "
                f"got {value!r}."
            )
        components = value
    declared = meta.get("spatial_dims", (None,))[0]
    two_d = declared in (["x", "y"], ("x", "y"))
    # 3 axes are (x, y, z), or (x, y, component) when the components are labelled; a 2-D
    # wave with components is written as (x, y, 1, component) (the NIfTI vector axis)
    if ndim == 4 and two_d and rest[2] == 1:
        wave = wave.reshape(*wave.shape[: wave.ndim - 2], wave.shape[-1])
        rest, ndim = rest[:2] + rest[3:], 3
    if ndim == 3 and (two_d or (components is not None and len(components) == rest[2])):
        spatial_ndim = 2
    else:
        spatial_ndim = 3 if ndim >= 3 else 2

    # ---- spacing: keyword > header zooms (mm, or the header's unit)
    if spacing is None:
        unit = img.header.get_xyzt_units()[0] or "unknown"
        to_m = _NIFTI_UNIT_M.get(unit, 1e-3)
        zooms = np.asarray(img.header.get_zooms()[:spatial_ndim], dtype=float)
        if zooms.size < spatial_ndim or np.any(~np.isfinite(zooms)) or np.any(zooms <= 0):
            raise MREInputError(
                f"{wave_files[0]}: the header has no valid voxel size ({zooms.tolist()}); "
                "pass spacing= in metres."
            )
        spacing_m = zooms * to_m
        origin = _origin_from_affine(img, spatial_ndim) * to_m
    else:
        spacing_m = _per_axis(spacing, spatial_ndim, "spacing", "voxel spacing in metres")
        origin = np.zeros(spatial_ndim)

    sshape = rest[:spatial_ndim]

    def others(role: str) -> np.ndarray | None:
        if role not in groups:
            return None
        if role == "mre":
            arr, _, files = _combine_parts("mre", groups[role])
            if not np.iscomplexobj(arr):
                arr = arr.astype(np.float64) + 0j
        elif role == "anat" and len(groups[role]) > 1:
            # several anatomical images become the sequence axis
            arrs = [(_read_nifti(f)[0], f) for f in groups[role]]
            files = [f for _, f in arrs]
            for a, f in arrs:
                if a.shape[:spatial_ndim] != tuple(sshape):
                    raise MREInputError(
                        f"{f}: shape {a.shape} does not match the wave's spatial shape "
                        f"{tuple(sshape)}."
                    )
            arr = np.stack([a.reshape(tuple(sshape)) for a, _ in arrs], axis=-1)
        else:
            if len(groups[role]) > 1:
                names = ", ".join(f.name for f in groups[role])
                raise MREInputError(f"{folder}: several {role} files ({names}); keep one.")
            arr, _ = _read_nifti(groups[role][0])
            files = groups[role]
        if arr.shape[:spatial_ndim] != tuple(sshape):
            raise MREInputError(
                f"{files[0]}: shape {arr.shape} does not match the wave's spatial shape "
                f"{tuple(sshape)} ({wave_files[0].name}); they must share the grid."
            )
        if role == "mre" and arr.ndim == spatial_ndim + 1:
            arr = np.moveaxis(arr, -1, 0)  # frequency axis first
        if role == "mask":
            if arr.ndim > spatial_ndim and np.prod(arr.shape[spatial_ndim:]) == 1:
                arr = arr.reshape(arr.shape[:spatial_ndim])  # drop trailing singleton axes
            vals = np.asarray(arr, dtype=float)
            if not np.all(np.isfinite(vals)) or not np.all(vals == np.round(vals)):
                raise MREInputError(
                    f"{files[0]}: the mask must hold integer region labels (0 = outside)."
                )
            arr = vals.astype(np.int32)
        return arr

    mre, mask, anat = others("mre"), others("mask"), others("anat")
    density = 1000.0
    if "density" in meta:
        value, f = meta["density"]
        try:
            density = float(value)
        except (TypeError, ValueError):
            raise MREInputError(
                f"{f}: 'density' must be a number of kg/m³, got {value!r}."
            ) from None
    example = MREExample.from_numpy(
        wave,
        frequency=freqs if multi else freqs[0],
        spacing=spacing_m,
        mre=mre,
        mre_mask=mask,
        anat=anat,
        origin=origin,
        components=components,
        density=density,
        spatial_ndim=spatial_ndim,
        source=str(folder),
    )
    if anat is not None and "sequence" in example.ds["anat"].dims and len(groups["anat"]) > 1:
        labels = [_stem(f) for f in groups["anat"]]
        example.ds = example.ds.assign_coords(sequence=labels)
    return example


def _origin_from_affine(img: Any, ndim: int) -> np.ndarray:
    """First voxel centre from an axis-aligned affine (0 if the affine rotates or flips).

    Only a positive diagonal maps array axes to increasing coordinates; anything else
    would need reorientation, which we do not do, so we keep the grid at the origin.
    """
    aff = np.asarray(img.affine, dtype=float)
    lin = aff[:ndim, :ndim]
    if np.allclose(lin, np.diag(np.diag(lin))) and np.all(np.diag(lin) > 0):
        return aff[:ndim, 3].copy()
    return np.zeros(ndim)
