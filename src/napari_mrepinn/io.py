"""Readers of MRE data in other formats into :class:`~napari_mrepinn.data.MREExample`.

Supported inputs (see :func:`load_example`):

- ``.nc``: an example written by :meth:`MREExample.save`;
- a folder of NIfTI files: ``wave*.nii[.gz]`` as real/imaginary or magnitude/phase parts
  (or one complex NIfTI), optional ``anat*``, ``mask*``/``liver*`` and ``mre*`` images, and a
  JSON sidecar with ``"frequency"`` in Hz;
- BIOQIC-style MATLAB ``.mat`` files, v5 (``scipy.io.loadmat``) and v7.3 (HDF5, ``h5py``).

Input files are only ever opened for reading. Every problem is one :class:`MREInputError`
naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .data import (
    SPATIAL_DIMS,
    MREExample,
    MREInputError,
    MREMissingFrequency,
    _per_axis,
    _reason,
    parse_frequencies,
)

__all__ = [
    "READERS",
    "Reader",
    "find_reader",
    "is_mre_folder",
    "load_example",
    "register_reader",
    "save_mat",
    "save_nifti_folder",
]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
# NIfTI spatial unit codes (nibabel's names) -> metres; "unknown" is read as mm, the
# unit nearly every scanner converter writes
_NIFTI_UNIT_M = {"meter": 1.0, "mm": 1e-3, "micron": 1e-6, "unknown": 1e-3}
# names of the wave variable in BIOQIC files, most specific first
_MAT_WAVE_NAMES = ("u_ft", "cube", "wave", "U", "u")
# component order of known BIOQIC variables (MRE-PINN's reading of the files)
_MAT_COMPONENTS = {"u_ft": ["y", "x", "z"], "cube": ["z", "x", "y"]}
_FREQ_KEYS = ("frequency", "frequency_hz", "frequencies", "frequencies_hz", "freq", "freq_hz")


# ====================================================================== the registry
@dataclass(frozen=True)
class Reader:
    """One input format: how to recognise it and how to read it.

    Attributes
    ----------
    name : str
        Short name (``"netcdf"``).
    description : str
        What people call it (error messages, ``--help``).
    patterns : tuple of str
        File name patterns it claims (napari's manifest lists the same ones).
    claims : callable
        ``claims(path) -> bool``: whether this reader reads ``path`` (cheap: names and
        folder listings, no file content).
    load : callable
        ``load(path, frequency, spacing, components) -> MREExample``; the overrides are
        applied before validation, so they can supply what the files lack.
    """

    name: str
    description: str
    patterns: tuple[str, ...]
    claims: Callable[[Path], bool]
    load: Callable[..., MREExample]


#: the input formats, most specific first (the first that claims a path reads it); the
#: napari reader and the CLI read this list, and napari.yaml's ``filename_patterns`` must
#: hold every pattern (a test checks)
READERS: list[Reader] = []


def register_reader(reader: Reader, *, first: bool = False) -> Reader:
    """Add an input format to :data:`READERS` (``first``: before the others)."""
    if any(r.name == reader.name for r in READERS):
        raise ValueError(f"a reader called {reader.name!r} is already registered")
    READERS.insert(0, reader) if first else READERS.append(reader)
    return reader


def find_reader(path: str | os.PathLike) -> Reader | None:
    """The registered reader that claims ``path``, or None (never raises for a path)."""
    p = Path(path)
    for reader in READERS:
        try:
            if reader.claims(p):
                return reader
        except OSError:  # an unreadable folder is nobody's
            continue
    return None


def load_example(
    path: str | os.PathLike,
    *,
    frequency: float | Sequence[float] | None = None,
    spacing: float | Sequence[float] | None = None,
    components: Sequence[str] | None = None,
) -> MREExample:
    """Read an MRE example from a file or folder with the reader that claims it.

    Parameters
    ----------
    path : str or PathLike
        A file or folder of one of the formats of :data:`READERS` (``.nc``, a folder of
        NIfTI files or one NIfTI/JSON file inside such a folder, a ``.mat`` file...).
    frequency : float or sequence of float, optional
        Vibration frequency in Hz. One value: supplies the frequency when the files do not
        state it, *selects* it from a multi-frequency file, and overrides the frequency of a
        single-frequency one. Several values: the frequencies of the file's frequency axis,
        in order.
    spacing : float or sequence of float, optional
        Voxel spacing in **metres** (one value or one per spatial axis); overrides (or
        supplies) what the files say. The CLI's ``--spacing`` is in mm.
    components : sequence of str, optional
        Labels of the wave's component axis, e.g. ``["z", "y", "x"]``.

    Returns
    -------
    MREExample
        The example; ``example.source`` is the path read.

    Raises
    ------
    MREInputError
        If the path is missing, of an unknown kind, or its content is not a valid example.
    """
    p = Path(path)
    if not p.exists():
        raise MREInputError(f"{p}: no such file or folder.")
    try:
        return _dispatch(p, frequency, spacing, components)
    except MemoryError:
        from .data import _too_large

        raise MREInputError(_too_large(p)) from None
    except MREInputError as exc:
        # every message names what was read (a file inside a folder names itself)
        if str(exc).startswith(str(p)):
            raise
        raise MREInputError(f"{p}: {exc}") from None


def _dispatch(
    p: Path,
    frequency: float | Sequence[float] | None,
    spacing: float | Sequence[float] | None,
    components: Sequence[str] | None,
) -> MREExample:
    """Read ``p`` with the registered reader that claims it; one ``frequency`` value is
    supplied, selected or overridden as :func:`load_example` says."""
    reader = find_reader(p)
    if reader is None:
        if p.name.lower().endswith((*_NIFTI_SUFFIXES, ".json")):
            raise MREInputError(
                f"{p}: a single NIfTI/JSON file is read as part of an MRE folder, but "
                f"{p.parent} holds no wave*.nii[.gz] files; put the wave parts "
                "(e.g. wave_real.nii.gz and wave_imag.nii.gz) next to it or open the folder."
            )
        kinds = "; ".join(f"{r.description} ({', '.join(r.patterns)})" for r in READERS)
        if p.is_dir():
            raise MREInputError(
                f"{p}: no wave*.nii[.gz] files or other MRE data in this folder; "
                f"napari-mrepinn reads: {kinds}."
            )
        raise MREInputError(f"{p}: unsupported file type; napari-mrepinn reads: {kinds}.")
    if frequency is None or np.size(frequency) != 1:
        return reader.load(p, frequency, spacing, components)
    f = float(np.ravel(frequency)[0])
    if not (np.isfinite(f) and f > 0):
        raise MREInputError(f"{p}: the frequency must be a positive number of Hz, got {f!r}.")
    try:
        example = reader.load(p, None, spacing, components)
    except MREMissingFrequency:
        return reader.load(p, f, spacing, components)
    if len(example.frequencies) > 1:
        return example.select_frequency(f)
    if abs(example.frequency - f) <= 1e-9 * f:
        return example
    return reader.load(p, f, spacing, components)


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

    The layout is the one :func:`load_example` reads: ``wave_real/wave_imag`` (or
    ``wave_mag/wave_phase``), ``mre_real/mre_imag``, ``anat``, ``mask`` and ``mre.json``
    with the frequency in Hz. Spacing goes into the header zooms in mm. NIfTI axes are
    ``(x, y, z, component, frequency)``: a 2-D wave with components is written as
    ``(x, y, 1, component)`` (the NIfTI vector convention), and the sidecar's
    ``"spatial_dims"`` says that the singleton z is not a slice. Multi-frequency waves put
    the frequency axis last.

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
        # spatial axes first (NIfTI i, j, k), then component, then frequency
        order = [d for d in (*SPATIAL_DIMS, "component", "sequence", "frequency") if d in var.dims]
        values = var.transpose(*order).values
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


def save_mat(example: MREExample, path: str | os.PathLike, *, version: str = "5") -> Path:
    """Write an example as a BIOQIC-style MATLAB file (the layout :func:`load_example` reads).

    The wave is ``u_ft`` with MATLAB axes ``(y, x[, z][, component][, frequency])`` and
    the geometry goes into an ``info`` struct (``dx_m``, ``dy_m``, ``dz_m``,
    ``frequencies_Hz``). ``mre``, ``mre_mask`` and ``anat`` (as ``magnitude``) follow
    with the same leading ``(y, x[, z])`` axes. The file is written whole or not at all
    (see :mod:`napari_mrepinn.outputs`).

    Parameters
    ----------
    example : MREExample
        The example to write.
    path : str or PathLike
        Target ``.mat`` file.
    version : {"5", "7.3"}
        MATLAB file version: v5 via ``scipy.io.savemat``, v7.3 (HDF5) via ``h5py``.

    Raises
    ------
    MREOutputError
        (an :class:`MREInputError`) if the file cannot be written.
    """
    from .outputs import atomic_open, check_writable, write_bytes

    if version not in ("5", "7.3"):
        raise ValueError(f"version must be '5' or '7.3', got {version!r}")
    path = Path(path)
    check_writable(path, need_bytes=int(example.ds.nbytes))

    def mat_order(var: xr.DataArray) -> np.ndarray:
        order = [d for d in ("y", "x", "z", "component", "sequence", "frequency") if d in var.dims]
        return np.asarray(var.transpose(*order).values)

    sp = example.spacing
    info: dict[str, Any] = {
        "dx_m": sp["x"],
        "dy_m": sp["y"],
        "frequencies_Hz": example.frequencies.astype(float),
    }
    if "z" in sp and np.isfinite(sp["z"]):
        info["dz_m"] = sp["z"]
    variables: dict[str, Any] = {"u_ft": mat_order(example.ds["wave"])}
    if "mre" in example:
        variables["mre"] = mat_order(example.ds["mre"])
    if "mre_mask" in example:
        variables["mre_mask"] = mat_order(example.ds["mre_mask"]).astype(np.int32)
    if "anat" in example:
        variables["magnitude"] = mat_order(example.ds["anat"]).astype(np.float64)
    if version == "5":
        import scipy.io

        with atomic_open(path, "wb") as fh:
            scipy.io.savemat(fh, {**variables, "info": info}, do_compression=True)
    else:
        write_bytes(path, _mat73_bytes(variables, info))
    return path


# ====================================================================== NetCDF
def _load_netcdf(
    path: Path,
    frequency: Any,
    spacing: Any,
    components: Sequence[str] | None,
) -> MREExample:
    if frequency is None and spacing is None and components is None:
        return MREExample.load(path)
    # overrides must be applied before validation, so read the dataset ourselves
    from .data import _read_netcdf

    ds = _apply_overrides(_read_netcdf(path), frequency, spacing, components, path)
    return MREExample(ds, source=str(path))


def _apply_overrides(
    ds: xr.Dataset,
    frequency: Any,
    spacing: Any,
    components: Sequence[str] | None,
    source: Path,
) -> xr.Dataset:
    ds = ds.copy()
    if frequency is not None:
        try:
            f, _ = parse_frequencies(frequency)
        except MREInputError as exc:
            raise MREInputError(f"{source}: {exc}") from None
        if "frequency" in ds.dims:
            if len(f) != ds.sizes["frequency"]:
                raise MREInputError(
                    f"{source}: {len(f)} frequencies given but the file has "
                    f"{ds.sizes['frequency']}."
                )
            ds = ds.assign_coords(frequency=f)
        else:
            if len(f) != 1:
                raise MREInputError(
                    f"{source}: {len(f)} frequencies given for a single-frequency wave."
                )
            ds.attrs["frequency"] = float(f[0])
    if spacing is not None:
        sdims = [d for d in SPATIAL_DIMS if d in ds.dims]
        sp = _per_axis(spacing, len(sdims), "spacing", "voxel spacing in metres")
        if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
            raise MREInputError(f"{source}: spacing must be positive metres, got {spacing!r}.")
        new = {}
        for d, s in zip(sdims, sp, strict=True):
            start = float(ds[d].values[0]) if d in ds.coords else 0.0
            new[d] = start + s * np.arange(ds.sizes[d])
        ds = ds.assign_coords(new)
    if components is not None and "component" in ds.dims:
        if len(components) != ds.sizes["component"]:
            raise MREInputError(
                f"{source}: {len(components)} component labels for "
                f"{ds.sizes['component']} wave components."
            )
        ds = ds.assign_coords(component=list(components))
    return ds


# ====================================================================== NIfTI folders
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
    for key in _FREQ_KEYS:
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
            f'{{"frequency": <Hz>}}{hint} or pass frequency= in Hz (CLI: --frequency).'
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


# ====================================================================== MATLAB
def _load_mat(
    path: Path,
    frequency: Any,
    spacing: Any,
    components: Sequence[str] | None,
) -> MREExample:
    import h5py

    try:
        is_h5 = h5py.is_hdf5(str(path))
    except OSError as exc:
        raise MREInputError(f"{path}: cannot be read ({_reason(exc)}).") from None
    variables = _read_mat73(path) if is_h5 else _read_mat5(path)
    variables = {k: v for k, v in variables.items() if not k.startswith("__")}

    # ---- the wave
    name = next((n for n in _MAT_WAVE_NAMES if n in variables), None)
    if name is None:
        name = next(
            (
                n
                for n, v in variables.items()
                if isinstance(v, np.ndarray) and np.iscomplexobj(v) and v.ndim >= 2
            ),
            None,
        )
    if name is None:
        found = ", ".join(f"{n} {_describe(v)}" for n, v in variables.items()) or "nothing"
        raise MREInputError(
            f"{path}: no complex wave variable (looked for {', '.join(_MAT_WAVE_NAMES)} or any "
            f"complex array with 2+ axes; found {found})."
        )
    u = np.asarray(variables[name])
    if not np.issubdtype(u.dtype, np.number) or u.ndim < 2:
        raise MREInputError(
            f"{path}: variable '{name}' is {_describe(u)}; expected a complex wave array."
        )

    # ---- geometry: keyword > info struct > top-level variables
    info = variables.get("info")
    info = info if isinstance(info, dict) else {}
    lookup = {
        **{k.lower(): v for k, v in variables.items()},
        **{k.lower(): v for k, v in info.items()},
    }
    freqs: list[float] | None
    if frequency is not None:
        freqs = np.atleast_1d(np.asarray(frequency, dtype=float)).tolist()
    else:
        freqs = None
        for key in ("frequencies_hz", "frequency_hz", "frequency", "frequencies", "freq"):
            if key in lookup:
                try:
                    freqs = np.atleast_1d(np.asarray(lookup[key], dtype=float)).ravel().tolist()
                except (TypeError, ValueError):
                    raise MREInputError(
                        f"{path}: '{key}' is not numeric ({_describe(lookup[key])})."
                    ) from None
                break
    if not freqs:
        raise MREMissingFrequency(
            f"{path}: the vibration frequency is missing (no info.frequencies_Hz); pass "
            "frequency= in Hz (CLI: --frequency)."
        )

    # MATLAB axes: (y, x[, z][, component][, frequency]); BIOQIC puts rows = y
    nf = len(freqs)
    shape = u.shape
    while u.ndim > 2 and u.shape[-1] == 1:
        u = u[..., 0]  # trailing singleton axes carry nothing in MATLAB
    if u.ndim >= 3 and nf > 1 and u.shape[-1] == nf:
        u = np.moveaxis(u, -1, 0)
        multi = True
    else:
        multi = False
        if nf > 1:
            raise MREInputError(
                f"{path}: {nf} frequencies ({', '.join(f'{f:g}' for f in freqs)} Hz) but "
                f"'{name}' {shape} has no last axis of that length; pass frequency= to pick "
                "the frequency of this wave."
            )
    rest = u.shape[1:] if multi else u.shape
    if len(rest) == 5:
        raise MREInputError(
            f"{path}: '{name}' has a time axis ({shape}); take the first temporal harmonic "
            "(FFT over the time offsets) to get a complex wave first."
        )
    if len(rest) not in (2, 3, 4):
        raise MREInputError(
            f"{path}: '{name}' has shape {shape}; expected (y, x[, z][, component][, frequency])."
        )
    spatial_ndim = 2 if len(rest) == 2 else 3
    if not np.iscomplexobj(u):
        raise MREInputError(
            f"{path}: '{name}' is real ({u.dtype}); the wave must be complex (a phase "
            "series needs a temporal Fourier transform first)."
        )
    # swap MATLAB (y, x) to the library's (x, y)
    lead = 1 if multi else 0
    u = np.swapaxes(u, lead, lead + 1)

    if spacing is not None:
        spacing_m = _per_axis(spacing, spatial_ndim, "spacing", "voxel spacing in metres")
    else:
        keys = ("dx_m", "dy_m", "dz_m")[:spatial_ndim]
        if not all(k in lookup for k in keys[:2]):
            raise MREInputError(
                f"{path}: the voxel spacing is missing (no info.dx_m / info.dy_m); pass "
                "spacing= in metres (CLI: --spacing)."
            )
        vals = [lookup.get(k, lookup["dx_m"]) for k in keys]
        try:
            spacing_m = np.array([float(np.asarray(v).ravel()[0]) for v in vals])
        except (TypeError, ValueError, IndexError):
            raise MREInputError(f"{path}: info.dx_m/dy_m/dz_m must be numbers.") from None

    sshape = u.shape[lead : lead + spatial_ndim]

    def spatial(var: str) -> np.ndarray | None:
        if var not in variables:
            return None
        a = np.asarray(variables[var])
        if a.ndim < spatial_ndim or (a.shape[1], a.shape[0], *a.shape[2:spatial_ndim]) != tuple(
            sshape
        ):
            raise MREInputError(
                f"{path}: '{var}' {a.shape} does not share the wave's grid (MATLAB "
                f"(y, x{', z' if spatial_ndim == 3 else ''}) = "
                f"{(sshape[1], sshape[0], *sshape[2:])})."
            )
        return np.swapaxes(a, 0, 1)

    anat = spatial("magnitude")
    if anat is None:
        anat = spatial("anat")
    if anat is not None:
        # reduce time/component/frequency axes of a magnitude series to one image
        anat = anat.astype(np.float64)
        if anat.ndim > spatial_ndim:
            anat = anat.reshape(*anat.shape[:spatial_ndim], -1).mean(axis=-1)
    mask = next((spatial(n) for n in ("mre_mask", "mask") if n in variables), None)
    mre = spatial("mre")
    if mre is not None and mre.ndim == spatial_ndim + 1:
        mre = np.moveaxis(mre, -1, 0)
    if components is None:
        nc = u.shape[-1] if len(rest) == 4 else 0
        known = _MAT_COMPONENTS.get(name)
        components = known if known is not None and len(known) == nc else None
    density = float(np.asarray(lookup.get("density", 1000.0)).ravel()[0])
    return MREExample.from_numpy(
        u,
        frequency=freqs if multi else freqs[0],
        spacing=spacing_m,
        mre=mre,
        mre_mask=mask,
        anat=anat,
        components=components,
        density=density,
        spatial_ndim=spatial_ndim,
        source=str(path),
    )


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype} {v.shape}"
    return type(v).__name__


def _read_mat5(path: Path) -> dict[str, Any]:
    import io as _io

    import scipy.io

    try:
        data = path.read_bytes()
        if scipy.io.matlab.matfile_version(_io.BytesIO(data))[0] == 1:
            # scipy's v5 reader trusts the sizes in the file and crashes the process
            # (segfault) on a damaged one: check them in Python first
            data = _checked_mat5(data)
        # no squeeze_me: a single z slice (y, x, 1, component) must keep its z axis
        raw = scipy.io.loadmat(_io.BytesIO(data), squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        # scipy says so for v7.3 files that h5py did not recognise: a damaged HDF5 file
        raise MREInputError(f"{path}: a MATLAB v7.3 file that is not readable HDF5.") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise MREInputError(
            f"{path}: not a readable MATLAB file ({_reason(exc)}). Is it "
            "truncated or of another format?"
        ) from None
    return {k: _mat5_value(v) for k, v in raw.items() if not k.startswith("__")}


# MATLAB v5 data types: code -> item size in bytes (miINT8 ... miUTF32)
_MI_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
# MATLAB v5 array classes: cell, struct, object, char, sparse, then the numeric ones
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_NUMERIC = frozenset(range(6, 16))


class _Damaged(Exception):
    """A MATLAB v5 element whose sizes do not add up."""


def _checked_mat5(data: bytes) -> bytes:
    """The v5 file ``data`` with every size checked, decompressed, without exotic variables.

    Walks every element: each must lie inside its parent, numeric data must hold exactly
    ``prod(dims)`` items, compressed elements must inflate completely to one matrix.
    Variables of classes this reader never needs (objects, sparse, function handles,
    MATLAB opaque objects) are dropped rather than handed to scipy. Raises
    ``ValueError`` for a damaged file (the caller turns it into an MREInputError).
    """
    import struct
    import zlib

    if len(data) < 128:
        raise ValueError("shorter than the 128-byte MATLAB header")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise ValueError("the MATLAB header has no byte-order mark")

    def tag(buf: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
        """(type, nbytes, data start, next element) of the element at ``pos``."""
        if pos + 8 > end:
            raise _Damaged("an element header runs past its end")
        first, second = struct.unpack_from(endian + "II", buf, pos)
        if first >> 16:  # small data element: 2-byte size, 2-byte type, 4 bytes of data
            mtype, nbytes = first & 0xFFFF, first >> 16
            if nbytes > 4:
                raise _Damaged("a small element claims more than 4 bytes")
            return mtype, nbytes, pos + 4, pos + 8
        nbytes = second
        if pos + 8 + nbytes > end:
            raise _Damaged("an element runs past its end")
        return first, nbytes, pos + 8, min(pos + 8 + nbytes + (-nbytes % 8), end)

    def numeric(buf: bytes, pos: int, end: int, count: int | None) -> int:
        mtype, nbytes, _, nxt = tag(buf, pos, end)
        size = _MI_SIZE.get(mtype)
        if size is None or nbytes % size or (count is not None and nbytes != count * size):
            raise _Damaged("a data element does not match its array's size")
        return nxt

    def matrix(buf: bytes, pos: int, end: int) -> tuple[int, int]:
        """Check the miMATRIX at ``pos``; returns (its array class, next element)."""
        mtype, nbytes, start, nxt = tag(buf, pos, end)
        if mtype != _MI_MATRIX:
            raise _Damaged("expected a matrix element")
        if nbytes == 0:
            return 0, nxt  # an empty cell entry
        stop = start + nbytes
        ftype, fbytes, fstart, p = tag(buf, start, stop)
        if ftype != 6 or fbytes != 8:
            raise _Damaged("bad array flags")
        flags = struct.unpack_from(endian + "I", buf, fstart)[0]
        cls, is_complex = flags & 0xFF, bool(flags & 0x800)
        dtype_, dbytes, dstart, p = tag(buf, p, stop)
        if dtype_ != 5 or dbytes % 4 or dbytes < 8:
            raise _Damaged("bad dimensions")
        dims = struct.unpack_from(f"{endian}{dbytes // 4}i", buf, dstart)
        if min(dims) < 0:
            raise _Damaged("negative dimensions")
        count = int(np.prod(np.asarray(dims, dtype=np.float64)))
        p = numeric(buf, p, stop, None)  # the name (int8 text)
        if cls in _MX_NUMERIC:
            p = numeric(buf, p, stop, count)
            if is_complex:
                p = numeric(buf, p, stop, count)
        elif cls == _MX_CHAR:
            p = numeric(buf, p, stop, None)
        elif cls == _MX_CELL:
            for _ in range(count):
                inner, p = matrix(buf, p, stop)
                if inner in (_MX_OBJECT, _MX_SPARSE) or inner > 15:
                    raise _Damaged("unsupported class inside a cell")
        elif cls == _MX_STRUCT:
            ltype, lbytes, lstart, p = tag(buf, p, stop)
            if ltype != 5 or lbytes != 4:
                raise _Damaged("bad struct field-name length")
            name_len = struct.unpack_from(endian + "i", buf, lstart)[0]
            ntype, nbytes_, _, p = tag(buf, p, stop)
            if name_len <= 0 or ntype != 1 or nbytes_ % name_len:
                raise _Damaged("bad struct field names")
            for _ in range(count * (nbytes_ // name_len)):
                inner, p = matrix(buf, p, stop)
                if inner in (_MX_OBJECT, _MX_SPARSE) or inner > 15:
                    raise _Damaged("unsupported class inside a struct")
        else:
            return cls, nxt  # object, sparse, function, opaque: dropped by the caller
        if p > stop:
            raise _Damaged("a matrix runs past its end")
        return cls, nxt

    out = bytearray(data[:128])
    pos = 128
    while pos < len(data):
        try:
            mtype, nbytes, start, nxt = tag(data, pos, len(data))
        except _Damaged as exc:
            raise ValueError(f"{exc} (byte {pos})") from None
        if mtype == _MI_COMPRESSED:
            inflater = zlib.decompressobj()
            try:
                element = inflater.decompress(data[start : start + nbytes])
            except zlib.error as exc:
                raise ValueError(f"a compressed variable is damaged ({exc})") from None
            if not inflater.eof or inflater.unused_data:
                raise ValueError("a compressed variable is cut short or damaged")
            nxt = start + nbytes  # compressed elements are not padded
        elif mtype == _MI_MATRIX:
            element = data[pos:nxt]
        else:
            raise ValueError(f"an element of unknown type {mtype} at byte {pos}")
        try:
            cls, end = matrix(element, 0, len(element))
        except (_Damaged, struct.error) as exc:
            raise ValueError(f"a variable is damaged ({exc})") from None
        if end != len(element):
            raise ValueError("a compressed variable holds more than one matrix")
        if cls in _MX_NUMERIC or cls in (_MX_CHAR, _MX_CELL, _MX_STRUCT):
            out += element + bytes(-len(element) % 8)
        pos = nxt
    return bytes(out)


def _mat5_value(v: Any) -> Any:
    """Structs become dicts, 1 × 1 cells their content; numeric arrays keep their shape."""
    if isinstance(v, np.ndarray) and v.dtype.names:
        if v.size != 1:
            return v
        rec = v.ravel()[0]
        return {name: _mat5_value(rec[name]) for name in v.dtype.names}
    if isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
        return _mat5_value(v.ravel()[0])
    if isinstance(v, np.ndarray) and v.dtype.kind == "U":
        return "".join(v.ravel().tolist())
    return v


def _read_mat73(path: Path) -> dict[str, Any]:
    import h5py

    def convert(obj: Any) -> Any:
        if isinstance(obj, h5py.Group):
            return {k: convert(v) for k, v in obj.items() if not k.startswith("#")}
        data = obj[()]
        if (
            isinstance(data, np.ndarray)
            and data.dtype.names
            and {"real", "imag"} <= set(data.dtype.names)
        ):
            data = data["real"] + 1j * data["imag"]
        if isinstance(data, np.ndarray):
            # MATLAB writes column-major: the HDF5 shape is the MATLAB shape reversed
            data = data.T
            if obj.attrs.get("MATLAB_class", b"") in (b"char", "char"):
                return "".join(chr(c) for c in data.ravel())
            if data.size == 1 and data.ndim <= 2:
                return data.ravel()[0] if data.ndim else data
        return data

    try:
        with h5py.File(str(path), "r") as f:
            return {k: convert(v) for k, v in f.items() if not k.startswith("#")}
    except (MREInputError, MemoryError):
        raise
    except Exception as exc:
        raise MREInputError(
            f"{path}: not a readable MATLAB v7.3 (HDF5) file ({_reason(exc)})."
        ) from None


def _mat73_bytes(variables: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> bytes:
    """A minimal MATLAB v7.3 file: HDF5 with a 512-byte MATLAB header, arrays transposed.

    Built in memory: libhdf5 never writes to the disk itself (it crashes when the disk
    fills under it), the caller writes the bytes.
    """
    import io as _io
    import time

    import h5py

    def put(group: Any, name: str, value: Any) -> None:
        a = np.asarray(value)
        if np.iscomplexobj(a):
            dt = np.dtype([("real", "<f8"), ("imag", "<f8")])
            rec = np.empty(a.shape, dt)
            rec["real"], rec["imag"] = a.real, a.imag
            ds = group.create_dataset(name, data=rec.T)
            ds.attrs["MATLAB_class"] = np.bytes_("double")
        else:
            if a.ndim < 2:
                a = a.reshape(1, -1) if a.ndim == 1 else a.reshape(1, 1)
            ds = group.create_dataset(name, data=np.ascontiguousarray(a.T))
            cls = "int32" if np.issubdtype(a.dtype, np.integer) else "double"
            ds.attrs["MATLAB_class"] = np.bytes_(cls)

    buffer = _io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=512) as f:
        for name, value in variables.items():
            put(f, name, value)
        g = f.create_group("info")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        for k, v in info.items():
            put(g, k, v)
    header = (
        f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
        f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 ."
    ).encode()
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    data = bytearray(buffer.getbuffer())
    data[:512] = header.ljust(512, b"\x00")
    return bytes(data)


# ====================================================================== registrations
def _claims_nifti(p: Path) -> bool:
    if p.is_dir():
        return is_mre_folder(p)
    # one file of a NIfTI folder stands for its folder (drag-and-drop of a file)
    return p.name.lower().endswith((*_NIFTI_SUFFIXES, ".json")) and is_mre_folder(p.parent)


def _load_nifti(p: Path, *overrides: Any) -> MREExample:
    return _load_nifti_folder(p if p.is_dir() else p.parent, *overrides)


register_reader(Reader(
    "netcdf", "an MRE example written by napari-mrepinn", ("*.nc",),
    lambda p: p.is_file() and p.name.lower().endswith(".nc"), _load_netcdf))
register_reader(Reader(
    "nifti", "a folder of NIfTI files with wave*.nii[.gz] and a JSON sidecar",
    ("*.nii", "*.nii.gz", "*.json"), _claims_nifti, _load_nifti))
register_reader(Reader(
    "mat", "a BIOQIC-style MATLAB file (v5 or v7.3)", ("*.mat",),
    lambda p: p.is_file() and p.name.lower().endswith(".mat"), _load_mat))


# scanner data (napari_mrepinn.scanner, imported when a path is checked: pydicom is heavy)
def _claims_dicom(p: Path) -> bool:
    from .scanner import is_dicom_folder

    return is_dicom_folder(p)


def _claims_phase_nifti(p: Path) -> bool:
    from .scanner import is_phase_nifti

    if p.is_dir():
        return any(is_phase_nifti(f) for f in _nifti_files(p))
    return is_phase_nifti(p)


def _load_scanner(p: Path, frequency: Any, spacing: Any, components: Any) -> MREExample:
    from .scanner import import_exam

    # the wave's components are the motion-encoding directions of the series
    return import_exam([p], frequency=frequency, spacing=spacing, directions=components)


register_reader(Reader(
    "dicom", "a folder of MRE DICOM phase (and magnitude) images, with the frequency and "
    "directions in an mre.json sidecar or given", ("*.dcm", "*.ima"), _claims_dicom,
    _load_scanner))
register_reader(Reader(
    "phase-nifti", "raw MRE phase series in NIfTI as dcm2niix writes them (*_ph.nii[.gz] "
    "with its JSON sidecar)", ("*.nii", "*.nii.gz"), _claims_phase_nifti, _load_scanner))
