"""``mrepinn benchmark`` runs end to end on a tiny configuration.

Only that it runs, reports both paths and that their losses agree on the same batch: the
timings themselves belong to the benchmark output (and the README), never to a test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from napari_mrepinn import benchmark, cli
from napari_mrepinn.benchmark import BenchmarkConfig

VARIANTS = ("reference", "default", "reference_warmup", "default_warmup")


def tiny_config() -> BenchmarkConfig:
    """Every part of the benchmark in a few seconds (the figures mean nothing)."""
    return BenchmarkConfig(
        shape=(40, 50, 2), spacing=2e-3, n_layers=3, n_hidden=16, n_points=64,
        blocks=2, iters_per_block=1, warmup_iters_per_block=1, memory_iters=1,
        slice_iters=6, box_iters=0, eval_every=3,
        fit_options={"n_layers": 2, "n_hidden": 8}, gui_iters=3, gui_repeats=1,
    )


@pytest.fixture(scope="module")
def result() -> dict:
    return benchmark.run_benchmark(tiny_config(), devices=["cpu"], log=None)


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


def test_same_batch_loss_agrees(result):
    chk = result["devices"]["cpu"]["check"]
    assert set(chk["losses"]["reference"]) == {"wave", "pde", "total"}
    assert chk["losses"]["reference"]["pde"] > 0
    for name, rel in chk["rel_diff"].items():
        assert rel <= 1e-5, name
    assert chk["passed"]


def test_memory_probe_of_each_path(result):
    mem = result["devices"]["cpu"]["memory"]
    assert set(mem) == {"reference", "default", "default_warmup"}
    for name, m in mem.items():
        assert "error" not in m, (name, m)
        assert m["maxrss_delta_mb"] >= 0
        assert m["maxrss_after_mb"] > 0


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
    assert "| AHI | 128 × 80 × 25, 3 components, 8 frequencies |" in md
    assert result["baselines"]["n_values"] == 128 * 80 * 25 * 3 * 8
    back = json.loads(json.dumps(benchmark._jsonable(result)))
    assert back["devices"]["cpu"]["check"]["passed"] is True


def test_cli_quick_writes_json(tmp_path, monkeypatch, capsys):
    # the CLI contract (args.quick, device, skip_accuracy, output), on the tiny config
    cfg = tiny_config()
    cfg.memory_iters = 0  # the probes are covered above; they cost a process each
    monkeypatch.setattr(BenchmarkConfig, "quick", classmethod(lambda cls: cfg))
    out = tmp_path / "bench.json"
    rc = cli.main(["benchmark", "--quick", "--device", "cpu", "--skip-accuracy", "-o", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["devices"]) == {"cpu"}
    assert "accuracy" not in data["devices"]["cpu"]
    assert "memory" not in data["devices"]["cpu"]
    assert data["config"]["n_points"] == 64
    assert "| (b) default, PDE active |" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cli_cuda_without_gpu_is_bad_input(capsys):
    assert cli.main(["benchmark", "--quick", "--device", "cuda"]) == 2
    assert "no GPU" in capsys.readouterr().err


def test_gui_overhead_runs_without_a_viewer(qapp):
    pytest.importorskip("qtpy")
    example = benchmark._middle_slice(benchmark._four_target(tiny_config()))
    r = benchmark.measure_gui_overhead(example, n_iters=3, repeats=1, refresh_every=2,
                                       n_layers=2, n_hidden=8)
    for key in ("cli_s", "gui_loop_s", "gui_s"):
        assert r[key] > 0
    assert math.isfinite(r["gui_overhead"])
