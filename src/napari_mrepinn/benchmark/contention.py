"""The thread policy under load: how much a short default fit slows down beside a process
that keeps a core busy and beside another fit.

Each fit runs in a fresh interpreter (``python -c``), so that ``OMP_WAIT_POLICY``, which
the OpenMP runtime reads once when torch is imported, can be set for it: each wait policy is
measured with the same code, in the same run. Conditions, interleaved per round:

* ``idle``: the fit alone;
* ``busy``: the fit beside a pure-Python spin loop (``while True: pass``) in another process;
* ``torch``: the fit beside another fit of the same recipe and thread policy, looping until
  the measured one ends (the measured fit starts once the other is training).

The figure of each fit is its training time (``MREPINNModel.train``, wall and process CPU),
without the interpreter start-up, the AHI and the final full-grid results.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from .spec import BenchmarkConfig, loadavg

__all__ = ["CONDITIONS", "TARGETS", "measure_contention"]

CONDITIONS = ("idle", "busy", "torch")
#: slowdown targets of issue 10 (ratio to the idle fit of the same round)
TARGETS = {"busy": 1.5, "torch": 2.0}
#: a pure-Python spin loop that ends when its parent does (checked every ~10-50 ms), so a
#: benchmark killed outright leaves no spinning process behind
_SPIN = ("import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
         "    for _ in range(100_000): pass")
_CHILD = ("import sys; from napari_mrepinn.benchmark.contention import _fit_child; "
          "_fit_child(sys.argv[1])")
#: seconds a fit may take (generous: a loaded shared machine)
_TIMEOUT = 1800


def _fit_child(spec_json: str) -> None:
    """Subprocess entry: one fit of the recipe, then its training times as one JSON line;
    with ``loop``, fits again and again until killed or orphaned (printing ``ready`` once,
    when the first starts training)."""
    from ..config import TrainingConfig
    from ..data import MREExample
    from ..recipe import fit
    from ..training import Callback

    spec = json.loads(spec_json)
    example = MREExample.load(spec["path"])
    config = TrainingConfig(iters=int(spec["iters"]), threads=int(spec["threads"]),
                            device="cpu", seed=0, **spec["fit_options"])

    class TrainClock(Callback):
        def on_train_begin(self, model) -> None:
            import torch

            if not clock:
                print("ready", flush=True)
            clock.update(t0=time.perf_counter(), c0=time.process_time(),
                         threads=torch.get_num_threads())

        def on_train_end(self, model) -> None:
            clock.update(train_s=time.perf_counter() - clock["t0"],
                         cpu_s=time.process_time() - clock["c0"])

    clock: dict[str, Any] = {}
    parent = os.getppid()
    while True:
        fit(example, config, progress=False, callbacks=[TrainClock()])
        if not spec["loop"] or os.getppid() != parent:
            break
    print(json.dumps({k: clock[k] for k in ("train_s", "cpu_s", "threads")}), flush=True)


def _env(passive: bool) -> dict[str, str]:
    env = dict(os.environ)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:  # the runtime's own default, whatever the caller's shell says
        env.pop("OMP_WAIT_POLICY", None)
    return env


def _wait_ready(proc: subprocess.Popen, timeout: float) -> None:
    """Block until the competing fit prints ``ready`` (it is training), or fail."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line or line[0].strip() != "ready":
        raise RuntimeError(f"the competing fit did not start training within {timeout:.0f} s "
                           f"(exit status {proc.poll()})")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _measured_fit(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps({**spec, "loop": False})],
                          capture_output=True, text=True, env=env, timeout=_TIMEOUT,
                          check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the measured fit exited with {proc.returncode}: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fit_beside(condition: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One measured fit in ``condition`` (see :data:`CONDITIONS`)."""
    if condition == "idle":
        return _measured_fit(spec, env)
    if condition == "busy":
        other = subprocess.Popen([sys.executable, "-c", _SPIN], env=env)
    else:
        other = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps({**spec, "loop": True})],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
    try:
        if condition == "torch":
            _wait_ready(other, _TIMEOUT)
        return _measured_fit(spec, env)
    finally:
        _stop(other)


def _summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = {c: statistics.median(r["train_s"] for r in runs[c]) for c in CONDITIONS}
    out: dict[str, Any] = {
        "train_s": med,
        "cpu_s": {c: statistics.median(r["cpu_s"] for r in runs[c]) for c in CONDITIONS},
        "ratio": {c: med[c] / med["idle"] for c in CONDITIONS if c != "idle"},
        # per round: each ratio against the idle fit of the same round
        "round_ratios": {c: [b["train_s"] / a["train_s"]
                             for a, b in zip(runs["idle"], runs[c], strict=True)]
                         for c in CONDITIONS if c != "idle"},
        "threads": runs["idle"][0]["threads"],
        "runs": runs,
    }
    out["meets_targets"] = all(out["ratio"][c] <= t for c, t in TARGETS.items())
    return out


def measure_contention(
    example_path: str, cfg: BenchmarkConfig, *, log: Any = None
) -> dict[str, Any]:
    """Slowdown of a short default fit beside a busy core and beside another fit.

    Parameters
    ----------
    example_path : str
        The (single-frequency) example saved as ``.nc``; every fit loads it.
    cfg : BenchmarkConfig
        ``contention_iters`` (iterations of each fit), ``contention_repeats`` (rounds),
        ``contention_passive`` (wait policies), ``contention_threads`` and ``fit_options``.
    log : callable, optional
        Progress messages.

    Returns
    -------
    dict
        ``iters``, ``repeats``, ``cpu_count``, ``targets``, ``load_before`` /
        ``load_after`` (1, 5, 15-minute load averages) and, per wait policy
        (``"default"``, ``"passive"``), ``train_s`` and ``cpu_s`` (medians per condition),
        ``ratio`` (``busy`` and ``torch`` over ``idle``, of the medians),
        ``round_ratios``, ``threads`` (torch threads the fits trained with),
        ``meets_targets`` and the raw ``runs``.
    """
    say = log or (lambda msg: None)
    spec = {"path": str(example_path), "iters": int(cfg.contention_iters),
            "threads": int(cfg.contention_threads), "fit_options": dict(cfg.fit_options)}
    policies = {("passive" if p else "default"): bool(p) for p in cfg.contention_passive}
    runs = {name: {c: [] for c in CONDITIONS} for name in policies}
    out: dict[str, Any] = {"iters": spec["iters"], "repeats": int(cfg.contention_repeats),
                           "cpu_count": os.cpu_count(), "targets": TARGETS,
                           "load_before": loadavg()}
    for k in range(int(cfg.contention_repeats)):
        for name, passive in policies.items():
            for condition in CONDITIONS:
                say(f"contention round {k + 1}/{cfg.contention_repeats}: {name} wait "
                    f"policy, {condition} ...")
                runs[name][condition].append(_fit_beside(condition, spec, _env(passive)))
    out["load_after"] = loadavg()
    out["policies"] = {name: _summarise(r) for name, r in runs.items()}
    return out
