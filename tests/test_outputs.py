"""outputs: every writer writes whole or not at all, and says why in one line when it cannot.

A full disk and a read-only folder are real when the tests run as root with ``mount``
(tiny tmpfs mounts), otherwise the same failures are injected at the system call.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_mrepinn import io, outputs
from napari_mrepinn.data import MREExample, MREInputError
from napari_mrepinn.outputs import MREOutputError

SRC = str(Path(outputs.__file__).resolve().parents[1])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


def _example(n: int = 8, value: complex = 1 - 1j) -> MREExample:
    rng = np.random.default_rng(0)
    wave = value * (1 + 0.1 * rng.normal(size=(n, n, 3)))
    return MREExample.from_numpy(wave, 60.0, 1e-3, mre=np.full((n, n, 3), 3e3 + 300j))


def _mount(folder: Path, options: str) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody (root included) can write to: a read-only tmpfs as root, else 0555."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if _mount(folder, "ro,size=64k"):
        yield folder
        subprocess.run(["umount", str(folder)], check=False)
    elif hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root without mount: no folder is read-only to root")
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB file system (tmpfs; needs root and mount)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if not _mount(folder, "size=1m"):
        pytest.skip("a real full disk needs root and mount; the injected ENOSPC tests remain")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


# ---------------------------------------------------------------------- the primitives
def test_atomic_write_is_whole_and_keeps_the_mode(tmp_path):
    target = tmp_path / "table.csv"
    outputs.write_text(target, "a,b\n1,2\n")
    assert target.read_text() == "a,b\n1,2\n"
    # not mkstemp's 0600: what a plain open() would have made
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    target.chmod(0o640)
    outputs.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [RuntimeError("bug"), KeyboardInterrupt()])
def test_a_failed_write_changes_nothing(tmp_path, failure):
    target = tmp_path / "out.json"
    target.write_text("earlier")
    with pytest.raises(type(failure)), outputs.atomic_open(target, "w") as fh:
        fh.write("half of the new content")
        raise failure
    assert target.read_text() == "earlier"
    assert _leftovers(tmp_path) == []


def test_no_overwrite_refuses_and_keeps_the_file(tmp_path):
    target = tmp_path / "out.nc"
    target.write_text("earlier")
    with pytest.raises(MREOutputError, match="exists"):
        outputs.write_bytes(target, b"x", overwrite=False)
    outputs.write_bytes(tmp_path / "new.nc", b"x", overwrite=False)
    assert target.read_text() == "earlier" and (tmp_path / "new.nc").read_bytes() == b"x"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied"),
     (errno.EROFS, "read-only file system"), (errno.EDQUOT, "quota")],
)
def test_os_errors_become_one_line(tmp_path, monkeypatch, code, words):
    target = tmp_path / "out.nc"
    target.write_bytes(b"earlier")

    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs.os, "fsync", fail)
    with pytest.raises(MREOutputError, match=words) as err:
        outputs.write_bytes(target, b"new content")
    assert isinstance(err.value, MREInputError)  # the CLI's exit status 2
    assert str(target) in str(err.value) and "\n" not in str(err.value)
    assert target.read_bytes() == b"earlier"
    assert _leftovers(tmp_path) == []


def test_libhdf5_errno_text_is_understood():
    exc = RuntimeError("Can't decrement id ref count (file write failed: errno = 28, "
                       "error message = 'No space left on device')")
    assert "disk is full" in str(outputs.output_error("x.nc", exc))


def test_check_writable(tmp_path):
    assert outputs.check_writable(tmp_path / "o.nc") == tmp_path / "o.nc"
    with pytest.raises(MREOutputError, match="does not exist"):
        outputs.check_writable(tmp_path / "missing" / "o.nc")
    (tmp_path / "file").write_text("")
    with pytest.raises(MREOutputError, match="not a folder"):
        outputs.check_writable(tmp_path / "file" / "o.nc")
    with pytest.raises(MREOutputError, match=r"needs about .* free"):
        outputs.check_writable(tmp_path / "o.nc", need_bytes=10**18)
    assert _leftovers(tmp_path) == []  # the probe is gone


def test_read_only_folder_is_found_before_any_work(readonly_dir):
    with pytest.raises(MREOutputError, match=r"read-only|permission denied") as err:
        outputs.check_writable(readonly_dir / "o.nc")
    assert "\n" not in str(err.value)
    with pytest.raises(MREOutputError):
        _example().save(readonly_dir / "o.nc")


def test_sweep_removes_only_our_stale_partials(tmp_path):
    old = time.time() - 3600
    ours = [".o.nc.abcd_123.partial", "o.nc.partial", ".fig.png.x1y2z3w4.partial"]
    theirs = ["o.nc", "notes.partial", "o.txt.partial", "data.partial.txt", ".o.nc.short.partial"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (old, old))
    fresh = tmp_path / ".o.nc.fresh_12.partial"
    fresh.write_text("a write in progress elsewhere")
    removed = outputs.sweep_partials(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert fresh.exists() and all((tmp_path / n).exists() for n in theirs)
    # a successful save cleans what a killed save of the same name left
    stale = tmp_path / ".ex.nc.killed_1.partial"
    stale.write_text("x")
    os.utime(stale, (old, old))
    _example().save(tmp_path / "ex.nc")
    assert not stale.exists() and fresh.exists()


# ---------------------------------------------------------------------- folders
def test_new_folder_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "scan"
    with pytest.raises(KeyboardInterrupt), outputs.atomic_folder(target) as stage:
        stage.write_bytes("a.txt", b"a")
        raise KeyboardInterrupt
    assert not target.exists() and _leftovers(tmp_path) == []
    with outputs.atomic_folder(target) as stage:
        stage.write_bytes("a.txt", b"a")
        stage.write_bytes("b.txt", b"b")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "b.txt"]
    assert _leftovers(tmp_path) == []


def test_existing_folder_keeps_user_files_and_drops_stale_parts(tmp_path, rng):
    ex = MREExample.from_numpy(rng.normal(size=(6, 5, 3)) + 1j, 60.0, 1e-3)
    folder = io.save_nifti_folder(ex, tmp_path / "mre", parts="mag_phase")
    (folder / "notes.txt").write_text("mine")
    io.save_nifti_folder(ex, folder)  # real/imag now: mag/phase must not linger
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["mre.json", "notes.txt", "wave_imag.nii.gz", "wave_real.nii.gz"]
    np.testing.assert_allclose(io.load_example(folder).wave.values, ex.wave.values, rtol=1e-6)
    # a failure half-way changes none of the files
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = []

    def fail_second(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(outputs.os, "fsync", fail_second)
        with pytest.raises(MREOutputError, match="disk is full"):
            io.save_nifti_folder(ex.add_gaussian_noise(0.1, seed=1), folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# ---------------------------------------------------------------------- every writer
def _writers(tmp_path):
    from napari_mrepinn.figures import save_result_figure

    ex = _example()
    ex["mu_pred"] = ex["mre"]
    return {
        "netcdf": (tmp_path / "o.nc", lambda p: ex.save(p)),
        "mat v5": (tmp_path / "o.mat", lambda p: io.save_mat(ex, p)),
        "mat v7.3": (tmp_path / "o73.mat", lambda p: io.save_mat(ex, p, version="7.3")),
        "figure": (tmp_path / "o.png", lambda p: save_result_figure(ex, p)),
        "nifti folder": (tmp_path / "nifti", lambda p: io.save_nifti_folder(ex, p)),
        "json": (tmp_path / "o.json", lambda p: outputs.write_text(p, json.dumps({"a": 1}))),
    }


@pytest.mark.parametrize(
    "kind", ["netcdf", "mat v5", "mat v7.3", "figure", "nifti folder", "json"]
)
def test_every_writer_fails_cleanly_on_a_full_disk(tmp_path, monkeypatch, kind):
    path, write = _writers(tmp_path)[kind]
    write(path)  # the earlier, good output
    before = (
        {p.name: p.read_bytes() for p in path.iterdir()} if path.is_dir() else path.read_bytes()
    )

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", full)
    with pytest.raises(MREOutputError, match="disk is full") as err:
        write(path)
    assert "\n" not in str(err.value)
    after = (
        {p.name: p.read_bytes() for p in path.iterdir()} if path.is_dir() else path.read_bytes()
    )
    assert after == before
    assert _leftovers(tmp_path) == [] and (not path.is_dir() or _leftovers(path) == [])


_FULL_DISK_SCRIPT = """
import sys
import numpy as np
from napari_mrepinn import outputs
from napari_mrepinn.data import MREExample, MREInputError
outputs.check_writable = lambda *a, **k: None  # no preflight: the write itself meets the disk
rng = np.random.default_rng(0)
ex = MREExample.from_numpy(rng.normal(size=(64, 64, 32)) + 0j, 60.0, 1e-3)  # ~2 MB
try:
    ex.save(sys.argv[1])
