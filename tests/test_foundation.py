"""The package, its npe2 manifest, and a real napari viewer under the virtual display."""

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import napari_mrepinn

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_is_listed_and_lazy():
    # importing the package must not import torch (napari imports it at start-up)
    code = "import sys, napari_mrepinn; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for name in ("MREExample", "fit", "MREPINNModel", "WaveEquation", "simulate", "baselines"):
        assert name in napari_mrepinn.__all__


def test_packaged_manifest_is_the_root_manifest():
    packaged = Path(napari_mrepinn.__file__).with_name("napari.yaml")
    assert packaged.read_text() == (ROOT / "napari.yaml").read_text()


def test_npe2_validate_passes():
    from npe2.cli import app  # noqa: F401  (npe2's CLI must be importable)

    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-mrepinn"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in (out.stdout + out.stderr).lower()


def test_napari_lists_our_widgets_readers_and_samples():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-mrepinn")
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"MRE-PINN training", "Direct inversion (AHI/MDEV)", "Prepare MRE data",
                       "ROI statistics"}
    readers = [r.command for r in pm.iter_compatible_readers(["phantom.nc"])]
    assert "napari-mrepinn.get_reader" in readers
    readers = [r.command for r in pm.iter_compatible_readers(["bioqic.mat"])]
    assert "napari-mrepinn.get_reader" in readers
    samples = {s.key for s in manifest.contributions.sample_data}
    assert samples == {"four_target", "liver"}


@pytest.mark.slow
def test_wheel_contains_the_manifest(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("napari_mrepinn-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "napari_mrepinn/napari.yaml" in names
        packaged = zf.read("napari_mrepinn/napari.yaml").decode()
        entry_points = zf.read(
            next(n for n in names if n.endswith("entry_points.txt"))
        ).decode()
    assert packaged == (ROOT / "napari.yaml").read_text()
    assert "napari.manifest" in entry_points and "napari_mrepinn:napari.yaml" in entry_points


def test_viewer_screenshot_of_a_layer(make_napari_viewer):
    # a hidden viewer renders a black canvas; under Xvfb a shown one costs nothing
    viewer = make_napari_viewer(show=True)
    yy, xx = np.mgrid[:64, :64]
    image = np.sin(xx / 5.0) * np.cos(yy / 7.0)
    viewer.add_image(image, colormap="magma", scale=(1.0, 1.0))
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[-1] == 4
    rgb = shot[..., :3].astype(int)
    # a drawn image has many distinct colours; an empty or black canvas has one or two
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20
    assert rgb.max() > 100
