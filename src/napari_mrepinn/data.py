"""The MRE data model: one example as an xarray Dataset with physical coordinates.

An :class:`MREExample` holds the complex wave field and, when known, the modulus,
the region mask and the anatomical images of one acquisition (or one phantom).
Coordinates are voxel centres in metres, frequency is in Hz and the modulus in Pa.
See ``CONTRIBUTING.md`` for the table of variables and their dims.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
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
        self.source = source
        self.ds = _mask_outside(_numeric_attrs(_canonical(ds), _where(source)))
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
        from .outputs import (
            atomic_path,
            check_writable,
            in_memory_limit,
            output_error,
            write_bytes,
        )

        path = Path(path)
        encoded = _encode_complex(self.ds)
        size = int(encoded.nbytes)
        check_writable(path, need_bytes=size, overwrite=overwrite)
        data = None
        if size <= in_memory_limit():
            # libhdf5 writes to memory and Python to the disk: a full disk is then a clean
            # ENOSPC, never libhdf5's crash (it segfaults when a write fails under it)
            try:
                data = encoded.to_netcdf(engine="h5netcdf")
            except MemoryError:
                data = None
            except OSError as exc:
                raise output_error(path, exc) from None
        if data is not None:
            write_bytes(path, data, overwrite=overwrite)
            return path
        # too large to hold twice: libhdf5 writes the temporary file itself, after a free
        # space check with room to spare (a disk filled by someone else meanwhile can still
        # crash libhdf5, which no Python code can catch)
        check_writable(path, need_bytes=int(1.1 * size) + (16 << 20), overwrite=overwrite)
        with atomic_path(path, overwrite=overwrite) as tmp:
            encoded.to_netcdf(tmp, engine="h5netcdf")
        return path

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
        spacing = {d: s for d, s in self.spacing.items() if np.isfinite(s)}
        lo, hi = PLAUSIBLE_SPACING_M
        flo, fhi = PLAUSIBLE_FOV_M
        fov = {d: n * spacing[d] for d, n in zip(self.spatial_dims, self.spatial_shape,
                                                 strict=True) if d in spacing}
        bad = [d for d, s in spacing.items() if not lo <= s <= hi]
        bad += [d for d, f in fov.items() if not flo <= f <= fhi and d not in bad]
        if bad:
            sp = ", ".join(f"{d}={spacing[d]:g} m" for d in spacing)
            fv = ", ".join(f"{d}={fov[d]:g} m" for d in fov)
            warnings.warn(
                f"{_where(self.source)}voxel spacing {sp} (field of view {fv}) is not "
                "physically plausible for MR elastography; coordinates and spacing are in "
                "metres (1 mm = 1e-3). A slip of units scales the modulus by its square.",
                MREPlausibilityWarning,
                stacklevel=_caller_level(),
            )

    def validate(self) -> None:
        """Check the example; raise :class:`MREInputError` naming what is wrong."""
        w = _where(self.source)
        ds = self.ds
        if "wave" not in ds:
            found = ", ".join(ds.data_vars) or "nothing"
            raise MREInputError(
                f"{w}no 'wave' variable (found: {found}); an MRE example needs the complex "
                "displacement field named 'wave'."
            )
        wave = ds["wave"]
        if not np.issubdtype(wave.dtype, np.number) or np.issubdtype(wave.dtype, np.integer):
            raise MREInputError(
                f"{w}'wave' has dtype {wave.dtype}; it must be a complex (or float) "
                "displacement field, not text or an integer label image."
            )
        if np.issubdtype(wave.dtype, np.bool_):
            raise MREInputError(f"{w}'wave' is boolean; expected complex displacement.")
        sdims = [d for d in SPATIAL_DIMS if d in wave.dims]
        if sdims[:2] != ["x", "y"]:
            raise MREInputError(
                f"{w}'wave' has dims {wave.dims}; it needs spatial dims 'x' and 'y' "
                "(and optionally 'z')."
            )
        extra = set(wave.dims) - set(_DIM_ORDER)
        if extra:
            raise MREInputError(f"{w}'wave' has unknown dims {sorted(extra)}.")
        for d in sdims:
            if d not in ds.coords:
                raise MREInputError(
                    f"{w}no coordinate for '{d}': the voxel spacing is missing; give "
                    "coordinates in metres (or spacing= in from_numpy)."
                )
            _spacing(ds[d].values, d, w)
        if "frequency" in wave.dims:
            try:
                f = np.asarray(ds["frequency"].values, dtype=float)
            except (TypeError, ValueError):
                raise MREInputError(
                    f"{w}the 'frequency' coordinate is not numeric "
                    f"({ds['frequency'].values.tolist()!r}); it must be Hz."
                ) from None
        elif "frequency" in ds.attrs:
            f = np.atleast_1d(np.asarray(ds.attrs["frequency"], dtype=float))
            if f.size > 1:
                raise MREInputError(
                    f"{w}the frequency attribute holds {f.size} values but the wave has no "
                    "'frequency' axis; give one frequency (Hz) per wave."
                )
        else:
            raise MREMissingFrequency(
                f"{w}the vibration frequency is missing; set ds.attrs['frequency'] in Hz "
                "(or pass frequency= / --frequency)."
            )
        if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
            raise MREInputError(f"{w}frequency must be positive Hz, got {f.tolist()}.")
        if not np.all(np.isfinite(wave.values)):
            # NaN outside a valid mask was set to 0 on construction (_mask_outside)
            n = int(np.sum(~np.isfinite(wave.values)))
            if "mre_mask" in ds:
                raise MREInputError(
                    f"{w}'wave' has {n} NaN or infinite voxels inside the mask; fill them "
                    "(e.g. interpolate) or leave them out of 'mre_mask'."
                )
            raise MREInputError(
                f"{w}'wave' has {n} NaN or infinite voxels; fill them or give a mask "
                "('mre_mask') that leaves them out."
            )
        density = float(ds.attrs.get("density", DEFAULT_DENSITY))
        if not np.isfinite(density) or density <= 0:
            raise MREInputError(f"{w}density must be positive kg/m³, got {density!r}.")
        for name in ("mre", "mre_mask", "anat"):
            if name not in ds:
                continue
            var = ds[name]
            for d in sdims:
                if d not in var.dims or var.sizes[d] != wave.sizes[d]:
                    raise MREInputError(
                        f"{w}'{name}' has shape {dict(var.sizes)} but 'wave' has "
                        f"{ {d: wave.sizes[d] for d in sdims} }; they must share the grid."
                    )
        if "mre_mask" in ds:
            m = ds["mre_mask"]
            if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.bool_)):
                vals = np.asarray(m.values)
                if not np.all(np.isfinite(vals)) or not np.all(vals == np.round(vals)):
                    raise MREInputError(
                        f"{w}'mre_mask' must hold integer region labels (0 = outside)."
                    )
            if not np.any(m.values > 0):
                raise MREInputError(
                    f"{w}'mre_mask' is empty (no voxel > 0); draw the region of interest "
                    "or drop the mask to use the whole grid."
                )


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


def _attr_number(value: Any, key: str, where: str) -> float | np.ndarray:
    """A numeric attribute read from a file: numbers pass, numeric text is parsed, other
    text is one clear error (NetCDF attributes written by other tools are often text)."""
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str | np.str_):
        text = str(value).strip()
        for unit in ("hz", "kg/m3", "kg/m³", "kg m-3"):
            if text.lower().endswith(unit):
                text = text[: -len(unit)].strip()
        try:
            return float(text)
        except ValueError:
            raise MREInputError(
                f"{where}the '{key}' attribute is the text {str(value)!r}; it must be a "
                f"number ({'Hz' if key == 'frequency' else 'kg/m³'})."
            ) from None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise MREInputError(
            f"{where}the '{key}' attribute is {value!r}; it must be a number."
        ) from None
    return float(arr) if arr.ndim == 0 else arr


def _numeric_attrs(ds: xr.Dataset, where: str) -> xr.Dataset:
    """``frequency`` and ``density`` attributes as numbers (parsed from text if needed)."""
    keys = [k for k in ("frequency", "density") if k in ds.attrs]
    if not keys:
        return ds
    attrs = dict(ds.attrs)
    for key in keys:
        value = _attr_number(attrs[key], key, where)
        if isinstance(value, np.ndarray) and value.size == 1:
            value = float(value.ravel()[0])
        attrs[key] = value
    if all(attrs[k] is ds.attrs[k] for k in keys):
        return ds
    out = ds.copy()
    out.attrs = attrs
    return out


def _mask_outside(ds: xr.Dataset) -> xr.Dataset:
    """Set NaN/inf wave voxels outside a valid ``mre_mask`` to 0.

    Scanner exports often carry NaN where there is no tissue; outside the region of
    interest they are masked already, and a 0 there keeps every stencil finite. Inside the
    mask they stay, for :meth:`MREExample.validate` to refuse. The number filled is kept in
    ``wave.attrs["n_nonfinite_outside_mask"]``.
    """
    if "wave" not in ds or "mre_mask" not in ds:
        return ds
    wave, mask = ds["wave"], ds["mre_mask"]
    if not np.issubdtype(wave.dtype, np.inexact):
        return ds
    values = wave.values
    bad = ~np.isfinite(values)
    if not bad.any():
        return ds
    if (
        not set(mask.dims) <= set(wave.dims)
        or any(mask.sizes[d] != wave.sizes[d] for d in mask.dims)
        or not np.all(np.isfinite(np.asarray(mask.values, dtype=float)))
    ):
        return ds  # not a usable mask: validate() reports the NaN (and the mask)
    outside = ~(mask > 0).broadcast_like(wave).transpose(*wave.dims).values
    fill = bad & outside
    if not fill.any():
        return ds
    out = ds.copy()
    out["wave"] = wave.copy(data=np.where(fill, 0, values))
    out["wave"].attrs["n_nonfinite_outside_mask"] = int(fill.sum())
    return out


def _read_netcdf(path: Path) -> xr.Dataset:
    """The decoded dataset of a NetCDF-4/HDF5 file, or one :class:`MREInputError`.

    We open the HDF5 file ourselves and close it in every case: when h5netcdf fails
    half-way through opening a damaged file it leaves its handle to the garbage collector,
    whose clean-up then prints an "Exception ignored" traceback after our message.
    """
    import h5py

    from .hdf5_check import check_hdf5

    check_hdf5(path)  # damage that would hang libhdf5 is one clear error instead
    try:
        with h5py.File(path, "r") as h5:
            # read every object header and attribute now, so damaged metadata fails here
            _ = dict(h5.attrs)
            h5.visititems(lambda _name, obj: dict(obj.attrs) and None)
            with _QuietH5NetCDF(h5, "r") as nc:
                ds = xr.open_dataset(xr.backends.H5NetCDFStore(nc)).load()
        return _decode_complex(ds)
    except MemoryError:
        raise MREInputError(_too_large(path)) from None
    except Exception as exc:  # any parse failure is a corrupt file to the user
        raise MREInputError(
            f"{path}: not a readable NetCDF/HDF5 file ({_reason(exc)}). "
            "Is it truncated or of another format?"
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


class _QuietH5NetCDF:
    """``h5netcdf.File`` on an open ``h5py.File``, whose failed construction stays quiet.

    h5netcdf's ``__del__`` calls ``close()``, which reads attributes a half-built object
    does not have; the resulting AttributeError is printed as "Exception ignored".
    """

    _cls = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls._cls is None:
            import h5netcdf

            class File(h5netcdf.File):
                def close(self) -> None:
                    try:
                        super().close()
                    except AttributeError:
                        self._closed = True  # never finished opening: nothing to flush

                __del__ = close

            cls._cls = File
        return cls._cls(*args, **kwargs)


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


def _canonical(ds: xr.Dataset) -> xr.Dataset:
    """Variables in the canonical dim order (unknown dims keep their place at the end)."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        order = [d for d in _DIM_ORDER if d in var.dims]
        order += [d for d in var.dims if d not in order]
        if tuple(order) != var.dims:
            out[name] = var.transpose(*order)
    if "mre_mask" in out and np.issubdtype(out["mre_mask"].dtype, np.floating):
        vals = out["mre_mask"].values
        if np.all(np.isfinite(vals)) and np.all(vals == np.round(vals)):
            out["mre_mask"] = out["mre_mask"].astype(np.int32)
    return out


