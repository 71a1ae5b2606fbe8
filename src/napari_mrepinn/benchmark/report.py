"""The benchmark as markdown tables (:func:`format_markdown`), ready to paste into the docs."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["format_markdown"]

_VARIANT_LABELS = {
    "reference": "(a) reference, PDE active",
    "default": "(b) default, PDE active",
    "reference_warmup": "(a) reference, warmup (residual × 0)",
    "default_warmup": "(b) default, warmup (PDE weight 0)",
}
#: the memory probe of each timed variant (the reference warm-up costs what (a) costs)
_MEMORY_OF = {"reference": "reference", "default": "default", "default_warmup": "default_warmup"}
_CONDITION_LABELS = {"idle": "alone", "busy": "beside a busy core",
                     "torch": "beside another fit"}


def _f(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "–"
    try:
        fv = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if not np.isfinite(fv) else format(fv, spec)


def _memory_cell(mem: dict[str, Any] | None) -> str:
    if not mem:
        return "–"
    if "error" in mem:
        return "error"
    if "cuda_peak_delta_mb" in mem:
        return _f(mem["cuda_peak_delta_mb"], ".0f")
    return _f(mem.get("rss_peak_delta_mb", mem.get("maxrss_delta_mb")), ".0f")


def _header(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    cfg = result["config"]
    lines = [
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} with "
        f"{m['torch_threads']} threads{', GPU ' + m['gpu'] if 'gpu' in m else ''}; "
        f"{m['date']}; load average (1/5/15 min) {result.get('load_before')} before, "
        f"{result.get('load_after')} after.",
    ]
    if result.get("devices"):
        lines += [
            "",
            f"Network: {cfg['n_layers']} dense sine layers × {cfg['n_hidden']} (ω0 = "
            f"{cfg['omega']:g}), {cfg['n_points']} points per iteration, `{cfg['pde']}`, "
            f"four-target box {' × '.join(str(n) for n in cfg['shape'])}, 3 complex "
            f"components, 3D coordinates; medians of {cfg['blocks']} interleaved blocks.",
        ]
    return lines


def _baseline_lines(b: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "### Direct inversion (numpy/scipy, one thread)",
        "",
        "| method | volume | median s | best s | CPU s |",
        "|---|---|---|---|---|",
    ]
    vol = (f"{' × '.join(str(n) for n in b['shape'])}, {b['n_components']} components, "
           f"{b['n_frequencies']} frequencies")
    for name, key in (("AHI", "ahi"), ("MDEV", "mdev"), ("k-MDEV", "kmdev")):
        lines.append(f"| {name} | {vol} | {_f(b[key + '_s'])} | {_f(b[key + '_min_s'])} | "
                     f"{_f(b[key + '_cpu_s'])} |")
    return lines


def _paths_lines(dev: str, res: dict[str, Any]) -> list[str]:
    t = res["timing"]
    mem = res.get("memory", {})
    mem_label = "GPU MB" if dev == "cuda" else "peak RSS +MB"
    lines = [
        "",
        f"### Time per training iteration ({dev})",
        "",
        f"| path | data s | model s | loss s | step s | total s/iter | it/s | points/s "
        f"| CPU s/iter | {mem_label} | n |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label in _VARIANT_LABELS.items():
        r = t[name]
        mem_cell = _memory_cell(mem.get(_MEMORY_OF[name])) if name in _MEMORY_OF else "–"
        lines.append(
            f"| {label} | {_f(r['data_s'])} | {_f(r['model_s'])} | {_f(r['loss_s'])} | "
            f"{_f(r['step_s'])} | {_f(r['total_s'])} | {_f(r['it_per_s'])} | "
            f"{_f(r['points_per_s'], '.0f')} | {_f(r['cpu_s'])} | {mem_cell} | {r['n']} |"
        )
    chk = res["check"]
    worst = max(chk["rel_diff"].values())
    lines += [
        "",
        f"Ratio (a)/(b), PDE active: **{res['ratio']:.1f}×**; warmup iterations: "
        f"{res['warmup_ratio']:.1f}×. Same-batch check ({chk['n_points']} points, same "
        f"weights): total loss {chk['losses']['reference']['total']:.6g} vs "
        f"{chk['losses']['default']['total']:.6g}, largest relative difference "
        f"{worst:.1e} (tolerance {chk['rtol']:.0e}): "
        f"**{'passed' if chk['passed'] else 'FAILED'}**; modulus-gradient relative "
        f"difference {chk['grad_rel_diff']:.1e}; pointwise residual difference "
        f"{chk['residual_max_rel_diff']:.1e} of the largest residual.",
    ]
    if mem and dev == "cpu":
        lines.append(
            "Memory: peak resident set size during the iterations minus before them, each "
            "path in a fresh process (psutil, sampled every ms)."
        )
    return lines


def _accuracy_lines(dev: str, acc: dict[str, Any], ahi: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"### Time to accuracy ({dev}): default fit, Pearson R of |G*| in the mask",
        "",
        "| run | voxels | iterations | train s | CPU s | s/iter | final R | "
        "time to R ≥ 0.8 | fit wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in acc.items():
        ttt = a["time_to_target_s"]
        reach = f"{ttt:.0f} s ({a['iters_to_target']} it)" if ttt is not None else "not reached"
        lines.append(
            f"| MRE-PINN, {name} | {a['n_voxels']} | {a['iters']} | "
            f"{_f(a['train_s'], '.0f')} | {_f(a['train_cpu_s'], '.0f')} | "
            f"{_f(a['s_per_iter'])} | {_f(a['final_r'], '.3f')} | {reach} | "
            f"{_f(a['fit_wall_s'], '.0f')} |"
        )
    for name, h in ahi.items():
        reached = _f(h["seconds"], ".2f") + " s" if h["pearson_r"] >= 0.8 else "not reached"
        lines.append(
            f"| AHI (Gaussian σ = 1), {name} | {acc[name]['n_voxels']} | – | "
            f"{_f(h['seconds'], '.2f')} | – | – | {_f(h['pearson_r'], '.3f')} | {reached} | "
            f"{_f(h['seconds'], '.2f')} |"
        )
    lines += ["", "R versus training seconds (wall and process CPU; evaluation excluded):",
              "", "| run | iteration | train s | CPU s | R |", "|---|---|---|---|---|"]
    for name, a in acc.items():
        for rec in a["records"]:
            lines.append(f"| {name} | {rec['iteration']} | {_f(rec['train_s'], '.1f')} | "
                         f"{_f(rec['train_cpu_s'], '.1f')} | {_f(rec['pearson_r'], '.3f')} |")
    return lines


def _contention_lines(c: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "### Thread policy under load (CPU)",
        "",
        f"A default fit of {c['iters']} iterations in a fresh process, training seconds "
        f"(medians of {c['repeats']} interleaved rounds); {c['cpu_count']} cores; load "
        f"average {c['load_before']} before, {c['load_after']} after. Targets: "
        f"≤ {c['targets']['busy']}× beside a busy core, ≤ {c['targets']['torch']}× "
        "beside another fit.",
        "",
        "| OpenMP wait policy | torch threads | alone s | beside a busy core | "
        "beside another fit | CPU s alone / busy / fit |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in c["policies"].items():
        t, r, cpu = p["train_s"], p["ratio"], p["cpu_s"]
        label = "PASSIVE" if name == "passive" else "runtime default"
        lines.append(
            f"| {label} | {p['threads']} | {_f(t['idle'])} | {_f(t['busy'])} s "
            f"(**{r['busy']:.2f}×**) | {_f(t['torch'])} s (**{r['torch']:.2f}×**) | "
            f"{_f(cpu['idle'])} / {_f(cpu['busy'])} / {_f(cpu['torch'])} |"
        )
    if {"default", "passive"} <= set(c["policies"]):
        d, p = c["policies"]["default"], c["policies"]["passive"]
        better = [_CONDITION_LABELS[k] for k in ("busy", "torch")
                  if p["ratio"][k] < d["ratio"][k]]
        alone = p["train_s"]["idle"] / d["train_s"]["idle"]
        lines += ["", f"OMP_WAIT_POLICY=PASSIVE: alone {alone:.2f}× the default's time; a "
                  f"smaller slowdown {' and '.join(better) if better else 'in no condition'}."]
    return lines


def format_markdown(result: dict[str, Any]) -> str:
    """The benchmark as markdown tables, ready to paste into the docs."""
    lines = _header(result)
    if "baselines" in result:
        lines += _baseline_lines(result["baselines"])
    for dev, res in result.get("devices", {}).items():
        lines += _paths_lines(dev, res)
        if res.get("accuracy"):
            lines += _accuracy_lines(dev, res["accuracy"], res.get("ahi", {}))
    if "contention" in result:
        lines += _contention_lines(result["contention"])
    if "import" in result:
        lines += _import_lines(result["import"])
    return "\n".join(lines)


def _import_lines(b: dict[str, Any]) -> list[str]:
    shape = " × ".join(str(n) for n in b["shape"])
    lines = [
        "",
        f"### Scanner import ({shape} voxels, {b['n_offsets']} offsets, "
        f"{b['n_directions']} directions, {len(b['frequencies'])} frequencies, "
        f"{b['files']} DICOM files, {b['workers']} reading process)",
        "",
        "| unwrapping | wall s | CPU s of the process | correlation with the encoded wave |",
        "|---|---|---|---|",
    ]
    for method, sec in b["seconds"].items():
        lines.append(f"| {method} | {_f(sec)} | {_f(b['cpu_seconds'][method])} | "
                     f"{b['correlation'][method]:.6f} |")
    return lines
