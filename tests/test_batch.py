"""Batch inversion on Dask distributed (``napari_mrepinn.batch``, ``mrepinn batch``).

The cluster tests use tiny phantoms (the 64 × 64 cylinder block-averaged to 16 × 16) and
mostly AHI, so that their time is the clusters' start-up; PINN runs in-process with a tiny
configuration.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_mrepinn import baselines, batch, batch_cluster, batch_summary, simulate
from napari_mrepinn.config import TrainingConfig
from napari_mrepinn.data import MREExample, MREInputError
from napari_mrepinn.metrics import evaluate
from napari_mrepinn.outputs import MREOutputError

TINY = TrainingConfig(iters=20, n_points=64, n_layers=2, n_hidden=8, pde_warmup_iters=5,
                      threads=1)


@functools.cache
def _clean_phantom() -> MREExample:
    return simulate.cylinder().downsample(4)


def _phantom(seed: int) -> MREExample:
    return _clean_phantom().add_gaussian_noise(1e-3, seed=seed)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Five healthy phantoms and one corrupt file."""
    folder = tmp_path_factory.mktemp("cohort")
    for i in range(5):
        _phantom(i).save(folder / f"cyl{i}.nc")
    (folder / "broken.nc").write_bytes(b"\x89HDF\r\n" + b"not really" * 50)
    (folder / "notes.txt").write_text("not an exam")  # nobody reads it: not in the batch
    return folder


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.nc"))}


# ---------------------------------------------------------------------- the local cluster
def test_local_cluster_batch_then_rerun_does_nothing(cohort, tmp_path, monkeypatch):
    results = tmp_path / "results"
    df = batch.run_batch(cohort, results, methods=["ahi"], workers=2, progress=False)

    assert len(df) == 6 and list(df["method"].unique()) == ["ahi"]
    assert sorted(p.name for p in results.glob("*.nc")) == [f"cyl{i}.nc" for i in range(5)]
    bad = df[df["status"] != "done"]
    assert bad["id"].tolist() == ["broken"] and bad["status"].item() == "bad input"
    assert "broken.nc" in bad["error"].item() and "\n" not in bad["error"].item()
    assert not list(results.glob(".*.tmp*"))
    on_disk = pd.read_csv(results / "summary.csv", keep_default_na=False, na_values=[""])
    assert on_disk["id"].tolist() == df["id"].tolist()
    assert on_disk["status"].tolist() == df["status"].tolist()

    # the summary against an independent computation from the phantoms
    for i in range(5):
        ex = MREExample.load(cohort / f"cyl{i}.nc")
        mu = baselines.ahi(ex, **batch.BASELINE_SETTINGS["ahi"])
        ref = evaluate(mu, ex["mre"], ex["mre_mask"])
        row = df.set_index("id").loc[f"cyl{i}"]
        assert row["status"] == "done" and row["pearson_r"] == pytest.approx(ref["pearson_r"])
        assert row["cte2_pct"] == pytest.approx(ref["cte_percent"][2])
        saved = MREExample.load(results / f"cyl{i}.nc")
        np.testing.assert_allclose(saved["mu_ahi"].values, mu.values)
        mag = np.abs(mu.transpose(*ex["mre_mask"].dims).values) / 1e3
        for label in (1, 2):
            v = mag[ex["mre_mask"].values == label]
            q1, q3 = np.percentile(v, [25, 75])
            assert row[f"roi{label}_n"] == v.size
            assert row[f"roi{label}_median_kpa"] == pytest.approx(np.median(v))
            assert row[f"roi{label}_iqr_kpa"] == pytest.approx(q3 - q1)
            assert row[f"roi{label}_sd_kpa"] == pytest.approx(np.std(v, ddof=1))
        csv_r = on_disk.set_index("id").loc[f"cyl{i}", "pearson_r"]
        assert csv_r == pytest.approx(row["pearson_r"], 1e-5)
    assert np.isnan(df.set_index("id").loc["broken", "pearson_r"])

    # a rerun starts no cluster and rewrites no result: every row comes from the files
    before = _mtimes(results)

    def no_cluster(*args, **kwargs):
        raise AssertionError("a rerun of a finished batch started a cluster")

    monkeypatch.setattr(batch, "_connect", no_cluster)
    again = batch.run_batch(cohort, results, methods=["ahi"], workers=2, progress=False)
    assert _mtimes(results) == before
    assert again["reused"].all()
    pd.testing.assert_frame_equal(again.drop(columns="reused"), df.drop(columns="reused"),
                                  check_dtype=False)


