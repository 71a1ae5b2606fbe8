"""The summary table of a batch and what a rerun reuses from the last one.

``RESULTS_DIR/summary.csv`` has one row per exam and method: :data:`CORE_COLUMNS` first,
then R / CTE, the ROI statistics, the manifest's own columns and :data:`TRAILING_COLUMNS`.
A rerun reads back the methods stored in each result file (:func:`_stored`) and the
failures that would repeat (:func:`_previous_failures`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch_exams import Exam
from .batch_task import ATTR, METHODS, _one_line

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["CORE_COLUMNS", "DETERMINISTIC_FAILURES", "SUMMARY", "TRAILING_COLUMNS"]

SUMMARY = "summary.csv"
#: failure statuses that repeat on a rerun with the same input and settings (not redone)
DETERMINISTIC_FAILURES = ("bad input", "diverged")
#: leading columns of the summary, in this order; metrics and ROI statistics follow
CORE_COLUMNS = ("id", "method", "status", "error", "seconds", "reused")
TRAILING_COLUMNS = ("frequency_hz", "path", "input_hash", "config_hash")


def _stored(path: Path, ikey: str) -> dict[str, dict]:
    """``method -> {"key", "row"}`` of an existing result made from the same input."""
    if not path.exists():
        return {}

    from .netcdf import _open_lazy

    try:
        with _open_lazy(path) as ds:  # a damaged result that would hang libhdf5 is redone too
            info = json.loads(ds.attrs.get(ATTR, "{}"))
    except Exception:  # an unreadable result is redone
        return {}
    if info.get("input_key") != ikey:
        return {}
    return {m: v for m, v in info.get("methods", {}).items()
            if m in METHODS and isinstance(v, dict) and "row" in v}


def _previous_failures(summary: Path) -> dict[tuple[str, str], dict]:
    if not summary.exists():
        return {}
    import pandas as pd

    try:
        df = pd.read_csv(summary, dtype={"id": str, "input_hash": str, "config_hash": str},
                         keep_default_na=False, na_values=[""])
        df = df[df["status"].isin(DETERMINISTIC_FAILURES)]
    except Exception:  # a summary of another tool or version: nothing to reuse
        return {}
    rows = {}
    for rec in df.to_dict("records"):
        rec = {k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}
        rows[(str(rec["id"]), str(rec["method"]))] = rec
    return rows


def _crash_row(exam: Exam, method: str, key: str, content: str,
               exc: BaseException) -> dict[str, Any]:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        error = ("the worker running this exam died several times (out of memory?); "
                 "it is tried again on a rerun.")
    else:
        error = _one_line(exc)
    return {"id": exam.id, "method": method, "status": "error", "error": error,
            "seconds": float("nan"), "path": exam.path, "input_hash": content,
            "config_hash": key}


def _summary(rows: Mapping[tuple[str, str], dict], exams: Sequence[Exam],
             methods: Sequence[str], order: Mapping[str, int]) -> pd.DataFrame:
    import pandas as pd

    extras = {e.id: e.extra for e in exams}
    records = []
    for (eid, _m), r in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 1 << 30),
                                                           methods.index(kv[0][1]))):
        rec = dict(r)
        for k, v in extras.get(eid, {}).items():
            rec.setdefault(k if k not in rec else f"manifest_{k}", v)
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    cols = list(df.columns)
    metrics = sorted((c for c in cols if c == "pearson_r" or re.match(r"cte\d+_pct$", c)),
                     key=_column_order)
    rois = sorted((c for c in cols if c.startswith("roi")), key=_column_order)
    extra = [c for c in cols if c not in (*CORE_COLUMNS, *TRAILING_COLUMNS, *metrics, *rois)]
    ordered = [c for c in (*CORE_COLUMNS, *metrics, *rois, *extra, *TRAILING_COLUMNS)]
    df = df.reindex(columns=ordered)
    for c in df.columns:  # counts stay whole numbers next to the rows without them
        if c.endswith("_n"):
            df[c] = df[c].astype("Int64")
    if "reused" in df:
        df["reused"] = df["reused"].fillna(False).astype(bool)
    df["error"] = df["error"].fillna("")
    return df


_STATS = ("n", "median", "iqr", "mean", "sd")


def _column_order(name: str) -> tuple:
    m = re.match(r"(roi|cte)(_all|\d*)_?(\w*?)(?:_kpa|_pct)?$", name)
    if name == "pearson_r" or m is None:
        return (0, 0, 0)
    label = -1 if m.group(2) == "_all" else int(m.group(2) or 0)
    stat = _STATS.index(m.group(3)) if m.group(3) in _STATS else 0
    return (1 if m.group(1) == "cte" else 2, label, stat)


# ====================================================================== atomic writes
def _atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` through ``write(tmp)`` with the project's output discipline
    (:func:`napari_mrepinn.outputs.atomic_path`): the path holds the old file or the
    complete new one, never a partial one."""
    from .outputs import atomic_path

    with atomic_path(path) as tmp:
        write(Path(tmp))
    return Path(path)
