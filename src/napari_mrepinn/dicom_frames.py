"""DICOM files read into frames: one 2-D MR image each, with its geometry, timing and kind.

:func:`_read_frames` reads one file with pydicom: a classic MR image (SOP class
``1.2.840.10008.5.1.4.1.1.4``) gives one :class:`_Frame`, an enhanced multi-frame MR image
(``…4.1``) one per frame, with the per-frame functional groups falling back to the shared
ones; other modalities and DICOMDIRs give none. :func:`_read_all` reads many files, in
worker processes when there are enough of them (``_PARALLEL_MIN_FILES``).

What a frame records, and from where:

- **kind**: ImageType (enhanced: ComplexImageComponent, else FrameType) ``P``/``PHASE``,
  ``M``, ``R``, ``I`` (:func:`napari_mrepinn.phase_series._image_kind`), else GE's private
  image-type tag (0043,102F) (:func:`_ge_kind`);
- **geometry**: ImagePositionPatient, ImageOrientationPatient, PixelSpacing (mm, patient
  coordinates), required unless the caller gives the spacing;
- **timing**: TemporalPositionIdentifier (enhanced: TemporalPositionIndex), TriggerTime
  (enhanced: NominalCardiacTriggerDelayTime), InstanceNumber (enhanced: frame order);
- **stored values**: the pixels as stored, RescaleSlope/Intercept, BitsStored and
  PixelRepresentation (read straight from the buffer for uncompressed 16-bit data).

How frames become phase series is in :mod:`napari_mrepinn.dicom`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import MREInputError
from .phase_series import PathLike, _image_kind

__all__ = ["is_dicom_folder"]

_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
_SKIP_SUFFIXES = (".json", ".txt", ".nii", ".nii.gz", ".nc", ".mat", ".png", ".jpg", ".csv",
                  ".md", ".py", ".xml", ".bval", ".bvec")
# below this many files, starting worker processes costs more than it saves
_PARALLEL_MIN_FILES = 512


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


def _is_dicom_file(f: Path) -> bool:
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _walk_files(folder: Path) -> Iterator[Path]:
    """Files below ``folder`` that may be DICOM, in sorted order (hidden and known
    non-DICOM suffixes skipped)."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if n.startswith(".") or n.lower().endswith(_SKIP_SUFFIXES):
                continue
            yield Path(root) / n


def _candidate_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else list(_walk_files(path))


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
    for checked, f in enumerate(_walk_files(p), start=1):
        if _is_dicom_file(f):
            return True
        if checked >= max_files:
            return False
    return False


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
