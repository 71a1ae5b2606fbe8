"""ROI statistics on known label maps, CSV export and the ``mrepinn stats`` command."""

import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from napari_mrepinn import simulate
from napari_mrepinn.cli import main
from napari_mrepinn.data import MREExample, MREInputError
from napari_mrepinn.outputs import MREOutputError
from napari_mrepinn.stats import (
    STAT_COLUMNS,
    load_roi,
    region_statistics,
    roi_statistics,
    write_csv,
)


def _maps():
    # region 1: |G*| = 1, 2, 3, 4, 5 kPa; region 2: three voxels of 10 kPa; 0: outside
    mod = np.array([[1e3, 2e3, 3e3, 4e3, 5e3], [1e4, 1e4, 1e4, 7e4, 8e4]])
    labels = np.array([[1, 1, 1, 1, 1], [2, 2, 2, 0, 0]])
    depth = np.array([[0.01, np.nan, 0.03, np.nan, 0.05], [0.02, 0.02, 0.02, 1.0, 1.0]])
    da = xr.DataArray(mod, dims=("x", "y"), attrs={"units": "Pa", "readout": "abs_modulus"})
    dd = xr.DataArray(depth, dims=("x", "y"),
                      attrs={"units": "m", "readout": "penetration_depth"})
    return xr.Dataset({"abs_modulus": da, "penetration_depth": dd},
                      attrs={"method": "test"}), labels


def test_known_label_map():
    maps, labels = _maps()
    table = region_statistics(maps, labels, region_names={1: "liver", 2: "lesion"})
    assert list(table.columns) == list(STAT_COLUMNS)
    row = table[(table.readout == "abs_modulus") & (table.region == 1)].iloc[0]
    assert row.region_name == "liver" and row.unit == "kPa" and row.method == "test"
    assert (row.n, row.n_valid) == (5, 5)
    assert (row["median"], row.q25, row.q75, row.iqr) == (3.0, 2.0, 4.0, 2.0)
    assert row["mean"] == pytest.approx(3.0)
    assert row.sd == pytest.approx(np.sqrt(2.5))  # sample sd of 1..5
    row = table[(table.readout == "abs_modulus") & (table.region == 2)].iloc[0]
    assert (row.n, row["median"], row.sd) == (3, 10.0, 0.0)
    # NaN voxels are counted but left out; depth shown in mm
    row = table[(table.readout == "penetration_depth") & (table.region == 1)].iloc[0]
    assert (row.n, row.n_valid, row.unit) == (5, 3, "mm")
    assert row["median"] == pytest.approx(30.0)
    si = region_statistics(maps, labels, display=False)
    assert si[si.readout == "abs_modulus"].iloc[0].unit == "Pa"
    assert si[si.readout == "abs_modulus"].iloc[0]["median"] == 3000.0


def test_label_map_checks():
    maps, labels = _maps()
    # a napari Labels layer of a 2-D image may carry a singleton axis
    ok = region_statistics(maps, labels[None])
    assert len(ok) == 4
    with pytest.raises(MREInputError, match="shape"):
        region_statistics(maps, labels[:, :4])
    with pytest.raises(MREInputError, match="no region"):
        region_statistics(maps, np.zeros_like(labels))
    with pytest.raises(MREInputError, match="integer"):
        region_statistics(maps, labels + 0.5)
    with pytest.raises(MREInputError, match="no map"):
        region_statistics(maps, labels, readouts=["speed"])


def test_roi_statistics_of_the_truth_per_region():
    ex = simulate.cylinder(shape=(32, 32), radius=8e-3)
    table = roi_statistics(ex, methods=["truth"])
    g1 = complex(ex.mre.values[0, 0])
    g2 = complex(ex.mre.values[16, 16])
    mod = table[(table.readout == "abs_modulus")].set_index("region")
    assert mod.loc[1, "median"] == pytest.approx(abs(g1) / 1e3)
    assert mod.loc[2, "median"] == pytest.approx(abs(g2) / 1e3)
    assert mod.loc[2, "n"] == int((ex.mre_mask.values == 2).sum())
    assert mod.loc[2, "sd"] == pytest.approx(0.0, abs=1e-12)
    # a single-frequency exam's maps are at its frequency
    assert (mod.frequency_hz == ex.frequency).all()
    # the wave quality comes once, as its own method
    assert set(table.method) == {"truth", "wave"}
    assert set(table[table.method == "wave"].readout) == {"oss_snr"}
    # a drawn ROI: one square region
    roi = np.zeros((32, 32), int)
    roi[2:8, 2:8] = 5
    drawn = roi_statistics(ex, roi, methods=["truth"], readouts=["shear_speed"])
    assert list(drawn.region) == [5]
    assert drawn.iloc[0].n == 36


