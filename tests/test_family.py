"""Tests of the validation family (``benchmarks/family.py``): reproducible, in range,
with a held-out split, and a runner whose table and summary hold what they say."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import family

from napari_mrepinn import simulate


def test_family_is_reproducible_by_seed_and_in_range():
    a, b, c = family.make_family(0), family.make_family(0), family.make_family(1)
    assert a == b and a != c
    assert sum(x.kind == "2d" for x in a) >= 12 and sum(x.kind == "3d" for x in a) >= 12
    for x in a:
        assert 5e-3 <= x.radius <= 12e-3 and 1.5 <= x.contrast <= 4
        assert 2000 <= x.mu_background <= 5000 and 40 <= x.frequency <= 100
        assert 1 <= x.n_components <= 3
        if x.kind == "2d":
            assert 64 <= x.shape[0] <= 128 and len(x.directions) == x.n_components
        else:
            assert 20 <= x.incidence <= 70 and len(x.shape) == 3
            # the inclusion fits in the volume
            assert max(x.radii) <= 0.5 * (x.shape[2] - 3) * x.spacing + 1e-12
    splits = {x.split for x in a}
    assert splits == {"tune", "holdout"}
    assert len({x.key() for x in a}) == len(a)


def test_cylinder_components_one_per_direction():
    ex = simulate.cylinder(shape=(16, 16), direction=[0.0, 1.0, 2.0])
    assert list(ex.ds["component"].values) == ["z", "y", "x"]
    one = simulate.cylinder(shape=(16, 16), direction=0.0)
    np.testing.assert_allclose(ex.ds["wave"].sel(component="z").values,
                               one.ds["wave"].sel(component="z").values)
    with pytest.raises(ValueError, match="direction"):
        simulate.cylinder(shape=(16, 16), direction=[0.0] * 4)


def test_run_family_table_and_summary():
    cases = [c for c in family.make_family(3, n_2d=3, n_3d=0)]
    cases = [family.Case(**{**c.__dict__, "shape": (64, 64)}) for c in cases]
    calls = []

    def fake_fit(ex):  # the PINN hook: any callable example -> G* map
        calls.append(ex)
        return ex.ds["mre"]

    df, md = family.run_family(("ahi", "pinn"), cases=cases, kinds=("2d",), sigmas=(0.0, 1.0),
                               noise_levels={"30 dB": 1e-3}, fit=fake_fit, cache_dir=None)
    assert len(calls) == 3
    assert set(df["method"]) == {"ahi", "pinn"} and len(df) == 3 * 3
    assert df.loc[df["method"] == "pinn", "R"].min() == pytest.approx(1.0)
    best = df[df["best"] & (df["method"] == "ahi")]
    assert best["sigma"].nunique() == 1 and len(best) == 3
    # tuned on the tune split only: the chosen sigma has the best median R there
    tune = df[(df["method"] == "ahi") & (df["split"] == "tune")]
    assert best["sigma"].iloc[0] == tune.groupby("sigma")["R"].median().idxmax()
    assert "### 2D cases" in md and "| 30 dB | ahi |" in md and "holdout" in md
    # same seed, same noise: the run is reproducible
    df2, _ = family.run_family(("ahi",), cases=cases, kinds=("2d",), sigmas=(0.0, 1.0),
                               noise_levels={"30 dB": 1e-3}, cache_dir=None)
    np.testing.assert_allclose(df2["R"].values, df[df["method"] == "ahi"]["R"].values)


def test_partial_runs_are_kept_and_head_to_head_counts_wins(tmp_path):
    cases = [family.Case(**{**c.__dict__, "shape": (48, 48)})
             for c in family.make_family(3, n_2d=2, n_3d=0)]
    out = tmp_path / "scores.csv"
    df, _ = family.run_family(("ahi", "kmdev", "pinn"), cases=cases, kinds=("2d",),
                              sigmas=(0.0,), noise_levels={"20 dB": 1e-2},
                              fit=lambda ex: ex.ds["mre"], cache_dir=None, out=out)
    # the CSV was written case by case and holds every row
    import pandas as pd

    saved = pd.read_csv(out)
    assert len(saved) == len(df) == 2 * 3
    assert saved["case"].tolist() == df["case"].tolist()
    # k-MDEV is scored on rho c^2 (a real map, no smoothing sweep)
    k = df[df["method"] == "kmdev"]
    assert k["sigma"].isna().all() and k["R"].notna().all()
    # the truth as "PINN" wins every case in R
    table = family.head_to_head(df)
    assert "| 2d | 20 dB | 2 | 2 |" in table
    assert "20 dB, case by case" in table


def test_multi_frequency_family_case_is_the_closed_form_at_each_frequency():
    from benchmarks import multifreq_family

    case = next(c for c in family.make_family(0) if c.name == "2d-05")
    ex = multifreq_family.multi_frequency_case(case, 0.0)
    assert list(ex.frequencies) == list(multifreq_family.FREQUENCIES)
    for f in multifreq_family.FREQUENCIES:
        single = simulate.cylinder(
            frequency=f, radius=case.radius, mu_background=case.mu_background,
            mu_inclusion=case.contrast * case.mu_background, shape=case.shape,
            spacing=case.spacing, direction=list(case.directions))
        at_f = ex.select_frequency(f)
        np.testing.assert_allclose(at_f.ds["wave"].values, single.ds["wave"].values)
        np.testing.assert_allclose(at_f.ds["mre"].values, single.ds["mre"].values)
    # noise: drawn independently for each frequency
    noisy = multifreq_family.multi_frequency_case(case, 0.01)
    d = [(noisy.select_frequency(f).ds["wave"] - ex.select_frequency(f).ds["wave"]).values
         for f in multifreq_family.FREQUENCIES[:2]]
    assert not np.allclose(d[0], d[1])
