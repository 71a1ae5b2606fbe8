"""MRE exams from DICOM: frames grouped into phase series, slices ordered and checked.

:func:`load_dicom` reads classic MR images (one file per slice and phase offset) and
enhanced multi-frame MR (files to frames: :mod:`napari_mrepinn.dicom_frames`). Here the
frames become phase series:

- Files are grouped by SeriesInstanceUID; series within one path are taken by SeriesNumber.
- Slices are ordered along the slice normal (ImagePositionPatient · (row × column direction
  of ImageOrientationPatient)); a missing slice or an uneven spacing is refused unless the
  spacing is given (:func:`_check_slices`).
- Offsets are ordered by TemporalPositionIdentifier (enhanced: TemporalPositionIndex), else
  TriggerTime (enhanced: NominalCardiacTriggerDelayTime), else InstanceNumber (enhanced:
  frame order), whichever is present on every frame and distinct within a slice; a missing
  offset is refused (:func:`_stack_phase`).
- Phase images are those whose ImageType (enhanced: FrameType / ComplexImageComponent) holds
  ``P``/``PHASE`` (or GE's private image-type tag (0043,102F) = 1); without them, matching
  real and imaginary images give the phase (:func:`_from_real_imag`); magnitude (``M``)
  images become the anatomy (:func:`_stack_magnitude`).

Geometry: image columns run along ``x`` (spacing PixelSpacing[1]) and rows along ``y``
(PixelSpacing[0]), slices along ``z`` (the normal; spacing from the slice positions, not
SliceThickness); coordinates are in metres, ``x = IPP·row``, ``y = IPP·column``,
``z = IPP·normal``. Stored phase maps to −π…π over the full stored range (BitsStored),
through RescaleSlope/Intercept; ``phase_range`` overrides it.

Frequencies, directions and sidecars: :mod:`napari_mrepinn.phase_series`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import MREExample, MREInputError
from .dicom_frames import _candidate_files, _Frame, _is_dicom_file, _read_all, is_dicom_folder
from .phase_series import (
    PathLike,
    _finish,
    _Grid,
    _path_list,
    _phase_span_note,
    _progress_bar,
    _Series,
    _sidecar_metas,
)
from .preprocess import phase_to_radians

__all__ = ["is_dicom_folder", "load_dicom"]


# ====================================================================== one series
def _series_label(frames: Sequence[_Frame]) -> str:
    f0 = frames[0]
    num = f"#{f0.series_number}" if f0.series_number is not None else "(no number)"
    desc = f" '{f0.description}'" if f0.description else ""
    return f"series {num}{desc}"


def _temporal_order(frames: Sequence[_Frame], slices: Sequence[Sequence[_Frame]]) -> str:
    """Which tag orders the offsets: present on every frame and distinct within a slice."""
    for name in ("temporal", "trigger"):
        if all(getattr(fr, name) is not None for fr in frames) and all(
            len({getattr(fr, name) for fr in s}) == len(s) for s in slices
        ):
            return name
    return "instance"


_ORDER_NAMES = {
    "temporal": "TemporalPositionIdentifier",
    "trigger": "TriggerTime",
    "instance": "InstanceNumber",
}


def _group_slices(frames: Sequence[_Frame], label: str) -> tuple[np.ndarray, list[list[_Frame]]]:
    """Frames grouped by position along the slice normal, sorted; and the positions (mm)."""
    row, col = frames[0].row, frames[0].col
    for fr in frames:
        if not (np.allclose(fr.row, row, atol=1e-4) and np.allclose(fr.col, col, atol=1e-4)):
            raise MREInputError(
                f"{label} ({fr.file}): mixes image orientations; one series must keep one "
                "ImageOrientationPatient. Export each orientation as its own series."
            )
    normal = np.cross(row, col)
    s = np.array([fr.position @ normal for fr in frames])
    order = np.argsort(s, kind="stable")
    groups: list[list[_Frame]] = []
    pos: list[float] = []
    for i in order:
        if pos and abs(s[i] - pos[-1]) < 1e-3:
            groups[-1].append(frames[i])
        else:
            pos.append(float(s[i]))
            groups.append([frames[i]])
    return np.asarray(pos), groups


def _check_slices(pos: np.ndarray, label: str, spacing_given: bool) -> float | None:
    """The even slice spacing in mm (None for one slice); refuses gaps and uneven steps."""
    if len(pos) < 2:
        return None
    d = np.diff(pos)
    med = float(np.median(d))
    if spacing_given:
        return med
    base = float(d.min())
    ratio = d / base
    whole = np.abs(ratio - np.round(ratio)) < 0.05
    gaps = np.flatnonzero(whole & (np.round(ratio) >= 2))
    if len(gaps) and np.all(whole):
        i = gaps[0]
        n_missing = round(float(ratio[i])) - 1
        raise MREInputError(
            f"{label}: {n_missing} slice(s) missing between positions {pos[i]:.4g} and "
            f"{pos[i + 1]:.4g} mm along the slice normal (spacing {base:.4g} mm elsewhere); "
            "export the complete series, or pass --spacing MM (spacing=) to accept the "
            "uneven grid."
        )
    if np.ptp(d) > max(0.01 * base, 1e-3):
        steps = ", ".join(f"{v:.4g}" for v in d[:8])
        raise MREInputError(
            f"{label}: unequal slice spacing ({steps} mm); the inversions need evenly spaced "
            "slices. Export the series again, or pass --spacing MM (spacing=) to impose an "
            "even spacing."
        )
    return med


def _stack_phase(
    frames: Sequence[_Frame],
    label: str,
    spacing: Sequence[float] | None,
    phase_range: Any,
) -> tuple[np.ndarray, _Grid, dict[str, Any], np.ndarray]:
    """Radians ``(offset, x, y, z)``, the grid, a description and the slice positions."""
    pos, slices = _group_slices(frames, label)
    order = _temporal_order(frames, slices)
    counts = [len(s) for s in slices]
    n_off = max(counts)
    keyname = _ORDER_NAMES[order]

    def key(fr: _Frame) -> float:
        return float(getattr(fr, order))

    all_keys = sorted({key(fr) for fr in frames})
    for z, s in enumerate(slices):
        keys = sorted(key(fr) for fr in s)
        if len(set(keys)) != len(keys):
            raise MREInputError(
                f"{label}: the slice at {pos[z]:.4g} mm holds {len(keys)} phase images but only "
                f"{len(set(keys))} distinct {keyname} values: the series mixes several "
                "acquisitions (directions or frequencies). Export them as separate series."
            )
        if len(s) != n_off or (order != "instance" and keys != all_keys[: len(keys)]
                               and len(all_keys) == n_off):
            missing = sorted(set(all_keys) - set(keys)) if order != "instance" else []
            what = f" (missing {keyname} {', '.join(f'{m:g}' for m in missing)})" if missing else ""
            raise MREInputError(
                f"{label}: the slice at {pos[z]:.4g} mm has {len(s)} phase offset(s), other "
                f"slices {n_off}{what}; a phase image is missing. Export the complete series."
            )
    if order != "instance" and len(all_keys) != n_off:
        raise MREInputError(
            f"{label}: the slices disagree on the phase offsets ({keyname} values "
            f"{', '.join(f'{k:g}' for k in all_keys)}); a phase image is missing or misfiled."
        )
    if order == "temporal" and np.any(np.diff(all_keys) != 1):
        missing = sorted(set(range(int(all_keys[0]), int(all_keys[-1]) + 1)) - set(all_keys))
        raise MREInputError(
            f"{label}: phase offset(s) {', '.join(str(m) for m in missing)} missing "
            f"(TemporalPositionIdentifier {', '.join(f'{k:g}' for k in all_keys)}); the "
            "temporal Fourier transform needs all N offsets of the period."
        )
    stated = {fr.n_temporal for fr in frames if fr.n_temporal}
    if len(stated) == 1 and (n := stated.pop()) != n_off:
        raise MREInputError(
            f"{label}: NumberOfTemporalPositions says {n} offsets but {n_off} were found; "
            f"{abs(n - n_off)} phase offset(s) missing. Export the complete series."
        )
    if order == "trigger" and n_off >= 3:
        d = np.diff(all_keys)
        if np.ptp(d) > 0.02 * np.mean(d):
            raise MREInputError(
                f"{label}: the phase offsets are not evenly spaced in TriggerTime "
                f"({', '.join(f'{k:g}' for k in all_keys)} ms); a phase offset is missing or "
                "the series mixes acquisitions."
            )

    f0 = frames[0]
    rows, cols = f0.pixels.shape
    for fr in frames:
        if fr.pixels.shape != (rows, cols):
            raise MREInputError(
                f"{label} ({fr.file}): image size {fr.pixels.shape} differs from {(rows, cols)}."
            )
        if fr.pixel_spacing is not None and f0.pixel_spacing is not None and not np.allclose(
            fr.pixel_spacing, f0.pixel_spacing, rtol=1e-4
        ):
            raise MREInputError(f"{label} ({fr.file}): PixelSpacing differs between images.")
    dz = _check_slices(pos, label, spacing is not None)
    if spacing is not None:
        sp = np.broadcast_to(np.asarray(spacing, float), (3,))
        sx, sy, sz = (float(v) for v in sp)
    else:
        ps = f0.pixel_spacing
        sx, sy = ps[1] * 1e-3, ps[0] * 1e-3
        sz = dz * 1e-3 if dz is not None else sx
    origin = (float(f0.position @ f0.row) * 1e-3, float(f0.position @ f0.col) * 1e-3,
              float(pos[0]) * 1e-3)
    stored = np.empty((n_off, cols, rows, len(slices)), np.float32)  # 16-bit values exact
    slope = np.empty((n_off, 1, 1, len(slices)))
    inter = np.empty_like(slope)
    for z, s in enumerate(slices):
        for t, fr in enumerate(sorted(s, key=key)):
            stored[t, :, :, z] = fr.pixels.T  # rows run along y, columns along x
            slope[t, 0, 0, z] = fr.slope
            inter[t, 0, 0, z] = fr.intercept
    bits = {fr.bits for fr in frames}
    signed = {fr.signed for fr in frames}
    if len(bits) > 1 or len(signed) > 1:
        raise MREInputError(f"{label}: BitsStored/PixelRepresentation differ between images.")
    bits_v, signed_v = bits.pop(), signed.pop()
    uniform = np.ptp(slope) == 0 and np.ptp(inter) == 0
    n_radians = sum(fr.radians for fr in frames)
    if n_radians == len(frames):
        phase = stored.astype(np.float32)
        phase_range = "radians (angle of the real and imaginary images)"
    elif n_radians:
        raise MREInputError(f"{label}: mixes phase images with real/imaginary pairs.")
    elif uniform:
        phase = phase_to_radians(stored, slope=float(slope.flat[0]),
                                 intercept=float(inter.flat[0]), bits_stored=bits_v,
                                 signed=signed_v, value_range=phase_range, source=label)
    elif phase_range is None:
        # the default mapping depends on the stored value only (Philips varies the rescale)
        phase = phase_to_radians(stored, bits_stored=bits_v, signed=signed_v, source=label)
    else:
        phase = phase_to_radians(stored * slope + inter, value_range=phase_range, source=label)
    info = {
        "series": _series_label(frames),
        "files": len({fr.file for fr in frames}),
        "slices": len(slices),
        "offsets": n_off,
        "offsets_ordered_by": keyname,
        "rescale": {"slope": float(slope.flat[0]), "intercept": float(inter.flat[0])}
        if uniform else "per image",
        "bits_stored": bits_v,
        "phase_range": list(phase_range) if isinstance(phase_range, tuple | list)
        else (phase_range or "full stored range"),
    }
    grid = _Grid(
        shape=(cols, rows, len(slices)),
        spacing=(sx, sy, sz),
        origin=origin,
        key=(cols, rows, len(slices), tuple(np.round(f0.row, 4)), tuple(np.round(f0.col, 4)),
             tuple(np.round(pos, 2))),
        source=label,
    )
    return phase, grid, info, pos


def _from_real_imag(
    re: Sequence[_Frame], im: Sequence[_Frame], label: str
) -> tuple[list[_Frame], list[_Frame]]:
    """Phase (radians) and magnitude frames from matching real and imaginary images.

    Images are matched by slice position, then in offset order within the slice.
    """
    from dataclasses import replace

    pos_r, slices_r = _group_slices(re, label)
    pos_i, slices_i = _group_slices(im, label)
    if len(pos_r) != len(pos_i) or not np.allclose(pos_r, pos_i, atol=1e-2) or any(
        len(a) != len(b) for a, b in zip(slices_r, slices_i, strict=True)
    ):
        raise MREInputError(
            f"{label}: the real and imaginary images do not pair up (different slices or "
            "counts); export both parts completely, or the phase images."
        )
    order_r = _temporal_order(re, slices_r)
    order_i = _temporal_order(im, slices_i)
    phase, mag = [], []
    for sr, si in zip(slices_r, slices_i, strict=True):
        sr = sorted(sr, key=lambda fr: float(getattr(fr, order_r)))
        si = sorted(si, key=lambda fr: float(getattr(fr, order_i)))
        for a, b in zip(sr, si, strict=True):
            z = (a.pixels * a.slope + a.intercept) + 1j * (b.pixels * b.slope + b.intercept)
            phase.append(replace(a, kind="P", pixels=np.angle(z).astype(np.float32),
                                 radians=True, slope=1.0, intercept=0.0))
            mag.append(replace(a, kind="M", pixels=np.abs(z), slope=1.0, intercept=0.0))
    return phase, mag


def _stack_magnitude(frames: Sequence[_Frame], label: str, pos: np.ndarray,
                     shape: tuple[int, int, int]) -> np.ndarray | None:
    """Mean magnitude ``(x, y, z)`` on the phase grid, or None if it does not fit."""
    mpos, slices = _group_slices(frames, label)
    if len(mpos) != len(pos) or not np.allclose(mpos, pos, atol=1e-2):
        return None
    out = np.zeros(shape, np.float64)
    for z, s in enumerate(slices):
        acc = np.zeros(shape[:2])
        for fr in s:
            if fr.pixels.T.shape != shape[:2]:
                return None
            acc += fr.pixels.T * fr.slope + fr.intercept
        out[..., z] = acc / len(s)
    return out



# ====================================================================== exam
def load_dicom(
    paths: PathLike | Sequence[PathLike],
    *,
    frequency: float | Sequence[float] | None = None,
    directions: str | Sequence[str] | None = None,
    unwrap: str = "laplacian",
    spacing: float | Sequence[float] | None = None,
    phase_range: tuple[float, float] | str | None = None,
    progress: bool | Callable[[int, int], None] = False,
    workers: int = 1,
    **prepare_options: Any,
) -> MREExample:
    """Read MRE DICOM phase images and prepare the complex wave field.

    Parameters
    ----------
    paths : path or sequence of paths
        Folders (searched recursively) or files; each path normally holds one series, taken
        in the order given. One folder may hold several series when the options or
        sidecars tell them apart (series within a path are ordered by SeriesNumber).
    frequency : float or sequence of float, optional
        Vibration frequency(ies) in Hz (required unless a sidecar states it).
    directions : sequence of {"x", "y", "z"}, optional
        Motion-encoding direction of each series within a frequency (required unless a
        sidecar states it).
    unwrap : {"laplacian", "skimage", "none"}
        Spatial unwrapping (see :func:`napari_mrepinn.preprocess.unwrap`).
    spacing : float or (float, float, float), optional
        Voxel size in metres; overrides PixelSpacing and the slice positions (and accepts
        an uneven slice stack).
    phase_range : (low, high) or "radians", optional
        Rescaled values that map to −π and +π (default: the full stored range).
    progress : bool or callable
        A tqdm bar over the files (and series) for big exams, or ``callback(done, total)``.
    workers : int
        Processes that read the files (pydicom is pure Python, so processes use the cores).
        More than 1 starts fresh interpreters ("spawn"): a script calling this must guard
        its top level with ``if __name__ == "__main__":``.
    **prepare_options
        Passed to :func:`napari_mrepinn.preprocess.prepare` (``mask``, ``mask_threshold``,
        ``smoothing``, ``band``, ``divergence_removal``, ``reverse_offsets``,
        ``encoding_sensitivity``; ``return_steps=True`` returns ``(example, steps)`` with the
        wrapped and unwrapped phase for display).

    Returns
    -------
    MREExample
        ``wave`` ``([frequency,] x, y, z, component)``, ``anat`` (mean magnitude) and
        ``mre_mask``; ``attrs["preprocessing_json"]`` records the reading and every step.

    Raises
    ------
    MREInputError
        For every problem with the files or the options, with what to pass.
    """
    plist = _path_list(paths, "the exam's DICOM folder(s)")
    files_per_path = [[f for f in _candidate_files(p) if _is_dicom_file(f)] for p in plist]
    for p, files in zip(plist, files_per_path, strict=True):
        if not files:
            n = len(_candidate_files(p))
            raise MREInputError(
                f"{p}: no DICOM files (looked at {n} file(s); none starts with the DICOM "
                "preamble 'DICM'). Give the folder holding the exam's DICOM images, or the "
                "NIfTI files dcm2niix wrote (*.nii.gz)."
            )
    total = sum(len(f) for f in files_per_path)
    bar = _progress_bar(progress, total, "reading DICOM")
    spacing_given = spacing is not None
    cache: dict[Path, dict] = {}
    series: list[_Series] = []
    grids: list[_Grid] = []
    magnitudes: list[np.ndarray] = []
    mag_only: list[tuple[list[_Frame], str]] = []
    notes: list[str] = []
    frames_per_file = _read_all([f for files in files_per_path for f in files],
                                spacing_given, workers, bar, progress)
    read = []
    i = 0
    for files in files_per_path:
        by_uid: dict[str, list[_Frame]] = {}
        for frames in frames_per_file[i:i + len(files)]:
            for fr in frames:
                by_uid.setdefault(fr.series_uid, []).append(fr)
        i += len(files)
        read.append(by_uid)
    for p, by_uid in zip(plist, read, strict=True):
        if not by_uid:
            raise MREInputError(
                f"{p}: the DICOM files hold no MR images (other modalities or a DICOMDIR only); "
                "give the folder of the MRE series."
            )
        groups = sorted(by_uid.values(), key=lambda fr: (
            fr[0].series_number if fr[0].series_number is not None else 1 << 30,
            min((f.instance or 0) for f in fr), fr[0].series_uid))
        for frames in groups:
            label = _series_label(frames)
            ph = [fr for fr in frames if fr.kind == "P"]
            mg = [fr for fr in frames if fr.kind == "M"]
            re = [fr for fr in frames if fr.kind == "R"]
            im = [fr for fr in frames if fr.kind == "I"]
            if not ph and re and im:
                ph, from_parts = _from_real_imag(re, im, label)
                mg = mg or from_parts
            if not ph:
                if mg:
                    mag_only.append((mg, label))
                else:
                    notes.append(f"{label}: ImageType holds neither P nor M; skipped.")
                continue
            phase, grid, info, pos = _stack_phase(ph, label, spacing, phase_range)
            note = _phase_span_note(phase, label)
            if note:
                notes.append(note)
            series.append(_Series(
                phase=phase, label=label, path=str(p), info=info, folder=ph[0].file.parent,
                positions=pos, number=str(ph[0].series_number), uid=ph[0].series_uid,
            ))
            grids.append(grid)
            if mg:
                m = _stack_magnitude(mg, label, pos, grid.shape)
                if m is not None:
                    magnitudes.append(m)
    if not series:
        if mag_only:
            labels = ", ".join(lbl for _, lbl in mag_only)
            raise MREInputError(
                f"{', '.join(map(str, plist))}: only magnitude images ({labels}); MRE needs the "
                "phase images (ImageType P/PHASE). Export the phase series from the scanner "
                "too (on some scanners a separate 'phase' reconstruction)."
            )
        raise MREInputError(
            f"{', '.join(map(str, plist))}: no phase images (ImageType P or PHASE) found; "
            "export the MRE phase series."
        )
    # magnitude-only series on the same slices become anatomy too
    for frames, label in mag_only:
        m = _stack_magnitude(frames, label, series[0].positions, grids[0].shape)
        if m is not None:
            magnitudes.append(m)
        else:
            notes.append(f"{label}: magnitude images on other slices; not used.")
    top_meta = _sidecar_metas(series, plist, cache)
    return _finish(series, grids, magnitudes, frequency=frequency, directions=directions,
                   top_meta=top_meta, fmt="DICOM", paths=plist, unwrap=unwrap,
                   progress=progress, prepare_options=prepare_options, notes=notes)
