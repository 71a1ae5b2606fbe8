"""Joint multi-frequency PINN against single-frequency fits on the four-target slice.

The four-target phantom (:func:`napari_mrepinn.simulate.four_target`, 3 components,
Voigt ``G* = μ + iωη``, targets of 20, 10, 6 and 4 mm) at 50, 60, ..., 100 Hz, the middle
slice of a z-invariant box (80 × 100 voxels of 1 mm), with Gaussian noise per level. For
each level: one default-recipe fit per frequency (each scored against the truth at its own
frequency) and one joint fit of all six (``mu_pred`` = G* at the reference frequency,
scored against the truth there; ``mu_pred_f`` at every frequency is scored too), with the
CTE of every target, R and the training time.

Usage::

    python benchmarks/multifrequency.py --noise 30dB,20dB --out mf.csv
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from napari_mrepinn import recipe, simulate
from napari_mrepinn.data import MREExample
from napari_mrepinn.metrics import evaluate
from napari_mrepinn.outputs import atomic_open

FREQUENCIES = (50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
LEVELS = {"noise-free": 0.0, "30dB": 1e-3, "20dB": 1e-2}
TARGETS = {2: "20 mm", 3: "10 mm", 4: "6 mm", 5: "4 mm"}


def phantom(noise: float, seed: int = 0, dispersion: str = "voigt") -> MREExample:
    """The multi-frequency four-target slice at noise ratio ``noise``; ``dispersion`` is
    :func:`simulate.four_target`'s (``"springpot"``: the model the joint fit assumes)."""
    ex = simulate.four_target(frequency=list(FREQUENCIES), shape=(80, 100, 3),
                              dispersion=dispersion)
    ex = MREExample(ex.ds.isel(z=[1]), source=f"four-target slice, 50-100 Hz, {dispersion}")
    return ex.add_gaussian_noise(noise, seed=seed) if noise > 0 else ex


def _scores(mu, truth, mask) -> dict:
    res = evaluate(mu, truth, mask)
    out = {"R": res["pearson_r"]}
    out.update({f"CTE {name}": res["cte_percent"][k] for k, name in TARGETS.items()})
    return out


def _settings(out: MREExample) -> dict:
    return json.loads(out.ds.attrs["mrepinn_settings_json"])


def run(levels: dict[str, float], seed: int = 0, dispersion: str = "voigt",
        singles: bool = True, **options) -> pd.DataFrame:
    rows = []
    for lname, ratio in levels.items():
        ex = phantom(ratio, seed, dispersion)
        mask = ex.ds["mre_mask"]
        # CPU seconds of this process (one torch thread): comparable between the joint and
        # the single fits even when other work shares the cores
        t0 = time.process_time()
        joint = recipe.fit(ex, progress=False, **options)
        sec = time.process_time() - t0
        s = _settings(joint)
        f_ref = s["reference_frequency_hz"]
        row = {"noise": lname, "fit": "joint", "frequency": f_ref, "seconds": sec,
               "train_seconds": s["seconds"], "iterations": s["iters"]}
        truth = ex.ds["mre"].sel(frequency=f_ref)
        rows.append(row | _scores(joint.ds["mu_pred"], truth, mask))
        for f in FREQUENCIES:  # the springpot extension to every frequency
            mu_f = joint.ds["mu_pred_f"].sel(frequency=f)
            rows.append({"noise": lname, "fit": "joint G*(f)", "frequency": f}
                        | _scores(mu_f, ex.ds["mre"].sel(frequency=f), mask))
        print(pd.DataFrame(rows[-7:]).round(3).to_string(), flush=True)
        for f in FREQUENCIES if singles else ():
            single = ex.select_frequency(f)
            t0 = time.process_time()
            out = recipe.fit(single, progress=False, **options)
            sec = time.process_time() - t0
            s = _settings(out)
            rows.append({"noise": lname, "fit": "single", "frequency": f, "seconds": sec,
                         "train_seconds": s["seconds"], "iterations": s["iters"]}
                        | _scores(out.ds["mu_pred"], single.ds["mre"], mask))
            print(pd.DataFrame(rows[-1:]).round(3).to_string(header=False), flush=True)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> str:
    lines = ["| noise | fit | R | CTE 20 mm | CTE 10 mm | CTE 6 mm | CTE 4 mm | CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    for noise, g in df.groupby("noise", sort=False):
        j = g[g["fit"] == "joint"].iloc[0]
        s = g[g["fit"] == "single"]
        cte = [f"CTE {n}" for n in TARGETS.values()]
        lines.append(f"| {noise} | joint (f_ref {j['frequency']:g} Hz) | {j['R']:.3f} | "
                     + " | ".join(f"{j[c]:.0f}" for c in cte) + f" | {j['seconds']:.0f} |")
        lines.append(f"| {noise} | single, median of {len(s)} | {s['R'].median():.3f} | "
                     + " | ".join(f"{s[c].median():.0f}" for c in cte)
                     + f" | {s['seconds'].median():.0f} |")
        lines.append(f"| {noise} | single, best | {s['R'].max():.3f} | "
                     + " | ".join(f"{s[c].max():.0f}" for c in cte)
                     + f" | sum {s['seconds'].sum():.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a benchmark run, not a test
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise", default="30dB,20dB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dispersion", default="voigt", choices=simulate.DISPERSIONS)
    p.add_argument("--out", default=None)
    p.add_argument("--options", default="{}", help="JSON of TrainingConfig overrides")
    p.add_argument("--joint-only", action="store_true",
                   help="skip the six single-frequency fits (compare with an earlier run's)")
    a = p.parse_args()
    frame = run({k: LEVELS[k] for k in a.noise.split(",")}, a.seed, a.dispersion,
                singles=not a.joint_only, **json.loads(a.options))
    if a.out:  # a stopped or failed run leaves an earlier table as it was
        with atomic_open(a.out, "w", newline="") as fh:
            frame.to_csv(fh, index=False)
    if not a.joint_only:
        print(summarize(frame))
