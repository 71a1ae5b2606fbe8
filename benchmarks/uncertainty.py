"""Calibrate and check the PINN's uncertainty map on the validation family.

For each family case and noise level (default: the 2-D cases at 30 dB and 20 dB), an
ensemble of 3 default-recipe fits with seeds 0, 1, 2 (:func:`napari_mrepinn.uncertainty.
fit_ensemble`, one after the other) gives the mean map and the spread ``s`` (std / mean of
``|G*|``) per voxel. The relative error ``e = | |mean| − |true| | / |true|`` is then compared
with ``z · s``: the calibration factor ``z`` is the quantile of ``e / s`` at the stated
coverage (68 %) over the voxels of the **tune** split; the report gives the coverage that
factor reaches on the **held-out** split, per noise level and case.

Usage::

    python benchmarks/uncertainty.py --out benchmarks/.uncertainty   # fits (cached)
    python benchmarks/uncertainty.py --out benchmarks/.uncertainty --report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.family import NOISE_LEVELS, _noisy, build_case, make_family

from napari_mrepinn.outputs import atomic_open
from napari_mrepinn.uncertainty import COVERAGE, fit_ensemble


def run(out: Path, kinds=("2d",), levels=("30 dB", "20 dB"), members: int = 3,
        reverse: bool = False) -> None:
    """Fit the ensembles (cases already in ``out`` are skipped, so two runs, one of them
    ``reverse``, share the work)."""
    out.mkdir(parents=True, exist_ok=True)
    cases = make_family(0)
    for case in reversed(cases) if reverse else cases:
        if case.kind not in kinds:
            continue
        clean = build_case(case)
        for li, lname in enumerate(NOISE_LEVELS):
            if lname not in levels:
                continue
            path = out / f"{case.name}-{lname.replace(' ', '')}.npz"
            if path.exists():
                continue
            # the family's own noise seed, so these are the family's examples
            ex = _noisy(clean, NOISE_LEVELS[lname], seed=1000 * case.index + 10 * li
                        + (case.kind == "3d"))
            res = fit_ensemble(ex, members=members, workers=1, progress=False)
            mask = np.asarray(ex.ds["mre_mask"].values) > 0
            # whole or not at all: a stopped run must not leave a file the rerun would skip
            with atomic_open(path, "wb") as fh:
                np.savez_compressed(
                    fh, mu=np.asarray(res.ds["mu_pred"].values)[mask],
                    spread=np.asarray(res.ds["mu_spread"].values)[mask],
                    true=np.asarray(ex.ds["mre"].values)[mask], split=case.split)
            print(f"{path.name} done", flush=True)


def report(out: Path) -> str:
    rows = []
    for p in sorted(out.glob("*.npz")):
        d = np.load(p)
        e = np.abs(np.abs(d["mu"]) - np.abs(d["true"])) / np.abs(d["true"])
        rows.append((p.stem, str(d["split"]), p.stem.split("-")[-1], e, d["spread"]))
    lines = ["| noise | split | cases | z (tune) | coverage of z·spread (median over cases) "
             "| worst case | median spread % | median error % |",
             "|---|---|---|---|---|---|---|---|"]
    for noise in sorted({r[2] for r in rows}):
        tune = [r for r in rows if r[2] == noise and r[1] == "tune"]
        if not tune:
            continue
        ratio = np.concatenate([r[3] / np.maximum(r[4], 1e-12) for r in tune])
        z = float(np.quantile(ratio, COVERAGE))
        for split in ("tune", "holdout"):
            sel = [r for r in rows if r[2] == noise and r[1] == split]
            if not sel:
                continue
            cov = [float(np.mean(r[3] <= z * r[4])) for r in sel]
            spread = np.concatenate([r[4] for r in sel])
            err = np.concatenate([r[3] for r in sel])
            lines.append(
                f"| {noise} | {split} | {len(sel)} | {z:.2f} | {100 * np.median(cov):.0f} % | "
                f"{100 * min(cov):.0f} % | {100 * np.median(spread):.1f} | "
                f"{100 * np.median(err):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a benchmark run, not a test
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / ".uncertainty"))
    p.add_argument("--report", action="store_true")
    p.add_argument("--kinds", default="2d")
    p.add_argument("--levels", default="30 dB,20 dB")
    p.add_argument("--reverse", action="store_true", help="last case first (a second worker)")
    a = p.parse_args()
    if not a.report:
        run(Path(a.out), tuple(a.kinds.split(",")), tuple(a.levels.split(",")),
            reverse=a.reverse)
    print(report(Path(a.out)))
