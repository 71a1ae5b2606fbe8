"""A simulated MRE acquisition as scanner files: :func:`write_dicom` and :func:`write_nifti`.

They store the phase and magnitude images of an
:class:`~napari_mrepinn.acquisition.Acquisition` (made by
:func:`~napari_mrepinn.acquisition.acquire`, which re-exports both) as a scanner or a
converter would: classic MR DICOM (one file per slice and offset, 12-bit stored values,
proper file meta: ``pydicom.dcmread`` reads them without ``force=True``) or enhanced
multi-frame MR, and dcm2niix-style NIfTI with JSON sidecars. The files deliberately do not
state the vibration frequency or the encoding direction (no standard tag does), as with real
exams.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import MREInputError

if TYPE_CHECKING:
    from .acquisition import Acquisition

__all__ = ["write_dicom", "write_nifti"]

_TWO_PI = 2.0 * np.pi
_AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_MANUFACTURER = "napari-mrepinn simulator"


# ====================================================================== stored values
def _stored_phase(phase: np.ndarray, bits: int) -> np.ndarray:
    """Radians to stored values: −π…π over the full range ``0 … 2^bits − 1``."""
    levels = 2**bits
    v = np.round((np.asarray(phase, float) + np.pi) / _TWO_PI * levels).astype(np.int64)
    return (v % levels).astype(np.uint16)


def _stored_magnitude(mag: np.ndarray, top: float, bits: int) -> np.ndarray:
    v = np.round(np.asarray(mag, float) / top * (2**bits - 1) * 0.9)
    return np.clip(v, 0, 2**bits - 1).astype(np.uint16)


def _stored(acq: Acquisition, folder: str | os.PathLike, rescale: str | tuple[float, float],
            bits: int) -> tuple[Path, float, float, np.ndarray, np.ndarray, float]:
    """What both writers store: ``folder`` (created), the phase rescale (slope, intercept),
    the stored phase and magnitude (uint16, as ``acq.phase``) and the largest magnitude."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slope, intercept = _rescale(rescale)
    top = float(acq.magnitude.max()) or 1.0
    return (folder, slope, intercept, _stored_phase(acq.phase, bits),
            _stored_magnitude(acq.magnitude, top, bits), top)


def _rescale(rescale: str | tuple[float, float]) -> tuple[float, float]:
    if rescale == "plain":
        return 1.0, 0.0
    if rescale == "siemens":
        return 2.0, -4096.0  # rescaled range −4096…4094
    try:
        slope, intercept = (float(v) for v in rescale)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise MREInputError(
            f"rescale must be 'plain', 'siemens' or (slope, intercept), got {rescale!r}."
        ) from None
    return slope, intercept


