"""A scanner simulator: any phantom's wave field as MRE phase images, DICOM and NIfTI.

:func:`acquire` turns an :class:`~napari_mrepinn.data.MREExample` (a phantom from
:mod:`napari_mrepinn.simulate`, whose complex ``wave`` follows ``u = Re{U e^{+iωt}}``) into
what an MRE sequence records: for every frequency and motion-encoding direction, N phase
images over one vibration period,

``φ_n(x) = angle(M(x) e^{i(s·Re{U(x) e^{2πi n/N}} + φ_0(x))} + noise)``

with a static background phase ``φ_0`` (different in every series, large enough to wrap),
a magnitude image ``M`` and complex Gaussian noise. :func:`write_dicom` stores the images
as classic or enhanced MR DICOM and :func:`write_nifti` as dcm2niix-style NIfTI with JSON
sidecars; both live in :mod:`napari_mrepinn.acquisition_files` and are re-exported here.
The files deliberately do not state the vibration frequency or the encoding direction (no
standard tag does), as with real exams. :func:`benchmark_import` times importing such an
exam.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .acquisition_files import write_dicom, write_nifti
from .data import MREExample, MREInputError

__all__ = ["Acquisition", "acquire", "benchmark_import", "write_dicom", "write_nifti"]

TWO_PI = 2.0 * np.pi


@dataclass
class Acquisition:
    """Simulated MRE phase and magnitude images.

    Attributes
    ----------
    phase : ndarray, float32
        Wrapped phase in radians, ``(frequency, direction, offset, x, y, z)``.
    magnitude : ndarray, float32
        Magnitude images, same shape (arbitrary units).
    frequencies : list of float
        Hz.
    directions : list of str
        Motion-encoding direction of each series (``"x"``, ``"y"``, ``"z"``).
    spacing, origin : tuple of float
        Voxel size and first voxel centre in metres (x, y, z).
    wave : ndarray, complex
        The first harmonic the phase encodes, ``(frequency, x, y, z, direction)`` radians:
        what an import should recover.
    mask : ndarray of int
        The phantom's region labels ``(x, y, z)`` (ones when it had none).
    """

    phase: np.ndarray
    magnitude: np.ndarray
    frequencies: list[float]
    directions: list[str]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    wave: np.ndarray
    mask: np.ndarray

    @property
    def n_offsets(self) -> int:
        return int(self.phase.shape[2])

    def true_example(self) -> MREExample:
        """The encoded first harmonic as an example (ground truth for an import)."""
        multi = len(self.frequencies) > 1
        return MREExample.from_numpy(
            self.wave if multi else self.wave[0],
            self.frequencies if multi else self.frequencies[0],
            self.spacing,
            mre_mask=self.mask,
            origin=self.origin,
            components=self.directions,
            spatial_ndim=3,
            source="simulated acquisition",
        )


def acquire(
    example: MREExample,
    *,
    n_offsets: int = 8,
    phase_amplitude: float = 2.0,
    background: float = 8.0,
    noise: float = 0.0,
    seed: int | None = 0,
) -> Acquisition:
    """Simulate the phase-offset images of an MRE acquisition of ``example``.

    Parameters
    ----------
    example : MREExample
        A phantom with a complex ``wave`` (2-D examples become one slice).
    n_offsets : int
        Phase offsets N per vibration period (>= 3; 4 and 8 are usual).
    phase_amplitude : float
        Largest wave amplitude ``max |s·U|`` in radians (all series share the scale ``s``).
    background : float
        Peak-to-peak static background phase across the field of view in radians (a tilted
        plane plus a bowl, different in every series); above 2π it wraps.
    noise : float
        Standard deviation of the complex noise relative to the mean magnitude; the phase
        noise is about this many radians.
    seed : int, optional
        Random seed (background shapes and noise).

    Returns
    -------
    Acquisition
    """
    if int(n_offsets) != n_offsets or n_offsets < 3:
        raise MREInputError(f"n_offsets must be an integer >= 3, got {n_offsets!r}.")
    n = int(n_offsets)
    for name, v in (("phase_amplitude", phase_amplitude), ("background", background),
                    ("noise", noise)):
        if not np.isfinite(v) or v < 0:
            raise MREInputError(f"{name} must be >= 0, got {v!r}.")
    # separate streams: the backgrounds do not change with the noise level
    bg_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    ds = example.ds
    wave = ds["wave"]
    if "z" not in wave.dims:
        wave = wave.expand_dims(z=[0.0], axis=wave.dims.index("y") + 1)
    if "component" not in wave.dims:
        wave = wave.expand_dims(component=["z"], axis=wave.ndim)
    if "frequency" not in wave.dims:
        wave = wave.expand_dims(frequency=[float(example.frequencies[0])], axis=0)
    wave = wave.transpose("frequency", "x", "y", "z", "component")
    u = np.asarray(wave.values, np.complex128)
    freqs = [float(f) for f in example.frequencies]
    dirs = [str(c) for c in wave["component"].values]
    nf, nx, ny, nz, nd = u.shape
    peak = float(np.abs(u).max())
    if peak == 0 or not np.isfinite(peak):
        raise MREInputError("the example's wave is zero or not finite; nothing to encode.")
    u = u * (phase_amplitude / peak)

    sp = example.spacing
    spacing = (sp["x"], sp["y"], sp.get("z", np.nan))
    if not np.isfinite(spacing[2]):
        spacing = (spacing[0], spacing[1], spacing[0])
    origin = tuple(float(wave[d].values[0]) for d in ("x", "y", "z"))

    if "mre_mask" in ds:
        lab = np.asarray(ds["mre_mask"].values)
        lab = lab[..., None] if lab.ndim == 2 else lab
    else:
        lab = np.ones((nx, ny, nz), np.int32)
    if "anat" in ds:
        a = np.asarray(ds["anat"].values, float)
        a = a.reshape((nx, ny, nz, -1)).mean(axis=-1) if a.ndim > 2 else a[..., None]
        # air stays dark (a little signal, so its phase is noise, as in a scanner)
        mag = 0.02 + np.abs(a) / max(float(np.abs(a).max()), 1e-12)
    else:
        # some contrast between regions, so the anatomy shows the targets
        mag = np.where(lab > 1, 0.8, 1.0) * (lab > 0) + 0.05
    mag = mag.astype(np.float64)

    # normalised coordinates in [-1, 1] for the background phase
    cx, cy, cz = (np.linspace(-1, 1, k) if k > 1 else np.zeros(1) for k in (nx, ny, nz))
    xx, yy, zz = np.meshgrid(cx, cy, cz, indexing="ij")
    t = np.arange(n) / n
    phase = np.empty((nf, nd, n, nx, ny, nz), np.float32)
    magnitude = np.empty_like(phase)
    sigma = noise * float(mag.mean()) / np.sqrt(2.0)
    for f in range(nf):
        for d in range(nd):
            gx, gy, gz, bowl = bg_rng.uniform(-1, 1, 4)
            bg = gx * xx + gy * yy + 0.3 * gz * zz + bowl * (xx**2 + yy**2)
            bg = background * (bg - bg.min()) / max(float(np.ptp(bg)), 1e-12)
            bg = bg + bg_rng.uniform(-np.pi, np.pi)
            for k in range(n):
                true = np.real(u[f, ..., d] * np.exp(TWO_PI * 1j * t[k])) + bg
                s = mag * np.exp(1j * true)
                if sigma > 0:
                    s = s + noise_rng.normal(0, sigma, s.shape) + 1j * noise_rng.normal(
                        0, sigma, s.shape)
                phase[f, d, k] = np.angle(s)
                magnitude[f, d, k] = np.abs(s)
    return Acquisition(
        phase=phase,
        magnitude=magnitude,
        frequencies=freqs,
        directions=dirs,
        spacing=tuple(float(v) for v in spacing),
        origin=origin,
        wave=u.copy(),
        mask=lab.astype(np.int32),
    )


# ====================================================================== benchmark
def benchmark_import(
    shape: Sequence[int] = (128, 128, 32),
    *,
    n_offsets: int = 8,
    n_directions: int = 3,
    frequencies: Sequence[float] = (30.0, 40.0, 50.0, 60.0),
    unwrap: Sequence[str] = ("laplacian", "skimage"),
    fmt: str = "dicom",
    workers: int = 1,
    folder: str | os.PathLike | None = None,
) -> dict[str, object]:
    """Time importing and preparing a simulated exam (the issue's benchmark figure).

    A plane-wave field per direction (one per frequency, 1.5 mm in-plane and 3 mm slices)
    is acquired with :func:`acquire` and written with :func:`write_dicom` (classic MR, one
    file per slice and offset, magnitude images included) or :func:`write_nifti`; writing
    is not timed. Then :func:`napari_mrepinn.scanner.import_exam` is timed once per
    unwrapping method, with ``workers`` reading processes.

    Returns
    -------
    dict
        ``{"shape", "n_offsets", "n_directions", "frequencies", "files", "workers",
        "seconds": {method: wall s}, "cpu_seconds": {method: s of this process},
        "correlation": {method: c}}``: ``correlation`` is the smallest ``|<u, ũ>|/(|u||ũ|)``
        over frequencies and directions against the encoded wave. On a busy machine the CPU
        seconds of a one-worker run are the better estimate of the idle wall time.
    """
    import shutil
    import tempfile
    import time

    from .scanner import import_exam

    nx, ny, nz = (int(v) for v in shape)
    spacing = (1.5e-3, 1.5e-3, 3e-3)
    x, y, z = (np.arange(n) * h for n, h in zip((nx, ny, nz), spacing, strict=True))
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
    dirs = list("xyz"[:n_directions])
    waves = []
    for f in frequencies:
        k = TWO_PI * f / 2.0  # 2 m/s shear waves
        comps = [np.exp(-1j * k * (np.cos(a) * xx + np.sin(a) * yy + 0.2 * zz))
                 for a in np.linspace(0.3, 2.5, n_directions)]
        waves.append(np.stack(comps, axis=-1))
    example = MREExample.from_numpy(np.stack(waves), list(frequencies), spacing,
                                    components=dirs, spatial_ndim=3)
    acq = acquire(example, n_offsets=n_offsets, phase_amplitude=1.0, background=8.0)
    tmp = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="mre_bench_"))
    try:
        if fmt == "dicom":
            paths = write_dicom(acq, tmp)
            n_files = sum(1 for p in paths for _ in p.iterdir())
        else:
            paths = write_nifti(acq, tmp)
            n_files = len(list(tmp.glob("*.nii.gz")))
        seconds, cpu, corr = {}, {}, {}
        for method in unwrap:
            t0, c0 = time.perf_counter(), time.process_time()
            ex = import_exam(paths, frequency=list(frequencies), directions=dirs, unwrap=method,
                             workers=workers)
            seconds[method] = time.perf_counter() - t0
            cpu[method] = time.process_time() - c0
            got = np.asarray(ex.ds["wave"].values)
            c = []
            for i in range(len(frequencies)):
                for d in range(n_directions):
                    a, b = got[i, ..., d].ravel(), acq.wave[i, ..., d].ravel()
                    c.append(abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))
            corr[method] = float(min(c))
    finally:
        if folder is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "shape": [nx, ny, nz],
        "n_offsets": n_offsets,
        "n_directions": n_directions,
        "frequencies": list(frequencies),
        "format": fmt,
        "files": n_files,
        "workers": workers,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "correlation": corr,
    }