def test_roi_files(tmp_path):
    import nibabel as nib

    ex = simulate.cylinder(shape=(16, 16), radius=5e-3)
    roi = np.zeros((16, 16), np.int16)
    roi[4:12, 4:12] = 3
    nib.save(nib.Nifti1Image(roi, np.eye(4)), str(tmp_path / "roi.nii.gz"))
    np.testing.assert_array_equal(load_roi(tmp_path / "roi.nii.gz", ex), roi)
    xr.Dataset({"labels": (("x", "y"), roi.astype(np.int32))}).to_netcdf(
        tmp_path / "roi.nc", engine="h5netcdf")
    np.testing.assert_array_equal(load_roi(tmp_path / "roi.nc", ex), roi)
    nib.save(nib.Nifti1Image(roi[:8], np.eye(4)), str(tmp_path / "small.nii"))
    with pytest.raises(MREInputError, match="shape"):
        load_roi(tmp_path / "small.nii", ex)
    with pytest.raises(MREInputError, match="no such"):
        load_roi(tmp_path / "missing.nii.gz", ex)
    (tmp_path / "roi.txt").write_text("1 2 3")
    with pytest.raises(MREInputError, match=r"\.nii"):
        load_roi(tmp_path / "roi.txt", ex)


def test_csv_round_trip_and_atomic_write(tmp_path):
    maps, labels = _maps()
    table = region_statistics(maps, labels)
    path = write_csv(table, tmp_path / "stats.csv")
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)

    class Broken(pd.DataFrame):
        def to_csv(self, fh, **kw):
            fh.write("half a line")
            raise OSError("disk full")

    before = path.read_bytes()
    with pytest.raises(MREOutputError, match="disk full"):  # one line, not a traceback
        write_csv(Broken(table), path)
    assert path.read_bytes() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["stats.csv"]  # no temporary file left behind
    with pytest.raises(MREInputError, match="folder"):
        write_csv(table, tmp_path / "nowhere" / "s.csv")


def test_cli_stats_and_kmdev(tmp_path, capsys):
    phantom = tmp_path / "cyl.nc"
    ex = simulate.cylinder(shape=(32, 32), radius=8e-3, noise_ratio=1e-3, seed=0)
    ex.save(phantom)
    result = tmp_path / "kmdev.nc"
    assert main(["baseline", "kmdev", str(phantom), "-o", str(result)]) == 0
    saved = MREExample.load(result)
    assert saved["kmdev_speed"].attrs["units"] == "m/s"

    out = tmp_path / "stats.csv"
    capsys.readouterr()
    assert main(["stats", str(result), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "shear_speed" in printed and "kPa" in printed
    table = pd.read_csv(out)
    assert {"kmdev", "truth", "wave"} <= set(table.method)
    speed = table[(table.method == "kmdev") & (table.readout == "shear_speed")]
    assert set(speed.region) == {1, 2}

    nii = tmp_path / "roi.nii.gz"
    import nibabel as nib

    roi = np.zeros((32, 32), np.int16)
    roi[8:24, 8:24] = 1
    nib.save(nib.Nifti1Image(roi, np.eye(4)), str(nii))
    out2 = tmp_path / "roi.csv"
    code = main(["stats", str(result), "--roi", str(nii), "--methods", "mdev",
                 "-o", str(out2)])
    assert code == 0
    assert set(pd.read_csv(out2).region) == {1}

    # bad input: one line, exit status 2, no file written
    assert main(["stats", str(result), "--roi", str(tmp_path / "no.nii"), "-o",
                 str(tmp_path / "x.csv")]) == 2
    assert main(["stats", str(result), "-o", str(tmp_path / "x.nc")]) == 2
    assert main(["baseline", "kmdev", str(phantom), "--smoothing", "savgol", "-o",
                 str(tmp_path / "y.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("mrepinn: error:") == 3
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "y.nc").exists()
