"""A check of HDF5 files (NetCDF-4, MATLAB v7.3) for damage that libhdf5 cannot survive.

libhdf5 (2.0.0, as h5py 3.16 ships it) trusts the object sizes in a *global heap
collection*, the ``GCOL`` block of an HDF5 file that holds variable-length data (netCDF-4's
dimension lists, variable-length strings). It walks a collection object by object, each
step as long as the object's header says; a header that reads index 0 and size 0 (a block
of the file zeroed by a failed copy or a bad sector, a few flipped bytes) is a step of no
length, and the walk never ends: the process hangs in C code, where no Python timeout or
Ctrl-C reaches it. :func:`check_hdf5` walks the collections in Python first.

The file is read through ``mmap`` (no copy in memory); the check costs one pass over the
bytes, which the page cache then gives libhdf5 for free.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from .data import MREInputError

__all__ = ["check_hdf5"]

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_GCOL = b"GCOL"
# a collection is never smaller than this (H5HG_MINSIZE); a smaller "GCOL" is not one
_MIN_COLLECTION = 4096
_WRAP = 1 << 64  # libhdf5 adds sizes in 64-bit arithmetic


def check_hdf5(path: str | os.PathLike) -> None:
    """Raise one clear error for an HDF5 file whose global heap would hang libhdf5.

    Parameters
    ----------
    path : str or PathLike
        The file (NetCDF-4 ``.nc``, MATLAB v7.3 ``.mat``, any HDF5 file).

    Raises
    ------
    MREInputError
        If a global heap collection of the file is damaged (an object of no length, or one
        running past the end of its collection). Anything else (not HDF5, truncated,
        unreadable) is left to libhdf5, which reports it without hanging.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            if os.fstat(f.fileno()).st_size < len(_SIGNATURE):
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                problem = _damaged_heap(buf)
    except (OSError, ValueError):
        return  # unreadable: h5py says so in its own words
    if problem is not None:
        raise MREInputError(
            f"{p}: a damaged HDF5 file ({problem}); it was corrupted after it was written "
            "(an interrupted copy, a bad disk): copy it again from its source or write it "
            "again."
        )


def _damaged_heap(buf: mmap.mmap | bytes) -> str | None:
    """What is wrong with the first damaged global heap collection of ``buf``, or None."""
    size_of_lengths = _size_of_lengths(buf)
    if size_of_lengths is None:
        return None  # no superblock: libhdf5 refuses the file itself
    length = {2: "<H", 4: "<I", 8: "<Q"}.get(size_of_lengths)
    if length is None:
        return None
    header = 8 + size_of_lengths  # "GCOL", version, 3 reserved bytes, collection size
    object_header = 8 + size_of_lengths  # index, reference count, 4 reserved, object size
    start = buf.find(_GCOL)
    while start >= 0:
        if (start + header <= len(buf) and buf[start + 4] == 1
                and buf[start + 5 : start + 8] == b"\0\0\0"):
            size = struct.unpack_from(length, buf, start + 8)[0]
            end = start + size
            if _MIN_COLLECTION <= size and end <= len(buf):
                problem = _walk(buf, start + _align(header), end, length, object_header)
                if problem is not None:
                    return f"global heap at byte {start}: {problem}"
        start = buf.find(_GCOL, start + 1)
    return None


def _walk(buf: mmap.mmap | bytes, p: int, end: int, length: str, object_header: int) -> str | None:
    """Step through the objects of one collection as libhdf5 does."""
    while p + object_header <= end:  # a shorter tail is free space
        index = struct.unpack_from("<H", buf, p)[0]
        size = struct.unpack_from(length, buf, p + 8)[0]
        # object 0 is the free space, its size counts its own header
        step = (object_header + _align(size)) % _WRAP if index else size
        if step == 0:
            return f"object {index} at byte {p} has no length"
        if p + step > end:
            return f"object {index} at byte {p} runs past the end of its collection"
        p += step
    return None


def _size_of_lengths(buf: mmap.mmap | bytes) -> int | None:
    """The superblock's size of lengths (bytes); the superblock is at 0, 512, 1024, ...
    (after a user block, as MATLAB v7.3 files have)."""
    pos = 0
    while pos + 16 <= len(buf):
        if buf[pos : pos + 8] == _SIGNATURE:
            version = buf[pos + 8]
            # versions 0 and 1: byte 14 of the superblock, versions 2 and 3: byte 10
            return buf[pos + (14 if version in (0, 1) else 10)]
        pos = 512 if pos == 0 else 2 * pos
    return None


def _align(n: int) -> int:
    """``n`` rounded up to a multiple of 8 bytes (the alignment of heap objects)."""
    return (n + 7) & ~7
