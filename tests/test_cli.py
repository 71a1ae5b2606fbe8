"""The ``mrepinn`` command: happy paths on small phantoms and one-line errors on bad input."""

import hashlib

import numpy as np
import pytest

import napari_mrepinn
from napari_mrepinn import MREExample
from napari_mrepinn.cli import main


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_simulate_baseline_evaluate(tmp_path, capsys):
    phantom = tmp_path / "cyl.nc"
    assert main(["simulate", "cylinder", "-o", str(phantom), "--noise-ratio", "1e-3"]) == 0
    ex = MREExample.load(phantom)
    assert {"wave", "mre", "mre_mask"} <= set(ex.keys())
    assert ex.ds.attrs["noise_ratio"] == pytest.approx(1e-3)

    result = tmp_path / "ahi.nc"
    assert main(["baseline", "ahi", str(phantom), "-o", str(result)]) == 0
    out = MREExample.load(result)
    assert out["mu_ahi"].dims == ex.spatial_dims
    assert np.iscomplexobj(out["mu_ahi"].values)

    capsys.readouterr()
    assert main(["evaluate", str(result)]) == 0
    table = capsys.readouterr().out
    assert "mu_ahi" in table and "R" in table


def test_multifrequency_mdev(tmp_path):
    phantom = tmp_path / "box.nc"
    code = main(["simulate", "four-target", "-o", str(phantom), "--frequency", "60", "80"])
    assert code == 0
    result = tmp_path / "mdev.nc"
    assert main(["baseline", "mdev", str(phantom), "-o", str(result)]) == 0
    assert "mu_mdev" in MREExample.load(result)
    # AHI needs one frequency of a multi-frequency file: a clear error, not a guess
    assert main(["baseline", "ahi", str(phantom), "-o", str(tmp_path / "a.nc")]) == 2


def test_fit_writes_result_and_figure(tmp_path):
    phantom = tmp_path / "cyl.nc"
    main(["simulate", "cylinder", "-o", str(phantom)])
    small = MREExample.load(phantom).downsample(2)
    small.save(phantom)
    out = tmp_path / "fit.nc"
    assert main(["fit", str(phantom), "-o", str(out), "--iters", "30", "--n-points", "128"]) == 0
    result = MREExample.load(out)
    for name in ("wave_pred", "mu_pred", "pde_residual", "mu_ahi"):
        assert name in result
    assert result.ds.attrs["mrepinn_version"] == napari_mrepinn.__version__
    config = napari_mrepinn.recipe.result_config(result)
    assert config.iters == 30 and config.n_points == 128
    assert out.with_suffix(".png").stat().st_size > 10_000


BAD = {
    "corrupt": lambda p: p.write_bytes(b"\x89HDF\r\n garbage"),
    "text": lambda p: p.write_text("wave = 1, 2, 3"),
}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("command", ["baseline", "fit", "evaluate"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, kind, command):
    path = tmp_path / "bad.nc"
    BAD[kind](path)
    before = _digest(path)
    argv = {
        "baseline": ["baseline", "ahi", str(path), "-o", str(tmp_path / "o.nc")],
        "fit": ["fit", str(path), "-o", str(tmp_path / "o.nc"), "--iters", "1"],
        "evaluate": ["evaluate", str(path)],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mrepinn: error:") and "bad.nc" in err
    assert len(err.splitlines()) == 1
    assert _digest(path) == before
    assert not (tmp_path / "o.nc").exists()


def test_output_never_overwrites_input(tmp_path, capsys):
    phantom = tmp_path / "cyl.nc"
    main(["simulate", "cylinder", "-o", str(phantom)])
    before = _digest(phantom)
    assert main(["baseline", "ahi", str(phantom), "-o", str(phantom)]) == 2
    assert "overwrite the input" in capsys.readouterr().err
    assert _digest(phantom) == before


def test_evaluate_without_truth_says_so(tmp_path, capsys):
    ex = MREExample.from_numpy(np.ones((8, 8), complex), 60, 1e-3)
    path = ex.save(tmp_path / "nogt.nc")
    assert main(["evaluate", str(path)]) == 2
    assert "no ground truth" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss-weights", "1,a,1"], "loss weight must be a number"),
        (["--loss-weights", "1,0"], "give 3 or 4 loss weights"),
        (["--loss-weights", "0,0,0,0"], "all loss weights are 0"),
        (["--loss-weights", "nan,0,1,0"], "finite"),
        (["--lr", "-1"], "learning rate"),
        (["--lr", "nan"], "learning rate"),
        (["--n-points", "0"], "at least 1"),
        (["--iters", "2.5"], "whole number"),
        (["--pde", "foo"], "PDE (pde) must be one of"),
        (["--device", "mps"], "unknown device"),
        (["--device", "cuda:3"], "cuda"),
        (["--config", "missing.json"], "cannot read the configuration"),
    ],
)
def test_bad_training_options_are_one_line_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "x.nc"
    assert main(["fit", "-o", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_config_file_flags_and_the_three_weight_form(tmp_path, capsys):
    assert main(["fit", "--print-config", "--iters", "700", "--loss-weights", "1,0,1"]) == 0
    text = capsys.readouterr().out
    config = napari_mrepinn.TrainingConfig.from_json(text)
    assert config.iters == 700 and config.loss_weights.as_list() == [1, 0, 1, 0]
    path = tmp_path / "run.json"
    path.write_text(text)
    assert main(["fit", "--print-config", "--config", str(path), "--lr", "5e-4"]) == 0
    again = napari_mrepinn.TrainingConfig.from_json(capsys.readouterr().out)
    assert again == config.replace(lr=5e-4)


def test_frequency_and_spacing_flags_apply_at_load_time(tmp_path, capsys):
    """A file without frequency and spacing is read with --frequency and --spacing (mm)."""
    from napari_mrepinn import io, simulate

    folder = tmp_path / "bare"
    io.save_nifti_folder(simulate.four_target(frequency=60).downsample(2), folder)
    for sidecar in folder.glob("*.json"):
        sidecar.unlink()
    out = tmp_path / "ahi.nc"
    assert main(["baseline", "ahi", str(folder), "-o", str(out)]) == 2
    assert "--frequency" in capsys.readouterr().err
    assert main(["baseline", "ahi", str(folder), "-o", str(out), "--frequency", "60",
                 "--spacing", "2"]) == 0
    result = MREExample.load(out)
    assert result.frequency == 60 and result.spacing["x"] == pytest.approx(2e-3)


def test_frequency_flag_selects_from_a_multifrequency_file(tmp_path):
    phantom = tmp_path / "box.nc"
    main(["simulate", "four-target", "-o", str(phantom), "--frequency", "60", "80"])
    out = tmp_path / "ahi80.nc"
    assert main(["baseline", "ahi", str(phantom), "-o", str(out), "--frequency", "80"]) == 0
    assert MREExample.load(out).frequency == 80