# ---------------------------------------------------------------------- faults and resuming
def flaky_task(exam, methods, results_dir, **kwargs):
    """:func:`batch.run_exam`, except that the first attempt at ``cyl2`` raises and the first
    at ``cyl3`` kills its worker process (marker files count the attempts)."""
    marker = Path(results_dir).parent / f"attempts-{exam.id}"
    attempt = len(marker.read_text()) if marker.exists() else 0
    marker.write_text("x" * (attempt + 1))
    if attempt == 0 and exam.id == "cyl2":
        raise OSError("the shared file system hiccuped")
    if attempt == 0 and exam.id == "cyl3":
        os._exit(1)  # the worker is lost mid-task: its nanny starts a new one
    return batch.run_exam(exam, methods, results_dir, **kwargs)


@pytest.fixture
def client():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           silence_logs=50)
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def test_faults_are_retried_and_finished_work_is_kept(cohort, tmp_path, client):
    import cloudpickle

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(4):
        (inputs / f"cyl{i}.nc").write_bytes((cohort / f"cyl{i}.nc").read_bytes())
    results = tmp_path / "results"
    first = batch.run_batch(inputs, results, methods=["ahi"], scheduler=client,
                            progress=False)
    assert (first["status"] == "done").all()
    ahi0 = MREExample.load(results / "cyl0.nc")["mu_ahi"].values
    _phantom(10).save(inputs / "cyl1.nc")  # a new scan under the old name

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        df = batch.run_batch(inputs, results, methods=["mdev"], scheduler=client,
                             progress=False, task=flaky_task)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])

    assert (df["status"] == "done").all() and len(df) == 4 and not df["reused"].any()
    assert (tmp_path / "attempts-cyl2").read_text() == "xx"  # raised once, retried
    assert (tmp_path / "attempts-cyl3").read_text() == "xx"  # worker lost, rescheduled
    saved = MREExample.load(results / "cyl0.nc")
    np.testing.assert_array_equal(saved["mu_ahi"].values, ahi0)  # kept, not asked for
    assert "mu_mdev" in saved
    info = json.loads(saved.ds.attrs[batch.ATTR])
    assert set(info["methods"]) == {"ahi", "mdev"}
    assert info["input_hash"] == batch.input_hash(inputs / "cyl0.nc")
    assert "mu_ahi" not in MREExample.load(results / "cyl1.nc")  # made from the old scan

    both = batch.run_batch(inputs, results, methods=["ahi", "mdev"], scheduler=client,
                           progress=False)
    reused = both.set_index(["id", "method"])["reused"]
    assert reused.drop(("cyl1", "ahi")).all() and not reused[("cyl1", "ahi")]
    assert (both["status"] == "done").all()


