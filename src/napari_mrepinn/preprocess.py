"""From scanner phase images to a complex wave field: the MRE preparation chain.

Each step is a small function with its options; :func:`prepare` runs them in MREdge's order
and records what ran (with its options and counts) in ``example.ds.attrs["preprocessing_json"]``:

1. :func:`phase_to_radians` — stored integer values (through RescaleSlope/Intercept and the
   stored range) to −π…π;
2. :func:`unwrap` — per phase volume: ``"skimage"`` (3-D masked
   :func:`skimage.restoration.unwrap_phase`), ``"laplacian"`` (least-squares / Laplacian
   unwrapping by a DCT Poisson solve, made integer-2π-consistent with the wrapped input) or
   ``"none"``; then :func:`align_offsets` removes the arbitrary 2π multiple each volume got;
3. :func:`first_harmonic` — temporal Fourier transform over N ≥ 3 evenly spaced offsets;
4. :func:`phase_to_displacement` — when the motion-encoding sensitivity is known;
5. :func:`smooth`, :func:`bandpass`, :func:`remove_divergence` — optional filters (this
   :func:`smooth` filters numpy arrays once, before any inversion; the inversions' own
   smoothing of named-dim fields is :func:`napari_mrepinn.baselines.smooth`);
6. :func:`magnitude_mask`; the anatomy is the mean magnitude.

The unwrapping (step 2) lives in :mod:`napari_mrepinn.phase_unwrap` and the filters (step 5)
in :mod:`napari_mrepinn.wave_filters`; their public names are re-exported here.

Conventions: phase arrays are ``(..., x, y, z)`` with voxel spacing in metres; offset ``n``
of ``N`` is sampled at ``t_n = n / (N f)``, and the wave follows the library's
``u(x, t) = Re{U(x) e^{+iωt}}`` (see ``CONTRIBUTING.md``), so
``U = (2/N) Σ_n φ_n e^{−2πi n/N}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .data import SPATIAL_DIMS, MREExample, MREInputError, parse_frequencies
from .phase_unwrap import (
    TWO_PI,
    UNWRAP_METHODS,
    align_offsets,
    count_wraps,
    laplacian_unwrap,
    unwrap,
    wrap,
)
from .wave_filters import bandpass, remove_divergence, smooth

__all__ = [
    "UNWRAP_METHODS",
    "align_offsets",
    "bandpass",
    "count_wraps",
    "first_harmonic",
    "laplacian_unwrap",
    "magnitude_mask",
    "phase_to_displacement",
    "phase_to_radians",
    "prepare",
    "preprocessing_record",
    "remove_divergence",
    "smooth",
    "unwrap",
    "wrap",
]

# motion-encoding directions are named after the image axes they move along
DIRECTIONS = SPATIAL_DIMS


# ====================================================================== 1. radians
def phase_to_radians(
    stored: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    bits_stored: int = 12,
    signed: bool = False,
    value_range: tuple[float, float] | str | None = None,
    source: str | None = None,
) -> np.ndarray:
    """Scanner phase values to radians in −π…π.

    The rescaled value is ``stored·slope + intercept`` (DICOM RescaleSlope/Intercept). By
    default the full stored range (``0 … 2^bits − 1``, or ``−2^(bits−1) …`` when ``signed``)
    spans one turn: its lowest value is −π and one step past its highest is +π, so 12-bit
    values 0…4095 become ``−π + 2π·v/4096`` and a Siemens-style rescale (slope 2, intercept
    −4096 → −4096…4094) becomes ``π·r/4096``.

    Parameters
    ----------
    stored : ndarray
        Stored (raw) pixel values.
    slope, intercept : float
        RescaleSlope and RescaleIntercept.
    bits_stored : int
        BitsStored: the stored range is ``2^bits_stored`` values.
    signed : bool
        PixelRepresentation 1 (two's complement stored values).
    value_range : (float, float) or "radians", optional
        Override: the rescaled values ``lo`` and ``hi`` that map to −π and +π, or
        ``"radians"`` when the rescaled values already are radians.
    source : str, optional
        Names the data in error messages.

    Returns
    -------
    ndarray of float32
        Phase in radians.

    Raises
    ------
    MREInputError
        If values fall outside the range (the range then is wrong: pass ``value_range``).
    """
    where = f"{source}: " if source else ""
    stored = np.asarray(stored)
    # float32 holds 16-bit stored values exactly; big exams halve their memory
    dtype = np.float32 if stored.dtype.itemsize <= 2 or stored.dtype == np.float32 \
        else np.float64
    rescaled = stored.astype(dtype) * dtype(slope) + dtype(intercept)
    if isinstance(value_range, str):
        if value_range != "radians":
            raise MREInputError(
                f"{where}phase range {value_range!r} is not understood; give (low, high) in "
                "rescaled units or 'radians'."
            )
        lo, hi = -np.pi, np.pi
    elif value_range is not None:
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise MREInputError(
                f"{where}phase range must be two numbers (low, high), got {value_range!r}."
            ) from None
        if not hi > lo:
            raise MREInputError(f"{where}phase range ({lo:g}, {hi:g}): high must exceed low.")
    else:
        if int(bits_stored) < 1 or int(bits_stored) > 32:
            raise MREInputError(f"{where}BitsStored {bits_stored!r} is not a valid bit depth.")
        n = 2 ** int(bits_stored)
        smin = -n // 2 if signed else 0
        a, b = smin * float(slope) + float(intercept), (smin + n) * float(slope) + float(intercept)
        lo, hi = min(a, b), max(a, b)
    if rescaled.size:
        vmin, vmax = float(rescaled.min()), float(rescaled.max())
        tol = 1e-6 * (hi - lo)
        if vmin < lo - tol or vmax > hi + tol:
            raise MREInputError(
                f"{where}phase values {vmin:g}…{vmax:g} fall outside the range {lo:g}…{hi:g} "
                "that maps to −π…π; pass the scanner's phase range (phase_range=(low, high) "
                "or --phase-range LOW HIGH, or 'radians')."
            )
    out = rescaled - dtype(lo)
    out *= dtype(TWO_PI / (hi - lo))
    out -= dtype(np.pi)
    return out.astype(np.float32, copy=False)


# ====================================================================== 3. harmonic
def first_harmonic(
    phase: np.ndarray,
    *,
    axis: int = 0,
    harmonic: int = 1,
    times: Sequence[float] | None = None,
    source: str | None = None,
) -> np.ndarray:
    """Temporal Fourier coefficient of the phase offsets: the complex wave field.

    With offsets ``n = 0 … N−1`` evenly spaced over one vibration period,
    ``U = (2/N) Σ_n φ_n e^{−2πi h n/N}`` (``h = harmonic``), so that
    ``φ_n = Re{U e^{+2πi h n/N}} + …``, the library's ``u(x, t) = Re{U e^{+iωt}}``.

    Parameters
    ----------
    phase : ndarray
        Unwrapped phase with the offset axis ``axis``.
    axis : int
        The offset axis.
    harmonic : int
        Which harmonic (1 = the vibration frequency).
    times : sequence of float, optional
        Acquisition time (any unit) of every offset; checked to be evenly spaced.
    source : str, optional
        Names the data in error messages.

    Returns
    -------
    ndarray of complex64
        The harmonic, ``phase`` without the offset axis.
    """
    where = f"{source}: " if source else ""
    phase = np.asarray(phase)
    n = phase.shape[axis]
    if n < 3:
        raise MREInputError(
            f"{where}{n} phase offset(s); the temporal Fourier transform needs at least 3 "
            "evenly spaced offsets over one vibration period."
        )
    if not 1 <= int(harmonic) <= n // 2:
        raise MREInputError(f"{where}harmonic {harmonic} is not in 1…{n // 2} for {n} offsets.")
    if times is not None:
        t = np.asarray(times, float)
        if len(t) != n:
            raise MREInputError(f"{where}{len(t)} offset times for {n} offsets.")
        d = np.diff(t)
        if np.any(d <= 0) or np.ptp(d) > 0.02 * abs(np.mean(d)):
            raise MREInputError(
                f"{where}the phase offsets are not evenly spaced in time ({t.tolist()}); the "
                "temporal Fourier transform needs N offsets evenly spread over one period."
            )
    kernel = (2.0 / n) * np.exp(-2j * np.pi * int(harmonic) * np.arange(n) / n)
    out = np.tensordot(kernel.astype(np.complex64), phase.astype(np.float32), axes=([0], [axis]))
    return out.astype(np.complex64)


# ====================================================================== 4. displacement
def phase_to_displacement(wave: np.ndarray, sensitivity: float) -> np.ndarray:
    """Phase (rad) to displacement (m) with the motion-encoding sensitivity in rad/m.

    The inversions are scale-free, so this only matters for amplitude maps.
    """
    s = float(sensitivity)
    if not np.isfinite(s) or s == 0:
        raise MREInputError(
            f"encoding sensitivity must be a non-zero number of rad/m, got {sensitivity!r}."
        )
    return np.asarray(wave) / s


# ====================================================================== 6. mask
def magnitude_mask(
    magnitude: np.ndarray,
    threshold: float = 0.1,
    *,
    fill_holes: bool = True,
) -> np.ndarray:
    """Voxels whose magnitude exceeds ``threshold`` × the 99th percentile.

    Parameters
    ----------
    magnitude : ndarray
        ``(x, y, z)`` mean magnitude.
    threshold : float
        Fraction (0…1) of the robust maximum.
    fill_holes : bool
        Fill enclosed holes slice by slice (vessels, dark tissue inside the body).
    """
    mag = np.asarray(magnitude, float)
    if not 0 <= threshold < 1:
        raise MREInputError(f"mask threshold must be a fraction in [0, 1), got {threshold!r}.")
    ref = np.percentile(mag, 99) if mag.size else 0.0
    m = mag > threshold * ref
    if fill_holes:
        for z in range(m.shape[-1]):
            m[..., z] = ndimage.binary_fill_holes(m[..., z])
    return m


# ====================================================================== the chain
def preprocessing_record(example: MREExample) -> list[dict[str, Any]]:
    """The steps :func:`prepare` recorded on ``example`` (empty when none)."""
    text = example.ds.attrs.get("preprocessing_json")
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _series_list(
    phase: np.ndarray | Sequence[np.ndarray],
    n_freq: int,
    n_dir: int,
    multi: bool,
) -> list[np.ndarray]:
    if isinstance(phase, np.ndarray):
        want = (n_freq,) if multi else ()
        if phase.ndim != len(want) + 5 or phase.shape[: len(want) + 1] != (*want, n_dir):
            lead = "frequency, " if multi else ""
            raise MREInputError(
                f"phase has shape {phase.shape}; expected ({lead}direction, offset, x, y, z) "
                f"with {n_dir} direction(s){f' and {n_freq} frequencies' if multi else ''}."
            )
        return list(phase.reshape((-1, *phase.shape[-4:])))
    series = [np.asarray(p) for p in phase]
    if len(series) != n_freq * n_dir:
        raise MREInputError(
            f"{len(series)} phase series for {n_freq} frequency(ies) × {n_dir} direction(s); "
            "give one series per frequency and direction, frequency by frequency."
        )
    for s in series:
        if s.ndim != 4:
            raise MREInputError(f"a phase series has shape {s.shape}; expected (offset, x, y, z).")
        if s.shape[1:] != series[0].shape[1:]:
            raise MREInputError(
                f"phase series grids differ ({s.shape[1:]} vs {series[0].shape[1:]}); all "
                "series must share slices and matrix size."
            )
    return series


def _check_directions(directions: Sequence[str]) -> list[str]:
    labels = [str(d).lower() for d in directions]
    bad = [d for d in labels if d not in DIRECTIONS]
    if bad or len(set(labels)) != len(labels) or not labels:
        raise MREInputError(
            f"motion-encoding directions {list(directions)} must be distinct labels among "
            "x, y, z (x along the image columns, y along the rows, z along the slice normal)."
        )
    return labels


def prepare(
    phase: np.ndarray | Sequence[np.ndarray],
    *,
    frequency: float | Sequence[float],
    directions: Sequence[str],
    spacing: float | Sequence[float],
    origin: float | Sequence[float] = 0.0,
    magnitude: np.ndarray | None = None,
    to_radians: Mapping[str, Any] | None = None,
    unwrap_method: str = "laplacian",
    mask: np.ndarray | None = None,
    mask_threshold: float | None = 0.1,
    encoding_sensitivity: float | None = None,
    smoothing: float | Sequence[float] | None = None,
    band: tuple[float | None, float | None] | None = None,
    divergence_removal: bool = False,
    reverse_offsets: bool = False,
    history: Sequence[Mapping[str, Any]] = (),
    source: str | None = None,
    progress: bool | Callable[[int, int], None] = False,
    return_steps: bool = False,
) -> MREExample | tuple[MREExample, dict[str, np.ndarray]]:
    """Run the preparation chain on phase offsets and return an :class:`MREExample`.

    Parameters
    ----------
    phase : ndarray or sequence of ndarray
        Radians (or stored values with ``to_radians``): an array
        ``([frequency,] direction, offset, x, y, z)`` (frequency axis when ``frequency`` is a
        sequence), or one ``(offset, x, y, z)`` array per series, frequency by frequency
        and direction by direction within each frequency.
    frequency : float or sequence of float
        Vibration frequency(ies) in Hz.
    directions : sequence of str
        Motion-encoding direction of each series within a frequency (``"x"``, ``"y"``,
        ``"z"``): the wave's component labels.
    spacing : float or (float, float, float)
        Voxel size in metres (x, y, z).
    origin : float or (float, float, float)
        First voxel centre in metres.
    magnitude : ndarray, optional
        Magnitude images with the spatial axes last; their mean is the anatomy ``anat`` and
        the source of the threshold mask.
    to_radians : mapping, optional
        Keyword arguments of :func:`phase_to_radians` when ``phase`` holds stored values.
    unwrap_method : {"laplacian", "skimage", "none"}
        See :func:`unwrap`.
    mask : ndarray, optional
        ``(x, y, z)`` region (non-zero inside): the unwrapping region and ``mre_mask``.
    mask_threshold : float, optional
        Without ``mask``: :func:`magnitude_mask` threshold (fraction of the robust maximum);
        ``None`` (or no magnitude) keeps the whole grid.
    encoding_sensitivity : float, optional
        Motion-encoding sensitivity in rad/m: the wave becomes displacement in metres.
        Without it the wave stays in radians (the inversions are scale-free).
    smoothing : float or (float, float, float), optional
        Complex Gaussian σ in voxels (:func:`smooth`).
    band : (low, high), optional
        Butterworth cut-offs in cycles/m (:func:`bandpass`).
    divergence_removal : bool
        Remove the compressional wave (needs x, y, z directions, 3-D).
    reverse_offsets : bool
        The offsets run backwards in time (offset ``n`` at ``t = −n/(N f)``): the harmonic is
        conjugated. A sign that flips the loss modulus ``G''`` negative in every inversion is
        the symptom.
    history : sequence of mapping
        Steps that already ran (e.g. the readers' phase-to-radians), recorded first.
    source : str, optional
        Where the data came from (messages, ``example.source``).
    progress : bool or callable
        ``True``: a tqdm bar over the series; a callable gets ``(done, total)``.
    return_steps : bool
        Also return ``{"wrapped", "unwrapped"}`` phase arrays ``(series, offset, x, y, z)``
        (for display).

    Returns
    -------
    MREExample
        ``wave`` ``([frequency,] x, y, z, component)`` complex, ``anat`` and ``mre_mask``
        when known; ``attrs["preprocessing_json"]`` lists the steps, ``attrs["wraps_found"]``
        and ``attrs["wraps_left"]`` count phase jumps > π before and after unwrapping.
    """
    where = f"{source}: " if source else ""
    try:
        freqs, multi = parse_frequencies(frequency)
    except MREInputError as exc:
        raise MREInputError(f"{where}{exc}") from None
    labels = _check_directions(directions)
    series = _series_list(phase, len(freqs), len(labels), multi)
    grid = series[0].shape[1:]
    if len(grid) != 3:
        raise MREInputError(f"{where}phase volumes must be (x, y, z), got {grid}.")
    sp = np.broadcast_to(np.asarray(spacing, float), (3,)).copy()
    records: list[dict[str, Any]] = [dict(r) for r in history]

    if to_radians is not None:
        series = [phase_to_radians(s, source=source, **dict(to_radians)) for s in series]
        records.append({"step": "phase_to_radians", "options": _jsonable(dict(to_radians))})
    else:
        series = [np.asarray(s, np.float32) for s in series]
        top = max(float(np.abs(s).max()) for s in series)
        if not np.isfinite(top) or top > 1000.0:
            # stored scanner values (e.g. 0…4095) passed as if they were radians
            raise MREInputError(
                f"{where}phase values reach {top:g}; that is not radians. Convert them "
                "(to_radians={'slope': …, 'intercept': …, 'bits_stored': …})."
            )

    # ---- mask and anatomy
    anat = None
    if magnitude is not None:
        mag = np.asarray(magnitude, float)
        if mag.shape[-3:] != grid:
            raise MREInputError(
                f"{where}magnitude images {mag.shape[-3:]} do not match the phase grid {grid}."
            )
        anat = mag.reshape((-1, *grid)).mean(axis=0)
    if mask is not None:
        region = np.asarray(mask) != 0
        if region.shape != grid:
            raise MREInputError(f"{where}mask shape {region.shape} is not the grid {grid}.")
        if not region.any():
            raise MREInputError(f"{where}the mask is empty; draw a region or pass no mask.")
        records.append({"step": "mask", "options": {"given": True},
                        "voxels": int(region.sum())})
    elif mask_threshold is not None and anat is not None:
        region = magnitude_mask(anat, float(mask_threshold))
        if not region.any():
            raise MREInputError(
                f"{where}no voxel is above the magnitude threshold {mask_threshold:g}; lower "
                "it (--mask-threshold) or give a mask."
            )
        records.append({"step": "mask", "options": {"threshold": float(mask_threshold)},
                        "voxels": int(region.sum())})
    else:
        region = None

    # ---- unwrap, align, first harmonic: one series at a time (bounded memory)
    if unwrap_method not in UNWRAP_METHODS:
        raise MREInputError(
            f"unwrap method {unwrap_method!r} is not known; choose one of "
            f"{', '.join(UNWRAP_METHODS)}."
        )
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(series), desc="prepare", unit="series", leave=False)
    found = left = 0
    harmonics = []
    wrapped_steps, unwrapped_steps = [], []
    try:
        for i, psi in enumerate(series):
            if psi.shape[0] < 3:
                raise MREInputError(
                    f"{where}series {i + 1} has {psi.shape[0]} phase offset(s); the temporal "
                    "Fourier transform needs at least 3."
                )
            psi = wrap(psi).astype(np.float32) if unwrap_method != "none" else psi
            phi = unwrap(psi, unwrap_method, mask=region)
            if unwrap_method != "none":
                phi = align_offsets(phi, psi, axis=0, mask=region)
            found += count_wraps(psi, region)
            left += count_wraps(phi, region)
            harmonics.append(first_harmonic(phi, axis=0, source=source))
            if return_steps:
                wrapped_steps.append(psi)
                unwrapped_steps.append(phi)
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(i + 1, len(series))
    finally:
        if bar is not None:
            bar.close()
    n_offsets = sorted({int(s.shape[0]) for s in series})
    records.append({"step": "unwrap", "options": {"method": unwrap_method},
                    "wraps_found": found, "wraps_left": left})
    records.append({"step": "first_harmonic",
                    "options": {"harmonic": 1, "offsets": n_offsets,
                                "reverse_offsets": bool(reverse_offsets),
                                "convention": "u = Re{U exp(+i omega t)}"}})

    nd = len(labels)
    wave = np.stack(harmonics).reshape((len(freqs), nd, *grid)).astype(np.complex128)
    wave = np.moveaxis(wave, 1, -1)  # (F, x, y, z, component)
    if reverse_offsets:
        wave = np.conj(wave)
    if encoding_sensitivity is not None:
        wave = phase_to_displacement(wave, encoding_sensitivity)
        records.append({"step": "phase_to_displacement",
                        "options": {"sensitivity_rad_per_m": float(encoding_sensitivity)}})
    if smoothing is not None:
        wave = np.moveaxis(smooth(np.moveaxis(wave, -1, 1), smoothing), 1, -1)
        records.append({"step": "smooth", "options": {"sigma_voxels": _jsonable(smoothing)}})
    if band is not None:
        low, high = band
        wave = np.moveaxis(bandpass(np.moveaxis(wave, -1, 1), sp, low=low, high=high), 1, -1)
        records.append({"step": "bandpass", "options": {"low_cycles_per_m": low,
                                                        "high_cycles_per_m": high, "order": 1}})
    if divergence_removal:
        wave = remove_divergence(wave, sp, labels)
        records.append({"step": "remove_divergence", "options": {"method": "helmholtz_fft"}})

    if not np.isfinite(sp[2]) or sp[2] <= 0:
        sp[2] = sp[0]
    example = MREExample.from_numpy(
        wave if multi else wave[0],
        freqs if multi else float(freqs[0]),
        tuple(sp),
        mre_mask=None if region is None else region.astype(np.int32),
        anat=anat,
        origin=origin,
        components=labels,
        spatial_ndim=3,
        source=source,
    )
    example.ds["wave"].attrs["units"] = "m" if encoding_sensitivity is not None else "rad"
    example.ds.attrs["preprocessing_json"] = json.dumps(records)
    example.ds.attrs["wraps_found"] = int(found)
    example.ds.attrs["wraps_left"] = int(left)
    example.ds.attrs["n_offsets"] = int(n_offsets[0]) if len(n_offsets) == 1 else str(n_offsets)
    if return_steps:
        return example, {"wrapped": np.stack(wrapped_steps), "unwrapped": np.stack(unwrapped_steps)}
    return example


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
