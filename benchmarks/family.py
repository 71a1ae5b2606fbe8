"""A randomised, seed-reproducible validation family of 2-D and truly 3-D MRE cases.

Every case draws (from one ``numpy`` generator seeded by ``seed``): inclusion radius 5–12 mm,
contrast 1.5–4×, background 2–5 kPa, 40–100 Hz, a random incidence and 1–3 displacement
components. Ground truth:

- **2-D** cases: the closed-form cylinder (:func:`napari_mrepinn.simulate.cylinder`), fields
  of 64–128 voxels per side at 1 mm; each component is a plane wave from its own random
  direction, scattered exactly.
- **3-D** cases: :func:`napari_mrepinn.forward3d.inclusion_phantom` (the vector Navier
  equation, ν = 0.45, solved on a grid 2× finer), a sphere or an ellipsoid, a plane shear
  wave at 20–70° from ``z`` with a random azimuth; volumes of 24–32 voxels in-plane × 12–16
  slices at 1.5–2 mm (a 64–128-voxel 3-D field does not fit the 2-core budget of a benchmark
  run; the fine grid is already ~8× the output).

Each noise-free field is evaluated at every noise level (noise-free, 30 dB = noise ratio
1e-3, 20 dB = 1e-2, with a per-case noise seed). A third of the cases (every third index) are
the **held-out** split: method settings are tuned on ``split="tune"`` only (the smoothing
sweep below), and reported on both.

Usage::

    from benchmarks.family import make_family, run_family
    df, md = run_family(methods=("ahi", "mdev"))          # ~minutes, 3-D fields cached
    df, md = run_family(methods=("pinn",), pinn_iters=3000, kinds=("3d",))

The 3-D ground truths are cached as NetCDF under ``cache_dir`` (default
``benchmarks/.family_cache``), keyed by the case parameters.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_mrepinn import baselines, forward3d, simulate
from napari_mrepinn.data import MREExample
from napari_mrepinn.metrics import evaluate

NOISE_LEVELS = {"noise-free": 0.0, "30 dB": 1e-3, "20 dB": 1e-2}
SIGMA_SWEEP = (0.0, 0.65, 1.0, 1.5, 2.0, 3.0, 4.0)  # Gaussian pre-smoothing, voxels (0 = none)
DEFAULT_CACHE = Path(__file__).resolve().parent / ".family_cache"


@dataclass(frozen=True)
class Case:
    """One member of the family (noise-free parameters; noise is added per level)."""

    index: int
    kind: str  # "2d" or "3d"
    split: str  # "tune" or "holdout"
    frequency: float  # Hz
    mu_background: float  # Pa
    contrast: float
    radius: float  # m (3-D ellipsoid: the first semi-axis)
    shape: tuple[int, ...]
    spacing: float  # m
    n_components: int
    directions: tuple[float, ...] = ()  # 2-D: radians from +x, one per component
    incidence: float = 0.0  # 3-D: degrees from +z
    azimuth: float = 0.0  # 3-D: degrees from +x
    radii: tuple[float, float, float] = (0.0, 0.0, 0.0)  # 3-D semi-axes, m
    angles: tuple[float, float] = (0.0, 0.0)  # 3-D ellipsoid orientation, rad
    viscosity: float = 1.0  # Pa·s
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.index:02d}"

    def key(self) -> str:
        d = asdict(self)
        d.pop("split")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def make_family(seed: int = 0, n_2d: int = 12, n_3d: int = 12) -> list[Case]:
    """The family's cases, the same for the same arguments (one generator from ``seed``)."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for kind, count in (("2d", n_2d), ("3d", n_3d)):
        for i in range(count):
            split = "holdout" if i % 3 == 2 else "tune"
            f = float(rng.uniform(40, 100))
            mb = float(rng.uniform(2000, 5000))
            contrast = float(rng.uniform(1.5, 4.0))
            radius = float(rng.uniform(5e-3, 12e-3))
            nc = int(rng.integers(1, 4))
            if kind == "2d":
                n = int(rng.integers(64, 129))
                dirs = tuple(float(d) for d in rng.uniform(0, 2 * np.pi, nc))
                cases.append(Case(i, kind, split, f, mb, contrast, radius, (n, n), 1e-3, nc,
                                  directions=dirs))
            else:
                h = float(rng.choice([1.5e-3, 2e-3]))
                # in-plane field: at least the inclusion diameter plus a wavelength margin
                n = int(rng.integers(24, 33))
                nz = int(rng.integers(12, 17))
                sphere = bool(rng.random() < 0.5)
                if sphere:
                    radii = (radius,) * 3
                    angles = (0.0, 0.0)
                else:
                    radii = (radius, radius * float(rng.uniform(0.6, 1.0)),
                             radius * float(rng.uniform(0.5, 0.9)))
                    angles = (float(rng.uniform(0, np.pi)), float(rng.uniform(0, np.pi / 2)))
                # the inclusion must fit in the volume (z is the short axis)
                zmax = 0.5 * (nz - 3) * h
                radii = tuple(min(r, zmax) for r in radii)
                cases.append(Case(
                    i, kind, split, f, mb, contrast, radii[0], (n, n, nz), h, nc,
                    incidence=float(rng.uniform(20, 70)), azimuth=float(rng.uniform(0, 360)),
                    radii=radii, angles=angles,
                ))
    return cases


