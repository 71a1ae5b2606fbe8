"""The exams of a batch: files, folders, glob patterns and CSV manifests, and their hashes.

:func:`find_exams` turns what :func:`~napari_mrepinn.batch.run_batch` is given into
:class:`Exam` records (id, path, reading overrides); :func:`input_hash` and
:func:`_exam_key` say what a result was made from, so that a rerun can reuse it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import MREExample, MREInputError

__all__ = ["Exam", "find_exams", "input_hash"]


@dataclass(frozen=True)
class Exam:
    """One exam of a batch: where it is and how to read it.

    Attributes
    ----------
    id : str
        Name of its result (``<id>.nc``) and its rows in the summary.
    path : str
        Absolute path of the file or folder.
    frequency : float, optional
        Vibration frequency in Hz (supplies or selects, as ``load_example``'s).
    spacing : tuple of float, optional
        Voxel spacing in metres.
    components : tuple of str, optional
        Labels of the wave components.
    extra : dict
        Other columns of a manifest row (copied to the summary).
    """

    id: str
    path: str
    frequency: float | None = None
    spacing: tuple[float, ...] | None = None
    components: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def overrides(self) -> dict[str, Any]:
        """The reading overrides (part of the input's hash)."""
        return {"frequency": self.frequency,
                "spacing": list(self.spacing) if self.spacing else None,
                "components": list(self.components) if self.components else None}

    def load(self) -> MREExample:
        from .io import load_example

        return load_example(self.path, frequency=self.frequency, spacing=self.spacing,
                            components=self.components)


def find_exams(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    frequency: float | None = None,
    spacing: float | Sequence[float] | None = None,
    components: Sequence[str] | None = None,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[Exam]:
    """The exams named by files, folders, glob patterns and CSV manifests.

    Parameters
    ----------
    inputs : path or iterable of paths
        * a file: one exam (a file no reader claims becomes a "bad input" row);
        * a folder that a reader claims (a NIfTI folder): one exam;
        * another folder: every file or sub-folder in it that a reader claims;
        * a glob pattern (``data/*.nc``, ``cohort/**/*.mat``): every match a reader claims;
        * a ``.csv`` (or ``.tsv``) manifest with a ``path`` column and optionally ``id``,
          ``frequency`` (Hz), ``spacing_mm`` (one value or one per axis, separated by
          spaces), ``components`` (e.g. ``x y z``); relative paths are relative to the
          manifest; other columns are copied to the summary.
    frequency, spacing, components : optional
        Reading overrides for every exam (``spacing`` in metres); a manifest's values win.
    exclude : iterable of paths
        Folders not to look into (the results folder).

    Raises
    ------
    MREInputError
        When an input names nothing, a manifest is malformed, or two exams get the same id.
    """
    from .io import find_reader

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    excluded = {Path(p).resolve() for p in exclude}
    base = _overrides(frequency, spacing, components, "")
    found: list[tuple[Path, dict[str, Any], str | None]] = []  # path, overrides, id

    def claimed(p: Path) -> bool:
        return (not p.name.startswith(".") and p.resolve() not in excluded
                and not any(e in p.resolve().parents for e in excluded)
                and find_reader(p) is not None)

    for item in inputs:
        text = os.fspath(item)
        p = Path(text).expanduser()
        if p.is_file() and p.suffix.lower() in (".csv", ".tsv"):
            found.extend(_read_manifest(p, base))
        elif p.is_dir() and find_reader(p) is None:
            members = [c for c in sorted(p.iterdir()) if claimed(c)]
            if not members:
                raise MREInputError(
                    f"{p}: no MRE data in this folder (looked for files and folders that "
                    "napari-mrepinn reads: .nc, .mat, NIfTI folders)."
                )
            found.extend((c, base, None) for c in members)
        elif p.exists():
            found.append((p, base, None))
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(text),
                                                         recursive=True))]
            members = [m for m in matches if claimed(m)]
            if not members:
                raise MREInputError(
                    f"{text}: the pattern matches {len(matches)} path(s) but no MRE data "
                    "(.nc, .mat, NIfTI folders)."
                )
            found.extend((m, base, None) for m in members)
        else:
            raise MREInputError(f"{text}: no such file or folder, and no pattern matches it.")

    exams: list[Exam] = []
    seen: set[Path] = set()
    for p, over, given_id in found:
        key = p.resolve()
        if key in seen:  # the same exam named twice (a file and a pattern)
            continue
        seen.add(key)
        exams.append(Exam(
            id=given_id or _stem(p), path=str(key), frequency=over["frequency"],
            spacing=over["spacing"], components=over["components"],
            extra=over.get("extra", {}),
        ))
    return _unique_ids(exams)


