"""The training dock's ensembles: several fits, one after the other, in the dock's worker.

With ``ensemble members`` above 1, Start trains the members (seeds ``seed, seed + 1, ...``,
:func:`napari_mrepinn.uncertainty.ensemble_seeds`) one after the other in the dock's one
training thread, each exactly as a single run of the dock (:func:`napari_mrepinn.recipe.
build_model` and the same callbacks) and shown live like one. ``recipe.fit`` runs the
members in other processes instead, which the live view cannot follow. The result is
assembled by :func:`napari_mrepinn.uncertainty.ensemble_result`, as
:func:`~napari_mrepinn.uncertainty.fit_ensemble` assembles its own: the members' mean
``mu_pred``, ``mu_spread``, ``mu_uncertainty`` and the seeds in the settings. A stop (or a
failure) keeps the members that finished: two or more still make an ensemble, one is shown
as the single fit it is.

:class:`EnsembleRun` holds one run's members (GUI thread only); nothing here touches Qt.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import TrainingConfig
from ..data import MREExample
from ..recipe import ENSEMBLE_MAPS, build_model, result_attrs
from ..uncertainty import ensemble_result, ensemble_seeds

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from ..training import MREPINNModel

__all__ = ["ENSEMBLE_MAPS", "EnsembleRun"]

# ENSEMBLE_MAPS (recipe's): the layers only an ensemble has (a later single fit's mu_pred is
# not theirs)


class EnsembleRun:
    """The members of one ensemble run of the training dock.

    Parameters
    ----------
    example : MREExample
        The example every member is fitted on.
    config : TrainingConfig
        The dock's options; ``ensemble_members`` (at least 2) members with seeds
        ``config.seed + i`` (random ones when it is None), each a single fit
        (``ensemble_members=1`` in its own config, as ``fit_ensemble`` runs them).
    """

    def __init__(self, example: MREExample, config: TrainingConfig) -> None:
        self.example = example
        self.seeds = ensemble_seeds(config.seed, config.ensemble_members)
        self.configs = [config.replace(seed=s, ensemble_members=1) for s in self.seeds]
        #: the finished members' results, with the attrs recipe.fit writes, and their seeds
        self.results: list[xr.Dataset] = []
        self.finished_seeds: list[int] = []
        #: members built so far (the one training now is number ``started``, from 1)
        self.started = 0
        self._first_model: MREPINNModel | None = None

    @property
    def size(self) -> int:
        """Members asked for."""
        return len(self.seeds)

    def builds(self) -> list[Callable[[], MREPINNModel]]:
        """One model factory per member, for the worker (called in its thread)."""
        return [functools.partial(build_model, self.example, c) for c in self.configs]

    def member_finished(self, info: dict[str, Any]) -> None:
        """Keep a member's result (the worker's ``member_finished``), unless it was stopped."""
        if not info["completed"] or info["results"] is None:
            return
        i, model = int(info["member"]), info["model"]
        result = info["results"].copy()
        # the record recipe.fit writes, so the result reads like fit_ensemble's
        result.attrs = {**model.result_example.ds.attrs,
                        **result_attrs(model, self.configs[i], float(info["seconds"]))}
        self.results.append(result)
        self.finished_seeds.append(self.seeds[i])
        if self._first_model is None:
            self._first_model = model

    def outcome(self, error: str | None = None
                ) -> tuple[MREExample | None, MREPINNModel | None, str]:
        """What the run leaves once its thread has ended.

        Parameters
        ----------
        error : str, optional
            Why it failed (None: it finished or was stopped).

        Returns
        -------
        tuple
            The result to show (None: no member finished; the last state stays), the
            model behind it (None for an ensemble: no one network to save or continue) and
            the status text.
        """
        n, done = self.size, len(self.results)
        seeds = ", ".join(str(s) for s in self.finished_seeds)
        where = f"member {max(1, self.started)}/{n}"
        if error is not None:
            head = f"failed in {where}: {error}"
        elif done < n:
            head = f"stopped in {where}"
        else:
            head = "done"
        if done >= 2:
            result = ensemble_result(self.example, self.results, self.finished_seeds)
            what = f"{n} fits" if done == n else f"the {done} finished fits of {n}"
            # Save and Resume are greyed out then; the status says why
            return result, None, (f"{head}: ensemble of {what} (seeds {seeds}): mean "
                                  "mu_pred, mu_spread, mu_uncertainty; no single network "
                                  "to save or resume (Start trains a new run)")
        if done == 1:
            member = self.results[0]
            result = self.example.copy()
            for name in member.data_vars:
                result.ds[name] = member[name]
            result.ds.attrs.update(member.attrs)
            return result, self._first_model, (
                f"{head}: showing member 1 (seed {seeds}), the only finished fit: no "
                "uncertainty map (an ensemble needs 2)")
        return None, None, f"{head}: no member finished"
