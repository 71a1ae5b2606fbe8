"""The one training configuration (``napari_mrepinn.config``)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import napari_mrepinn as mp
from napari_mrepinn.config import (
    LOSS_TERMS,
    LossWeights,
    TrainingConfig,
    options,
    resolve_device,
)
from napari_mrepinn.data import MREExample, MREInputError


def test_defaults_are_the_recipe_and_round_trip_through_json():
    c = TrainingConfig()
    assert (c.iters, c.lr, c.pde_warmup_iters, c.pde) == (5000, 1e-3, 2500, "hetero")
    assert c.loss_weights.as_list() == [1.0, 0.0, 1.0, 0.0]
    assert TrainingConfig.from_json(c.to_json()) == c
    json.loads(c.to_json())  # plain JSON


def test_warmup_that_runs_is_capped_at_half_the_run():
    assert TrainingConfig(iters=1200).warmup_iters == 600
    assert TrainingConfig(iters=10_000).warmup_iters == 2500


def test_values_are_coerced_once_for_every_way_in():
    c = TrainingConfig(iters="300", lr="1e-4", loss_weights="1,0,1", optimizer="lbfgs",
                       dense="false", seed=3.0)
    assert c.iters == 300 and isinstance(c.iters, int) and c.lr == 1e-4
    assert c.loss_weights == LossWeights(1, 0, 1, 0)
    assert c.optimizer == "L-BFGS" and c.dense is False and c.seed == 3
    assert c.replace(iters=10).iters == 10 and c.iters == 300  # frozen: replace copies


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": -1}, "learning rate"),
        ({"lr": math.nan}, "learning rate"),
        ({"n_points": 0}, "at least 1"),
        ({"pde": "foo"}, "must be one of"),
        ({"loss_weights": [0, 0, 0, 0]}, "all loss weights are 0"),
        ({"loss_weights": [math.nan, 0, 1, 0]}, "finite"),
        ({"loss_weights": [-1, 0, 1]}, "≥ 0"),
        ({"device": "mps"}, "unknown device"),
        ({"device": "nonsense"}, "unknown device"),
        ({"lr_decay": 2.0}, "at most 1"),
        ({"omega": -3.0}, "omega must be > 0"),
    ],
)
def test_check_refuses_bad_values_with_one_message(overrides, message):
    with pytest.raises(MREInputError, match=message):
        TrainingConfig(**overrides).check()


@pytest.mark.parametrize("bad", [{"iters": 2.5}, {"loss_weights": [1, 0]},
                                 {"loss_weights": "1,a,1"}, {"dense": "maybe"},
                                 {"iterations": 3}])
def test_construction_refuses_wrong_types_and_unknown_options(bad):
    with pytest.raises(MREInputError):
        TrainingConfig.from_dict(bad)


def test_cuda_without_a_gpu_is_refused_before_any_work():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for device in ("cuda", "cuda:3"):
        with pytest.raises(MREInputError, match="CUDA"):
            resolve_device(device)
    assert resolve_device("auto") == "cpu"


def test_check_with_an_example_needs_what_the_options_use(plane_example):
    with pytest.raises(MREInputError, match="no anatomical image"):
        TrainingConfig(loss_weights=[1, 0, 1, 1]).check(plane_example)
    bare = MREExample.from_numpy(plane_example.wave.values, 60.0, 1e-3)
    with pytest.raises(MREInputError, match="ground-truth modulus"):
        TrainingConfig(loss_weights=[1, 1, 1, 0]).check(bare)
    multi = MREExample.from_numpy(np.ones((2, 8, 8), complex), [50.0, 60.0], 1e-3)
    TrainingConfig().check(multi)  # several frequencies: a joint fit (tests/test_multifreq)


def test_the_option_table_has_every_field_and_the_loss_terms():
    names = [o.name for o in options()]
    assert names == [f.name for f in dataclasses.fields(TrainingConfig)]
    for opt in options():
        assert opt.help and opt.label
        assert opt.flag == "--" + opt.name.replace("_", "-")
    assert [t.name for t in LOSS_TERMS] == [f.name for f in dataclasses.fields(LossWeights)]


def test_legacy_settings_of_version_0_1_give_the_config():
    settings = {  # what fit() of 0.1 wrote into mrepinn_settings_json
        "pde": "helmholtz", "pde_engine": "fast", "pde_detach": True, "pde_no_z": True,
        "frequency_hz": 90.0, "density": 1000.0, "loss_weights": [1.0, 0.0, 1.0, 0.0],
        "pde_warmup_iters": 600, "pde_step_iters": 100, "pde_init_weight": 0.01,
        "pde_step_factor": 10.0, "n_points": 512, "mu_tv_weight": 0.0, "optimizer": "adam",
        "lr": 0.0004, "seed": 0, "device": "cpu", "mu_prior_pa": [3000.0, 300.0],
        "net_n_layers": 4, "net_n_hidden": 128, "net_omega": 12.5, "iters": 1200,
        "seconds": 10.0, "options": {"auto_width": True, "omega": "auto", "lr_decay": 0.1},
    }
    c = TrainingConfig.from_legacy_settings(settings)
    assert (c.pde, c.n_points, c.iters, c.pde_warmup_iters) == ("helmholtz", 512, 1200, 600)
    assert c.derivative_axes == "in-plane" and c.n_hidden == 0 and c.device == "auto"


def test_fit_takes_a_config_or_overrides_and_restores_threads(plane_example):
    import torch

    before = torch.get_num_threads()
    small = dict(iters=6, n_points=64, n_layers=2, n_hidden=8, pde_warmup_iters=2)
    a = mp.fit(plane_example, TrainingConfig(**small), progress=False)
    b = mp.fit(plane_example, progress=False, **small)
    assert a.ds.attrs["mrepinn_config_json"] == b.ds.attrs["mrepinn_config_json"]
    assert np.allclose(a["mu_pred"].values, b["mu_pred"].values)
    assert torch.get_num_threads() == before
    with pytest.raises(MREInputError, match="unknown training option"):
        mp.fit(plane_example, progress=False, iterations=5)


def test_in_plane_or_3d_derivatives(plane_example):
    vol = MREExample.from_numpy(np.ones((6, 6, 8), complex), 60.0, 1e-3)
    thin = MREExample.from_numpy(np.ones((6, 6, 3), complex), 60.0, 1e-3)
    assert not TrainingConfig().in_plane(vol)  # auto: a volume is differentiated in 3-D
    assert TrainingConfig().in_plane(thin)  # ... a thin stack slice by slice
    assert TrainingConfig(derivative_axes="in-plane").in_plane(vol)
    assert not TrainingConfig(derivative_axes="3d").in_plane(thin)
    assert TrainingConfig(derivative_axes="3d").in_plane(plane_example)  # one slice