def _overrides(frequency: Any, spacing: Any, components: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"frequency": None, "spacing": None, "components": None}
    if frequency is not None:
        f = float(frequency)
        if not (np.isfinite(f) and f > 0):
            raise MREInputError(f"{where}frequency must be a positive number of Hz, got "
                                f"{frequency!r}.")
        out["frequency"] = f
    if spacing is not None:
        sp = tuple(float(v) for v in np.atleast_1d(spacing))
        if not sp or not all(np.isfinite(v) and v > 0 for v in sp):
            raise MREInputError(f"{where}spacing must be positive, got {spacing!r}.")
        out["spacing"] = sp
    if components is not None:
        out["components"] = tuple(str(c) for c in components)
    return out


def _read_manifest(path: Path, base: dict[str, Any]) -> list[tuple[Path, dict, str | None]]:
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                            dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise MREInputError(f"{path}: not a readable CSV manifest ({exc}).") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    if "path" not in table.columns:
        raise MREInputError(
            f"{path}: a manifest needs a 'path' column (and optionally id, frequency, "
            f"spacing_mm, components); its columns are {', '.join(table.columns)}."
        )
    known = {"id", "path", "frequency", "frequency_hz", "spacing_mm", "spacing", "components"}
    rows = []
    for i, rec in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{path}, line {i}: "
        if not rec["path"].strip():
            raise MREInputError(f"{where}the path is empty.")
        freq = (rec.get("frequency") or rec.get("frequency_hz") or "").strip()
        spacing = (rec.get("spacing_mm") or rec.get("spacing") or "").strip()
        comps = (rec.get("components") or "").strip()
        try:
            over = _overrides(
                float(freq) if freq else base["frequency"],
                [float(v) * 1e-3 for v in re.split(r"[\s;,x×]+", spacing) if v]
                if spacing else base["spacing"],
                re.split(r"[\s;,]+", comps) if comps else base["components"], where,
            )
        except ValueError as exc:
            if isinstance(exc, MREInputError):
                raise
            raise MREInputError(f"{where}{exc}; frequency is in Hz and spacing_mm in mm "
                                "(e.g. '1.5 1.5 5').") from None
        over["extra"] = {k: v for k, v in rec.items() if k not in known}
        p = Path(rec["path"].strip()).expanduser()
        rows.append((p if p.is_absolute() else path.parent / p, over,
                     rec.get("id", "").strip() or None))
    if not rows:
        raise MREInputError(f"{path}: the manifest lists no exams.")
    return rows


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".nii.gz", ".nii", ".nc", ".mat", ".json"):
        if name.lower().endswith(suffix) and p.is_file():
            return name[: -len(suffix)]
    return name


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "exam"


def _unique_ids(exams: list[Exam]) -> list[Exam]:
    ids = [_safe(e.id) for e in exams]
    # the same name in two folders: prefix the folder name
    dup = {i for i in ids if ids.count(i) > 1}
    ids = [_safe(f"{Path(e.path).parent.name}_{i}") if i in dup else i
           for e, i in zip(exams, ids, strict=True)]
    clash = sorted({i for i in ids if ids.count(i) > 1})
    if clash:
        raise MREInputError(
            f"several exams would be called {', '.join(clash)}; give them ids in a CSV "
            "manifest (columns id, path)."
        )
    return [Exam(i, e.path, e.frequency, e.spacing, e.components, e.extra)
            for e, i in zip(exams, ids, strict=True)]


# ====================================================================== hashes
def input_hash(path: str | os.PathLike) -> str:
    """SHA-256 of what an exam is read from: a file's content, or the names and contents of
    a folder's files (a file of a NIfTI folder stands for its folder; hidden files are
    left out). ``""`` when the path does not exist."""
    from .io import find_reader

    p = Path(path)
    if p.is_file():
        reader = find_reader(p)
        if reader is not None and reader.name == "nifti":
            p = p.parent
    h = hashlib.sha256()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        for f in files:
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            _hash_file(h, f)
    elif p.is_file():
        _hash_file(h, p)
    else:
        return ""
    return h.hexdigest()


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        h.update(str(os.fstat(f.fileno()).st_size).encode() + b"\0")
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def _exam_key(exam: Exam, content_hash: str) -> str:
    text = json.dumps({"content": content_hash, "read": exam.overrides()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