except MREInputError as exc:
    print(exc)
    sys.exit(2)
"""


def test_a_real_full_disk_is_one_line_and_leaves_nothing(tiny_disk):
    earlier = tiny_disk / "o.nc"
    earlier.write_text("earlier")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, str(earlier)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]  # not 139 (libhdf5's segfault)
    assert "disk is full" in done.stdout and done.stderr.strip() == ""
    assert earlier.read_text() == "earlier"
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["o.nc"]
    # the CLI: the preflight says so before the phantom is built
    (tiny_disk / "filler").write_bytes(b"\0" * 900_000)
    done = subprocess.run(
        [sys.executable, "-m", "napari_mrepinn.cli", "simulate", "cylinder", "-o",
         str(tiny_disk / "c.nc")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "free" in done.stderr
    assert _leftovers(tiny_disk) == []


# ---------------------------------------------------------------------- two writers at once
_SHAPE = (128, 128, 200)  # complex128: 52 MB per wave


def _race_writer(idx, path, barrier, trials, direct, results):
    if direct:  # make libhdf5 write the temporary file itself (the large-file path)
        outputs.in_memory_limit = lambda: 0
    ex = MREExample.from_numpy(np.full(_SHAPE, complex(idx + 1, -(idx + 1))), 60.0, 1e-3)
    for _ in range(trials):
        barrier.wait()
        try:
            ex.save(path)
            results.put("ok")
        except BaseException as exc:  # reported to the parent
            results.put(f"{type(exc).__name__}: {exc}")
        barrier.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="forks two writers")
@pytest.mark.parametrize(("direct", "trials"), [(False, 4), (True, 3)])
def test_two_writers_of_one_file_never_corrupt_it(tmp_path, direct, trials):
    """Two processes save 50 MB to one name at the same moment: the file is one of them,
    whole, every time (the shared ``.partial`` name of 0.1 gave 2 corrupt files in 12)."""
    ctx = mp.get_context("fork")
    path = tmp_path / "same.nc"
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_race_writer,
                         args=(i, str(path), barrier, trials, direct, results))
             for i in range(2)]
    for p in procs:
        p.start()
    try:
        winners = []
        for _ in range(trials):
            barrier.wait(timeout=120)
            barrier.wait(timeout=120)
            assert [results.get(timeout=10) for _ in range(2)] == ["ok", "ok"]
            back = MREExample.load(path)
            v = back.wave.values
            assert back.spatial_shape == _SHAPE
            assert v.flat[0] in (1 - 1j, 2 - 2j) and np.all(v == v.flat[0])
            np.testing.assert_array_equal(back.ds["x"].values, np.arange(128) * 1e-3)
            winners.append(v.flat[0])
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["same.nc"]