# ====================================================================== DICOM
def _orientation(orientation: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    iop = np.asarray(_AXIAL if orientation is None else orientation, float)
    if iop.shape != (6,):
        raise MREInputError("orientation must be 6 numbers (ImageOrientationPatient).")
    row, col = iop[:3], iop[3:]
    row = row / np.linalg.norm(row)
    col = col - row * (row @ col)
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _ds_number(v: float) -> str:
    return f"{v:.6g}"


def write_dicom(
    acq: Acquisition,
    folder: str | os.PathLike,
    *,
    enhanced: bool = False,
    magnitude: str = "same",
    one_folder: bool = False,
    rescale: str | tuple[float, float] = "plain",
    bits_stored: int = 12,
    orientation: Sequence[float] | None = None,
    temporal: str = "position",
    reverse_slices: bool = True,
    sidecar: bool = False,
    parts: str = "phase",
) -> list[Path]:
    """Write the acquisition as MR DICOM, one series per frequency and direction.

    Parameters
    ----------
    acq : Acquisition
        From :func:`acquire`.
    folder : str or PathLike
        Target folder (created).
    enhanced : bool
        Enhanced MR multi-frame (one file per series) instead of classic MR (one file per
        slice and offset).
    magnitude : {"same", "separate", "none"}
        Magnitude images in the phase series (told apart by ImageType ``M``), in their own
        series, or left out.
    one_folder : bool
        All series in ``folder`` itself instead of one sub-folder per series.
    rescale : "plain", "siemens" or (slope, intercept)
        RescaleSlope/Intercept of the phase images (the stored values are the same).
    bits_stored : int
        BitsStored (12 by default); the full stored range spans −π…π.
    orientation : 6 floats, optional
        ImageOrientationPatient (default axial ``1 0 0 0 1 0``).
    temporal : {"position", "trigger", "instance"}
        What orders the offsets: TemporalPositionIdentifier (and TriggerTime),
        TriggerTime only, or only InstanceNumber.
    reverse_slices : bool
        Number and name the files from the last slice to the first (readers must sort by
        position, not by file name).
    sidecar : bool
        Also write ``mre.json`` with the frequencies and directions (for tests of the
        sidecar path).
    parts : {"phase", "real_imag", "ge_real_imag"}
        Phase images; or real and imaginary images (signed 16-bit, ImageType ``R``/``I``);
        or real and imaginary told apart only by GE's private image-type tag (0043,102F)
        (2, 3; magnitude 0) with ImageType ``ORIGINAL\\PRIMARY\\OTHER``. Classic MR only.

    Returns
    -------
    list of Path
        One path per phase series (its folder, or its file when ``enhanced``), frequency by
        frequency and direction by direction.
    """
    import pydicom  # noqa: F401  (fail early with a clear import error)

    if parts not in ("phase", "real_imag", "ge_real_imag") or (enhanced and parts != "phase"):
        raise MREInputError(f"parts must be 'phase' (or 'real_imag'/'ge_real_imag' for classic "
                            f"files), not {parts!r}.")
    if magnitude not in ("same", "separate", "none"):
        raise MREInputError(f"magnitude must be 'same', 'separate' or 'none', not {magnitude!r}.")
    if temporal not in ("position", "trigger", "instance"):
        raise MREInputError(f"temporal must be 'position', 'trigger' or 'instance', "
                            f"not {temporal!r}.")
    folder, slope, intercept, stored, mstored, top = _stored(acq, folder, rescale, bits_stored)
    row, col, normal = _orientation(orientation)
    nf, nd = acq.phase.shape[:2]
    from pydicom.uid import generate_uid

    study_uid, frame_uid = generate_uid(), generate_uid()
    paths: list[Path] = []
    for f in range(nf):
        for d in range(nd):
            i = f * nd + d
            name = f"mre_{acq.frequencies[f]:g}Hz_{acq.directions[d]}"
            target = folder if one_folder else folder / name
            target.mkdir(parents=True, exist_ok=True)
            common = {
                "study_uid": study_uid,
                "frame_uid": frame_uid,
                "series_uid": generate_uid(),
                "series_number": 10 + i,
                "description": f"MRE phase series {i + 1}",
                "row": row, "col": col, "normal": normal,
                "spacing": acq.spacing, "origin": acq.origin,
                "frequency": acq.frequencies[f], "bits": bits_stored,
            }
            if parts == "phase":
                images = [("P", stored[f, d], slope, intercept)]
            else:
                signal = acq.magnitude[f, d] * np.exp(1j * acq.phase[f, d]) / top * 2000.0
                ge = parts == "ge_real_imag"
                images = [(k, np.round(v).astype(np.int16), 1.0, 0.0, _signed_part(k, ge))
                          for k, v in (("R", signal.real), ("I", signal.imag))]
            if magnitude == "same":
                images.append(("M", mstored[f, d], 1.0, 0.0,
                               _signed_part("M", True) if parts == "ge_real_imag" else {}))
            writer = _write_enhanced if enhanced else _write_classic
            out = writer(target, name, images, common, temporal=temporal,
                         reverse=reverse_slices)
            if magnitude == "separate":
                mcommon = dict(common, series_uid=generate_uid(), series_number=100 + i,
                               description=f"MRE magnitude series {i + 1}")
                writer(target, name + "_mag", [("M", mstored[f, d], 1.0, 0.0)], mcommon,
                       temporal=temporal, reverse=reverse_slices)
            paths.append(out)
    if sidecar:
        meta = {"frequency": acq.frequencies if nf > 1 else acq.frequencies[0],
                "directions": acq.directions}
        (folder / "mre.json").write_text(json.dumps(meta, indent=2))
        if not one_folder:
            for f in range(nf):
                for d in range(nd):
                    p = paths[f * nd + d]
                    sub = p if p.is_dir() else p.parent
                    (sub / "mre.json").write_text(json.dumps(
                        {"frequency": acq.frequencies[f], "direction": acq.directions[d]}))
    return paths


def _base_dataset(sop_class: str, common: dict, image_type: list[str]):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    now = _dt.datetime(2024, 1, 1, 12, 0, 0)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = common["study_uid"]
    ds.SeriesInstanceUID = common["series_uid"]
    ds.FrameOfReferenceUID = common["frame_uid"]
    ds.Modality = "MR"
    ds.Manufacturer = _MANUFACTURER
    ds.PatientName = "MRE^Phantom"
    ds.PatientID = "PHANTOM"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.SeriesNumber = common["series_number"]
    ds.SeriesDescription = common["description"]
    ds.ImageType = image_type
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "NONE"
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = "20"
    ds.RepetitionTime = "1000"
    ds.MagneticFieldStrength = "1.5"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = common["bits"]
    ds.HighBit = common["bits"] - 1
    ds.PixelRepresentation = 0
    sp = common["spacing"]
    ds.SliceThickness = _ds_number(sp[2] * 1e3)
    ds.SpacingBetweenSlices = _ds_number(sp[2] * 1e3)
    return ds


def _position(common: dict, z: int) -> list[str]:
    """ImagePositionPatient (mm) of slice ``z``: the centre of its first pixel."""
    ox, oy, oz = common["origin"]
    sz = common["spacing"][2]
    p = (ox * common["row"] + oy * common["col"] + (oz + z * sz) * common["normal"]) * 1e3
    return [_ds_number(v) for v in p]


def _write_classic(target: Path, name: str, images, common: dict, *, temporal: str,
                   reverse: bool) -> Path:
    from pydicom.uid import MRImageStorage

    nt, nx, ny, nz = images[0][1].shape
    period_ms = 1e3 / common["frequency"]
    sp = common["spacing"]
    z_order = list(range(nz))[::-1] if reverse else list(range(nz))
    instance = 0
    for kind, stored, slope, intercept, *extra in images:
        attrs = extra[0] if extra else {}
        itype = attrs.get("ImageType", ["ORIGINAL", "PRIMARY", kind, "ND"])
        for t in range(nt):
            for z in z_order:
                instance += 1
                ds = _base_dataset(MRImageStorage, common, itype)
                ds.InstanceNumber = instance
                ds.AcquisitionNumber = 1
                ds.ImagePositionPatient = _position(common, z)
                ds.ImageOrientationPatient = [_ds_number(v) for v in
                                              (*common["row"], *common["col"])]
                ds.SliceLocation = _ds_number(float(_dot(_position(common, z),
                                                           common["normal"])))
                ds.PixelSpacing = [_ds_number(sp[1] * 1e3), _ds_number(sp[0] * 1e3)]
                ds.Rows, ds.Columns = ny, nx
                ds.RescaleSlope = _ds_number(slope)
                ds.RescaleIntercept = _ds_number(intercept)
                ds.RescaleType = "US"
                if temporal == "position":
                    ds.TemporalPositionIdentifier = t + 1
                    ds.NumberOfTemporalPositions = nt
                if temporal in ("position", "trigger"):
                    ds.TriggerTime = _ds_number(t * period_ms / nt)
                # rows run along y, columns along x
                for key, value in attrs.items():
                    if key == "private":
                        ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(
                            0x2F, "SS", value)
                    elif key != "ImageType":
                        setattr(ds, key, value)
                ds.PixelData = np.ascontiguousarray(stored[t, :, :, z].T).tobytes()
                kind_tag = {"P": "ph", "M": "mag", "R": "re", "I": "im"}[kind]
                ds.save_as(target / f"{name}_{kind_tag}_{instance:05d}.dcm",
                           enforce_file_format=True)
    return target


def _signed_part(kind: str, ge: bool) -> dict:
    """Attributes of a real/imaginary (signed) image, GE style or with ImageType R/I."""
    out: dict = {}
    if kind in ("R", "I"):
        out = {"PixelRepresentation": 1, "BitsStored": 16, "HighBit": 15}
    if ge:
        out["ImageType"] = ["ORIGINAL", "PRIMARY", "OTHER"]
        out["private"] = {"M": 0, "P": 1, "R": 2, "I": 3}[kind]
    return out


def _dot(position: Sequence[str], normal: np.ndarray) -> float:
    return float(np.asarray(position, float) @ normal)


def _write_enhanced(target: Path, name: str, images, common: dict, *, temporal: str,
                    reverse: bool) -> Path:
    from pydicom.dataset import Dataset
    from pydicom.uid import EnhancedMRImageStorage

    nt, nx, ny, nz = images[0][1].shape
    period_ms = 1e3 / common["frequency"]
    sp = common["spacing"]
    kinds = [k for k, *_ in images]
    top_type = "MIXED" if len(set(kinds)) > 1 else ("PHASE" if kinds[0] == "P" else "MAGNITUDE")
    ds = _base_dataset(EnhancedMRImageStorage, common, ["ORIGINAL", "PRIMARY", top_type, "NONE"])
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = ny, nx
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [_ds_number(sp[1] * 1e3), _ds_number(sp[0] * 1e3)]
    pm.SliceThickness = _ds_number(sp[2] * 1e3)
    pm.SpacingBetweenSlices = _ds_number(sp[2] * 1e3)
    shared.PixelMeasuresSequence = [pm]
    po = Dataset()
    po.ImageOrientationPatient = [_ds_number(v) for v in (*common["row"], *common["col"])]
    shared.PlaneOrientationSequence = [po]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    pixels = []
    z_order = list(range(nz))[::-1] if reverse else list(range(nz))
    for kind, stored, slope, intercept, *_ in images:
        for t in range(nt):
            for z in z_order:
                fr = Dataset()
                pp = Dataset()
                pp.ImagePositionPatient = _position(common, z)
                fr.PlanePositionSequence = [pp]
                fc = Dataset()
                if temporal == "position":
                    fc.TemporalPositionIndex = t + 1
                fc.InStackPositionNumber = z + 1
                fc.StackID = "1"
                fr.FrameContentSequence = [fc]
                ft = Dataset()
                comp = "PHASE" if kind == "P" else "MAGNITUDE"
                ft.FrameType = ["ORIGINAL", "PRIMARY", comp, "NONE"]
                ft.ComplexImageComponent = comp
                fr.MRImageFrameTypeSequence = [ft]
                pv = Dataset()
                pv.RescaleSlope = _ds_number(slope)
                pv.RescaleIntercept = _ds_number(intercept)
                pv.RescaleType = "US"
                fr.PixelValueTransformationSequence = [pv]
                if temporal in ("position", "trigger"):
                    cs = Dataset()
                    cs.NominalCardiacTriggerDelayTime = float(t * period_ms / nt)
                    fr.CardiacSynchronizationSequence = [cs]
                frames.append(fr)
                pixels.append(np.ascontiguousarray(stored[t, :, :, z].T))
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack(pixels).tobytes()
    path = target / f"{name}_enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


# ====================================================================== NIfTI
def write_nifti(
    acq: Acquisition,
    folder: str | os.PathLike,
    *,
    five_d: bool = False,
    magnitude: bool = True,
    rescale: str | tuple[float, float] = "plain",
    bits_stored: int = 12,
    sidecar_mre: bool = False,
) -> list[Path]:
    """Write the acquisition as dcm2niix-style NIfTI files with JSON sidecars.

    Phase files hold the stored integers (``scl_slope``/``scl_inter`` from the rescale) with
    axes ``(x, y, z, offset)`` — or ``(x, y, z, offset, direction)`` with ``five_d`` — and
    end in ``_ph`` like dcm2niix's phase images; the sidecar has the DICOM fields dcm2niix
    copies (``ImageType``, ``SeriesNumber``, ``SliceThickness``, …). Magnitude files have
    no ``_ph`` and ``ImageType`` ``M``.

    Parameters
    ----------
    acq, folder
        As in :func:`write_dicom`: from :func:`acquire`; the target folder (created).
    five_d : bool
        One file per frequency holding all directions (5-D).
    magnitude : bool
        Also write the magnitude images.
    rescale : "plain", "siemens" or (slope, intercept)
        NIfTI scaling of the phase files.
    bits_stored : int
        Stored bit depth of the phase.
    sidecar_mre : bool
        Add ``"frequency"`` (and ``"directions"``) to the sidecars, as a user would.

    Returns
    -------
    list of Path
        The phase files, frequency by frequency (and direction by direction).
    """
    import nibabel as nib

    folder, slope, intercept, stored, mstored, _ = _stored(acq, folder, rescale, bits_stored)
    nf, nd = acq.phase.shape[:2]
    sp_mm = np.asarray(acq.spacing) * 1e3
    affine = np.eye(4)
    affine[:3, :3] = np.diag(sp_mm)
    affine[:3, 3] = np.asarray(acq.origin) * 1e3

    def save(arr: np.ndarray, path: Path, s: float, i: float, meta: dict) -> None:
        img = nib.Nifti1Image(arr, affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_slope_inter(s, i)
        nib.save(img, str(path))
        Path(str(path).replace(".nii.gz", ".json")).write_text(json.dumps(meta, indent=2))

    paths = []
    series = 10
    for f in range(nf):
        groups = [list(range(nd))] if five_d else [[d] for d in range(nd)]
        for dirs in groups:
            series += 1
            tag = f"{acq.frequencies[f]:g}Hz" + ("" if five_d else f"_{acq.directions[dirs[0]]}")
            base = {
                "Modality": "MR",
                "Manufacturer": _MANUFACTURER,
                "SeriesDescription": f"MRE {tag}",
                "SeriesNumber": series,
                "SliceThickness": float(sp_mm[2]),
                "EchoTime": 0.02,
                "RepetitionTime": 1.0,
                "ConversionSoftware": "napari-mrepinn acquisition simulator (dcm2niix layout)",
            }
            extra = {}
            if sidecar_mre:
                extra = {"frequency": acq.frequencies[f]}
                extra |= ({"directions": [acq.directions[d] for d in dirs]} if five_d
                          else {"direction": acq.directions[dirs[0]]})
            ph = np.moveaxis(stored[f, dirs], (0, 1), (-1, -2))  # x, y, z, offset, direction
            ph = ph if five_d else ph[..., 0]
            path = folder / f"mre_{tag}_{series}_ph.nii.gz"
            save(ph, path, slope, intercept,
                 base | {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND", "PHASE"]} | extra)
            paths.append(path)
            if magnitude:
                mg = np.moveaxis(mstored[f, dirs], (0, 1), (-1, -2))
                mg = mg if five_d else mg[..., 0]
                save(mg, folder / f"mre_{tag}_{series}.nii.gz", 1.0, 0.0,
                     base | {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]} | extra)
    return paths
