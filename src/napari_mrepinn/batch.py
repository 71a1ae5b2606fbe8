"""Batch inversion of a cohort on Dask distributed: many exams, one results folder.

:func:`run_batch` (and ``mrepinn batch``) runs one task per exam on a
``dask.distributed`` cluster: a :class:`~distributed.LocalCluster` started inside (N worker
processes, one thread each, one torch thread per fit) or an existing cluster given by its
scheduler address. Each task reads the exam, runs the methods (``pinn``, ``ahi``, ``mdev``),
writes ``RESULTS_DIR/<id>.nc`` atomically and returns one summary row per method;
the driver keeps ``RESULTS_DIR/summary.csv`` up to date as exams finish.

Resuming: every result file carries, in its attrs (``mrepinn_batch_json``), the hash of the
input it was made from (file content, or a folder's file names and contents, plus the
reading overrides) and of each method's settings (the training configuration for ``pinn``).
A rerun reuses a method whose hashes match and redoes the rest; exams that failed for a
reason that would repeat (bad input, a diverged fit) are not redone unless their input or
configuration changed (or ``retry_failed=True``). Exams that failed otherwise (an
unexpected error, a worker lost too often) are tried again.

Faults: a bad file or a diverging fit is a row with ``status`` ``"bad input"`` /
``"diverged"`` and its one-line ``error``; the batch goes on. Any other exception is retried
by Dask (``retries``); a worker process that dies is replaced by its nanny and its task
rescheduled. Results already written stay: files are only ever replaced by a complete file.

Workers must see the inputs and the results folder at the same paths as the driver (one
machine, or a shared file system as on a SLURM cluster).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import json
import logging
import os
import re
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import MREExample, MREInputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr

    from .config import TrainingConfig

__all__ = [
    "BASELINE_SETTINGS",
    "METHODS",
    "BatchInterrupted",
    "Exam",
    "FitDiverged",
    "default_workers",
    "find_exams",
    "input_hash",
    "method_key",
    "pinn_resources",
    "roi_statistics",
    "run_batch",
    "run_exam",
]

#: method -> the variable of the result file that holds its modulus (Pa)
METHODS: dict[str, str] = {"pinn": "mu_pred", "ahi": "mu_ahi", "mdev": "mu_mdev"}
#: keyword arguments of the direct inversions (part of their hash, as the config is for pinn)
BASELINE_SETTINGS: dict[str, dict[str, Any]] = {
    "ahi": {"smoothing": "gaussian"},
    "mdev": {"smoothing": "gaussian"},
}
#: the attribute of a result file that holds the hashes and summary rows of its methods
ATTR = "mrepinn_batch_json"
SUMMARY = "summary.csv"
LOCK = ".mrepinn-batch.lock"
#: failure statuses that repeat on a rerun with the same input and settings (not redone)
DETERMINISTIC_FAILURES = ("bad input", "diverged")
#: leading columns of the summary, in this order; metrics and ROI statistics follow
CORE_COLUMNS = ("id", "method", "status", "error", "seconds", "reused")
TRAILING_COLUMNS = ("frequency_hz", "path", "input_hash", "config_hash")
_RUN_ORDER = ("pinn", "ahi", "mdev")  # pinn first: its recipe writes mu_ahi (its prior)
#: how long to try reaching a scheduler given by its address
CONNECT_TIMEOUT = "20s"
#: the Dask setting of the malloc environment of nanny-started workers (unset here)
NANNY_MALLOC = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"

log = logging.getLogger(__name__)


class FitDiverged(RuntimeError):
    """A fit whose loss stayed non-finite or whose modulus is not finite in the mask."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`run_batch`; ``summary`` holds the exams finished before."""

    def __init__(self, message: str, summary: pd.DataFrame) -> None:
        super().__init__(message)
        self.summary = summary


# ====================================================================== exams
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


