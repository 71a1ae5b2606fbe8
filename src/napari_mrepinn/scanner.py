"""Readers of MRE scanner data: DICOM phase images and raw phase series in NIfTI.

Inputs
------
- **DICOM** (pydicom): classic MR images (one file per slice and phase offset) and enhanced
  multi-frame MR. Files are grouped by SeriesInstanceUID; slices are ordered along the slice
  normal (ImagePositionPatient · (row × column direction of ImageOrientationPatient)) and
  offsets by TemporalPositionIdentifier (enhanced: TemporalPositionIndex), else TriggerTime
  (enhanced: NominalCardiacTriggerDelayTime), else InstanceNumber (enhanced: frame order).
  Phase images are those whose ImageType (enhanced: FrameType / ComplexImageComponent) holds
  ``P``/``PHASE`` (or GE's private image-type tag (0043,102F) = 1); magnitude (``M``) images
  become the anatomy.
- **NIfTI** as dcm2niix writes raw phase series: ``(x, y, z, offset)`` or
  ``(x, y, z, offset, direction)`` stored integers with ``scl_slope``/``scl_inter``, and a
  JSON sidecar whose ``ImageType`` tells phase (``P``) from magnitude (``M``); files ending
  in ``_ph`` are phase without a sidecar.

Geometry: image columns run along ``x`` (spacing PixelSpacing[1]) and rows along ``y``
(PixelSpacing[0]), slices along ``z`` (the normal; spacing from the slice positions, not
SliceThickness); coordinates are in metres, ``x = IPP·row``, ``y = IPP·column``,
``z = IPP·normal``. Stored phase maps to −π…π over the full stored range (BitsStored),
through RescaleSlope/Intercept; ``phase_range`` overrides it.

What the files do not state is never guessed: the vibration frequency and the
motion-encoding direction of each series come from the options (``frequency=``,
``directions=``; CLI ``--frequency``, ``--directions``) or from a JSON sidecar next to the
files (``{"frequency": 60, "direction": "x"}`` per series folder, or ``{"frequency": [...],
"directions": [...]}`` for a folder of several series, or ``{"series": {"<SeriesNumber>":
{"frequency": ..., "direction": ...}}}``). Phase series are taken path by path in the order
given, and within one path by SeriesNumber; they are assigned frequency by frequency and,
within each frequency, direction by direction.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import MREExample, MREInputError, parse_frequencies
from .preprocess import DIRECTIONS, phase_to_radians, prepare, preprocessing_record

__all__ = [
    "import_exam",
    "is_dicom_folder",
    "is_phase_nifti",
    "load_dicom",
    "load_phase_nifti",
    "summary_text",
]

PathLike = str | os.PathLike
_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
_SKIP_SUFFIXES = (".json", ".txt", ".nii", ".nii.gz", ".nc", ".mat", ".png", ".jpg", ".csv",
                  ".md", ".py", ".xml", ".bval", ".bvec")
_FREQ_KEYS = ("frequency", "frequency_hz", "frequencies", "frequencies_hz", "mre_frequency",
              "vibration_frequency")
_DIR_KEYS = ("direction", "directions", "motion_encoding_direction",
             "motion_encoding_directions", "encoding_direction", "encoding_directions")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
# below this many files, starting worker processes costs more than it saves
_PARALLEL_MIN_FILES = 512


# ====================================================================== frames
@dataclass
class _Frame:
    """One 2-D image: where it is, when it is, what it is, and its stored pixels."""

    file: Path
    series_uid: str
    series_number: int | None
    description: str
    kind: str  # "P", "M", "R", "I" or ""
    position: np.ndarray  # mm, patient coordinates of the first pixel centre
    row: np.ndarray
    col: np.ndarray
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns), mm
    temporal: float | None
    trigger: float | None
    instance: float | None
    n_temporal: int | None
    slope: float
    intercept: float
    bits: int
    signed: bool
    pixels: np.ndarray  # (rows, cols) stored values
    radians: bool = False  # pixels already radians (phase from real/imaginary parts)


@dataclass
class _Series:
    """One phase series on the grid: radians ``(offset, x, y, z)`` and what it came from."""

    phase: np.ndarray
    label: str
    path: str
    meta: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    frequency: float | None = None
    direction: str | None = None
    folder: Path | None = None
    positions: np.ndarray | None = None
    number: str = ""
    uid: str = ""


@dataclass
class _Grid:
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # metres
    origin: tuple[float, float, float]  # metres
    key: tuple  # comparable geometry for consistency checks
    source: str


def _is_dicom_file(f: Path) -> bool:
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _candidate_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if n.startswith(".") or n.lower().endswith(_SKIP_SUFFIXES):
                continue
            files.append(Path(root) / n)
    return files


def is_dicom_folder(path: PathLike, *, max_files: int = 200) -> bool:
    """Whether ``path`` is a folder holding DICOM files (or is a DICOM file).

    Cheap: reads the 132-byte preamble of at most ``max_files`` files, recursing into
    sub-folders.
    """
    p = Path(path)
    if p.is_file():
        return _is_dicom_file(p)
    if not p.is_dir():
        return False
    checked = 0
    for root, dirs, names in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if n.startswith(".") or n.lower().endswith(_SKIP_SUFFIXES):
                continue
            if _is_dicom_file(Path(root) / n):
                return True
            checked += 1
            if checked >= max_files:
                return False
    return False


def _image_kind(image_type: Iterable[str] | None) -> str:
    """"P" phase, "M" magnitude, "R"/"I" real/imaginary part, or "" from ImageType values.

    Siemens writes ``P``/``M``/``R``/``I`` as the third value, Philips ``PHASE`` and
    ``P_FFE``-style tokens; the first match in the order phase, magnitude, real, imaginary
    wins.
    """
    tokens = [str(t).upper() for t in (image_type or [])]
    rules = (
        ("P", ("P", "PHASE", "PHASE MAP"), "P_"),
        ("M", ("M", "MAGNITUDE"), "M_"),
        ("R", ("R", "REAL"), "R_"),
        ("I", ("I", "IMAGINARY"), "I_"),
    )
    for kind, names, prefix in rules:
        if any(t in names or t.startswith(prefix) for t in tokens):
            return kind
    return ""


def _ge_kind(element: Any) -> str:
    """GE's private image type (0043,102F): 0 magnitude, 1 phase, 2 real, 3 imaginary."""
    if element is None:
        return ""
    value = element.value
    try:
        if isinstance(value, bytes):  # implicit VR or no private dictionary: raw SS
            value = int.from_bytes(value[:2], "little", signed=True)
        return {0: "M", 1: "P", 2: "R", 3: "I"}.get(int(value), "")
    except (TypeError, ValueError):
        return ""


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _seq_item(ds: Any, name: str) -> Any:
    seq = getattr(ds, name, None)
    return seq[0] if seq is not None and len(seq) else None


