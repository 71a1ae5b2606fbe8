"""The NetCDF-4 (HDF5) file of an :class:`~napari_mrepinn.data.MREExample`: what
:meth:`MREExample.load <napari_mrepinn.data.MREExample.load>` reads and
:meth:`MREExample.save <napari_mrepinn.data.MREExample.save>` writes.

Complex variables are stored as a trailing ``part`` axis (``real``, ``imag``) with the
attribute ``complex = 1``, which :func:`_decode_complex` turns back into complex values;
attributes that NetCDF cannot hold (booleans, dicts, lists) become ints and JSON text. The
file is read through h5py, opened and closed here in every case (also for a damaged file),
and written whole or not at all (:mod:`napari_mrepinn.outputs`).

The names are private (the public API is ``MREExample.load``/``save`` and
:func:`napari_mrepinn.io.load_example`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .data import MREInputError, _reason, _too_large


def _open_lazy(path: str | os.PathLike) -> xr.Dataset:
    """``xr.open_dataset`` of a NetCDF-4 file, nothing loaded yet (a label map or a result's
    attributes), after :func:`~napari_mrepinn.hdf5_check.check_hdf5`: damage that would
    hang libhdf5 raises :class:`MREInputError` instead. Use it as a context manager."""
    from .hdf5_check import check_hdf5

    check_hdf5(path)
    return xr.open_dataset(path, engine="h5netcdf")


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


def _write_netcdf(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write ``ds`` (complex variables split in two parts) to a NetCDF-4 file, whole or not at
    all: :meth:`MREExample.save <napari_mrepinn.data.MREExample.save>`.

    Raises
    ------
    MREOutputError
        (an :class:`~napari_mrepinn.data.MREInputError`) if the file cannot be written.
    """
    from .outputs import (
        atomic_path,
        check_writable,
        in_memory_limit,
        output_error,
        write_bytes,
    )

    path = Path(path)
    encoded = _encode_complex(ds)
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


def _encode_complex(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` as NetCDF can hold it: complex variables with a trailing ``part`` axis
    (``complex = 1``), booleans as int8, attributes through :func:`_attr_value`."""
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
    """An attribute NetCDF can store: a bool as 0/1, a dict/list/tuple as JSON text (keys
    ending in ``_json`` hold JSON text already)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list | tuple) and not key.endswith("_json"):
        return json.dumps(value)
    return value


def _decode_complex(ds: xr.Dataset) -> xr.Dataset:
    """The inverse of :func:`_encode_complex` for the complex variables (booleans stay
    int8, attributes as stored)."""
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
