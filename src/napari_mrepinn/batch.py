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

This module is the driver; the parts live in :mod:`~napari_mrepinn.batch_exams` (inputs,
manifests, hashes), :mod:`~napari_mrepinn.batch_task` (one exam: the methods and their
readouts), :mod:`~napari_mrepinn.batch_summary` (the summary table, what a rerun reuses)
and :mod:`~napari_mrepinn.batch_cluster` (the Dask cluster).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .batch_cluster import (
    CONNECT_TIMEOUT,  # noqa: F401 (re-exported: the constants of the parts stay importable here)
    NANNY_MALLOC,  # noqa: F401
    _bar,
    _connect,
    _pinn_resources,
    _Say,
    default_workers,
    pinn_resources,
)
from .batch_exams import Exam, _exam_key, find_exams, input_hash
from .batch_summary import (
    CORE_COLUMNS,  # noqa: F401
    DETERMINISTIC_FAILURES,
    SUMMARY,
    TRAILING_COLUMNS,  # noqa: F401
    _atomic_write,
    _crash_row,
    _previous_failures,
    _stored,
    _summary,
)
from .batch_task import (
    ATTR,  # noqa: F401
    BASELINE_SETTINGS,
    METHODS,
    FitDiverged,
    _warm_up,
    method_key,
    roi_statistics,
    run_exam,
)
from .data import MREInputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

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

#: the lock file of a results folder (one batch at a time)
LOCK = ".mrepinn-batch.lock"

log = logging.getLogger(__name__)


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`run_batch`; ``summary`` holds the exams finished before."""

    def __init__(self, message: str, summary: pd.DataFrame) -> None:
        super().__init__(message)
        self.summary = summary


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
