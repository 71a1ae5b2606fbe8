"""Readers of MRE scanner data: the front door to DICOM phase images and raw phase NIfTI.

:func:`import_exam` dispatches on what the paths hold: all NIfTI (``.nii``/``.nii.gz`` files,
or folders of them without DICOM) → :func:`load_phase_nifti`; otherwise →
:func:`load_dicom`. :func:`summary_text` says what an import produced. The format rules live
with their readers:

- :mod:`napari_mrepinn.dicom` — DICOM exams (classic and enhanced MR): series grouping,
  slice and offset order, the checks, geometry, stored phase to radians;
  :mod:`napari_mrepinn.dicom_frames` — one file to frames (tags read, pixel data);
- :mod:`napari_mrepinn.phase_nifti` — dcm2niix phase NIfTI files and their JSON sidecars;
- :mod:`napari_mrepinn.phase_series` — what both share: ImageType, the sidecars and
  options that give each series its vibration frequency and motion-encoding direction
  (never guessed from the files), and the assembly into a prepared
  :class:`~napari_mrepinn.data.MREExample`.

The public names of those modules are re-exported here (``scanner.load_dicom``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import MREExample, MREInputError
from .dicom import is_dicom_folder, load_dicom
from .phase_nifti import _NIFTI_SUFFIXES, is_phase_nifti, load_phase_nifti
from .phase_series import PathLike, _path_list
from .preprocess import preprocessing_record

__all__ = [
    "import_exam",
    "is_dicom_folder",
    "is_phase_nifti",
    "load_dicom",
    "load_phase_nifti",
    "summary_text",
]


# ====================================================================== dispatch
def import_exam(paths: PathLike | Sequence[PathLike], **options: Any) -> MREExample:
    """Import an MRE exam from DICOM folders/files or raw phase NIfTI files.

    Dispatches on what the paths hold: all NIfTI (``.nii``/``.nii.gz`` files, or folders
    of them without DICOM) → :func:`load_phase_nifti`; otherwise → :func:`load_dicom`.
    ``options`` are those of the two loaders.
    """
    plist = _path_list(paths, "the exam's DICOM folder(s) or NIfTI file(s)")

    def nifti(p: Path) -> bool:
        if p.is_file():
            return p.name.lower().endswith(_NIFTI_SUFFIXES)
        has_nii = any(f.name.lower().endswith(_NIFTI_SUFFIXES) for f in p.iterdir())
        return has_nii and not is_dicom_folder(p)

    kinds = {nifti(p) for p in plist}
    if len(kinds) > 1:
        raise MREInputError(
            "the paths mix NIfTI and DICOM; import one format at a time."
        )
    if kinds.pop():
        return load_phase_nifti(plist, **options)
    return load_dicom(plist, **options)


# ====================================================================== summary
def summary_text(example: MREExample) -> str:
    """What an import produced, for the CLI and the dock (mm, Hz, counts)."""
    steps = preprocessing_record(example)
    by_step = {s.get("step"): s for s in steps}
    shape = " × ".join(str(n) for n in example.spatial_shape)
    sp = example.spacing
    spacing = ", ".join(
        f"{d}={(sp[d] if np.isfinite(sp[d]) else float(np.nan)) * 1e3:.4g} mm" for d in sp
    )
    comps = [str(c) for c in example.ds["component"].values] if "component" in example.ds \
        else ["(one)"]
    lines = []
    read = by_step.get("read")
    if read:
        n = len(read.get("series", []))
        lines.append(f"imported {n} phase series ({read.get('format')}) from "
                     f"{len(read.get('paths', []))} path(s)")
    lines.append(f"  grid: {shape} voxels (x, y, z), spacing {spacing}")
    lines.append(f"  frequencies: {', '.join(f'{f:g}' for f in example.frequencies)} Hz; "
                 f"directions: {', '.join(comps)}")
    harm = by_step.get("first_harmonic", {})
    offs = harm.get("options", {}).get("offsets")
    order = ""
    if read and read.get("series"):
        order = f" (ordered by {read['series'][0].get('offsets_ordered_by')})"
    lines.append(f"  phase offsets: {', '.join(map(str, offs)) if offs else '?'}{order}; "
                 "first harmonic, u = Re{U exp(+iωt)}")
    radians = by_step.get("phase_to_radians", {}).get("options", {})
    if radians:
        lines.append(f"  phase to radians: {radians.get('phase_range')} → −π…π "
                     f"(BitsStored {radians.get('bits_stored')}, rescale "
                     f"{radians.get('rescale')})")
    un = by_step.get("unwrap")
    if un:
        found, left = un.get("wraps_found", 0), un.get("wraps_left", 0)
        lines.append(f"  unwrapping: {un['options']['method']}; wraps found {found}, removed "
                     f"{max(found - left, 0)}, left {left} (phase jumps > π between neighbours)")
    m = by_step.get("mask")
    if m:
        total = int(np.prod(example.spatial_shape))
        how = "given" if m["options"].get("given") else \
            f"magnitude > {m['options'].get('threshold')} × robust max"
        lines.append(f"  mask: {m.get('voxels')} of {total} voxels ({how})")
    for name in ("phase_to_displacement", "smooth", "bandpass", "remove_divergence"):
        if name in by_step:
            lines.append(f"  {name.replace('_', ' ')}: {by_step[name].get('options')}")
    if read:
        for s in read.get("series", []):
            lines.append(f"  {s.get('series')} ({s.get('path')}): {s.get('frequency'):g} Hz, "
                         f"direction {s.get('direction')}, {s.get('slices')} slices × "
                         f"{s.get('offsets')} offsets")
        for note in read.get("notes", []):
            lines.append(f"  note: {note}")
    return "\n".join(lines)
