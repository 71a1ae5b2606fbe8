"""Checkpoints carry what they were trained on, and restore refuses a mismatch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_mrepinn import build_model, checkpoints
from napari_mrepinn.data import MREInputError

SMALL = dict(iters=40, n_points=64, n_layers=2, n_hidden=8, pde_warmup_iters=5, seed=0)


def _trained(example, **kw):
    model = build_model(example, **{**SMALL, **kw})
    model.train(10, test_every=0)
    return model


def test_manifest_describes_the_run(plane_example, tmp_path):
    model = _trained(plane_example)
    path = model.save(tmp_path / "run.pt")
    state = checkpoints.load_state(path)
    m = checkpoints.manifest(model)
    assert m["shape"] == list(plane_example.spatial_shape)
    assert m["frequency_hz"] == plane_example.frequency
    assert checkpoints.checkpoint_config(state) == model.config
    assert not list(tmp_path.glob("*.partial"))  # written atomically


def test_restore_continues_on_the_same_example(plane_example, tmp_path):
    model = _trained(plane_example)
    path = model.save(tmp_path / "run.pt")
    again = build_model(plane_example, **SMALL).restore(path)
    assert again.iteration == 10
    assert json.dumps(again.history) == json.dumps(model.history)  # NaN-safe


def test_restore_on_a_single_slice_with_a_z_axis(plane_example, tmp_path):
    # one slice of a volume: its z spacing is unknown (NaN) and must compare equal to itself
    from napari_mrepinn.data import MREExample

    wave = np.asarray(plane_example.wave.values)[:, :, None]
    slab = MREExample.from_numpy(wave, plane_example.frequency, 1e-3, spatial_ndim=3)
    assert np.isnan(slab.spacing["z"])
    model = _trained(slab)
    path = model.save(tmp_path / "slice.pt")
    assert build_model(slab, **SMALL).restore(path).iteration == 10


@pytest.mark.parametrize("change", ["grid", "frequency", "network"])
def test_restore_refuses_another_run_and_says_what_differs(plane_example, tmp_path, change):
    model = _trained(plane_example)
    path = model.save(tmp_path / "run.pt")
    other, kw = plane_example, {}
    if change == "grid":
        other = plane_example.downsample(2)
    elif change == "frequency":
        other = plane_example.copy()
        other.ds.attrs["frequency"] = 75.0
    else:
        kw = {"n_hidden": 16}
    target = build_model(other, **{**SMALL, **kw})
    label = {"grid": "grid shape", "frequency": r"frequency \(Hz\)", "network": "networks"}
    with pytest.raises(MREInputError, match=rf"trained on something else.*{label[change]}"):
        target.restore(path)
    if change != "network":  # same networks: a warm start takes the weights knowingly
        target.restore(path, warm_start=True)
        assert target.iteration == 0
        name = "u_pinn.hidden.0.weight"
        got = dict(target.net.named_parameters())[name]
        want = dict(model.net.named_parameters())[name]
        assert torch.equal(got.cpu(), want.cpu())
    else:
        with pytest.raises(MREInputError, match="do not fit"):
            target.restore(path, warm_start=True)


@pytest.mark.parametrize("content", [b"", b"junk" * 50, b"PK\x03\x04 not a zip"])
def test_junk_or_foreign_files_are_one_clear_error(plane_example, tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    model = build_model(plane_example, **SMALL)
    with pytest.raises(MREInputError, match="not a napari-mrepinn checkpoint"):
        model.restore(path)
    nc = plane_example.save(tmp_path / "example.nc")
    with pytest.raises(MREInputError, match="not a napari-mrepinn checkpoint"):
        model.restore(nc)


def test_a_checkpoint_of_version_0_1_restores_when_it_fits(plane_example, tmp_path):
    model = _trained(plane_example)
    path = model.save(tmp_path / "run.pt")
    state = torch.load(path, weights_only=True)
    state["format"] = "napari-mrepinn-model-1"  # 0.1 wrote no manifest
    del state["manifest_json"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    again = build_model(plane_example, **SMALL).restore(old)
    assert again.iteration == 10
    small = plane_example.downsample(2)
    with pytest.raises(MREInputError, match="trained on something else"):
        build_model(small, **SMALL).restore(old)


def test_restored_run_matches_an_uninterrupted_one(plane_example, tmp_path):
    a = _trained(plane_example)
    a.train(10, test_every=0)
    b = _trained(plane_example)
    path = b.save(tmp_path / "run.pt")
    c = build_model(plane_example, **{**SMALL, "seed": 5}).restore(path)
    c.train(10, test_every=0)
    assert np.allclose([r["loss"] for r in c.history], [r["loss"] for r in a.history],
                       rtol=1e-5)