# ---------------------------------------------------------------------- an existing cluster
@pytest.fixture
def scheduler_address(tmp_path):
    """A scheduler and two single-thread workers started as separate processes."""
    pytest.importorskip("distributed")
    info = tmp_path / "scheduler.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], **quiet)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline, "the scheduler did not start"
            assert procs[0].poll() is None, "the scheduler exited"
            time.sleep(0.2)
        procs += [subprocess.Popen(  # no nanny: quicker to start and to stop
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
             str(info), "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
             "--no-dashboard"], **quiet) for _ in range(2)]
        yield json.loads(info.read_text())["address"]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_cli_sends_the_tasks_to_a_scheduler(cohort, tmp_path, scheduler_address, capsys):
    from napari_mrepinn.cli import main

    results = tmp_path / "out"
    inputs = [str(cohort / "cyl0.nc"), str(cohort / "cyl1.nc"), str(cohort / "broken.nc")]
    rc = main(["batch", *inputs, "-o", str(results), "--method", "ahi", "mdev",
               "--scheduler", scheduler_address, "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1  # one exam failed
    assert "3 exam(s): 2 done" in out and "broken [ahi] bad input" in out
    df = pd.read_csv(results / "summary.csv", keep_default_na=False)
    assert len(df) == 6 and (df["status"] == "done").sum() == 4
    assert sorted(p.name for p in results.glob("*.nc")) == ["cyl0.nc", "cyl1.nc"]


# ---------------------------------------------------------------------- the task itself
def test_pinn_exam_writes_its_result_and_hashes(cohort, tmp_path):
    exam = batch.Exam("cyl0", str(cohort / "cyl0.nc"))
    out = batch.run_exam(exam, ["pinn"], str(tmp_path), config_json=TINY.to_json(),
                         input_key="k", content_hash="h")
    (row,) = out["rows"]
    assert row["status"] == "done", row["error"]
    assert row["config_hash"] == batch.method_key("pinn", TINY)
    assert row["roi1_n"] + row["roi2_n"] == int((MREExample.load(exam.path).mask).sum())
    saved = MREExample.load(tmp_path / "cyl0.nc")
    assert {"mu_pred", "mu_ahi", "wave_pred"} <= set(saved.keys())
    assert TrainingConfig.from_json(saved.ds.attrs["mrepinn_config_json"]) == TINY
    assert json.loads(saved.ds.attrs[batch.ATTR])["input_key"] == "k"


def test_a_diverging_fit_is_an_error_row_and_writes_nothing(cohort, tmp_path, monkeypatch):
    from napari_mrepinn import recipe

    def diverging_fit(example, config, progress=False):
        warnings.warn("20 non-finite steps in a row; training stopped", RuntimeWarning)
        return example

    monkeypatch.setattr(recipe, "fit", diverging_fit)
    exam = batch.Exam("cyl0", str(cohort / "cyl0.nc"))
    out = batch.run_exam(exam, ["pinn", "ahi"], str(tmp_path), config_json=TINY.to_json())
    rows = {r["method"]: r for r in out["rows"]}
    assert rows["pinn"]["status"] == "diverged" and "lower --lr" in rows["pinn"]["error"]
    assert rows["ahi"]["status"] == "done"  # the other method of the exam still runs
    assert "mu_pred" not in MREExample.load(tmp_path / "cyl0.nc")


def test_unexpected_errors_propagate_for_dask_to_retry(tmp_path, monkeypatch):
    exam = batch.Exam("x", str(tmp_path / "x.nc"))
    monkeypatch.setattr(batch.Exam, "load", lambda self: (_ for _ in ()).throw(OSError("io")))
    with pytest.raises(OSError):
        batch.run_exam(exam, ["ahi"], str(tmp_path))


def test_a_failed_write_leaves_the_old_result_and_no_temporary(tmp_path):
    target = tmp_path / "a.nc"
    target.write_text("old")

    def half_written(tmp: Path) -> None:
        tmp.write_text("partial")
        raise OSError("disk full")

    # the one output discipline: an I/O failure is one clear MREOutputError line
    with pytest.raises(MREOutputError, match="disk full"):
        batch_summary._atomic_write(target, half_written)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    batch_summary._atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


# ---------------------------------------------------------------------- inputs and hashes
def test_inputs_from_folders_globs_and_a_manifest(cohort, tmp_path):
    exams = batch.find_exams([cohort])
    assert [e.id for e in exams] == ["broken", *(f"cyl{i}" for i in range(5))]
    assert [e.id for e in batch.find_exams([str(cohort / "cyl[12].nc")])] == ["cyl1", "cyl2"]

    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "id,path,frequency,spacing_mm,site\n"
        f"p01,{cohort / 'cyl0.nc'},80,2.5,Berlin\n"
        "p02,missing.nc,,,Paris\n"
    )
    a, b = batch.find_exams([manifest], spacing=1e-3)
    assert (a.id, a.frequency, a.spacing, a.extra) == ("p01", 80.0, (2.5e-3,),
                                                       {"site": "Berlin"})
    assert b.path == str((tmp_path / "missing.nc").resolve()) and b.spacing == (1e-3,)
    ex = a.load()
    assert ex.frequency == 80.0 and ex.spacing["x"] == pytest.approx(2.5e-3)
    with pytest.raises(MREInputError, match="no such file"):
        b.load()

    nested = tmp_path / "nested"
    (nested / "results").mkdir(parents=True)
    for name in ("a.nc", "results/a.nc"):
        (nested / name).write_bytes(b"")
    pattern = str(nested / "**" / "*.nc")
    assert len(batch.find_exams([pattern])) == 2
    assert [e.path for e in batch.find_exams([pattern], exclude=[nested / "results"])] == [
        str(nested / "a.nc")]  # the results folder is never an input

    with pytest.raises(MREInputError, match="no such file or folder"):
        batch.find_exams([tmp_path / "nothing-here"])
    with pytest.raises(MREInputError, match="'path' column"):
        (tmp_path / "bad.csv").write_text("id,file\nx,y.nc\n")
        batch.find_exams([tmp_path / "bad.csv"])
    twin = tmp_path / "other"
    twin.mkdir()
    (twin / "cyl0.nc").write_bytes((cohort / "cyl0.nc").read_bytes())
    ids = [e.id for e in batch.find_exams([cohort / "cyl0.nc", twin / "cyl0.nc"])]
    assert len(set(ids)) == 2  # same name in two folders: told apart by the folder


def test_input_hash_follows_content_and_names_not_times(tmp_path):
    folder = tmp_path / "exam"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"1234")
    h = batch.input_hash(folder)
    os.utime(folder / "a.bin", (1, 1))
    assert batch.input_hash(folder) == h
    (folder / "a.bin").rename(folder / "b.bin")
    assert batch.input_hash(folder) != h
    (folder / "b.bin").write_bytes(b"1235")
    assert batch.input_hash(folder / "b.bin") != batch.input_hash(folder)
    assert batch.input_hash(tmp_path / "missing") == ""


