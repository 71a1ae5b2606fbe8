"""The MRE data model: one example as an xarray Dataset with physical coordinates.

An :class:`MREExample` holds the complex wave field and, when known, the modulus,
the region mask and the anatomical images of one acquisition (or one phantom).
Coordinates are voxel centres in metres, frequency is in Hz and the modulus in Pa.
See ``CONTRIBUTING.md`` for the table of variables and their dims.

This module holds the data model and what every other module imports from it (the error
classes, the plausibility bounds, the message helpers). What an example does to the dataset
it is given (normalising and checking it) lives in :mod:`napari_mrepinn.data_checks`, its
NetCDF file (:meth:`MREExample.load`, :meth:`MREExample.save`) in
:mod:`napari_mrepinn.netcdf`; both import this module, so it imports them inside its methods.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "FREQUENCY_KEYS",
    "PLAUSIBLE_FOV_M",
    "PLAUSIBLE_MODULUS_PA",
    "PLAUSIBLE_SPACING_M",
    "SPATIAL_DIMS",
    "MREExample",
    "MREInputError",
    "MREPlausibilityWarning",
    "parse_frequencies",
    "warn_implausible_modulus",
]

SPATIAL_DIMS = ("x", "y", "z")
DEFAULT_DENSITY = 1000.0  # kg/m³, the universal soft-tissue assumption

# canonical dim order of each known variable; optional dims are dropped when absent
_DIM_ORDER = ("frequency", "x", "y", "z", "component", "sequence")

# What MR elastography can physically image, with a wide margin: a value outside is almost
# surely a unit slip (mm given as metres makes voxels of 1 m and |G*| a million times too
# large, since G* = ρω²u/∇²u scales with the spacing squared). Only a warning: the bounds
# are physical, not rules of the data model.
# - voxel spacing: micro-MRE of samples reaches ~10 µm, clinical slices ~1 cm
PLAUSIBLE_SPACING_M = (1e-6, 0.05)
# - field of view along any axis: no MR bore is wider than ~0.7 m; a grid under 0.1 mm is
#   below what any MR microscope resolves into more than a voxel or two
PLAUSIBLE_FOV_M = (1e-4, 1.0)
# - median |G*| in the region: the softest gels and brain are ~100 Pa - 1 kPa, tendon and
#   cartilage, the stiffest tissue ever measured by MRE, stay under ~1 MPa
PLAUSIBLE_MODULUS_PA = (1.0, 1e7)


class MREInputError(ValueError):
    """Bad MRE input: the message says what is wrong and how to fix it."""


class MREMissingFrequency(MREInputError):
    """The files do not state the vibration frequency (the user must: ``frequency=``,
    ``--frequency``); :func:`napari_mrepinn.io.load_example` then applies the one given."""
class MREPlausibilityWarning(UserWarning):
    """A value is valid but physically implausible (usually a unit slip: mm for metres)."""


# The metadata keys that state the vibration frequency in Hz, for every file reader: the
# JSON sidecars of a NIfTI folder (io_nifti), the variables and ``info`` struct of a .mat
# file (io_matlab) and the sidecars of DICOM / NIfTI phase series (phase_series). Keys are
# matched in lower case ("Frequency", "frequencies_Hz" match). When a file states several,
# the first in this order wins: the names that state their unit (Hz) first, then the plain
# names, then the qualified ones, then the abbreviations; a file with both "frequency_hz"
# and "frequency" is read from "frequency_hz".
FREQUENCY_KEYS = (
    "frequencies_hz",
    "frequency_hz",
    "frequencies",
    "frequency",
    "mre_frequency",
    "vibration_frequency",
    "freq_hz",
    "freq",
)


def parse_frequencies(frequency: float | Sequence[float]) -> tuple[np.ndarray, bool]:
    """Frequencies in Hz as a 1-D array, and whether a sequence (not a number) was given.

    Raises
    ------
    MREInputError
        For text, non-positive, non-finite or repeated frequencies.
    """
    try:
        multi = np.ndim(frequency) > 0
        f = np.atleast_1d(np.asarray(frequency, dtype=float))
    except (TypeError, ValueError):
        raise MREInputError(
            f"frequency must be a positive number of Hz (or a sequence), got {frequency!r}."
        ) from None
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise MREInputError(
            f"frequency must be positive Hz (a number or a 1D sequence), got {frequency!r}."
        )
    if multi and len(np.unique(f)) != len(f):
        raise MREInputError(f"frequency: the sequence {f.tolist()} repeats a value.")
    return f, multi


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


class MREExample:
    """One MRE example (a wave field and what is known about it).

    Parameters
    ----------
    ds : xarray.Dataset
        Must hold a complex ``wave`` with spatial dims ``x``, ``y`` (and optionally ``z``)
        whose coordinates are in metres. See ``CONTRIBUTING.md`` for all variables.
    source : str, optional
        Where the data came from (a file name); used in error messages.

    Raises
    ------
    MREInputError
        If the dataset is not a valid MRE example.

    Examples
    --------
    >>> ex = MREExample.from_numpy(np.ones((8, 8), complex), frequency=60, spacing=1e-3)
    >>> ex.frequency
    60.0
    """

    def __init__(self, ds: xr.Dataset, *, source: str | None = None) -> None:
        from .data_checks import normalise_dataset

        self.source = source
        self.ds = normalise_dataset(ds, source)
        self.validate()
        self._warn_implausible_geometry()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_numpy(
        cls,
        wave: np.ndarray,
        frequency: float | Sequence[float],
        spacing: float | Sequence[float],
        mre: np.ndarray | None = None,
        mre_mask: np.ndarray | None = None,
        anat: np.ndarray | None = None,
        *,
        origin: float | Sequence[float] = 0.0,
        components: Sequence[str] | None = None,
        density: float = DEFAULT_DENSITY,
        spatial_ndim: int | None = None,
        source: str | None = None,
    ) -> MREExample:
        """Build an example from arrays.

        Parameters
        ----------
        wave : ndarray, complex
            Displacement field with axes ``([frequency,] x, y[, z][, component])``. A
            frequency axis is expected first when ``frequency`` is a sequence. With 4 axes
            and no frequency axis the last axis is the component axis.
        frequency : float or sequence of float
            Vibration frequency in Hz (one per frequency axis entry).
        spacing : float or sequence of float
            Voxel size in metres, one value or one per spatial axis.
        mre : ndarray, optional
            Complex shear modulus in Pa, spatial axes (with a leading frequency axis when
            the modulus depends on frequency).
        mre_mask : ndarray, optional
            Integer region labels, spatial axes, 0 = outside.
        anat : ndarray, optional
            Anatomical image(s), spatial axes, optionally a trailing ``sequence`` axis.
        origin : float or sequence of float
            Coordinate of the first voxel centre in metres.
        components : sequence of str, optional
            Labels of the component axis (default ``"z"``, ``"y"``, ``"x"``... by count).
        density : float
            Tissue density in kg/m³.
        spatial_ndim : int, optional
            Number of spatial axes (2 or 3) when it cannot be inferred, e.g. a 3-axis wave
            that is (x, y, component).
        source : str, optional
            Where the arrays came from (a file name): it starts every error message and
            becomes ``example.source``.
        """
        try:
            ds = cls._dataset_from_numpy(
                wave, frequency, spacing, mre, mre_mask, anat, origin=origin,
                components=components, density=density, spatial_ndim=spatial_ndim,
            )
        except MREInputError as exc:
            raise MREInputError(f"{_where(source)}{exc}") from None
        return cls(ds, source=source)

    @staticmethod
    def _dataset_from_numpy(
        wave: np.ndarray,
        frequency: float | Sequence[float],
        spacing: float | Sequence[float],
        mre: np.ndarray | None,
        mre_mask: np.ndarray | None,
        anat: np.ndarray | None,
        *,
        origin: float | Sequence[float],
        components: Sequence[str] | None,
        density: float,
        spatial_ndim: int | None,
    ) -> xr.Dataset:
        wave = np.asarray(wave)
        freqs, multi = parse_frequencies(frequency)
        if multi and (wave.ndim == 0 or wave.shape[0] != len(freqs)):
            raise MREInputError(
                f"wave: {len(freqs)} frequencies were given but the wave's first axis has "
                f"{wave.shape[0] if wave.ndim else 0} entries; put the frequency axis first."
            )
        nf = 1 if multi else 0
        rest = wave.ndim - nf
        if spatial_ndim is None and rest == 3 and components is not None:
            # labelled components make a 3-axis wave (x, y, component), also for one
            # component (what a 2-D example's wave.values look like)
            if len(components) == wave.shape[-1]:
                spatial_ndim = 2
        if spatial_ndim is None:
            spatial_ndim = {2: 2, 3: 3, 4: 3}.get(rest)
            if spatial_ndim is None:
                raise MREInputError(
                    f"wave: expected 2 to 4 axes (x, y[, z][, component]) after the frequency "
                    f"axis, got shape {wave.shape}."
                )
        if spatial_ndim not in (2, 3) or rest - spatial_ndim not in (0, 1):
            raise MREInputError(
                f"wave: shape {wave.shape} does not fit {spatial_ndim} spatial axes."
            )
        sdims = SPATIAL_DIMS[:spatial_ndim]
        dims = (("frequency",) if multi else ()) + sdims
        if rest > spatial_ndim:
            dims += ("component",)
        shape = wave.shape[nf : nf + spatial_ndim]
        spacing_ = _per_axis(spacing, spatial_ndim, "spacing", "voxel spacing in metres")
        origin_ = _per_axis(origin, spatial_ndim, "origin", "first voxel centre in metres")
        if not np.all(np.isfinite(spacing_)) or np.any(spacing_ <= 0):
            raise MREInputError(
                f"spacing: voxel spacing must be positive metres, got {spacing!r}."
            )
        coords: dict[str, Any] = {
            d: o + s * np.arange(n)
            for d, n, s, o in zip(sdims, shape, spacing_, origin_, strict=True)
        }
        if "component" in dims:
            nc = wave.shape[-1]
            labels = list(components) if components is not None else list("zyx"[:nc])
            if len(labels) != nc:
                raise MREInputError(
                    f"components: {len(labels)} labels for {nc} wave components."
                )
            coords["component"] = labels
        if multi:
            coords["frequency"] = freqs
        for name, arr in (("mre", mre), ("mre_mask", mre_mask), ("anat", anat)):
            if arr is None:
                continue
            arr_shape = np.shape(arr)
            lead = 1 if name == "mre" and len(arr_shape) == spatial_ndim + 1 else 0
            if tuple(arr_shape[lead : lead + spatial_ndim]) != tuple(shape):
                raise MREInputError(
                    f"{name}: shape {arr_shape} does not match the wave's spatial shape "
                    f"{tuple(shape)}; they must share the grid."
                )
        ds = xr.Dataset(coords=coords)
        ds["wave"] = (dims, wave)
        if mre is not None:
            mre = np.asarray(mre)
            mdims = (("frequency",) if mre.ndim == spatial_ndim + 1 else ()) + sdims
            ds["mre"] = (mdims, mre)
        if mre_mask is not None:
            ds["mre_mask"] = (sdims, np.asarray(mre_mask))
        if anat is not None:
            anat = np.asarray(anat)
            adims = sdims + (("sequence",) if anat.ndim == spatial_ndim + 1 else ())
            ds["anat"] = (adims, anat)
        if not multi:
            ds.attrs["frequency"] = float(freqs[0])
        ds.attrs["density"] = float(density)
        return ds

    @classmethod
    def load(cls, path: str | os.PathLike) -> MREExample:
        """Read an example from a NetCDF file written by :meth:`save` (or by hand).

        The file is opened read-only and closed before returning, also when it is
        damaged.
        """
        path = Path(path)
        if not path.exists():
            raise MREInputError(f"{path}: no such file.")
        if path.is_dir():
            raise MREInputError(f"{path}: is a folder; give a .nc file.")
        from .netcdf import _read_netcdf

        return cls(_read_netcdf(path), source=str(path))

    def save(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the example (with any results) to a NetCDF file.

        The file is written whole or not at all (see :mod:`napari_mrepinn.outputs`): to a
        unique temporary name in the target folder, synced, then moved into place. An
        interrupted or failed save (full disk, Ctrl-C) leaves an earlier file untouched
        and no temporary file behind; two saves to one name at once leave one of them,
        whole.

        Raises
        ------
        MREOutputError
            (an :class:`MREInputError`) if the file cannot be written.
        """
        from .netcdf import _write_netcdf

        return _write_netcdf(self.ds, path, overwrite=overwrite)

    # ------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> xr.DataArray:
        return self.ds[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.ds[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self.ds.data_vars

    def __iter__(self) -> Iterator[str]:
        return iter(self.ds.data_vars)

    def keys(self) -> list[str]:
        """Names of the variables."""
        return list(self.ds.data_vars)

    def __getattr__(self, name: str) -> xr.DataArray:
        # example.wave, example.mre, ... like the seed; only reached for unknown attributes
        if name != "ds" and "ds" in self.__dict__ and name in self.ds.data_vars:
            return self.ds[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute or variable {name!r}")

    def __repr__(self) -> str:
        return self.describe_text()

    def copy(self) -> MREExample:
        """A deep copy (results and attrs included)."""
        new = object.__new__(type(self))
        new.source = self.source
        new.ds = self.ds.copy(deep=True)
        return new

    # ------------------------------------------------------------------ geometry
    @property
    def spatial_dims(self) -> tuple[str, ...]:
        """Spatial dims of the wave, e.g. ``("x", "y", "z")``."""
        return tuple(d for d in SPATIAL_DIMS if d in self.ds["wave"].dims)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.ds.sizes[d] for d in self.spatial_dims)

    @property
    def spacing(self) -> dict[str, float]:
        """Voxel spacing per spatial dim in metres."""
        return {d: _spacing(self.ds[d].values, d) for d in self.spatial_dims}

    @property
    def extent(self) -> dict[str, float]:
        """Field of view per spatial dim in metres (voxels × spacing; NaN for a single z
        slice, which has no spacing)."""
        spacing = self.spacing
        return {d: n * spacing[d] for d, n in zip(self.spatial_dims, self.spatial_shape,
                                                  strict=True)}

    @property
    def n_components(self) -> int:
        return self.ds.sizes.get("component", 1)

    @property
    def frequencies(self) -> np.ndarray:
        """All vibration frequencies in Hz (1-D array)."""
        if "frequency" in self.ds["wave"].dims:
            return np.asarray(self.ds["frequency"].values, dtype=float)
        return np.array([float(self.ds.attrs["frequency"])])

    @property
    def frequency(self) -> float:
        """The vibration frequency in Hz of a single-frequency example."""
        f = self.frequencies
        if len(f) != 1:
            raise MREInputError(
                f"{_where(self.source)}this example has {len(f)} frequencies "
                f"({', '.join(f'{v:g}' for v in f)} Hz); pick one with "
                "example.select_frequency(f)."
            )
        return float(f[0])

    @property
    def density(self) -> float:
        """Density in kg/m³."""
        return float(self.ds.attrs.get("density", DEFAULT_DENSITY))

    @property
    def mask(self) -> xr.DataArray:
        """Boolean region of interest on the spatial dims (everything when no mask)."""
        if "mre_mask" in self.ds:
            return self.ds["mre_mask"] > 0
        return xr.DataArray(
            np.ones(self.spatial_shape, bool),
            dims=self.spatial_dims,
            coords={d: self.ds[d] for d in self.spatial_dims},
        )

    # ------------------------------------------------------------------ transforms
    def select_frequency(self, frequency: float) -> MREExample:
        """A single-frequency copy at ``frequency`` (Hz, nearest available within 1e-6)."""
        try:
            frequency = float(frequency)
        except (TypeError, ValueError):
            frequency = float("nan")
        if not np.isfinite(frequency) or frequency <= 0:
            raise MREInputError(
                f"{_where(self.source)}frequency must be a positive number of Hz, got "
                f"{frequency!r}; available: "
                f"{', '.join(f'{v:g}' for v in self.frequencies)} Hz."
            )
        freqs = self.frequencies
        i = int(np.argmin(np.abs(freqs - frequency)))
        if abs(freqs[i] - frequency) > 1e-6 * max(1.0, abs(frequency)):
            raise MREInputError(
                f"{_where(self.source)}no {frequency:g} Hz in this example; available: "
                f"{', '.join(f'{v:g}' for v in freqs)} Hz."
            )
        if "frequency" not in self.ds.dims:
            return self.copy()
        ds = self.ds.isel(frequency=i, drop=True).copy(deep=True)
        ds.attrs["frequency"] = float(freqs[i])
        return type(self)(ds, source=self.source)

    def add_gaussian_noise(self, noise_ratio: float, seed: int | None = None) -> MREExample:
        """A copy with complex Gaussian noise added to the wave.

        Parameters
        ----------
        noise_ratio : float
            Noise power relative to the mean signal power ``mean|u|²`` over the whole
            wave; ``1e-3`` is 30 dB SNR, ``1e-2`` is 20 dB.
        seed : int, optional
            Seed of the random generator, for reproducible noise.
        """
        if not np.isfinite(noise_ratio) or noise_ratio < 0:
            raise MREInputError(f"noise_ratio must be >= 0, got {noise_ratio!r}.")
        rng = np.random.default_rng(seed)
        u = self.ds["wave"].values
        power = float(np.mean(np.abs(u) ** 2))
        # complex noise with E|n|² = noise_ratio * power, split evenly on real and imag
        sigma = np.sqrt(noise_ratio * power / 2.0)
        noise = rng.normal(0.0, sigma, u.shape) + 1j * rng.normal(0.0, sigma, u.shape)
        out = self.copy()
        out.ds["wave"] = self.ds["wave"].copy(data=(u + noise).astype(u.dtype))
        out.ds.attrs["noise_ratio"] = float(noise_ratio)
        return out

    def downsample(self, factor: int | None = None, **factors: int) -> MREExample:
        """A copy coarsened by block averaging (the mask by block maximum).

        ``downsample(2)`` halves every spatial dim except ``z``; ``downsample(x=2, y=2, z=1)``
        chooses per dim.
        """
        if factor is not None:
            factors = {d: factor for d in self.spatial_dims if d != "z"} | factors
        factors = {d: int(f) for d, f in factors.items() if int(f) > 1}
        if not factors:
            return self.copy()
        for d, f in factors.items():
            if d not in self.spatial_dims:
                raise MREInputError(f"downsample: {d!r} is not a spatial dim.")
            if f < 1:
                raise MREInputError(f"downsample: factor for {d} must be >= 1.")
        out = xr.Dataset(attrs=dict(self.ds.attrs))
        for name, var in self.ds.data_vars.items():
            fs = {d: f for d, f in factors.items() if d in var.dims}
            coarse = var.coarsen(fs, boundary="trim")
            out[name] = coarse.max() if name.endswith("mask") else coarse.mean()
        return type(self)(out, source=self.source)

    def describe(self):
        """Per-variable summary statistics as a ``pandas.DataFrame``."""
        import pandas as pd

        rows = []
        for name, var in self.ds.data_vars.items():
            v = np.asarray(var.values)
            a = np.abs(v) if np.iscomplexobj(v) else v.astype(float)
            rows.append(
                {
                    "variable": name,
                    "dims": " × ".join(f"{d}={self.ds.sizes[d]}" for d in var.dims),
                    "dtype": str(v.dtype),
                    "min": float(np.nanmin(a)) if a.size else np.nan,
                    "mean": float(np.nanmean(a)) if a.size else np.nan,
                    "max": float(np.nanmax(a)) if a.size else np.nan,
                    "unit": var.attrs.get("units", ""),
                }
            )
        return pd.DataFrame(rows).set_index("variable")

    def describe_text(self) -> str:
        """A short human-readable description (mm, Hz, kPa)."""
        sp = ", ".join(f"{d}={s * 1e3:g} mm" for d, s in self.spacing.items())
        shape = " × ".join(str(n) for n in self.spatial_shape)
        freqs = ", ".join(f"{f:g}" for f in self.frequencies)
        lines = [
            f"MREExample{f' from {self.source}' if self.source else ''}",
            f"  grid: {shape} voxels, spacing {sp}",
            f"  frequency: {freqs} Hz; components: {self.n_components}; "
            f"density {self.density:g} kg/m³",
            f"  variables: {', '.join(self.keys())}",
        ]
        if "mre" in self:
            m = np.abs(self.ds["mre"].values)
            lines.append(f"  |G*| (mre): {m.min() / 1e3:.3g} – {m.max() / 1e3:.3g} kPa")
        return "\n".join(lines)

    # ------------------------------------------------------------------ validation
    def check_signal(self) -> None:
        """Refuse a wave that is zero everywhere in the region of interest.

        Every inversion divides by the wave's curvature: a field without motion holds no
        stiffness information, and the methods would return 0 Pa (or noise) as if it
        were a result.

        Raises
        ------
        MREInputError
            If the wave is exactly zero in ``example.mask`` (at every frequency and
            component).
        """
        wave = self.ds["wave"]
        inside = wave.where(self.mask, 0.0)
        if not np.any(np.asarray(inside.values) != 0):
            where = "in the mask" if "mre_mask" in self.ds else "everywhere"
            raise MREInputError(
                f"{_where(self.source)}the wave is zero {where}: there is no motion to "
                "invert. Check that the right file and variable were read (and, for a "
                "masked example, that the mask covers the tissue)."
            )

    def _warn_implausible_geometry(self) -> None:
        from .data_checks import warn_implausible_geometry

        warn_implausible_geometry(self)

    def validate(self) -> None:
        """Check the example; raise :class:`MREInputError` naming what is wrong (the checks
        are :func:`napari_mrepinn.data_checks.validate_dataset`)."""
        from .data_checks import validate_dataset

        validate_dataset(self.ds, self.source)


# ---------------------------------------------------------------------- plausibility
def warn_implausible_modulus(
    mu: Any, mask: Any = None, *, name: str = "G*", source: str | None = None
) -> bool:
    """Warn (:class:`MREPlausibilityWarning`) when a modulus map is not tissue-like.

    Parameters
    ----------
    mu : array-like or xarray.DataArray
        Complex shear modulus in Pa.
    mask : array-like of bool, optional
        Region to judge (broadcast against ``mu``); default everything.
    name : str
        Name of the map in the message (e.g. ``"mu_ahi"``).
    source : str, optional
        The file the example came from, to start the message.

    Returns
    -------
    bool
        Whether a warning was given. The median ``|G*|`` over the region is compared
        with :data:`PLAUSIBLE_MODULUS_PA`; a map with no finite non-zero value is not
        judged.
    """
    values = np.abs(np.asarray(getattr(mu, "values", mu)))
    if mask is not None:
        m = np.asarray(getattr(mask, "values", mask), dtype=bool)
        values = values[np.broadcast_to(m, values.shape)] if m.shape != values.shape else (
            values[m]
        )
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return False
    median = float(np.median(values))
    lo, hi = PLAUSIBLE_MODULUS_PA
    if lo <= median <= hi:
        return False
    warnings.warn(
        f"{_where(source)}{name}: the median |G*| is {median:.3g} Pa, outside the "
        f"{lo:g} Pa - {hi:g} Pa of any tissue or phantom; check the units of the spacing "
        "(metres), the frequency (Hz) and the density (kg/m³).",
        MREPlausibilityWarning,
        stacklevel=_caller_level(),
    )
    return True


def _caller_level() -> int:
    """``stacklevel`` for :func:`warnings.warn` that points at the first frame outside
    this package (the user's line), however deep inside the library the warning is made."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1  # the function calling warnings.warn is level 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


# ---------------------------------------------------------------------- helpers
def _per_axis(value: Any, n: int, name: str, what: str) -> np.ndarray:
    """``value`` (one number or one per spatial axis) as ``n`` floats, or one clear error."""
    try:
        return np.broadcast_to(np.asarray(value, dtype=float), (n,))
    except (TypeError, ValueError):
        raise MREInputError(
            f"{name}: give the {what} as one number or {n} numbers (one per spatial axis), "
            f"got {value!r}."
        ) from None


def _reason(exc: BaseException, limit: int = 200) -> str:
    """A library's exception as a short single-line reason for an :class:`MREInputError`."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _too_large(path: Path) -> str:
    """The message for a file whose content does not fit in memory."""
    try:
        size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else (
            path.stat().st_size
        )
        on_disk = f" ({size / 1e6:.4g} MB on disk, more once decompressed and complex)"
    except OSError:
        on_disk = ""
    return (
        f"{path}: needs more memory than this machine has free{on_disk}; crop or "
        "downsample it first, or use a machine with more memory. (A small file that asks "
        "for this much has a damaged header.)"
    )


def _spacing(values: np.ndarray, dim: str, where: str = "") -> float:
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        # a single slice has no spacing of its own; 1 voxel in-plane is invalid
        if dim == "z":
            return float("nan")
        raise MREInputError(f"{where}'{dim}' has {values.size} voxel(s); need at least 2.")
    d = np.diff(values)
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise MREInputError(
            f"{where}coordinate '{dim}' must increase in steps of positive metres."
        )
    if np.ptp(d) > 1e-3 * abs(d.mean()):
        raise MREInputError(f"{where}coordinate '{dim}' is not evenly spaced.")
    return float(d.mean())


#: the axes a file stores after the spatial ones, in this order (readers take the last axis
#: for the frequency)
_FILE_TRAILING_DIMS = ("component", "sequence", "frequency")


def _in_file_order(var: xr.DataArray, spatial: Sequence[str]) -> np.ndarray:
    """The values of ``var`` with its axes as files store them: the spatial ones in the
    format's order (``spatial``), then component, sequence and frequency."""
    order = [d for d in (*spatial, *_FILE_TRAILING_DIMS) if d in var.dims]
    return np.asarray(var.transpose(*order).values)