def method_key(method: str, config: TrainingConfig | None = None) -> str:
    """Hash of what a method's result depends on besides the input: the training
    configuration (``config.to_json()``) for ``pinn``, the inversion's settings for
    ``ahi``/``mdev``."""
    if method == "pinn":
        if config is None:
            raise ValueError("the pinn method needs a TrainingConfig")
        settings: Any = json.loads(config.to_json())
    else:
        settings = BASELINE_SETTINGS[method]
    text = json.dumps({"method": method, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ====================================================================== readouts
def roi_statistics(modulus: xr.DataArray | np.ndarray,
                   mask: xr.DataArray | np.ndarray | None = None) -> dict[str, float]:
    """Statistics of ``|G*|`` in kPa per region label of ``mask``.

    Columns ``roi<label>_n`` (finite voxels), ``_median_kpa``, ``_iqr_kpa`` (75th − 25th
    percentile), ``_mean_kpa`` and ``_sd_kpa`` (sample standard deviation) for each label
    > 0; without a mask, one region ``roi_all``. (A stand-in for the project's ROI
    statistics module: the same numbers, one flat row.)
    """
    mag, labels = _on_mask(modulus, mask)
    mag = np.abs(mag) / 1e3
    out: dict[str, float] = {}
    regions = [("_all", labels > 0)] if mask is None else [
        (str(int(lab)), labels == lab) for lab in np.unique(labels) if lab > 0]
    for name, sel in regions:
        v = mag[sel]
        v = v[np.isfinite(v)]
        key = f"roi{name}"
        out[f"{key}_n"] = int(v.size)
        if v.size:
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            out |= {f"{key}_median_kpa": float(med), f"{key}_iqr_kpa": float(q3 - q1),
                    f"{key}_mean_kpa": float(v.mean()),
                    f"{key}_sd_kpa": float(v.std(ddof=1)) if v.size > 1 else float("nan")}
        else:
            out |= {f"{key}_{s}_kpa": float("nan") for s in ("median", "iqr", "mean", "sd")}
    return out


def _on_mask(values: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """``values`` and integer labels as arrays of one shape (DataArrays transposed to the
    mask's dim order; no mask: everything is label 1)."""
    import xarray as xr

    if isinstance(values, xr.DataArray) and isinstance(mask, xr.DataArray):
        if set(values.dims) == set(mask.dims):
            values = values.transpose(*mask.dims)
    v = np.asarray(values)
    labels = np.ones(v.shape, int) if mask is None else np.asarray(mask).astype(int)
    if labels.shape != v.shape:
        raise MREInputError(f"the modulus {v.shape} and the mask {labels.shape} differ in "
                            "shape.")
    return v, labels


def _readout(example: MREExample, method: str) -> dict[str, Any]:
    """ROI statistics of a method's modulus, and R / CTE against ``mre`` when there is one."""
    mu = example[METHODS[method]]
    mask = example.ds.get("mre_mask")
    row: dict[str, Any] = dict(roi_statistics(mu, mask))
    if "mre" not in example:
        return row
    truth = example["mre"]
    if "frequency" in truth.dims:
        if "frequency" in example["wave"].dims:
            return row  # a multi-frequency estimate (MDEV) has no single truth to meet
        truth = truth.sel(frequency=example.frequency, method="nearest")
    from .metrics import evaluate

    labels = mask if mask is not None else (truth * 0 + 1).real.astype(int)
    try:
        m = evaluate(mu, truth, labels)
    except MREInputError as exc:
        row["error"] = f"metrics: {exc}"
        return row
    row["pearson_r"] = m["pearson_r"]
    row |= {f"cte{lab}_pct": v for lab, v in m["cte_percent"].items()}
    return row


# ====================================================================== the task
def run_exam(
    exam: Exam,
    methods: Sequence[str],
    results_dir: str,
    *,
    config_json: str | None = None,
    keys: Mapping[str, str] | None = None,
    input_key: str = "",
    content_hash: str = "",
    keep: Sequence[str] = (),
    local_gpus: int = 0,
) -> dict[str, Any]:
    """Run ``methods`` on one exam and write ``<results_dir>/<id>.nc`` (the Dask task).

    Parameters
    ----------
    exam : Exam
        The exam.
    methods : sequence of str
        Methods to run (keys of :data:`METHODS`).
    results_dir : str
        Folder of the result.
    config_json : str, optional
        The training configuration (``TrainingConfig.to_json()``); needed for ``pinn``.
    keys : mapping, optional
        ``method -> method_key`` stored with each result (default: computed here).
    input_key, content_hash : str
        Hashes of the input (see :func:`run_batch`), stored in the result's attrs.
    keep : sequence of str
        Methods of the existing result file (made from the same input) to keep: the file
        is read instead of the input and they are not run again.
    local_gpus : int
        GPUs of a local cluster: worker ``i`` fits on ``cuda:i % local_gpus``.

    Returns
    -------
    dict
        ``rows`` (one summary row per method run) and ``task_seconds`` (read, run, write).

    Bad input and diverged fits become rows with their error; other exceptions propagate
    (Dask retries them).
    """
    # a fresh worker imports scipy (and torch) once: not part of the exam's time
    from . import baselines, io, metrics  # noqa: F401

    config = None
    if "pinn" in methods:
        from . import recipe  # noqa: F401
        from .config import TrainingConfig

        config = TrainingConfig.from_json(config_json or "{}")
    t0 = time.perf_counter()
    keys = dict(keys or {m: method_key(m, config) for m in methods})
    out_path = Path(results_dir) / f"{exam.id}.nc"

    def row(method: str, status: str, error: str = "", seconds: float = float("nan"),
            **more: Any) -> dict[str, Any]:
        return {"id": exam.id, "method": method, "status": status, "error": error,
                "seconds": round(seconds, 3), "path": exam.path, "input_hash": content_hash,
                "config_hash": keys.get(method, ""), **more}

    previous: dict[str, Any] = {}
    if keep:  # the earlier result holds the input and the results to keep
        try:
            example = MREExample.load(out_path)
            previous = json.loads(example.ds.attrs.get(ATTR, "{}")).get("methods", {})
        except (MREInputError, ValueError):
            previous = {}
        if not all(m in previous for m in keep):  # not an input error: Dask retries
            raise RuntimeError(f"{out_path}: the result changed during the batch; run the "
                               "batch again.")
    else:
        try:
            example = exam.load()
        except MREInputError as exc:
            return {"rows": [row(m, "bad input", _one_line(exc)) for m in methods],
                    "task_seconds": time.perf_counter() - t0}
    kept = {METHODS[m]: example[METHODS[m]] for m in keep if METHODS[m] in example}
    freq = (float(example.frequencies[0]) if len(example.frequencies) == 1
            else float("nan"))

    rows: dict[str, dict[str, Any]] = {}
    result = example
    for method in sorted(methods, key=_RUN_ORDER.index):
        t = time.perf_counter()
        try:
            if method == "pinn":
                assert config is not None
                result = _fit(result, config, local_gpus)
            else:
                result = _baseline(result, method)
            for var, value in kept.items():  # the pinn recipe's mu_ahi must not replace
                result.ds[var] = value       # the kept ahi method's
            seconds = time.perf_counter() - t
            rows[method] = row(method, "done", seconds=seconds, frequency_hz=freq)
            rows[method] |= _readout(result, method)
        except MREInputError as exc:
            rows[method] = row(method, "bad input", _one_line(exc), frequency_hz=freq)
        except FitDiverged as exc:
            rows[method] = row(method, "diverged", _one_line(exc), frequency_hz=freq)

    done = {m: r for m, r in rows.items() if r["status"] == "done"}
    if done:
        stored = {m: previous[m] for m in keep}
        stored |= {m: {"key": keys[m], "row": r} for m, r in done.items()}
        result.ds.attrs[ATTR] = json.dumps(
            {"input_key": input_key, "input_hash": content_hash, "methods": stored})
        # atomic (MREExample.save writes through outputs.atomic_path). Inside a Dask worker
        # xarray would take a cluster-wide lock named after the file, which an in-memory
        # NetCDF image does not have: write with the local scheduler's plain lock.
        import dask

        with dask.config.set(scheduler="synchronous"):
            result.save(out_path)
    return {"rows": list(rows.values()), "task_seconds": time.perf_counter() - t0}


def _warm_up(torch: bool) -> None:
    """Import what the tasks need (run on every worker before the first task)."""
    from . import baselines, io, metrics  # noqa: F401

    if torch:
        from . import recipe  # noqa: F401


def _fit(example: MREExample, config: TrainingConfig, local_gpus: int) -> MREExample:
    from .recipe import fit

    if local_gpus > 0 and config.device in ("auto", "cuda"):
        # a local cluster's worker i takes GPU i (round robin): the fits split the GPUs
        from distributed import get_worker

        with contextlib.suppress(ValueError, TypeError):
            config = config.replace(device=f"cuda:{int(get_worker().name) % local_gpus}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        result = fit(example, config, progress=False)
    stopped = [str(w.message) for w in caught if "training stopped" in str(w.message)]
    if stopped:
        raise FitDiverged(f"the fit diverged ({stopped[-1]}); try a lower --lr or check "
                          "the wave for NaN or zero regions.")
    mu = np.asarray(result["mu_pred"].values)
    inside = np.asarray(result.mask.transpose(*result["mu_pred"].dims).values)
    if not np.all(np.isfinite(mu[inside])):
        raise FitDiverged("the fit diverged: the modulus is not finite in the mask; try a "
                          "lower --lr.")
    return result


def _baseline(example: MREExample, method: str) -> MREExample:
    from . import baselines

    if method == "ahi" and len(example.frequencies) > 1:
        raise MREInputError(
            f"{example.source}: has {len(example.frequencies)} frequencies; choose one for "
            "AHI and PINN with --frequency or a 'frequency' column in the manifest (MDEV "
            "uses them all)."
        )
    mu = getattr(baselines, method)(example, **BASELINE_SETTINGS[method])
    out = example.copy()
    out.ds[mu.name or METHODS[method]] = mu
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (MREInputError, FitDiverged)) else \
        f"{type(exc).__name__}: {text}"


# ====================================================================== atomic writes
def _atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` through ``write(tmp)`` with the project's output discipline
    (:func:`napari_mrepinn.outputs.atomic_path`): the path holds the old file or the
    complete new one, never a partial one."""
    from .outputs import atomic_path

    with atomic_path(path) as tmp:
        write(Path(tmp))
    return Path(path)


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


# ====================================================================== the driver
def run_batch(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    results_dir: str | os.PathLike,
    *,
    methods: Sequence[str] = ("pinn",),
    config: TrainingConfig | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    frequency: float | None = None,
    spacing: float | Sequence[float] | None = None,
    components: Sequence[str] | None = None,
    retries: int = 2,
    retry_failed: bool = False,
    progress: bool = True,
    task: Callable[..., dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Invert every exam of ``inputs`` into ``results_dir`` on a Dask cluster.

    Parameters
    ----------
    inputs : path or iterable of paths
        Files, folders, glob patterns, CSV manifests (see :func:`find_exams`).
    results_dir : path
        Folder of the results (created): ``<id>.nc`` per exam and ``summary.csv``.
    methods : sequence of {"pinn", "ahi", "mdev"}
        Methods to run on every exam (one summary row each).
    config : TrainingConfig, optional
        The training options of ``pinn`` (default: the recipe's). ``threads=0`` (auto)
        means one torch thread per fit: the workers are the parallelism.
    workers : int, optional
        Worker processes of the local cluster (default: the CPU cores); one thread each.
    scheduler : str or distributed.Client, optional
        Address of an existing scheduler (``tcp://host:8786``) or a connected client:
        the tasks go there instead of a local cluster. A ``pinn`` fit asks for one ``GPU``
        worker resource when the config's device is ``cuda`` (or ``auto`` and some worker
        offers GPUs): start GPU workers with ``--resources GPU=1``.
    frequency, spacing, components : optional
        Reading overrides for every exam (Hz, metres, labels); a manifest's values win.
    retries : int
        Times Dask reruns a task that raised an unexpected exception.
    retry_failed : bool
        Redo exams that failed with bad input or a diverged fit even when neither their
        input nor the settings changed.
    progress : bool
        Show a progress bar (exams done / failed / remaining time) and messages on stderr.
    task : callable, optional
        The function run per exam (default :func:`run_exam`; for instrumentation).

    Returns
    -------
    pandas.DataFrame
        The summary (as written to ``summary.csv``): one row per exam and method with
        ``id, method, status, error, seconds, reused``, R and CTE (%) against ``mre`` where
        the exam has one, ``roi<label>_{n,median,iqr,mean,sd}`` of ``|G*|`` in kPa, the
        frequency, path and hashes. ``df.attrs["timing"]`` holds, in seconds, the cluster
        start-up (``startup_s``, workers' imports included), the time from the first
        submission to the last result (``run_s``), the summed task times (``tasks_s``:
        read, run, write) and the whole call (``wall_s``).

    Raises
    ------
    MREInputError
        Bad inputs, methods, results folder or scheduler address (before any work).
    BatchInterrupted
        On Ctrl-C, after cancelling the remaining tasks and writing the summary.
    """
    import pandas as pd  # noqa: F401 (fail early when pandas is missing)

    t_start = time.perf_counter()
    methods = _check_methods(methods)
    results = _results_folder(results_dir)
    if "pinn" in methods:
        from .config import TrainingConfig

        config = (config or TrainingConfig()).check()
        if config.threads == 0:  # the workers are the parallelism: one thread per fit
            config = config.replace(threads=1)
    keys = {m: method_key(m, config) for m in methods}
    exams = find_exams(inputs, frequency=frequency, spacing=spacing,
                       components=components, exclude=[results])
    task = task or run_exam
    say = _Say(progress)

    with _Lock(results):
        _remove_stale_temporaries(results)
        previous = _previous_failures(results / SUMMARY)
        plans, rows = [], {}
        for exam in exams:
            content = input_hash(exam.path)
            ikey = _exam_key(exam, content)
            stored = _stored(results / f"{exam.id}.nc", ikey)
            reused = {m: dict(v["row"]) for m, v in stored.items()
                      if m in keys and v.get("key") == keys[m]}
            for m in methods:
                old = previous.get((exam.id, m))
                if (m not in reused and not retry_failed and old is not None
                        and old["status"] in DETERMINISTIC_FAILURES
                        and old.get("input_hash") == content
                        and old.get("config_hash") == keys[m]):
                    reused[m] = old
            for m, r in reused.items():
                rows[(exam.id, m)] = {**r, "reused": True}
            todo = [m for m in methods if m not in reused]
            if todo:
                # every other result of the same input stays in the file, requested or not
                keep = [m for m in stored if m not in todo]
                plans.append((exam, todo, keep, ikey, content))
        timing = {"startup_s": 0.0, "run_s": 0.0, "tasks_s": 0.0, "n_tasks": len(plans)}
        order = {e.id: i for i, e in enumerate(exams)}

        def write_summary() -> pd.DataFrame:
            df = _summary(rows, exams, methods, order)
            _atomic_write(results / SUMMARY, lambda tmp: df.to_csv(tmp, index=False,
                                                                 float_format="%.6g"))
            return df

        if not plans:
            df = write_summary()
            say(f"nothing to run: the {len(exams)} exam(s) are done in {results}, or failed "
                "with the same inputs and settings before (--retry-failed redoes those).")
            df.attrs["timing"] = timing | {"wall_s": time.perf_counter() - t_start}
            return df

        t_cluster = time.perf_counter()
        with _connect(scheduler, workers, methods, config, say) as (client, local_gpus):
            # every worker imports scipy (and torch) now, in parallel: part of start-up
            with contextlib.suppress(Exception):
                client.run(_warm_up, "pinn" in methods)
            timing["startup_s"] = time.perf_counter() - t_cluster
            resources = _pinn_resources(client, config) if "pinn" in methods else None
            futures = {}
            for exam, todo, keep, ikey, content in plans:
                fut = client.submit(
                    task, exam, todo, str(results), config_json=config.to_json()
                    if config is not None else None, keys={m: keys[m] for m in todo},
                    input_key=ikey, content_hash=content, keep=keep, local_gpus=local_gpus,
                    # unique: a scheduler must never hand back another run's result
                    key=f"mrepinn-batch-{exam.id}-{uuid.uuid4().hex[:12]}", retries=retries,
                    resources=resources if "pinn" in todo else None,
                )
                futures[fut] = (exam, todo, content)
            n_done = n_failed = 0
            bar = _bar(len(plans), progress)
            try:
                from distributed import as_completed

                for fut in as_completed(list(futures), loop=client.loop):
                    exam, todo, content = futures.pop(fut)
                    try:
                        payload = fut.result()
                        new = payload["rows"]
                        timing["tasks_s"] += float(payload.get("task_seconds", 0.0))
                    except Exception as exc:  # raised after the retries, or a lost worker
                        new = [_crash_row(exam, m, keys[m], content, exc) for m in todo]
                    for r in new:
                        rows[(exam.id, r["method"])] = {**r, "reused": False}
                    if all(r["status"] == "done" for r in new):
                        n_done += 1
                    else:
                        n_failed += 1
                    bar.set_postfix_str(f"done {n_done}, failed {n_failed}", refresh=False)
                    bar.update(1)
                    write_summary()  # after every exam: a crash loses nothing finished
                timing["run_s"] = time.perf_counter() - t_cluster - timing["startup_s"]
            except KeyboardInterrupt:
                client.cancel(list(futures), force=True)
                bar.close()
                df = write_summary()
                finished = len(plans) - len(futures)
                raise BatchInterrupted(
                    f"batch stopped by the user after {finished} of {len(plans)} exam(s); "
                    f"the finished results are in {results}; run the same command again to "
                    "do the rest.", df) from None
            finally:
                bar.close()
        df = write_summary()
    df.attrs["timing"] = timing | {"wall_s": time.perf_counter() - t_start}
    return df


def _check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = [methods]
    out = tuple(dict.fromkeys(str(m).lower() for m in methods))
    bad = [m for m in out if m not in METHODS]
    if bad or not out:
        raise MREInputError(f"unknown method(s) {', '.join(bad) or '(none)'}; choose from "
                            f"{', '.join(METHODS)}.")
    return out


def _results_folder(results_dir: str | os.PathLike) -> Path:
    results = Path(results_dir).expanduser()
    if results.exists() and not results.is_dir():
        raise MREInputError(f"{results}: is a file; -o takes the folder of the results.")
    if not results.parent.is_dir():
        raise MREInputError(f"{results}: the folder {results.parent} does not exist.")
    results.mkdir(exist_ok=True)
    if not os.access(results, os.W_OK | os.X_OK):
        raise MREInputError(f"{results}: the results folder is not writable.")
    return results.resolve()


def _stored(path: Path, ikey: str) -> dict[str, dict]:
    """``method -> {"key", "row"}`` of an existing result made from the same input."""
    if not path.exists():
        return {}
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
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


class _Lock:
    """One batch at a time per results folder (a lock file naming the host and process)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK

    def __enter__(self) -> _Lock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    holder = self.path.read_text(errors="replace").strip() or "?"
                    raise MREInputError(
                        f"{self.path.parent}: another batch (host and process {holder}) is "
                        f"writing here; wait for it, or delete {self.path} if it is gone."
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return self
        raise MREInputError(f"{self.path}: cannot take the lock of the results folder.")

    def _stale(self) -> bool:
        try:
            host, pid = self.path.read_text().split()
        except (OSError, ValueError):
            return True
        if host != socket.gethostname():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
        return False

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporaries left by killed workers (hidden ``.<name>.<random>.tmp[.partial]``)."""
    for p in folder.glob(".*.tmp*"):
        if re.match(r"^\..+\.(nc|csv)\.\w+\.tmp(\.partial)?$", p.name):
            p.unlink(missing_ok=True)


class _Say:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str) -> None:
        if self.on:
            print(text, file=sys.stderr, flush=True)


def _bar(total: int, on: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="exam", desc="batch", disable=not on, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def default_workers() -> int:
    """Worker processes of the local cluster when none are asked for: the usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _connect(scheduler: Any, workers: int | None, methods: Sequence[str],
             config: TrainingConfig | None, say: _Say):
    """A client of the given scheduler, or of a local cluster started (and closed) here;
    yields ``(client, local_gpus)``."""
    from distributed import Client, LocalCluster

    if scheduler is not None and workers is not None:
        raise MREInputError("give either workers (a local cluster) or a scheduler address, "
                            "not both.")
    if isinstance(scheduler, Client):
        _say_dashboard(scheduler, say)
        yield scheduler, 0
        return
    if scheduler is not None:
        address = str(scheduler)
        if "://" not in address:
            address = f"tcp://{address}"
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise MREInputError(
                f"cannot reach the Dask scheduler at {address} ({_one_line(exc)}); start "
                "one with `dask scheduler` and workers with `dask worker ADDRESS`."
            ) from None
        try:
            if not client.scheduler_info().get("workers"):
                say(f"waiting for workers to join the scheduler at {address} "
                    f"(`dask worker {address}`)...")
                client.wait_for_workers(1)
            _say_dashboard(client, say)
            yield client, 0
        finally:
            client.close()
        return

    n = default_workers() if workers is None else int(workers)
    if n < 1:
        raise MREInputError(f"workers must be at least 1, got {workers}.")
    gpus = _local_gpus(methods, config)
    dashboard = importlib.util.find_spec("bokeh") is not None
    import dask

    with warnings.catch_warnings(), dask.config.set({NANNY_MALLOC: None}):
        # the nanny's default MALLOC_TRIM_THRESHOLD_=65536 makes glibc mmap and unmap
        # torch's buffers on every allocation: a fit ran 1.8× slower (9.4 s -> 16.4 s)
        warnings.simplefilter("ignore")  # port and memory-limit notices of a local cluster
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0" if dashboard else None,
            resources={"GPU": 1} if gpus else None, silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster, set_as_default=False)
        try:
            gpu_text = f", {gpus} GPU(s)" if gpus else ""
            say(f"local Dask cluster: {n} worker process(es), one thread each{gpu_text}")
            if dashboard:
                say(f"dashboard: {cluster.dashboard_link}")
            else:
                say("(for the Dask dashboard: pip install 'bokeh>=3.1')")
            yield client, gpus
        finally:
            client.close()
    finally:
        with contextlib.suppress(Exception):
            cluster.close(timeout=20)


def _say_dashboard(client: Any, say: _Say) -> None:
    with contextlib.suppress(Exception):
        if "dashboard" in client.scheduler_info().get("services", {}):
            say(f"dashboard: {client.dashboard_link}")


def _local_gpus(methods: Sequence[str], config: TrainingConfig | None) -> int:
    """GPUs a local cluster's workers fit on (0 unless ``pinn`` may run on CUDA)."""
    if "pinn" not in methods or config is None or config.device == "cpu":
        return 0
    import torch

    if not torch.cuda.is_available():
        if config.device.startswith("cuda"):
            raise MREInputError(f"device {config.device!r}: PyTorch sees no CUDA GPU on this "
                                "machine; use --device cpu or auto.")
        return 0
    return torch.cuda.device_count()


def _pinn_resources(client: Any, config: TrainingConfig | None) -> dict[str, int] | None:
    """``{"GPU": 1}`` when a PINN fit should hold one GPU of a worker: the config asks for
    CUDA, or says ``auto`` and some worker offers GPU resources."""
    try:
        offered = [w.get("resources", {}) for w in client.scheduler_info()["workers"].values()]
    except Exception:
        offered = []
    return pinn_resources(config.device if config is not None else "cpu", offered)


def pinn_resources(device: str, offered: Sequence[Mapping[str, float]]) -> dict[str, int] | None:
    """The worker resources a PINN task asks for, given the config's ``device`` and the
    resources the workers offer (see :func:`run_batch`).

    Raises
    ------
    MREInputError
        When the device is ``cuda`` but workers are there and none offers a ``GPU``.
    """
    has_gpu = any(r.get("GPU", 0) >= 1 for r in offered)
    device = str(device).lower()
    if device.startswith("cuda"):
        if offered and not has_gpu:
            raise MREInputError(
                f"device {device!r}: no worker offers a GPU; start GPU workers with "
                "`dask worker ADDRESS --nthreads 1 --resources GPU=1` (one per GPU)."
            )
        return {"GPU": 1}
    if device == "auto" and has_gpu:
        return {"GPU": 1}
    return None
