"""An uncertainty map for the PINN: the spread of a small ensemble.

A PINN fit is one draw among many equally good ones: the initial weights, the random
collocation points and the held-out split change the map most where the data say least (a
target's edge, a node of the wave, a noisy corner). :func:`fit_ensemble` runs the recipe
``members`` times with seeds ``seed, seed + 1, ...`` (in parallel processes where cores
allow) and reports

* ``mu_pred``: the members' mean complex modulus (Pa);
* ``mu_spread``: the members' standard deviation of ``|G*|`` over their mean (fraction);
* ``mu_uncertainty``: ``±`` the relative error of ``|G*|`` at the stated coverage
  (:data:`COVERAGE`): ``CALIBRATION · mu_spread``, a fraction (0.1 = ±10 %).

The factor :data:`CALIBRATION` was chosen on the validation family
(``benchmarks/family.py``, the tune split, see ``benchmarks/uncertainty.py``) so that
``|mean − true| / |true| <= mu_uncertainty`` holds in :data:`COVERAGE` of the voxels of
the mask; the held-out split checks it (docs/benchmarks.md gives the figure).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .config import TrainingConfig, default_threads
from .data import MREExample, MREInputError

__all__ = ["CALIBRATION", "COVERAGE", "ensemble_maps", "ensemble_result", "ensemble_seeds",
           "fit_ensemble"]

#: share of the voxels whose relative error the stated uncertainty should cover
COVERAGE = 0.68
#: mu_uncertainty = CALIBRATION · mu_spread: the 68 % quantile of |error| / spread over the
#: voxels of the family's 8 tuning cases (2-D, 30 dB, 3 members of the default recipe). On
#: the 4 held-out cases it covers 64-75 % of the voxels of three and 47 % of the one where
#: the fit fails (2d-02: the members agree on a wrong map). benchmarks/uncertainty.py,
#: docs/benchmarks.md
CALIBRATION = 1.73


def _member(example: MREExample, config: TrainingConfig) -> xr.Dataset:
    """One member's fit (in a worker process or here): the maps the ensemble needs, with
    the attrs :func:`~napari_mrepinn.recipe.fit` wrote (a small object to send back)."""
    from .recipe import fit

    out = fit(example, config, progress=False)
    keep = ("wave_pred", "mu_pred", "pde_residual", "mu_ahi", "mu_pred_f", "mu_alpha")
    ds = out.ds[[n for n in keep if n in out.ds]].copy(deep=True)
    ds.attrs = dict(out.ds.attrs)
    return ds


def ensemble_seeds(seed: int | None, members: int) -> list[int]:
    """The members' seeds: ``seed, seed + 1, ...``, or a random one each when ``seed`` is
    None."""
    if seed is None:
        rng = np.random.default_rng()
        return [int(rng.integers(2**31)) for _ in range(int(members))]
    return [int(seed) + i for i in range(int(members))]


def ensemble_maps(members: list[xr.DataArray], calibration: float = CALIBRATION
                  ) -> dict[str, xr.DataArray]:
    """The ensemble's modulus maps from its members' ``mu_pred`` (complex Pa).

    Returns
    -------
    dict
        ``mu_pred`` (mean, complex Pa), ``mu_spread`` (std of ``|G*|`` / mean ``|G*|``)
        and ``mu_uncertainty`` (``calibration · mu_spread``), fractions.
    """
    stack = xr.concat(members, dim="member")
    mag = np.abs(stack)
    mean = stack.mean("member")
    spread = mag.std("member", ddof=1) / mag.mean("member")
    spread.attrs.update(units="1", long_name="ensemble spread of |G*| (std / mean)")
    unc = calibration * spread
    unc.attrs.update(units="1", coverage=COVERAGE,
                     long_name=f"±relative error of |G*| at {COVERAGE:.0%} coverage")
    mean.attrs.update(members[0].attrs)
    return {"mu_pred": mean, "mu_spread": spread, "mu_uncertainty": unc}


def ensemble_result(example: MREExample, members: Sequence[xr.Dataset],
                    seeds: Sequence[int]) -> MREExample:
    """An ensemble's result from its members' results: what :func:`fit_ensemble` returns
    (the napari training dock assembles the members it fitted one by one with it too).

    Parameters
    ----------
    example : MREExample
        The example the members were fitted on.
    members : sequence of xarray.Dataset
        Each member's result variables (``mu_pred`` in complex Pa, ``wave_pred``...) with
        the attrs :func:`~napari_mrepinn.recipe.fit` writes (``mrepinn_settings_json``...),
        at least 2.
    seeds : sequence of int
        The members' seeds, in the same order.

    Returns
    -------
    MREExample
        A copy of ``example`` with the first member's variables and attrs, the ensemble's
        ``mu_pred``, ``mu_spread`` and ``mu_uncertainty`` (:func:`ensemble_maps`), and
        ``ensemble_members``, ``ensemble_seeds``, ``ensemble_seconds``,
        ``uncertainty_calibration`` and ``uncertainty_coverage`` in the settings.
    """
    if len(members) < 2 or len(seeds) != len(members):
        raise MREInputError(
            f"an ensemble result needs at least 2 members and one seed each, got "
            f"{len(members)} member(s) and {len(seeds)} seed(s).")
    from .recipe import drop_earlier_run  # (torch: only once members have been fitted)

    first = members[0]
    out = example.copy()
    drop_earlier_run(out)  # a result file as input: no map of its run beside this one's
    for name in first.data_vars:
        out.ds[name] = first[name]
    for name, var in ensemble_maps([m["mu_pred"] for m in members]).items():
        out.ds[name] = var
    out.ds.attrs.update(first.attrs)
    settings = json.loads(first.attrs.get("mrepinn_settings_json", "{}"))
    settings.update(ensemble_members=len(members), ensemble_seeds=[int(s) for s in seeds],
                    ensemble_seconds=[json.loads(m.attrs.get("mrepinn_settings_json", "{}"))
                                      .get("seconds") for m in members],
                    uncertainty_calibration=CALIBRATION, uncertainty_coverage=COVERAGE)
    out.ds.attrs["mrepinn_settings_json"] = json.dumps(settings)
    return out


def fit_ensemble(
    example: MREExample,
    config: TrainingConfig | None = None,
    *,
    members: int = 3,
    workers: int | None = None,
    progress: bool = True,
    on_member: Callable[[int], None] | None = None,
    **overrides: Any,
) -> MREExample:
    """Fit ``members`` PINNs that differ only in their seed; return the mean and spread.

    Parameters
    ----------
    example : MREExample
        As for :func:`napari_mrepinn.fit` (one or several frequencies).
    config : TrainingConfig, optional
        The recipe's options; member ``i`` uses seed ``config.seed + i`` (a random seed
        each when ``config.seed`` is None).
    members : int
        Ensemble size (at least 2).
    workers : int, optional
        Processes run at once (default: as many as the cores allow at the config's
        threads per fit, at most ``members``); 1 fits them one after the other here.
    progress : bool
        Print one line per finished member.
    on_member : callable, optional
        Called with the number of finished members (for a progress display).
    **overrides
        Fields of ``config`` to change.

    Returns
    -------
    MREExample
        A copy of ``example`` with the first member's ``wave_pred`` and ``pde_residual``,
        ``mu_ahi``, and the ensemble's ``mu_pred``, ``mu_spread`` and ``mu_uncertainty``
        (see the module docstring); attrs as :func:`~napari_mrepinn.fit` writes them,
        with ``ensemble_members`` and ``ensemble_seeds`` in the settings.
    """
    if int(members) < 2:
        raise MREInputError(f"an ensemble needs at least 2 members, got {members!r}.")
    members = int(members)
    config = (config or TrainingConfig()).replace(**overrides)
    config.check(example)
    seeds = ensemble_seeds(config.seed, members)
    threads = config.threads or default_threads()
    if workers is None:
        workers = max(1, min(members, (os.cpu_count() or 1) // max(1, threads)))
    # each member is one fit (a config asking for an ensemble would fit one per member)
    configs = [config.replace(seed=s, threads=threads, ensemble_members=1) for s in seeds]
    results: list[xr.Dataset | None] = [None] * members
    done = 0

    def finished(i: int, res: xr.Dataset) -> None:
        nonlocal done
        results[i] = res
        done += 1
        if progress:
            print(f"ensemble member {done}/{members} done (seed {seeds[i]})", flush=True)
        if on_member is not None:
            on_member(done)

    if workers <= 1:
        for i, c in enumerate(configs):
            finished(i, _member(example, c))
    else:
        # spawn: a fresh interpreter per worker (torch's threads do not survive a fork)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {pool.submit(_member, example, c): i for i, c in enumerate(configs)}
            try:
                for fut in cf.as_completed(futures):
                    finished(futures[fut], fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    return ensemble_result(example, [r for r in results if r is not None], seeds)
