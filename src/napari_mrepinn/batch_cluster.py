"""The Dask cluster of a batch: a local one started here, or an existing scheduler.

:func:`_connect` yields a client (and the GPUs of a local cluster); :func:`pinn_resources`
says which worker resources a PINN fit asks for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .batch_task import _one_line
from .data import MREInputError

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrainingConfig

__all__ = ["CONNECT_TIMEOUT", "default_workers", "pinn_resources"]

#: how long to try reaching a scheduler given by its address
CONNECT_TIMEOUT = "20s"
#: the Dask setting of the malloc environment of nanny-started workers (unset here)
NANNY_MALLOC = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


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
