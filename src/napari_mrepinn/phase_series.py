"""Phase series of an MRE exam, whatever the file format, and their assembly into a wave field.

The two scanner readers (:mod:`napari_mrepinn.dicom` and :mod:`napari_mrepinn.phase_nifti`)
each turn their files into phase series on a grid (:class:`_Series`, :class:`_Grid`); this
module holds what they share:

- **ImageType** (:func:`_image_kind`): phase ``P``/``PHASE``, magnitude ``M``, real ``R``,
  imaginary ``I``, in DICOM ImageType/FrameType values and dcm2niix JSON sidecars alike.
- **JSON sidecars**: what the files do not state is never guessed. The vibration frequency
  and the motion-encoding direction of each series come from the options (``frequency=``,
  ``directions=``; CLI ``--frequency``, ``--directions``) or from a JSON sidecar next to the
  files (``{"frequency": 60, "direction": "x"}`` per series folder, or ``{"frequency": [...],
  "directions": [...]}`` for a folder of several series, or ``{"series": {"<SeriesNumber>":
  {"frequency": ..., "direction": ...}}}``); keys are matched case-insensitively
  (:data:`~napari_mrepinn.data.FREQUENCY_KEYS`, first stated wins; ``_DIR_KEYS``).
- **Assignment** (:func:`_assign`): phase series are taken path by path in the order given,
  and within one path by SeriesNumber; they are assigned frequency by frequency and, within
  each frequency, direction by direction, into a rectangular (frequency × direction) table.
- **Assembly** (:func:`_finish`): one grid for all series, the ``read`` and
  ``phase_to_radians`` records, and :func:`napari_mrepinn.preprocess.prepare`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import FREQUENCY_KEYS, MREExample, MREInputError, parse_frequencies
from .preprocess import DIRECTIONS, prepare

PathLike = str | os.PathLike
_DIR_KEYS = ("direction", "directions", "motion_encoding_direction",
             "motion_encoding_directions", "encoding_direction", "encoding_directions")


# ====================================================================== series
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


def _path_list(paths: PathLike | Sequence[PathLike], what: str) -> list[Path]:
    """``paths`` as a list of existing paths; ``what`` says what to pass when none is given."""
    plist = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not plist:
        raise MREInputError(f"no path given; pass {what}.")
    for p in plist:
        if not p.exists():
            raise MREInputError(f"{p}: no such file or folder.")
    return plist


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
                if k in FREQUENCY_KEYS or k in _DIR_KEYS or k in ("series", "encoding_sensitivity"):
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
        freqs = _as_list(_meta_value(top_meta, FREQUENCY_KEYS))
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
            sf = _as_list(_meta_value(s.meta, FREQUENCY_KEYS))
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
                f"mre.json next to the files (or one of the keys {', '.join(FREQUENCY_KEYS)})."
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
    paths: Sequence[Path],
    unwrap: str,
    progress: Any,
    prepare_options: Mapping[str, Any],
    notes: list[str],
) -> MREExample:
    """One example from the phase series of ``paths``: same grid, assigned, prepared."""
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
        source=str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)",
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


