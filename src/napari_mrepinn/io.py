"""Readers of MRE data in other formats into :class:`~napari_mrepinn.data.MREExample`.

Supported inputs (see :func:`load_example`):

- ``.nc``: an example written by :meth:`MREExample.save`;
- a folder of NIfTI files: ``wave*.nii[.gz]`` as real/imaginary or magnitude/phase parts
  (or one complex NIfTI), optional ``anat*``, ``mask*``/``liver*`` and ``mre*`` images, and a
  JSON sidecar with ``"frequency"`` in Hz;
- BIOQIC-style MATLAB ``.mat`` files, v5 (``scipy.io.loadmat``) and v7.3 (HDF5, ``h5py``).

Input files are only ever opened for reading. Every problem is one :class:`MREInputError`
naming the file and what is wrong.

This module is the registry of input formats (:data:`READERS`) and the front of reading and
writing; the formats live in :mod:`napari_mrepinn.io_nifti` (NIfTI folders),
:mod:`napari_mrepinn.io_matlab` (MATLAB files) and :mod:`napari_mrepinn.scanner` (DICOM and
raw phase NIfTI); NetCDF is :meth:`MREExample.load`'s (:mod:`napari_mrepinn.netcdf`), with the
overrides applied here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
    parse_frequencies,
)
from .io_matlab import _load_mat, save_mat
from .io_nifti import (
    _NIFTI_SUFFIXES,
    _claims_nifti,
    _load_nifti,
    _nifti_files,
    is_mre_folder,
    save_nifti_folder,
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
    from .netcdf import _read_netcdf

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


# ====================================================================== registrations
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
