"""The MRE data model: one example as an xarray Dataset with physical coordinates.

An :class:`MREExample` holds the complex wave field and, when known, the modulus,
the region mask and the anatomical images of one acquisition (or one phantom).
Coordinates are voxel centres in metres, frequency is in Hz and the modulus in Pa.
See ``CONTRIBUTING.md`` for the table of variables and their dims.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["SPATIAL_DIMS", "MREExample", "MREInputError", "parse_frequencies"]

SPATIAL_DIMS = ("x", "y", "z")
DEFAULT_DENSITY = 1000.0  # kg/m³, the universal soft-tissue assumption

# canonical dim order of each known variable; optional dims are dropped when absent
_DIM_ORDER = ("frequency", "x", "y", "z", "component", "sequence")


class MREInputError(ValueError):
    """Bad MRE input: the message says what is wrong and how to fix it."""


class MREMissingFrequency(MREInputError):
    """The files do not state the vibration frequency (the user must: ``frequency=``,
    ``--frequency``); :func:`napari_mrepinn.io.load_example` then applies the one given."""


def parse_frequencies(frequency: float | Sequence[float]) -> tuple[np.ndarray, bool]:
    """Frequencies in Hz as a 1-D array, and whether a sequence (not a number) was given.

    Raises
    ------
    MREInputError
        For text, non-positive, non-finite or repeated frequencies.
    """
    multi = np.ndim(frequency) > 0
    try:
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
        self.ds = _canonical(ds)
        self.validate()

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
        spacing_ = np.broadcast_to(np.asarray(spacing, dtype=float), (spatial_ndim,))
        origin_ = np.broadcast_to(np.asarray(origin, dtype=float), (spatial_ndim,))
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

        The file is opened read-only and closed before returning.
        """
        path = Path(path)
        if not path.exists():
            raise MREInputError(f"{path}: no such file.")
        if path.is_dir():
            raise MREInputError(f"{path}: is a folder; give a .nc file.")
        try:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                ds = ds.load()
        except Exception as exc:  # any parse failure is a corrupt file to the user
            raise MREInputError(
                f"{path}: not a readable NetCDF/HDF5 file ({type(exc).__name__}: {exc}). "
                "Is it truncated or of another format?"
            ) from None
        return cls(_decode_complex(ds), source=str(path))

    def save(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the example (with any results) to a NetCDF file.

        The file is written to a temporary name first and moved into place, so an
        interrupted save never destroys an earlier file.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise MREInputError(f"{path}: exists; choose another name or allow overwriting.")
        tmp = path.with_name(path.name + ".partial")
        _encode_complex(self.ds).to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
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
            f = np.asarray(ds["frequency"].values, dtype=float)
        elif "frequency" in ds.attrs:
            f = np.atleast_1d(np.asarray(ds.attrs["frequency"], dtype=float))
        else:
            raise MREMissingFrequency(
                f"{w}the vibration frequency is missing; set ds.attrs['frequency'] in Hz "
                "(or pass frequency= / --frequency)."
            )
        if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
            raise MREInputError(f"{w}frequency must be positive Hz, got {f.tolist()}.")
        if not np.all(np.isfinite(wave.values)):
            n = int(np.sum(~np.isfinite(wave.values)))
            raise MREInputError(
                f"{w}'wave' has {n} NaN or infinite voxels; fill or mask them before "
                "inversion."
            )
        if float(ds.attrs.get("density", DEFAULT_DENSITY)) <= 0:
            raise MREInputError(f"{w}density must be positive kg/m³.")
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


# ---------------------------------------------------------------------- helpers
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
