"""The napari writer: layers from an MRE example (with results) back to a .nc file."""

from __future__ import annotations

import numpy as np

from napari_mrepinn._layers import update_result_layers
from napari_mrepinn._writer import write_mre_example
from napari_mrepinn.data import MREExample

PLUGIN = "napari-mrepinn"


def small_example(rng) -> MREExample:
    nx, ny, nz = 6, 5, 2
    w = rng.normal(size=(nx, ny, nz, 3)) + 1j * rng.normal(size=(nx, ny, nz, 3))
    mask = np.ones((nx, ny, nz), int)
    mask[0] = 0
    return MREExample.from_numpy(
        w,
        frequency=90.0,
        spacing=1e-3,
        mre=np.full((nx, ny, nz), 3000 + 300j),
        mre_mask=mask,
        anat=rng.random((nx, ny, nz)),
    )


def test_save_layers_with_results_round_trip(make_napari_viewer, tmp_path, rng):
    ex = small_example(rng)
    src = ex.save(tmp_path / "input.nc")
    src_bytes = src.read_bytes()
    viewer = make_napari_viewer()
    viewer.open(src, plugin=PLUGIN)
    mu = viewer.layers["mre"].metadata["mre_example"].ds["mre"] * 1.2
    update_result_layers(viewer, {"mu_pred": mu})
    out = tmp_path / "with_results.nc"
    written = viewer.layers.save(str(out), plugin=PLUGIN)
    assert written == [str(out)]
    assert src.read_bytes() == src_bytes, "the input file is never touched"
    back = MREExample.load(out)
    assert {"wave", "mre", "mre_mask", "anat", "mu_pred"} <= set(back.keys())
    np.testing.assert_allclose(back.ds["mu_pred"].values, mu.values)
    np.testing.assert_allclose(back.ds["wave"].values, ex.ds["wave"].values)
    assert back.frequency == 90.0
    assert not list(tmp_path.glob("*.partial")), "no temporary file is left behind"


def test_save_selected_result_layer_only(make_napari_viewer, tmp_path, rng):
    """Saving just the result layer still writes the whole example it belongs to."""
    ex = small_example(rng)
    viewer = make_napari_viewer()
    viewer.open(ex.save(tmp_path / "in.nc"), plugin=PLUGIN)
    update_result_layers(
        viewer, {"mu_pred": viewer.layers["mre"].metadata["mre_example"].ds["mre"]}
    )
    viewer.layers.selection = {viewer.layers["mu_pred"]}
    out = tmp_path / "sel"
    written = viewer.layers.save(str(out) + ".nc", selected=True, plugin=PLUGIN)
    assert written == [str(out) + ".nc"]
    assert "mu_pred" in MREExample.load(written[0]) and "wave" in MREExample.load(written[0])


def test_writer_without_mre_layers_reports(monkeypatch, tmp_path):
    messages: list[str] = []
    import napari.utils.notifications as notifications

    monkeypatch.setattr(notifications, "show_error", messages.append)
    layer_data = [(np.zeros((4, 4)), {"name": "plain", "metadata": {}}, "image")]
    assert write_mre_example(str(tmp_path / "x.nc"), layer_data) == []
    assert len(messages) == 1
    assert "none of the selected layers comes from an MRE example" in messages[0]
    assert not (tmp_path / "x.nc").exists()


def test_writer_appends_extension(tmp_path, rng):
    ex = small_example(rng)
    layer_data = [(np.zeros((2, 6, 5)), {"name": "wave", "metadata": {"mre_example": ex}}, "image")]
    written = write_mre_example(str(tmp_path / "plain_name"), layer_data)
    assert written == [str(tmp_path / "plain_name.nc")]
    assert MREExample.load(written[0]).keys() == ex.keys()


def test_overwrite_is_atomic(tmp_path, rng):
    """Re-saving over a file replaces it whole (written aside, then moved into place)."""
    ex = small_example(rng)
    target = ex.save(tmp_path / "ex.nc")
    ex2 = ex.copy()
    ex2.ds["mu_pred"] = ex.ds["mre"]
    layer_data = [(None, {"name": "wave", "metadata": {"mre_example": ex2}}, "image")]
    assert write_mre_example(str(target), layer_data) == [str(target)]
    assert "mu_pred" in MREExample.load(target)


def test_writer_refuses_mixed_examples(monkeypatch, tmp_path, rng):
    import napari.utils.notifications as notifications

    messages: list[str] = []
    monkeypatch.setattr(notifications, "show_error", messages.append)
    a = MREExample.load(small_example(rng).save(tmp_path / "a.nc"))
    b = MREExample.load(small_example(rng).save(tmp_path / "b.nc"))
    layer_data = [
        (None, {"name": "wave", "metadata": {"mre_example": a}}, "image"),
        (None, {"name": "wave [1]", "metadata": {"mre_example": b}}, "image"),
    ]
    assert write_mre_example(str(tmp_path / "out.nc"), layer_data) == []
    assert "several MRE examples" in messages[0] and "a.nc" in messages[0]
    assert not (tmp_path / "out.nc").exists()