def test_method_keys_follow_what_each_method_uses():
    assert batch.method_key("pinn", TINY) == batch.method_key("pinn", TINY.replace())
    assert batch.method_key("pinn", TINY) != batch.method_key("pinn", TINY.replace(lr=2e-3))
    assert batch.method_key("ahi") != batch.method_key("mdev")


def test_roi_statistics_per_label():
    mu = np.array([[1e3, 2e3, 3e3, 4e3], [10e3, 20e3, 30e3, 0.0]]) * (1 + 1j) / np.sqrt(2)
    mask = np.array([[1, 1, 1, 1], [2, 2, 2, 0]])
    s = batch.roi_statistics(mu, mask)
    assert s["roi1_n"] == 4 and s["roi2_n"] == 3 and "roi0_n" not in s
    assert s["roi1_median_kpa"] == pytest.approx(2.5)
    assert s["roi1_iqr_kpa"] == pytest.approx(3.25 - 1.75)
    assert s["roi2_mean_kpa"] == pytest.approx(20.0)
    assert s["roi2_sd_kpa"] == pytest.approx(10.0)
    whole = batch.roi_statistics(mu)
    assert whole["roi_all_n"] == 8


def test_gpu_resources_for_pinn_tasks():
    gpu, cpu = [{"GPU": 1}], [{}]
    assert batch.pinn_resources("cuda", gpu) == {"GPU": 1}
    assert batch.pinn_resources("cuda:1", []) == {"GPU": 1}  # workers may join later
    assert batch.pinn_resources("auto", gpu + cpu) == {"GPU": 1}
    assert batch.pinn_resources("auto", cpu) is None
    assert batch.pinn_resources("cpu", gpu) is None
    with pytest.raises(MREInputError, match="--resources GPU=1"):
        batch.pinn_resources("cuda", cpu)


def test_one_batch_per_results_folder(tmp_path, cohort):
    results = tmp_path / "r"
    results.mkdir()
    (results / batch.LOCK).write_text(f"{socket.gethostname()} {os.getpid()}")
    with pytest.raises(MREInputError, match="another batch"):
        batch.run_batch(cohort / "cyl0.nc", results, methods=["ahi"], progress=False)
    (results / batch.LOCK).write_text(f"{socket.gethostname()} 999999999")  # gone: stale
    with batch._Lock(results):
        assert (results / batch.LOCK).read_text().endswith(str(os.getpid()))
    assert not (results / batch.LOCK).exists()


def test_bad_arguments_fail_before_any_work(tmp_path, cohort, monkeypatch):
    with pytest.raises(MREInputError, match="unknown method"):
        batch.run_batch(cohort, tmp_path / "r", methods=["fem"])
    (tmp_path / "file").write_text("")
    with pytest.raises(MREInputError, match="is a file"):
        batch.run_batch(cohort, tmp_path / "file", methods=["ahi"])
    monkeypatch.setattr(batch_cluster, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(MREInputError, match="cannot reach the Dask scheduler"):
        batch.run_batch(cohort / "cyl0.nc", tmp_path / "r", methods=["ahi"],
                        scheduler="tcp://127.0.0.1:9", progress=False)
