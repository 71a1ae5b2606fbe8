"""BIOQIC-style MATLAB files: the reader of :mod:`napari_mrepinn.io` and :func:`save_mat`.

MATLAB v5 files are read with ``scipy.io.loadmat`` after every size in them has been
checked in Python (:func:`_checked_mat5`), v7.3 files (HDF5) with ``h5py``. Input files
are only ever opened for reading; every problem is one
:class:`~napari_mrepinn.data.MREInputError` naming the file and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .data import (
    FREQUENCY_KEYS,
    MREExample,
    MREInputError,
    MREMissingFrequency,
    _in_file_order,
    _per_axis,
    _reason,
)

__all__ = ["save_mat"]

# names of the wave variable in BIOQIC files, most specific first
_MAT_WAVE_NAMES = ("u_ft", "cube", "wave", "U", "u")
# component order of known BIOQIC variables (MRE-PINN's reading of the files)
_MAT_COMPONENTS = {"u_ft": ["y", "x", "z"], "cube": ["z", "x", "y"]}


def save_mat(example: MREExample, path: str | os.PathLike, *, version: str = "5") -> Path:
    """Write an example as a BIOQIC-style MATLAB file (the layout
    :func:`~napari_mrepinn.io.load_example` reads).

    The wave is ``u_ft`` with MATLAB axes ``(y, x[, z][, component][, frequency])`` and
    the geometry goes into an ``info`` struct (``dx_m``, ``dy_m``, ``dz_m``,
    ``frequencies_Hz``, ``spatial_ndim`` and, for a wave with a component axis, its labels
    as the text ``components``, e.g. ``'y,x,z'``). ``mre``, ``mre_mask`` and ``anat`` (as
    ``magnitude``) follow with the same leading ``(y, x[, z])`` axes. The file is written
    whole or not at all (see :mod:`napari_mrepinn.outputs`).

    Parameters
    ----------
    example : MREExample
        The example to write.
    path : str or PathLike
        Target ``.mat`` file.
    version : {"5", "7.3"}
        MATLAB file version: v5 via ``scipy.io.savemat``, v7.3 (HDF5) via ``h5py``.

    Raises
    ------
    MREOutputError
        (an :class:`MREInputError`) if the file cannot be written.
    """
    from .outputs import atomic_open, check_writable, write_bytes

    if version not in ("5", "7.3"):
        raise ValueError(f"version must be '5' or '7.3', got {version!r}")
    path = Path(path)
    check_writable(path, need_bytes=int(example.ds.nbytes))

    def mat_order(var: xr.DataArray) -> np.ndarray:
        return _in_file_order(var, ("y", "x", "z"))  # MATLAB rows are y

    sp = example.spacing
    info: dict[str, Any] = {
        "dx_m": sp["x"],
        "dy_m": sp["y"],
        "frequencies_Hz": example.frequencies.astype(float),
    }
    if "z" in sp and np.isfinite(sp["z"]):
        info["dz_m"] = sp["z"]
    # (y, x, n) is either a volume or a slice with n components, and MATLAB drops trailing
    # size-1 axes (one component): say which axes there are, so that the file reads back
    # as it was written
    info["spatial_ndim"] = float(len(example.spatial_dims))
    if "component" in example.ds["wave"].dims:
        info["components"] = ",".join(str(c) for c in example.ds["component"].values)
    variables: dict[str, Any] = {"u_ft": mat_order(example.ds["wave"])}
    if "mre" in example:
        variables["mre"] = mat_order(example.ds["mre"])
    if "mre_mask" in example:
        variables["mre_mask"] = mat_order(example.ds["mre_mask"]).astype(np.int32)
    if "anat" in example:
        variables["magnitude"] = mat_order(example.ds["anat"]).astype(np.float64)
    if version == "5":
        import scipy.io

        with atomic_open(path, "wb") as fh:
            scipy.io.savemat(fh, {**variables, "info": info}, do_compression=True)
    else:
        write_bytes(path, _mat73_bytes(variables, info))
    return path


# ====================================================================== reading
def _load_mat(
    path: Path,
    frequency: Any,
    spacing: Any,
    components: Sequence[str] | None,
) -> MREExample:
    import h5py

    try:
        is_h5 = h5py.is_hdf5(str(path))
    except OSError as exc:
        raise MREInputError(f"{path}: cannot be read ({_reason(exc)}).") from None
    variables = _read_mat73(path) if is_h5 else _read_mat5(path)
    variables = {k: v for k, v in variables.items() if not k.startswith("__")}

    # ---- the wave
    name = next((n for n in _MAT_WAVE_NAMES if n in variables), None)
    if name is None:
        name = next(
            (
                n
                for n, v in variables.items()
                if isinstance(v, np.ndarray) and np.iscomplexobj(v) and v.ndim >= 2
            ),
            None,
        )
    if name is None:
        found = ", ".join(f"{n} {_describe(v)}" for n, v in variables.items()) or "nothing"
        raise MREInputError(
            f"{path}: no complex wave variable (looked for {', '.join(_MAT_WAVE_NAMES)} or any "
            f"complex array with 2+ axes; found {found})."
        )
    u = np.asarray(variables[name])
    if not np.issubdtype(u.dtype, np.number) or u.ndim < 2:
        raise MREInputError(
            f"{path}: variable '{name}' is {_describe(u)}; expected a complex wave array."
        )

    # ---- geometry: keyword > info struct > top-level variables
    info = variables.get("info")
    info = info if isinstance(info, dict) else {}
    lookup = {
        **{k.lower(): v for k, v in variables.items()},
        **{k.lower(): v for k, v in info.items()},
    }
    freqs: list[float] | None
    if frequency is not None:
        freqs = np.atleast_1d(np.asarray(frequency, dtype=float)).tolist()
    else:
        freqs = None
        for key in FREQUENCY_KEYS:  # the first one stated wins (see FREQUENCY_KEYS)
            if key in lookup:
                try:
                    freqs = np.atleast_1d(np.asarray(lookup[key], dtype=float)).ravel().tolist()
                except (TypeError, ValueError):
                    raise MREInputError(
                        f"{path}: '{key}' is not numeric ({_describe(lookup[key])})."
                    ) from None
                break
    if not freqs:
        raise MREMissingFrequency(
            f"{path}: the vibration frequency is missing (no info.frequencies_Hz, nor another "
            f"info field or variable named {', '.join(FREQUENCY_KEYS)}, in any letter case); "
            "pass frequency= in Hz (CLI: --frequency)."
        )

    # MATLAB axes: (y, x[, z][, component][, frequency]); BIOQIC puts rows = y
    nf = len(freqs)
    shape = u.shape
    while u.ndim > 2 and u.shape[-1] == 1:
        u = u[..., 0]  # trailing singleton axes carry nothing in MATLAB
    if u.ndim >= 3 and nf > 1 and u.shape[-1] == nf:
        u = np.moveaxis(u, -1, 0)
        multi = True
    else:
        multi = False
        if nf > 1:
            raise MREInputError(
                f"{path}: {nf} frequencies ({', '.join(f'{f:g}' for f in freqs)} Hz) but "
                f"'{name}' {shape} has no last axis of that length; pass frequency= to pick "
                "the frequency of this wave."
            )
    rest = u.shape[1:] if multi else u.shape
    if len(rest) == 5:
        raise MREInputError(
            f"{path}: '{name}' has a time axis ({shape}); take the first temporal harmonic "
            "(FFT over the time offsets) to get a complex wave first."
        )
    if len(rest) not in (2, 3, 4):
        raise MREInputError(
            f"{path}: '{name}' has shape {shape}; expected (y, x[, z][, component][, frequency])."
        )
    declared = _declared_spatial_ndim(lookup)
    # save_mat writes the component labels with spatial_ndim; alone they are someone else's
    labels = _declared_components(lookup) if declared is not None else None
    if declared is None:
        spatial_ndim = 2 if len(rest) == 2 else 3
    else:
        # the axes the file says it has: singleton ones (one z slice, one component) were
        # dropped above, or by MATLAB
        want = declared + (1 if labels is not None else 0)
        if len(rest) < want:
            u = u.reshape(*u.shape, *(1,) * (want - len(rest)))
            rest = u.shape[1:] if multi else u.shape
        if len(rest) - declared not in (0, 1):
            raise MREInputError(
                f"{path}: '{name}' has shape {shape} but info.spatial_ndim says {declared} "
                "spatial axes; expected (y, x[, z][, component][, frequency])."
            )
        spatial_ndim = declared
    if labels is not None and (len(rest) != spatial_ndim + 1 or rest[-1] != len(labels)):
        raise MREInputError(
            f"{path}: info.components names {len(labels)} component(s) "
            f"({','.join(labels)}) but '{name}' has shape {shape}; fix or remove "
            "info.components."
        )
    if not np.iscomplexobj(u):
        raise MREInputError(
            f"{path}: '{name}' is real ({u.dtype}); the wave must be complex (a phase "
            "series needs a temporal Fourier transform first)."
        )
    # swap MATLAB (y, x) to the library's (x, y)
    lead = 1 if multi else 0
    u = np.swapaxes(u, lead, lead + 1)

    if spacing is not None:
        spacing_m = _per_axis(spacing, spatial_ndim, "spacing", "voxel spacing in metres")
    else:
        keys = ("dx_m", "dy_m", "dz_m")[:spatial_ndim]
        if not all(k in lookup for k in keys[:2]):
            raise MREInputError(
                f"{path}: the voxel spacing is missing (no info.dx_m / info.dy_m); pass "
                "spacing= in metres (CLI: --spacing)."
            )
        vals = [lookup.get(k, lookup["dx_m"]) for k in keys]
        try:
            spacing_m = np.array([float(np.asarray(v).ravel()[0]) for v in vals])
        except (TypeError, ValueError, IndexError):
            raise MREInputError(f"{path}: info.dx_m/dy_m/dz_m must be numbers.") from None

    sshape = u.shape[lead : lead + spatial_ndim]

    def spatial(var: str) -> np.ndarray | None:
        if var not in variables:
            return None
        a = np.asarray(variables[var])
        if a.ndim < spatial_ndim or (a.shape[1], a.shape[0], *a.shape[2:spatial_ndim]) != tuple(
            sshape
        ):
            raise MREInputError(
                f"{path}: '{var}' {a.shape} does not share the wave's grid (MATLAB "
                f"(y, x{', z' if spatial_ndim == 3 else ''}) = "
                f"{(sshape[1], sshape[0], *sshape[2:])})."
            )
        return np.swapaxes(a, 0, 1)

    anat = spatial("magnitude")
    if anat is None:
        anat = spatial("anat")
    if anat is not None:
        # reduce time/component/frequency axes of a magnitude series to one image
        anat = anat.astype(np.float64)
        if anat.ndim > spatial_ndim:
            anat = anat.reshape(*anat.shape[:spatial_ndim], -1).mean(axis=-1)
    mask = next((spatial(n) for n in ("mre_mask", "mask") if n in variables), None)
    mre = spatial("mre")
    if mre is not None and mre.ndim == spatial_ndim + 1:
        mre = np.moveaxis(mre, -1, 0)
    if components is None:
        nc = u.shape[-1] if len(rest) == spatial_ndim + 1 else 0
        known = labels if labels is not None else _MAT_COMPONENTS.get(name)
        components = known if known is not None and len(known) == nc else None
    density = float(np.asarray(lookup.get("density", 1000.0)).ravel()[0])
    return MREExample.from_numpy(
        u,
        frequency=freqs if multi else freqs[0],
        spacing=spacing_m,
        mre=mre,
        mre_mask=mask,
        anat=anat,
        components=components,
        density=density,
        spatial_ndim=spatial_ndim,
        source=str(path),
    )


def _declared_spatial_ndim(lookup: dict[str, Any]) -> int | None:
    """``info.spatial_ndim`` (written by :func:`save_mat`): 2 or 3, else None (infer)."""
    try:
        value = int(np.asarray(lookup["spatial_ndim"], dtype=float).ravel()[0])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return value if value in (2, 3) else None


def _declared_components(lookup: dict[str, Any]) -> list[str] | None:
    """``info.components`` (written by :func:`save_mat`): the labels of the wave's
    component axis as comma-separated text, else None (no component axis declared)."""
    value = lookup.get("components")
    if not isinstance(value, str) or not value.strip():
        return None
    return [c.strip() for c in value.split(",")]


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype} {v.shape}"
    return type(v).__name__


def _read_mat5(path: Path) -> dict[str, Any]:
    import io as _io

    import scipy.io

    try:
        data = path.read_bytes()
        if scipy.io.matlab.matfile_version(_io.BytesIO(data))[0] == 1:
            # scipy's v5 reader trusts the sizes in the file and crashes the process
            # (segfault) on a damaged one: check them in Python first
            data = _checked_mat5(data)
        # no squeeze_me: a single z slice (y, x, 1, component) must keep its z axis
        raw = scipy.io.loadmat(_io.BytesIO(data), squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        # scipy says so for v7.3 files that h5py did not recognise: a damaged HDF5 file
        raise MREInputError(f"{path}: a MATLAB v7.3 file that is not readable HDF5.") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise MREInputError(
            f"{path}: not a readable MATLAB file ({_reason(exc)}). Is it "
            "truncated or of another format?"
        ) from None
    return {k: _mat5_value(v) for k, v in raw.items() if not k.startswith("__")}


# MATLAB v5 data types: code -> item size in bytes (miINT8 ... miUTF32)
_MI_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
# MATLAB v5 array classes: cell, struct, object, char, sparse, then the numeric ones
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_NUMERIC = frozenset(range(6, 16))


class _Damaged(Exception):
    """A MATLAB v5 element whose sizes do not add up."""


def _checked_mat5(data: bytes) -> bytes:
    """The v5 file ``data`` with every size checked, decompressed, without exotic variables.

    Walks every element: each must lie inside its parent, numeric data must hold exactly
    ``prod(dims)`` items, compressed elements must inflate completely to one matrix.
    Variables of classes this reader never needs (objects, sparse, function handles,
    MATLAB opaque objects) are dropped rather than handed to scipy. Raises
    ``ValueError`` for a damaged file (the caller turns it into an MREInputError).
    """
    import struct
    import zlib

    if len(data) < 128:
        raise ValueError("shorter than the 128-byte MATLAB header")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise ValueError("the MATLAB header has no byte-order mark")

    def tag(buf: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
        """(type, nbytes, data start, next element) of the element at ``pos``."""
        if pos + 8 > end:
            raise _Damaged("an element header runs past its end")
        first, second = struct.unpack_from(endian + "II", buf, pos)
        if first >> 16:  # small data element: 2-byte size, 2-byte type, 4 bytes of data
            mtype, nbytes = first & 0xFFFF, first >> 16
            if nbytes > 4:
                raise _Damaged("a small element claims more than 4 bytes")
            return mtype, nbytes, pos + 4, pos + 8
        nbytes = second
        if pos + 8 + nbytes > end:
            raise _Damaged("an element runs past its end")
        return first, nbytes, pos + 8, min(pos + 8 + nbytes + (-nbytes % 8), end)

    def numeric(buf: bytes, pos: int, end: int, count: int | None) -> int:
        mtype, nbytes, _, nxt = tag(buf, pos, end)
        size = _MI_SIZE.get(mtype)
        if size is None or nbytes % size or (count is not None and nbytes != count * size):
            raise _Damaged("a data element does not match its array's size")
        return nxt

    def matrix(buf: bytes, pos: int, end: int) -> tuple[int, int]:
        """Check the miMATRIX at ``pos``; returns (its array class, next element)."""
        mtype, nbytes, start, nxt = tag(buf, pos, end)
        if mtype != _MI_MATRIX:
            raise _Damaged("expected a matrix element")
        if nbytes == 0:
            return 0, nxt  # an empty cell entry
        stop = start + nbytes
        ftype, fbytes, fstart, p = tag(buf, start, stop)
        if ftype != 6 or fbytes != 8:
            raise _Damaged("bad array flags")
        flags = struct.unpack_from(endian + "I", buf, fstart)[0]
        cls, is_complex = flags & 0xFF, bool(flags & 0x800)
        dtype_, dbytes, dstart, p = tag(buf, p, stop)
        if dtype_ != 5 or dbytes % 4 or dbytes < 8:
            raise _Damaged("bad dimensions")
        dims = struct.unpack_from(f"{endian}{dbytes // 4}i", buf, dstart)
        if min(dims) < 0:
            raise _Damaged("negative dimensions")
        count = int(np.prod(np.asarray(dims, dtype=np.float64)))
        p = numeric(buf, p, stop, None)  # the name (int8 text)
        if cls in _MX_NUMERIC:
            p = numeric(buf, p, stop, count)
            if is_complex:
                p = numeric(buf, p, stop, count)
        elif cls == _MX_CHAR:
            p = numeric(buf, p, stop, None)
        elif cls == _MX_CELL:
            for _ in range(count):
                inner, p = matrix(buf, p, stop)
                if inner in (_MX_OBJECT, _MX_SPARSE) or inner > 15:
                    raise _Damaged("unsupported class inside a cell")
        elif cls == _MX_STRUCT:
            ltype, lbytes, lstart, p = tag(buf, p, stop)
            if ltype != 5 or lbytes != 4:
                raise _Damaged("bad struct field-name length")
            name_len = struct.unpack_from(endian + "i", buf, lstart)[0]
            ntype, nbytes_, _, p = tag(buf, p, stop)
            if name_len <= 0 or ntype != 1 or nbytes_ % name_len:
                raise _Damaged("bad struct field names")
            for _ in range(count * (nbytes_ // name_len)):
                inner, p = matrix(buf, p, stop)
                if inner in (_MX_OBJECT, _MX_SPARSE) or inner > 15:
                    raise _Damaged("unsupported class inside a struct")
        else:
            return cls, nxt  # object, sparse, function, opaque: dropped by the caller
        if p > stop:
            raise _Damaged("a matrix runs past its end")
        return cls, nxt

    out = bytearray(data[:128])
    pos = 128
    while pos < len(data):
        try:
            mtype, nbytes, start, nxt = tag(data, pos, len(data))
        except _Damaged as exc:
            raise ValueError(f"{exc} (byte {pos})") from None
        if mtype == _MI_COMPRESSED:
            inflater = zlib.decompressobj()
            try:
                element = inflater.decompress(data[start : start + nbytes])
            except zlib.error as exc:
                raise ValueError(f"a compressed variable is damaged ({exc})") from None
            if not inflater.eof or inflater.unused_data:
                raise ValueError("a compressed variable is cut short or damaged")
            nxt = start + nbytes  # compressed elements are not padded
        elif mtype == _MI_MATRIX:
            element = data[pos:nxt]
        else:
            raise ValueError(f"an element of unknown type {mtype} at byte {pos}")
        try:
            cls, end = matrix(element, 0, len(element))
        except (_Damaged, struct.error) as exc:
            raise ValueError(f"a variable is damaged ({exc})") from None
        if end != len(element):
            raise ValueError("a compressed variable holds more than one matrix")
        if cls in _MX_NUMERIC or cls in (_MX_CHAR, _MX_CELL, _MX_STRUCT):
            out += element + bytes(-len(element) % 8)
        pos = nxt
    return bytes(out)


def _mat5_value(v: Any) -> Any:
    """Structs become dicts, 1 × 1 cells their content; numeric arrays keep their shape."""
    if isinstance(v, np.ndarray) and v.dtype.names:
        if v.size != 1:
            return v
        rec = v.ravel()[0]
        return {name: _mat5_value(rec[name]) for name in v.dtype.names}
    if isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
        return _mat5_value(v.ravel()[0])
    if isinstance(v, np.ndarray) and v.dtype.kind == "U":
        return "".join(v.ravel().tolist())
    return v


def _read_mat73(path: Path) -> dict[str, Any]:
    import h5py

    def convert(obj: Any) -> Any:
        if isinstance(obj, h5py.Group):
            return {k: convert(v) for k, v in obj.items() if not k.startswith("#")}
        data = obj[()]
        if (
            isinstance(data, np.ndarray)
            and data.dtype.names
            and {"real", "imag"} <= set(data.dtype.names)
        ):
            data = data["real"] + 1j * data["imag"]
        if isinstance(data, np.ndarray):
            # MATLAB writes column-major: the HDF5 shape is the MATLAB shape reversed
            data = data.T
            if obj.attrs.get("MATLAB_class", b"") in (b"char", "char"):
                return "".join(chr(c) for c in data.ravel())
            if data.size == 1 and data.ndim <= 2:
                return data.ravel()[0] if data.ndim else data
        return data

    from .hdf5_check import check_hdf5

    check_hdf5(path)  # damage that would hang libhdf5 is one clear error instead
    try:
        with h5py.File(str(path), "r") as f:
            return {k: convert(v) for k, v in f.items() if not k.startswith("#")}
    except (MREInputError, MemoryError):
        raise
    except Exception as exc:
        raise MREInputError(
            f"{path}: not a readable MATLAB v7.3 (HDF5) file ({_reason(exc)})."
        ) from None


def _mat73_bytes(variables: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> bytes:
    """A minimal MATLAB v7.3 file: HDF5 with a 512-byte MATLAB header, arrays transposed.

    Built in memory: libhdf5 never writes to the disk itself (it crashes when the disk
    fills under it), the caller writes the bytes.
    """
    import io as _io
    import time

    import h5py

    def put(group: Any, name: str, value: Any) -> None:
        if isinstance(value, str):  # MATLAB char: UTF-16 code units, a 1 × n row
            codes = np.frombuffer(value.encode("utf-16-le"), dtype="<u2").reshape(1, -1)
            ds = group.create_dataset(name, data=np.ascontiguousarray(codes.T))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
            return
        a = np.asarray(value)
        if np.iscomplexobj(a):
            dt = np.dtype([("real", "<f8"), ("imag", "<f8")])
            rec = np.empty(a.shape, dt)
            rec["real"], rec["imag"] = a.real, a.imag
            ds = group.create_dataset(name, data=rec.T)
            ds.attrs["MATLAB_class"] = np.bytes_("double")
        else:
            if a.ndim < 2:
                a = a.reshape(1, -1) if a.ndim == 1 else a.reshape(1, 1)
            ds = group.create_dataset(name, data=np.ascontiguousarray(a.T))
            cls = "int32" if np.issubdtype(a.dtype, np.integer) else "double"
            ds.attrs["MATLAB_class"] = np.bytes_(cls)

    buffer = _io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=512) as f:
        for name, value in variables.items():
            put(f, name, value)
        g = f.create_group("info")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        for k, v in info.items():
            put(g, k, v)
    header = (
        f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
        f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 ."
    ).encode()
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    data = bytearray(buffer.getbuffer())
    data[:512] = header.ljust(512, b"\x00")
    return bytes(data)
