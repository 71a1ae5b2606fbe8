"""Joint multi-frequency fits of the 2-D validation family: equal or ω²-weighted frequencies.

Each 2-D case of :mod:`family` (closed-form cylinder inclusion, Voigt ``G* = μ + iωη``) at
40, 60, 80 and 100 Hz instead of its one frequency, with independent Gaussian noise per
frequency, fitted jointly by the default recipe with ``frequency_weights`` ``"equal"`` and
``"omega2"`` (see :mod:`napari_mrepinn.multifreq`); ``mu_pred`` (G* at the reference
frequency, 60 Hz here) is scored against the truth there: R of |G*| in the mask, the
inclusion's CTE, and the CPU seconds.

Usage::

    python benchmarks/multifreq_family.py --cases 2d-05,2d-09 --noise "20 dB" --out mff.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.family import NOISE_LEVELS as LEVELS
from benchmarks.family import _scores, make_family

from napari_mrepinn import recipe, simulate
from napari_mrepinn.data import MREExample
from napari_mrepinn.outputs import atomic_open

FREQUENCIES = (40.0, 60.0, 80.0, 100.0)


def multi_frequency_case(case, noise: float, seed: int = 0) -> MREExample:
    """The 2-D ``case`` at :data:`FREQUENCIES` (one closed-form field each), with noise
    ``noise`` (RMS ratio), independent per frequency."""
    parts = []
    for k, f in enumerate(FREQUENCIES):
        ex = simulate.cylinder(
            frequency=f, radius=case.radius, mu_background=case.mu_background,
            mu_inclusion=case.contrast * case.mu_background, viscosity=case.viscosity,
            shape=case.shape, spacing=case.spacing, direction=list(case.directions))
        parts.append(ex.add_gaussian_noise(noise, seed + k) if noise > 0 else ex)
    first = parts[0]
    return MREExample.from_numpy(
        np.stack([p.ds["wave"].values for p in parts]), frequency=list(FREQUENCIES),
        spacing=case.spacing, mre=np.stack([p.ds["mre"].values for p in parts]),
        mre_mask=first.ds["mre_mask"].values, spatial_ndim=2,
        components=[str(c) for c in first.ds["component"].values]
        if "component" in first.ds.dims else None,
        source=f"{case.name} at {', '.join(f'{f:g}' for f in FREQUENCIES)} Hz")


def run(names: list[str], noise_name: str, weights: list[str]) -> pd.DataFrame:
    cases = {c.name: c for c in make_family(0) if c.kind == "2d"}
    rows = []
    for name in names:
        case = cases[name]
        ex = multi_frequency_case(case, LEVELS[noise_name])
        for w in weights:
            t0 = time.process_time()
            out = recipe.fit(ex, progress=False, frequency_weights=w)
            sec = time.process_time() - t0
            f_ref = json.loads(out.ds.attrs["mrepinn_settings_json"])["reference_frequency_hz"]
            truth = ex.select_frequency(f_ref)
            row = {"case": name, "split": case.split, "noise": noise_name, "weights": w,
                   "f_ref": f_ref, "seconds": sec} | _scores(out.ds["mu_pred"], truth)
            rows.append(row)
            print(pd.DataFrame([row]).round(3).to_string(header=len(rows) == 1), flush=True)
    return pd.DataFrame(rows)


if __name__ == "__main__":  # pragma: no cover - a benchmark run, not a test
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", required=True, help="comma-separated family names (2d-NN)")
    p.add_argument("--noise", default="20 dB", choices=list(LEVELS))
    p.add_argument("--weights", default="equal,omega2")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    frame = run(a.cases.split(","), a.noise, a.weights.split(","))
    if a.out:  # a stopped or failed run leaves an earlier table as it was
        with atomic_open(a.out, "w", newline="") as fh:
            frame.to_csv(fh, index=False)
