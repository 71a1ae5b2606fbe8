"""``mrepinn benchmark`` runs end to end on a tiny configuration.

Only that it runs, reports both paths and the thread policy, and that the paths' losses
agree on the same batch: the timings themselves belong to the benchmark output (and the
docs), never to a test.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from napari_mrepinn import benchmark, cli
from napari_mrepinn.benchmark import BenchmarkConfig, contention, direct, memory, spec
from napari_mrepinn.recipe import resolved_threads

VARIANTS = ("reference", "default", "reference_warmup", "default_warmup")
REPO = Path(__file__).resolve().parents[1]


def tiny_config(**changes) -> BenchmarkConfig:
    """Every part of the benchmark in a few seconds (the figures mean nothing)."""
    values = dict(
        shape=(40, 50, 2), spacing=2e-3, n_layers=3, n_hidden=16, n_points=64,
        blocks=2, iters_per_block=1, warmup_iters_per_block=1, memory_iters=1,
        slice_iters=6, box_iters=0, eval_every=3,
        fit_options={"n_layers": 2, "n_hidden": 8}, contention_iters=3,
        contention_repeats=1, contention_passive=(False,),
    )
    return BenchmarkConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def box():
    return spec.four_target_box(tiny_config())


@pytest.fixture(scope="module")
def result() -> dict:
    parts = ("baselines", "paths", "accuracy")  # memory: below, a process per probe
    small = functools.partial(direct.benchmark_baselines, shape=(32, 24, 6), n_frequencies=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(benchmark, "benchmark_baselines", small)
        return benchmark.run_benchmark(tiny_config(), devices=["cpu"], parts=parts, log=None)


def test_reports_both_paths_with_phases(result):
    t = result["devices"]["cpu"]["timing"]
    for name in VARIANTS:
        assert t[name]["n"] == 2  # 2 blocks × 1 iteration
        for key in ("data_s", "model_s", "loss_s", "step_s", "total_s", "cpu_s"):
            assert t[name][key] >= 0
        assert t[name]["total_s"] > 0
        assert t[name]["points_per_s"] == pytest.approx(64 / t[name]["total_s"])
    ratio = result["devices"]["cpu"]["ratio"]
    assert math.isfinite(ratio) and ratio > 0


def test_timed_step_is_the_training_step(box):
    """One timed iteration draws a batch and applies ``MREPINNModel.step``: the weights
    move, the iteration counts, every phase is clocked."""
    model = benchmark.build_timing_model(box, tiny_config(), "fast", "cpu")
    before = [p.detach().clone() for p in model.net.parameters()]
    batch = model.batch_idx.clone()
    t = benchmark.timed_step(model, 1.0)
    assert set(t) == {"data", "model", "loss", "step", "total", "cpu"}
    assert t["total"] >= t["model"] + t["loss"] + t["step"] > 0
    assert model.iteration == 1
    assert not torch.equal(batch, model.batch_idx)  # a fresh batch was drawn
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net.parameters(),
                                                     strict=True))


def test_timing_models_come_from_the_recipe(box):
    cfg = tiny_config()
    ref, dflt = (benchmark.build_timing_model(box, cfg, e, "cpu") for e in ("reference", "fast"))
    assert (ref.config.engine, dflt.config.engine) == ("reference", "fast")
    assert ref.config.replace(engine="fast") == dflt.config
    assert ref.config.loss_weights.as_list() == [1.0, 0.0, 1.0, 0.0]
    assert ref.pde_warmup_iters == 0 and ref.n_points == 64
    assert abs(abs(ref.prior) - 3000.0) < 1e-6  # the fixed prior, no AHI
    for a, b in zip(ref.net.parameters(), dflt.net.parameters(), strict=True):
        assert torch.equal(a, b)  # same seed, same weights


def test_same_batch_loss_agrees(result):
    chk = result["devices"]["cpu"]["check"]
    assert set(chk["losses"]["reference"]) == {"wave", "pde", "total"}
    assert chk["losses"]["reference"]["pde"] > 0
    for name, rel in chk["rel_diff"].items():
        assert rel <= 1e-5, name
    assert chk["grad_rel_diff"] < 1e-4 and chk["residual_max_rel_diff"] < 1e-4
    assert chk["passed"]


def test_memory_probe_in_a_fresh_process(box, tmp_path, monkeypatch):
    path = tmp_path / "box.nc"
    box.save(path)
    monkeypatch.setattr(memory, "PROBES", (("default", "default", 1.0),))
    mem = benchmark.measure_memory(str(path), tiny_config(), "cpu")
    assert set(mem) == {"default"}
    assert "error" not in mem["default"], mem
    assert mem["default"]["maxrss_delta_mb"] >= 0
    assert mem["default"]["maxrss_after_mb"] > 0


def test_memory_probes_of_each_path(box, tmp_path, monkeypatch):
    """Every path is probed (here in this process, to spare the test two interpreters)."""
    path = tmp_path / "box.nc"
    box.save(path)
    monkeypatch.setattr(memory, "_run_probe", memory._memory_probe)
    before = torch.get_num_threads()
    mem = benchmark.measure_memory(str(path), tiny_config(), "cpu", threads=before)
    assert set(mem) == {"reference", "default", "default_warmup"}
    for m in mem.values():
        assert m["maxrss_delta_mb"] >= 0


def test_time_to_accuracy_records(result):
    acc = result["devices"]["cpu"]["accuracy"]
    assert set(acc) == {"slice"}  # box_iters=0 skips the box
    rec = acc["slice"]["records"]
    assert [r["iteration"] for r in rec] == [3, 6]
    assert 0 <= rec[0]["train_s"] <= rec[1]["train_s"]
    assert all(-1 <= r["pearson_r"] <= 1 for r in rec if math.isfinite(r["pearson_r"]))
    assert acc["slice"]["iters"] == 6
    ahi = result["devices"]["cpu"]["ahi"]["slice"]
    assert ahi["seconds"] >= 0 and math.isfinite(ahi["pearson_r"])


def test_markdown_table_and_json(result):
    md = benchmark.format_markdown(result)
    assert "| (a) reference, PDE active |" in md
    assert "| (b) default, PDE active |" in md
    assert "Ratio (a)/(b)" in md and "passed" in md
    assert "| MRE-PINN, slice |" in md and "| AHI (Gaussian σ = 1), slice |" in md
    assert "| AHI | 32 × 24 × 6, 3 components, 2 frequencies |" in md
    assert "Thread policy" not in md  # not measured in this run
    back = json.loads(json.dumps(benchmark._jsonable(result)))
    assert back["devices"]["cpu"]["check"]["passed"] is True


# ------------------------------------------------------------------ thread policy
def test_contention_child_reports_its_training_time(box, tmp_path, capsys):
    """The fit each contention process runs: the recipe, the default thread policy."""
    path = tmp_path / "slice.nc"
    spec.middle_slice(box).save(path)
    child = {"path": str(path), "iters": 3, "threads": 0, "loop": False,
             "fit_options": {"n_layers": 2, "n_hidden": 8}}
    before = torch.get_num_threads()
    contention._fit_child(json.dumps(child))
    assert torch.get_num_threads() == before  # the fit put the caller's setting back
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "ready"
    out = json.loads(lines[-1])
    assert out["train_s"] > 0 and out["cpu_s"] > 0
    assert out["threads"] == resolved_threads(0)


def test_contention_interleaves_conditions_and_policies(monkeypatch, tmp_path):
    """Rounds of idle, busy, torch per wait policy, OMP_WAIT_POLICY set for the passive
    fits only, ratios against the idle fit."""
    seen = []
    seconds = {"idle": 2.0, "busy": 3.0, "torch": 5.0}

    def fake(condition, spec_, env):
        seen.append((condition, env.get("OMP_WAIT_POLICY")))
        return {"train_s": seconds[condition], "cpu_s": 1.0, "threads": 1}

    monkeypatch.setattr(contention, "_fit_beside", fake)
    cfg = tiny_config(contention_repeats=2, contention_passive=(False, True))
    out = contention.measure_contention(str(tmp_path / "x.nc"), cfg)
    one_round = [(c, p) for p in (None, "PASSIVE") for c in ("idle", "busy", "torch")]
    assert seen == one_round * 2
    for name in ("default", "passive"):
        p = out["policies"][name]
        assert p["ratio"] == {"busy": 1.5, "torch": 2.5}
        assert p["round_ratios"]["busy"] == [1.5, 1.5]
        assert p["meets_targets"] is False  # 2.5 > 2
    md = benchmark.format_markdown({"machine": {"cpu": "x", "cpu_count": 2, "torch": "t",
                                                "torch_threads": 1, "date": "d"},
                                    "config": {}, "contention": out})
    assert "| runtime default | 1 | 2 | 3 s (**1.50×**) | 5 s (**2.50×**)" in md
    assert "OMP_WAIT_POLICY=PASSIVE: alone 1.00×" in md


@pytest.mark.slow
def test_contention_end_to_end(box, tmp_path):
    """The real thing: fits in fresh processes beside a spinner and beside another fit."""
    path = tmp_path / "slice.nc"
    spec.middle_slice(box).save(path)
    out = contention.measure_contention(str(path), tiny_config())
    p = out["policies"]["default"]
    assert set(p["train_s"]) == {"idle", "busy", "torch"}
    assert all(v > 0 for v in p["train_s"].values())
    assert p["threads"] == resolved_threads(0)
    assert out["load_before"] is None or len(out["load_before"]) == 3


# ------------------------------------------------------------------ command line
def test_cli_quick_writes_json(tmp_path, monkeypatch, capsys):
    # the CLI contract (args.quick, device, skip_accuracy, output), on the tiny config
    cfg = tiny_config(memory_iters=0, contention_iters=0)  # covered above; a process each
    monkeypatch.setattr(BenchmarkConfig, "quick", classmethod(lambda cls: cfg))
    out = tmp_path / "bench.json"
    rc = cli.main(["benchmark", "--quick", "--device", "cpu", "--skip-accuracy",
                   "--threads", "1", "-o", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["devices"]) == {"cpu"}
    assert "accuracy" not in data["devices"]["cpu"]
    assert "memory" not in data["devices"]["cpu"]
    assert "contention" not in data
    assert data["config"]["n_points"] == 64 and data["config"]["threads"] == 1
    assert "| (b) default, PDE active |" in capsys.readouterr().out


def test_cli_contention_only(monkeypatch, capsys):
    calls = []

    def fake(path, cfg, *, log=None):
        calls.append(cfg.contention_iters)
        return {"policies": {}, "iters": 3, "repeats": 1, "cpu_count": 2,
                "targets": contention.TARGETS, "load_before": None, "load_after": None}

    monkeypatch.setattr(BenchmarkConfig, "quick", classmethod(lambda cls: tiny_config()))
    monkeypatch.setattr(benchmark, "measure_contention", fake)
    assert cli.main(["benchmark", "--quick", "--contention-only"]) == 0
    out = capsys.readouterr().out
    assert calls == [3]
    assert "Thread policy under load" in out and "Time per training iteration" not in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cli_cuda_without_gpu_is_bad_input(capsys):
    assert cli.main(["benchmark", "--quick", "--device", "cuda"]) == 2
    assert "GPU" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--gui-overhead"], ["--threads", "-1"]])
def test_cli_refuses_with_one_line(argv, capsys):
    assert cli.main(["benchmark", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert ("benchmarks/gui_overhead.py" in err) or ("--threads" in err)


# ------------------------------------------------------------------ Qt worker (a script)
@pytest.mark.gui
def test_gui_overhead_script_runs_without_a_viewer(qapp, box):
    path = REPO / "benchmarks" / "gui_overhead.py"
    module_spec = importlib.util.spec_from_file_location("gui_overhead", path)
    gui_overhead = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(gui_overhead)
    r = gui_overhead.measure_gui_overhead(spec.middle_slice(box), n_iters=3, repeats=1,
                                          refresh_every=2, n_layers=2, n_hidden=8)
    for key in ("cli_s", "gui_loop_s", "gui_s"):
        assert r[key] > 0
    assert math.isfinite(r["gui_overhead"])
    assert "| Qt worker, no snapshots |" in gui_overhead.format_table(r)