def _encode_complex(ds: xr.Dataset) -> xr.Dataset:
    out = xr.Dataset(coords={k: v for k, v in ds.coords.items()})
    for name, var in ds.data_vars.items():
        if np.iscomplexobj(var.values):
            parts = np.stack([var.values.real, var.values.imag], axis=-1)
            enc = xr.DataArray(parts, dims=(*var.dims, "part"), attrs=dict(var.attrs))
            enc.attrs["complex"] = 1
            out[name] = enc
        elif var.dtype == bool:
            out[name] = var.astype(np.int8)
        else:
            out[name] = var
    if any(np.iscomplexobj(v.values) for v in ds.data_vars.values()):
        out = out.assign_coords(part=["real", "imag"])
    out.attrs = {k: _attr_value(k, v) for k, v in ds.attrs.items()}
    return out


def _attr_value(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list | tuple) and not key.endswith("_json"):
        return json.dumps(value)
    return value


def _decode_complex(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    for name, var in ds.data_vars.items():
        if "part" in var.dims and int(var.attrs.get("complex", 0)) == 1:
            c = var.sel(part="real") + 1j * var.sel(part="imag")
            c = c.drop_vars("part", errors="ignore")
            c.attrs = {k: v for k, v in var.attrs.items() if k != "complex"}
            out[name] = c
    if "part" in out.coords and not any("part" in v.dims for v in out.data_vars.values()):
        out = out.drop_vars("part")
    return out