_PLAIN_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")  # implicit/explicit VR LE


def _pixels(ds: Any, f: Path, signed: bool) -> np.ndarray:
    """Stored pixel values, ``(rows, cols)`` or ``(frames, rows, cols)``.

    Uncompressed little-endian 16-bit data (what MR scanners write) is read straight from
    the buffer, several times faster than ``pixel_array``; anything else goes through
    pydicom's decoders.
    """
    try:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        rows, cols = int(ds.Rows), int(ds.Columns)
        n = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if (syntax in _PLAIN_SYNTAXES and int(ds.BitsAllocated) == 16
                and int(getattr(ds, "SamplesPerPixel", 1)) == 1):
            raw = ds.PixelData
            if len(raw) < rows * cols * n * 2:
                raise ValueError(f"{len(raw)} bytes of pixel data, {rows * cols * n * 2} expected")
            arr = np.frombuffer(raw, "<i2" if signed else "<u2", count=rows * cols * n)
            return arr.reshape((n, rows, cols) if n > 1 else (rows, cols))
        return np.asarray(ds.pixel_array)
    except Exception as exc:
        raise MREInputError(
            f"{f}: truncated or damaged pixel data ({exc}); copy the file again from the "
            "scanner or remove it."
        ) from None


def _read_frames(f: Path, spacing_given: bool) -> list[_Frame]:
    """Frames of one DICOM file (none when it holds no MR image)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(f)
    except InvalidDicomError:
        return []
    except Exception as exc:  # a DICM preamble but no readable data set
        raise MREInputError(
            f"{f}: truncated or damaged DICOM file ({type(exc).__name__}: {exc}); copy it "
            "again from the scanner or remove it."
        ) from None
    sop = str(getattr(ds, "SOPClassUID", ""))
    if sop not in (_MR_STORAGE, _ENHANCED_MR_STORAGE):
        return []  # other modalities, DICOMDIR, reports: not ours
    if "PixelData" not in ds:
        raise MREInputError(
            f"{f}: the MR image has no pixel data (the file is truncated); copy it again from "
            "the scanner or remove it."
        )
    bits = int(getattr(ds, "BitsStored", 16) or 16)
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    pixels = _pixels(ds, f, signed)
    series_uid = str(getattr(ds, "SeriesInstanceUID", "")) or str(f.parent)
    number = getattr(ds, "SeriesNumber", None)
    number = int(number) if number not in (None, "") else None
    desc = str(getattr(ds, "SeriesDescription", "") or "")

    def geometry(pos: Any, iop: Any, ps: Any, where: str) -> tuple:
        if pos is None or iop is None:
            raise MREInputError(
                f"{f}: no ImagePositionPatient/ImageOrientationPatient{where}; slices cannot "
                "be ordered. Export the images as MR images (not secondary captures)."
            )
        iop = np.asarray(iop, float)
        spacing = (float(ps[0]), float(ps[1])) if ps is not None else None
        if spacing is None and not spacing_given:
            raise MREInputError(
                f"{f}: no PixelSpacing{where}; pass the voxel size (spacing= or --spacing MM)."
            )
        return np.asarray(pos, float), iop[:3], iop[3:], spacing

    frames: list[_Frame] = []
    if sop == _MR_STORAGE:
        kind = _image_kind(getattr(ds, "ImageType", None)) or _ge_kind(ds.get((0x0043, 0x102F)))
        pos, row, col, ps = geometry(getattr(ds, "ImagePositionPatient", None),
                                     getattr(ds, "ImageOrientationPatient", None),
                                     getattr(ds, "PixelSpacing", None), "")
        frames.append(_Frame(
            file=f, series_uid=series_uid, series_number=number, description=desc,
            kind=kind, position=pos, row=row, col=col, pixel_spacing=ps,
            temporal=_float(getattr(ds, "TemporalPositionIdentifier", None)),
            trigger=_float(getattr(ds, "TriggerTime", None)),
            instance=_float(getattr(ds, "InstanceNumber", None)),
            n_temporal=int(ds.NumberOfTemporalPositions)
            if getattr(ds, "NumberOfTemporalPositions", None) not in (None, "") else None,
            slope=_float(getattr(ds, "RescaleSlope", 1.0)) or 1.0,
            intercept=_float(getattr(ds, "RescaleIntercept", 0.0)) or 0.0,
            bits=bits, signed=signed, pixels=np.asarray(pixels),
        ))
        return frames

    # ---- enhanced multi-frame MR
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None) or []
    stack = np.asarray(pixels)
    if stack.ndim == 2:
        stack = stack[None]
    if len(per_frame) != stack.shape[0]:
        raise MREInputError(
            f"{f}: {stack.shape[0]} frames but {len(per_frame)} per-frame descriptions; the "
            "enhanced MR file is damaged."
        )
    top_kind = _image_kind(getattr(ds, "ImageType", None))

    def item(fg: Any, seq: str) -> Any:
        it = _seq_item(fg, seq)
        return it if it is not None else (_seq_item(shared, seq) if shared is not None else None)

    for i, fg in enumerate(per_frame):
        ft = item(fg, "MRImageFrameTypeSequence")
        kind = ""
        if ft is not None:
            comp = str(getattr(ft, "ComplexImageComponent", "") or "").upper()
            kind = {"PHASE": "P", "MAGNITUDE": "M", "REAL": "R",
                    "IMAGINARY": "I"}.get(comp, "") or _image_kind(
                getattr(ft, "FrameType", None))
        kind = kind or top_kind
        pp, po, pm = (item(fg, s) for s in ("PlanePositionSequence",
                                             "PlaneOrientationSequence",
                                             "PixelMeasuresSequence"))
        pos, row, col, ps = geometry(
            getattr(pp, "ImagePositionPatient", None) if pp is not None else None,
            getattr(po, "ImageOrientationPatient", None) if po is not None else None,
            getattr(pm, "PixelSpacing", None) if pm is not None else None,
            f" for frame {i + 1}",
        )
        fc = item(fg, "FrameContentSequence")
        cs = item(fg, "CardiacSynchronizationSequence")
        pv = item(fg, "PixelValueTransformationSequence")
        frames.append(_Frame(
            file=f, series_uid=series_uid, series_number=number, description=desc,
            kind=kind, position=pos, row=row, col=col, pixel_spacing=ps,
            temporal=_float(getattr(fc, "TemporalPositionIndex", None)) if fc else None,
            trigger=_float(getattr(cs, "NominalCardiacTriggerDelayTime", None)) if cs else None,
            instance=float(i + 1),
            n_temporal=None,
            slope=(_float(getattr(pv, "RescaleSlope", 1.0)) or 1.0) if pv else 1.0,
            intercept=(_float(getattr(pv, "RescaleIntercept", 0.0)) or 0.0) if pv else 0.0,
            bits=bits, signed=signed, pixels=stack[i],
        ))
    return frames


def _read_chunk(files: Sequence[Path], spacing_given: bool) -> list[list[_Frame]]:
    return [_read_frames(f, spacing_given) for f in files]


def _read_all(
    files: list[Path],
    spacing_given: bool,
    workers: int,
    bar: Any,
    progress: Any,
) -> list[list[_Frame]]:
    """Frames of every file, in order; ``workers > 1`` reads in that many processes."""
    total = len(files)
    out: list[list[_Frame]] = []

    def advance(n: int) -> None:
        if bar is not None:
            bar.update(n)
        elif callable(progress):
            progress(len(out), total)

    try:
        if workers <= 1 or total < _PARALLEL_MIN_FILES:
            for f in files:
                out.append(_read_frames(f, spacing_given))
                advance(1)
            return out
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # "spawn": safe in threaded programs (napari, torch); the reading is pure Python,
        # so processes, not threads, use the cores
        n_chunks = min(total, workers * 8)
        bounds = np.linspace(0, total, n_chunks + 1).astype(int)
        chunks = [files[a:b] for a, b in itertools.pairwise(bounds)]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_read_chunk, c, spacing_given) for c in chunks]
            try:
                for c, fut in zip(chunks, futures, strict=True):
                    out.extend(fut.result())
                    advance(len(c))
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return out
    finally:
        if bar is not None:
            bar.close()


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


# ====================================================================== sidecars
def _read_json(f: Path) -> dict[str, Any]:
    try:
        content = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise MREInputError(f"{f}: not readable JSON ({exc}); fix or remove the sidecar.") from None
    return {str(k).lower(): v for k, v in content.items()} if isinstance(content, dict) else {}


def _folder_sidecar(folder: Path, cache: dict[Path, dict]) -> dict[str, Any]:
    """Merged MRE keys of the JSON files in ``folder`` (not recursing)."""
    if folder in cache:
        return cache[folder]
    meta: dict[str, Any] = {}
    if folder.is_dir():
        for f in sorted(folder.glob("*.json")):
            content = _read_json(f)
            for k, v in content.items():
                if k in _FREQ_KEYS or k in _DIR_KEYS or k in ("series", "encoding_sensitivity"):
                    meta.setdefault(k, v)
    cache[folder] = meta
    return meta


def _meta_value(meta: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if k in meta:
            return meta[k]
    return None


def _sidecar_metas(series: list[_Series], plist: list[Path],
                   cache: dict[Path, dict]) -> dict[str, Any]:
    """Fill every series' sidecar keys; return the keys describing the whole exam.

    A sidecar in a folder holding one phase series describes that series; in a folder of
    several it describes them together (lists in series order), unless its ``"series"``
    mapping names them by SeriesNumber or SeriesInstanceUID.
    """
    per_folder: dict[Path, int] = {}
    for s in series:
        per_folder[s.folder] = per_folder.get(s.folder, 0) + 1
    for s in series:
        meta = _folder_sidecar(s.folder, cache)
        mapping = meta.get("series")
        if isinstance(mapping, Mapping):
            for k in (s.number, s.uid):
                if k in mapping and isinstance(mapping[k], Mapping):
                    s.meta = {str(a).lower(): b for a, b in mapping[k].items()}
        elif per_folder[s.folder] == 1:
            s.meta = {k: v for k, v in meta.items() if k != "series"}
    top: dict[str, Any] = {}
    if len(plist) == 1 and plist[0].is_dir():
        meta = _folder_sidecar(plist[0], cache)
        top = {k: v for k, v in meta.items() if k != "series"}
        if isinstance(meta.get("series"), Mapping):
            # the mapping describes the series one by one
            top = {k: v for k, v in top.items() if k == "encoding_sensitivity"}
    return top


# ====================================================================== assignment
def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace(",", " ").split()
    return list(np.atleast_1d(value).tolist()) if not isinstance(value, list | tuple) \
        else list(value)


def _series_table(series: Sequence[_Series]) -> str:
    rows = []
    for s in series:
        i = s.info
        extra = []
        if s.frequency is not None:
            extra.append(f"{s.frequency:g} Hz")
        if s.direction is not None:
            extra.append(s.direction)
        rows.append(f"{s.label} in {s.folder or s.path} ({i.get('slices', '?')} slices × "
                    f"{i.get('offsets', '?')} offsets{'; ' + ', '.join(extra) if extra else ''})")
    return "; ".join(rows)


def _assign(
    series: list[_Series],
    frequency: Any,
    directions: Any,
    top_meta: Mapping[str, Any],
    fmt: str,
) -> tuple[list[float], list[str], list[_Series]]:
    """Frequency and direction of every phase series; the series in (f, d) order."""
    n = len(series)
    freqs = _as_list(frequency)
    if freqs is None:
        freqs = _as_list(_meta_value(top_meta, _FREQ_KEYS))
    dirs = _as_list(directions)
    if dirs is None:
        dirs = _as_list(_meta_value(top_meta, _DIR_KEYS))
    if freqs is not None:
        try:
            f_arr, _ = parse_frequencies(freqs if len(freqs) > 1 else freqs[0])
        except MREInputError as exc:
            raise MREInputError(f"--frequency: {exc}") from None
        freqs = [float(v) for v in f_arr]
    if dirs is not None:
        dirs = [str(d).lower() for d in dirs]
        bad = [d for d in dirs if d not in DIRECTIONS]
        if bad or len(set(dirs)) != len(dirs):
            raise MREInputError(
                f"--directions {' '.join(map(str, dirs))}: give distinct labels among x, y, z "
                "(x along the image columns, y along the rows, z along the slice normal), one "
                "per series of a frequency."
            )
    flag = "--frequency HZ (frequency=)"
    dflag = "--directions (directions=)"
    how = (
        f"pass {flag} and {dflag} in series order (frequency by frequency, direction by "
        "direction), give one path per series, or describe each series in a mre.json sidecar"
    )

    if freqs is not None and dirs is not None and len(freqs) * len(dirs) == n:
        for i, s in enumerate(series):
            s.frequency, s.direction = freqs[i // len(dirs)], dirs[i % len(dirs)]
    else:
        if freqs is not None and dirs is not None:
            raise MREInputError(
                f"{n} phase series found but {len(freqs)} frequency(ies) × {len(dirs)} "
                f"direction(s) were given: {_series_table(series)}. {how[0].upper() + how[1:]}."
            )
        # what options do not say, each series' own sidecar may
        for i, s in enumerate(series):
            sf = _as_list(_meta_value(s.meta, _FREQ_KEYS))
            sd = _as_list(_meta_value(s.meta, _DIR_KEYS))
            if freqs is not None:
                if len(freqs) == 1:
                    s.frequency = freqs[0]
                elif len(freqs) == n:
                    s.frequency = freqs[i]
                else:
                    raise MREInputError(
                        f"{n} phase series found but {len(freqs)} frequencies were given and no "
                        f"directions: {_series_table(series)}. Pass {dflag} as well."
                    )
            elif sf is not None and len(sf) == 1:
                s.frequency = float(sf[0])
            if dirs is not None:
                if len(dirs) == n:
                    s.direction = dirs[i]
                elif n % len(dirs) == 0:
                    s.direction = dirs[i % len(dirs)]
                else:
                    raise MREInputError(
                        f"{n} phase series found but {len(dirs)} direction(s) were given: "
                        f"{_series_table(series)}. {how[0].upper() + how[1:]}."
                    )
            elif sd is not None and len(sd) == 1:
                s.direction = str(sd[0]).lower()
        missing_f = [s for s in series if s.frequency is None]
        missing_d = [s for s in series if s.direction is None]
        if missing_f and missing_d and n > 1:
            raise MREInputError(
                f"{n} phase series found and nothing tells them apart: "
                f"{_series_table(series)}. The {fmt} files do not state the vibration "
                f"frequency or the motion-encoding direction; {how}."
            )
        if missing_f:
            raise MREInputError(
                f"the vibration frequency is missing for {_series_table(missing_f)}: the {fmt} "
                f"files do not state it. Pass {flag} or put {{\"frequency\": HZ}} in a "
                "mre.json next to the files."
            )
        if missing_d:
            raise MREInputError(
                f"the motion-encoding direction is missing for {_series_table(missing_d)}: the "
                f"{fmt} files do not state it. Pass {dflag} (x, y or z per series) or put "
                "{\"direction\": \"x\"} in a mre.json next to the files."
            )
        for s in series:
            if s.direction not in DIRECTIONS:
                raise MREInputError(
                    f"{s.label}: direction {s.direction!r} must be x, y or z (sidecar)."
                )
    # rectangular (frequency × direction) table, frequencies in order of appearance
    f_order = list(dict.fromkeys(s.frequency for s in series))
    d_order = list(dict.fromkeys(s.direction for s in series if s.frequency == f_order[0]))
    table = {(s.frequency, s.direction): s for s in series}
    if len(table) != n:
        dup = [s for s in series if sum(t.frequency == s.frequency and t.direction == s.direction
                                        for t in series) > 1]
        raise MREInputError(
            f"several series have the same frequency and direction: {_series_table(dup)}; "
            f"{how}."
        )
    if len(f_order) * len(d_order) != n or any(
        (f, d) not in table for f in f_order for d in d_order
    ):
        raise MREInputError(
            f"every frequency needs the same motion-encoding directions: {_series_table(series)}."
        )
    ordered = [table[(f, d)] for f in f_order for d in d_order]
    return [float(f) for f in f_order], [str(d) for d in d_order], ordered


# ====================================================================== shared assembly
def _progress_bar(progress: Any, total: int, desc: str):
    if progress is True and total >= 50:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="file", leave=False)
    return None


def _finish(
    series: list[_Series],
    grids: list[_Grid],
    magnitudes: list[np.ndarray],
    *,
    frequency: Any,
    directions: Any,
    top_meta: Mapping[str, Any],
    fmt: str,
    source: str,
    unwrap: str,
    progress: Any,
    prepare_options: Mapping[str, Any],
    notes: list[str],
) -> MREExample:
    g0 = grids[0]
    for g, s in zip(grids[1:], series[1:], strict=True):
        if g.key != g0.key:
            raise MREInputError(
                f"{s.label} in {s.path} is on another grid than {series[0].label} "
                f"({g.shape} vs {g0.shape} voxels, or other slice positions/orientation); all "
                "series of one exam must share slices and matrix size."
            )
    freqs, dirs, ordered = _assign(series, frequency, directions, top_meta, fmt)
    magnitude = np.stack(magnitudes) if magnitudes else None
    options = dict(prepare_options)
    if "encoding_sensitivity" not in options and "encoding_sensitivity" in top_meta:
        options["encoding_sensitivity"] = float(top_meta["encoding_sensitivity"])
    history = [{
        "step": "read",
        "format": fmt,
        "paths": sorted({s.path for s in ordered}),
        "series": [dict(s.info, path=s.path, frequency=s.frequency, direction=s.direction)
                   for s in ordered],
        "notes": notes,
    }, {
        "step": "phase_to_radians",
        "options": {"phase_range": ordered[0].info.get("phase_range"),
                    "bits_stored": ordered[0].info.get("bits_stored"),
                    "rescale": ordered[0].info.get("rescale")},
    }]
    example = prepare(
        [s.phase for s in ordered],
        frequency=freqs if len(freqs) > 1 else freqs[0],
        directions=dirs,
        spacing=g0.spacing,
        origin=g0.origin,
        magnitude=magnitude,
        unwrap_method=unwrap,
        history=history,
        source=source,
        progress=progress,
        **options,
    )
    return example


def _phase_span_note(phase: np.ndarray, label: str) -> str | None:
    span = float(np.ptp(phase)) if phase.size else 0.0
    if span < 0.25 * 2 * np.pi:
        return (f"{label}: the phase spans only {span:.2f} rad of the −π…π assumed for the "
                "stored range; if the scanner stores another range pass --phase-range LOW HIGH.")
    return None


# ====================================================================== DICOM
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
    plist = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not plist:
        raise MREInputError("no path given; pass the exam's DICOM folder(s).")
    for p in plist:
        if not p.exists():
            raise MREInputError(f"{p}: no such file or folder.")
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
    source = str(plist[0]) if len(plist) == 1 else f"{plist[0]} (+{len(plist) - 1} more)"
    return _finish(series, grids, magnitudes, frequency=frequency, directions=directions,
                   top_meta=top_meta, fmt="DICOM", source=source, unwrap=unwrap,
                   progress=progress, prepare_options=prepare_options, notes=notes)


# ====================================================================== NIfTI
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

    plist = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not plist:
        raise MREInputError("no path given; pass the phase NIfTI file(s).")
    files: list[tuple[Path, Path]] = []
    for p in plist:
        if not p.exists():
            raise MREInputError(f"{p}: no such file or folder.")
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
            smeta = {k: v for k, v in meta.items() if k in _FREQ_KEYS}
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
    source = str(plist[0]) if len(plist) == 1 else f"{plist[0]} (+{len(plist) - 1} more)"
    return _finish(series, grids, magnitudes, frequency=frequency, directions=directions,
                   top_meta=top_meta, fmt="NIfTI", source=source, unwrap=unwrap,
                   progress=progress, prepare_options=prepare_options, notes=notes)


# ====================================================================== dispatch
def import_exam(paths: PathLike | Sequence[PathLike], **options: Any) -> MREExample:
    """Import an MRE exam from DICOM folders/files or raw phase NIfTI files.

    Dispatches on what the paths hold: all NIfTI (``.nii``/``.nii.gz`` files, or folders
    of them without DICOM) → :func:`load_phase_nifti`; otherwise → :func:`load_dicom`.
    ``options`` are those of the two loaders.
    """
    plist = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not plist:
        raise MREInputError("no path given; pass the exam's DICOM folder(s) or NIfTI file(s).")
    for p in plist:
        if not p.exists():
            raise MREInputError(f"{p}: no such file or folder.")

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
