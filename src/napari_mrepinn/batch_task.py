"""One exam of a batch: the Dask task :func:`run_exam`, its methods and their readouts.

The task reads the exam, runs the methods (``pinn``, ``ahi``, ``mdev``) in
:data:`_RUN_ORDER`, adds ROI statistics (and R / CTE against ``mre``) to one summary row
per method and writes ``<id>.nc`` atomically with the hashes of what it was made from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch_exams import Exam
from .data import MREExample, MREInputError

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from .config import TrainingConfig

__all__ = [
    "ATTR",
    "BASELINE_SETTINGS",
    "METHODS",
    "FitDiverged",
    "method_key",
    "roi_statistics",
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
_RUN_ORDER = ("pinn", "ahi", "mdev")  # pinn first: its recipe writes mu_ahi (its prior)


class FitDiverged(RuntimeError):
    """A fit whose loss stayed non-finite or whose modulus is not finite in the mask."""


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