def build_case(case: Case, cache_dir: Path | str | None = DEFAULT_CACHE,
               verbose: bool = False) -> MREExample:
    """The noise-free example of a case (3-D ones cached on disk under ``cache_dir``)."""
    if case.kind == "2d":
        return simulate.cylinder(
            frequency=case.frequency, radius=case.radius, mu_background=case.mu_background,
            mu_inclusion=case.contrast * case.mu_background, viscosity=case.viscosity,
            shape=case.shape, spacing=case.spacing, direction=list(case.directions),
        )
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{case.name}-{case.key()}.nc"
        if path.exists():
            return MREExample.load(path)
    t0 = time.perf_counter()
    info: dict = {}
    ex = forward3d.inclusion_phantom(
        case.frequency, shape=case.shape, spacing=case.spacing,
        mu_background=case.mu_background, viscosity=case.viscosity,
        inclusions=[forward3d.Inclusion(case.radii, case.contrast * case.mu_background,
                                        angles=case.angles)],
        incidence=case.incidence, azimuth=case.azimuth,
        components=list("zyx"[: case.n_components]), info=info,
    )
    if verbose:
        print(f"{case.name}: solved in {time.perf_counter() - t0:.0f} s "
              f"({info.get('iterations')} GMRES iterations, {info.get('unknowns')} unknowns)",
              flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ex.save(path)
    return ex


def _noisy(ex: MREExample, ratio: float, seed: int) -> MREExample:
    return ex.add_gaussian_noise(ratio, seed) if ratio > 0 else ex


def _direct(method: str, ex: MREExample, sigma: float):
    if method == "kmdev":
        from napari_mrepinn.kmdev import kmdev  # the wavenumber inversion gives a speed c

        # the family's ground truth is |G*|: compare rho c^2 (exact without damping, and
        # within 2 % of |G*| at the family's G''/G' <= 0.2)
        speed = kmdev(ex)["kmdev_speed"]
        return (ex.density * speed**2).rename("mu")
    fn = baselines.ahi if method == "ahi" else baselines.mdev
    if sigma > 0:
        return fn(ex, smoothing="gaussian", sigma=sigma)
    return fn(ex)


def _scores(mu, ex: MREExample) -> dict:
    res = evaluate(mu, ex.ds["mre"], ex.ds["mre_mask"])
    bg = res["median_pred_pa"][1] / res["median_true_pa"][1] - 1
    return {"R": res["pearson_r"], "CTE": res["cte_percent"].get(2, np.nan),
            "bg_bias": bg}


def _pinn(ex: MREExample, iters: int, **kw) -> object:
    from napari_mrepinn import training  # torch only when the PINN is asked for

    out = training.fit(ex, iters=iters, progress=False, **kw)
    settings = json.loads(out.ds.attrs.get("mrepinn_settings_json", "{}"))
    mu = out.ds["mu_pred"]
    # where the converged stop ended the run (iterations), for the report
    mu.attrs["iterations"] = settings.get("converged_at") or settings.get("iters", iters)
    return mu


def run_family(
    methods: Sequence[str] = ("ahi", "mdev"),
    *,
    seed: int = 0,
    cases: Iterable[Case] | None = None,
    kinds: Sequence[str] = ("2d", "3d"),
    noise_levels: dict[str, float] | None = None,
    sigmas: Sequence[float] = SIGMA_SWEEP,
    pinn_iters: int = 5000,
    pinn_options: dict | None = None,
    cache_dir: Path | str | None = DEFAULT_CACHE,
    verbose: bool = False,
    fit: Callable[[MREExample], object] | None = None,
    out: Path | str | None = None,
) -> tuple[pd.DataFrame, str]:
    """Evaluate methods on the family; return all scores and a markdown summary.

    Direct methods (``"ahi"``, ``"mdev"``; ``"kmdev"`` has its own filters and no sweep)
    are run at every Gaussian ``sigmas`` (0 = no
    smoothing); the best sigma per method, kind and noise level is the one with the highest
    median R on the **tune** split, and the summary reports that sigma on both splits.
    ``"pinn"`` calls :func:`napari_mrepinn.training.fit` (``iters=pinn_iters`` and
    ``pinn_options``), or ``fit(example) -> mu`` when given.

    Returns
    -------
    (pandas.DataFrame, str)
        One row per case × noise level × method × setting (columns ``case``, ``kind``,
        ``split``, ``noise``, ``method``, ``sigma``, ``R``, ``CTE`` (%), ``bg_bias``
        (fraction), ``seconds``, ``best`` (the tuned setting)), and the markdown summary.
        With ``out``, the rows of each finished case are also appended to that CSV file as
        the run goes, so that a long run that is stopped keeps what it finished.
    """
    levels = NOISE_LEVELS if noise_levels is None else noise_levels
    cases = [c for c in (make_family(seed) if cases is None else cases) if c.kind in kinds]
    rows = []
    n_written = 0
    for case in cases:
        clean = build_case(case, cache_dir, verbose)
        for li, (lname, ratio) in enumerate(levels.items()):
            ex = _noisy(clean, ratio, seed=1000 * case.index + 10 * li + (case.kind == "3d"))
            base = {"case": case.name, "kind": case.kind, "split": case.split, "noise": lname,
                    "frequency": case.frequency, "contrast": case.contrast,
                    "components": case.n_components}
            for method in methods:
                settings = sigmas if method in ("ahi", "mdev") else [np.nan]
                for sigma in settings:
                    t0 = time.perf_counter()
                    if method in ("ahi", "mdev", "kmdev"):
                        mu = _direct(method, ex, float(sigma))
                    elif method == "pinn":
                        mu = fit(ex) if fit is not None else _pinn(
                            ex, pinn_iters, **(pinn_options or {}))
                    else:
                        raise ValueError(f"unknown method {method!r}")
                    sc = _scores(mu, ex)
                    rows.append(base | {"method": method, "sigma": sigma,
                                        "seconds": time.perf_counter() - t0,
                                        "iterations": getattr(mu, "attrs", {}).get(
                                            "iterations", np.nan)} | sc)
            if verbose:
                print(f"{case.name} {lname} done", flush=True)
        if out is not None:
            new = pd.DataFrame(rows[n_written:])
            new.to_csv(out, mode="a", header=not Path(out).exists(), index=False)
            n_written = len(rows)
    df = pd.DataFrame(rows)
    df["best"] = _best_settings(df)
    return df, summarize(df)


def _best_settings(df: pd.DataFrame) -> pd.Series:
    """True on the rows of the sigma with the best median R on the tune split."""
    best = pd.Series(False, index=df.index)
    for (_, _, _), g in df.groupby(["method", "kind", "noise"]):
        if g["sigma"].isna().all():
            best[g.index] = True
            continue
        tune = g[g["split"] == "tune"]
        med = tune.groupby("sigma")["R"].median()
        s = med.idxmax()
        best[g.index[g["sigma"] == s]] = True
    return best


def summarize(df: pd.DataFrame) -> str:
    """Markdown: median and worst R and CTE per kind, noise level, method (tuned setting),
    on the tune and held-out splits, and the smoothing sweep (median R per sigma)."""
    lines = []
    sel = df[df["best"]]
    for kind in sorted(sel["kind"].unique()):
        lines += [f"### {kind.upper()} cases", "",
                  "| noise | method | sigma | split | n | median R | worst R | median CTE % "
                  "| worst CTE % | median bg bias % |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        k = sel[sel["kind"] == kind]
        present = set(k["noise"])
        noises = [n for n in NOISE_LEVELS if n in present] or sorted(present)
        for noise in noises:
            for method in sorted(k["method"].unique()):
                g = k[(k["noise"] == noise) & (k["method"] == method)]
                for split in ("tune", "holdout", "all"):
                    h = g if split == "all" else g[g["split"] == split]
                    if h.empty:
                        continue
                    cte_dev = (h["CTE"] - 100).abs()
                    worst_cte = h["CTE"][cte_dev.idxmax()] if cte_dev.notna().any() else np.nan
                    sig = h["sigma"].iloc[0]
                    lines.append(
                        f"| {noise} | {method} | {'-' if np.isnan(sig) else f'{sig:g}'} | "
                        f"{split} | {len(h)} | {h['R'].median():.3f} | {h['R'].min():.3f} | "
                        f"{h['CTE'].median():.0f} | {worst_cte:.0f} | "
                        f"{100 * h['bg_bias'].median():+.1f} |")
        lines.append("")
    sweep = df[df["method"].isin(["ahi", "mdev"]) & (df["split"] == "tune")]
    if not sweep.empty:
        piv = sweep.pivot_table(index=["kind", "noise", "method"], columns="sigma", values="R",
                                aggfunc="median")
        cols = list(piv.columns)
        lines += ["### Smoothing sweep (median R on the tune split; sigma in voxels, 0 = none)",
                  "", "| kind | noise | method | " + " | ".join(f"σ={c:g}" for c in cols) + " |",
                  "|---|---|---|" + "---|" * len(cols)]
        for idx, row in piv.iterrows():
            lines.append("| " + " | ".join(str(v) for v in idx) + " | "
                         + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def head_to_head(df: pd.DataFrame, method: str = "pinn",
                 against: Sequence[str] = ("ahi", "mdev")) -> str:
    """Markdown: per kind and noise level, on how many cases ``method`` beats the best of
    ``against`` (each at its tuned setting) in R and in CTE (closer to 100 %), and each
    case's figures at 20 dB."""
    sel = df[df["best"]]
    lines = ["| kind | noise | cases | R: wins | CTE: wins | median ΔR | worst ΔR |",
             "|---|---|---|---|---|---|---|"]
    per_case = []
    for (kind, noise), g in sel.groupby(["kind", "noise"], sort=False):
        m = g[g["method"] == method].set_index("case")
        o = g[g["method"].isin(against)].groupby("case").agg(
            R=("R", "max"), CTE=("CTE", lambda c: c.iloc[(c - 100).abs().argmin()]))
        both = m.merge(o, left_index=True, right_index=True, suffixes=("", "_other"))
        if both.empty:
            continue
        dr = both["R"] - both["R_other"]
        cte_win = (both["CTE"] - 100).abs() < (both["CTE_other"] - 100).abs()
        lines.append(f"| {kind} | {noise} | {len(both)} | {int((dr > 0).sum())} | "
                     f"{int(cte_win.sum())} | {dr.median():+.3f} | {dr.min():+.3f} |")
        if noise == "20 dB":
            for case, r in both.iterrows():
                per_case.append(f"| {case} | {r['split']} | {r['R']:.3f} | {r['R_other']:.3f} "
                                f"| {r['CTE']:.0f} | {r['CTE_other']:.0f} |")
    if per_case:
        lines += ["", f"20 dB, case by case ({method} against the best of "
                  f"{' and '.join(against)}):", "",
                  f"| case | split | {method} R | best other R | {method} CTE % | "
                  "best other CTE % |", "|---|---|---|---|---|---|", *per_case]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a benchmark run, not a test
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default="2d,3d")
    p.add_argument("--methods", default="ahi,mdev")
    p.add_argument("--out", default=None,
                   help="CSV of all scores (appended to case by case as the run goes)")
    p.add_argument("--pinn-iters", type=int, default=5000)
    p.add_argument("--pinn-options", default="{}",
                   help='JSON of TrainingConfig overrides, e.g. \'{"stop_tol": 0.005}\'')
    p.add_argument("--split", default=None, help="only this split (tune or holdout)")
    p.add_argument("--noise", default=None, help="only these noise levels (comma separated)")
    p.add_argument("--report", nargs="+", default=None, metavar="CSV",
                   help="no runs: merge these score files (e.g. AHI/MDEV, PINN and k-MDEV runs) "
                   "and print the report")
    a = p.parse_args()
    if a.report:
        frame = pd.concat([pd.read_csv(f) for f in a.report], ignore_index=True)
        frame["best"] = _best_settings(frame)
        print(summarize(frame))
        print(head_to_head(frame))
        raise SystemExit(0)
    chosen = [c for c in make_family(a.seed) if a.split is None or c.split == a.split]
    levels = None if a.noise is None else {k: NOISE_LEVELS[k] for k in a.noise.split(",")}
    frame, md = run_family(tuple(a.methods.split(",")), seed=a.seed, cases=chosen,
                           kinds=tuple(a.kinds.split(",")), noise_levels=levels,
                           pinn_iters=a.pinn_iters, pinn_options=json.loads(a.pinn_options),
                           verbose=True, out=a.out)
    print(md)
