"""One way to write every output: whole or not at all.

Every file the library writes (NetCDF examples, NIfTI folders, MATLAB files, PNG figures,
JSON and CSV tables, checkpoints) goes through this module:

1. :func:`check_writable` before long work starts: the folder exists, a file can be created
   in it (a real probe, so ACLs, read-only mounts and root all answer truthfully) and it has
   room for about ``need_bytes``.
2. The content goes to a **unique** temporary name in the target's own folder
   (``.<name>.<random>.partial``, from :func:`tempfile.mkstemp`), is flushed and
   ``fsync``-ed, and only then moved over the target with :func:`os.replace`, which is atomic
   on POSIX and Windows within one file system.
3. Any failure, ``KeyboardInterrupt`` included, removes the temporary file and leaves an
   earlier target untouched. An :class:`OSError` (full disk, no permission, read-only file
   system...) becomes one :class:`MREOutputError` line naming the file and the fix.

Two writers of one target never produce a corrupt file: each writes its own temporary
file and the last :func:`os.replace` wins with a whole file. Temporary files orphaned by a
killed process are removed by :func:`sweep_partials` (called on every successful write for
that target's name; only our own name pattern, only files older than this process).

HDF5 (NetCDF, MATLAB v7.3) is serialised in memory and written as bytes by Python when it
fits (see :func:`in_memory_limit`): libhdf5 crashes the process (segfault) when the disk
fills under it, while a Python write fails with a clean ``ENOSPC``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .data import MREInputError

__all__ = [
    "PARTIAL_SUFFIX",
    "MREOutputError",
    "atomic_folder",
    "atomic_open",
    "atomic_path",
    "check_writable",
    "in_memory_limit",
    "output_error",
    "sweep_partials",
    "write_bytes",
    "write_text",
]

PARTIAL_SUFFIX = ".partial"
# wall-clock start of this process (the module is imported with the library): a temporary
# file older than that cannot belong to a write of ours still in progress
_STARTED = time.time()
# and never sweep anything touched in the last minute, whoever wrote it
_SWEEP_GRACE_S = 60.0
# mkstemp's random part: 8 characters of [a-z0-9_]
_PARTIAL_RE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.partial$")
# what napari-mrepinn <= 0.1 left behind: "<name>.partial" next to the target
_LEGACY_RE = re.compile(r"^(?P<name>.+\.(?:nc|mat|pt|png|json|csv))\.partial$")
# free space to keep beyond the estimate (file-system metadata, the estimate's slack)
_SPACE_MARGIN_BYTES = 1 << 20


class MREOutputError(MREInputError):
    """An output that cannot be written (no folder, no permission, full disk...).

    A subclass of :class:`~napari_mrepinn.data.MREInputError`, so the CLI prints it as one
    line with exit status 2 and the GUI as one notification.
    """


# ---------------------------------------------------------------------- messages
_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or choose another folder",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.EROFS: "the folder is on a read-only file system; choose another folder",
    errno.ENOENT: "the folder does not exist; create it first",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the target is a folder; give a file name",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EFBIG: "the file is too large for this file system",
    errno.EIO: "the device reported an input/output error",
}
_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")


def output_error(path: str | os.PathLike, exc: BaseException) -> MREOutputError:
    """One clear :class:`MREOutputError` for a failed write of ``path``.

    Understands :class:`OSError` and the ``RuntimeError`` text of libhdf5, which carries the
    system's ``errno = N`` inside its message.
    """
    code = getattr(exc, "errno", None)
    if code is None:
        m = _ERRNO_IN_TEXT.search(str(exc))
        code = int(m.group(1)) if m else None
    advice = _ADVICE.get(code) if code is not None else None
    if advice is None:
        text = str(exc).strip()
        advice = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else "")
        advice = advice or type(exc).__name__
    return MREOutputError(
        f"{path}: could not be written: {advice}. Nothing was written there; an earlier "
        "file of that name is unchanged."
    )


def _mb(n: float) -> str:
    return f"{n / 1e6:.3g} MB"


# ---------------------------------------------------------------------- preflight
def check_writable(
    path: str | os.PathLike, *, need_bytes: int = 0, overwrite: bool = True
) -> Path:
    """Check, before long work starts, that ``path`` can be written.

    Parameters
    ----------
    path : str or PathLike
        The output file (or folder, for folder outputs) to be written later.
    need_bytes : int
        About how many bytes the output will take; the folder's file system must have that
        much free (plus 1 MB). 0 skips the space check.
    overwrite : bool
        Whether an existing ``path`` may be replaced.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    MREOutputError
        If the folder is missing, not writable or too full, or ``path`` exists and may
        not be replaced.
    """
    path = Path(path)
    folder = path.parent
    if not folder.exists():
        raise MREOutputError(f"{path}: the folder {folder} does not exist; create it first.")
    if not folder.is_dir():
        raise MREOutputError(f"{path}: {folder} is a file, not a folder.")
    if path.exists() and not overwrite:
        raise MREOutputError(f"{path}: exists; choose another name or allow overwriting.")
    # a real probe: os.access says yes to root on a read-only mount and ignores ACLs
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    except OSError as exc:
        raise output_error(path, exc) from None
    os.close(fd)
    _unlink_quietly(Path(probe))
    if need_bytes > 0:
        free = shutil.disk_usage(folder).free
        if free < need_bytes + _SPACE_MARGIN_BYTES:
            raise MREOutputError(
                f"{path}: the output needs about {_mb(need_bytes)} but only {_mb(free)} is "
                f"free in {folder}; free some space or choose another folder."
            )
    return path


def in_memory_limit() -> int:
    """Largest output (bytes) that is serialised in memory before it is written.

    A quarter of the memory available now, at most 2 GiB: an HDF5 image of that size costs
    one extra copy, which is cheaper than risking libhdf5 on a disk that fills up.
    """
    available = 8 << 30
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    return int(min(2 << 30, available // 4))


# ---------------------------------------------------------------------- atomic writes
def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _umask() -> int:
    # reading /proc avoids os.umask's set-and-restore race between threads
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(target: Path) -> int:
    """The mode the replaced file should have: the earlier file's, else 0666 minus umask
    (mkstemp creates 0600, which would hide results from the user's group)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # makes the rename itself durable; not possible (nor needed) on Windows
    with contextlib.suppress(OSError, AttributeError):
        _fsync_path(folder)


def _new_partial(target: Path) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX
        )
    except OSError as exc:
        raise output_error(target, exc) from None
    os.close(fd)
    return Path(tmp)


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` over ``target`` (atomically)."""
    os.chmod(tmp, _file_mode(target))
    if overwrite:
        os.replace(tmp, target)
        return
    # no overwrite: link() fails if the target appeared meanwhile (no check-then-replace race)
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise MREOutputError(
            f"{target}: exists; choose another name or allow overwriting."
        ) from None
    except OSError:
        if target.exists():  # a file system without hard links
            raise MREOutputError(
                f"{target}: exists; choose another name or allow overwriting."
            ) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path to write ``path`` through; it replaces ``path`` only on success.

    Use it for writers that want a file name (libraries that open the file themselves)::

        with atomic_path("result.nc") as tmp:
            dataset.to_netcdf(tmp)

    The temporary file exists (empty) when the block starts, in the target's folder. On
    normal exit it is fsync-ed and moved over ``path``; on any exception (``Ctrl-C``
    included) it is removed and ``path`` is left as it was. An :class:`OSError` becomes an
    :class:`MREOutputError`.
    """
    target = Path(path)
    if target.is_dir():
        raise MREOutputError(f"{target}: is a folder; give a file name.")
    if not overwrite and target.exists():
        raise MREOutputError(f"{target}: exists; choose another name or allow overwriting.")
    tmp = _new_partial(target)
    try:
        yield tmp
        _fsync_path(tmp)
        _commit(tmp, target, overwrite)
    except BaseException as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise output_error(target, exc) from None
        if isinstance(exc, RuntimeError) and _ERRNO_IN_TEXT.search(str(exc)):
            raise output_error(target, exc) from None  # libhdf5's wording of an OSError
        raise
    _fsync_dir(target.parent)
    sweep_partials(target.parent, name=target.name)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True, **kwargs: Any
) -> Iterator[IO[Any]]:
    """:func:`open` for writing, through a temporary file (see :func:`atomic_path`).

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``kwargs`` such as ``encoding`` and
    ``newline`` go to :func:`open`). The file is flushed and fsync-ed before it replaces
    ``path``.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes new files: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_bytes(path: str | os.PathLike, data: bytes | memoryview, *,
                overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` whole or not at all; returns ``path``."""
    with atomic_open(path, "wb", overwrite=overwrite) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
               overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` whole or not at all; returns ``path``."""
    return write_bytes(path, text.encode(encoding), overwrite=overwrite)


# ---------------------------------------------------------------------- folders
class FolderStage:
    """Files staged for :func:`atomic_folder`; write them with :meth:`write_bytes`."""

    def __init__(self, target: Path, staging: Path | None) -> None:
        self.target = target
        self._staging = staging  # a fresh temporary folder, or None: stage inside target
        self._files: dict[str, Path] = {}

    def write_bytes(self, name: str, data: bytes | memoryview) -> None:
        """Stage the file ``name`` (a plain name, no folders) with ``data``."""
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"atomic_folder stages plain file names, got {name!r}")
        if self._staging is not None:
            tmp = self._staging / name
            tmp.touch()
        else:
            tmp = _new_partial(self.target / name)
        self._files[name] = tmp
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    @property
    def names(self) -> list[str]:
        return list(self._files)

    def _discard(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        else:
            for tmp in self._files.values():
                _unlink_quietly(tmp)

    def _commit(self, stale: Iterable[str]) -> None:
        mode = 0o666 & ~_umask()
        if self._staging is not None:
            for tmp in self._files.values():
                os.chmod(tmp, mode)
            os.chmod(self._staging, 0o777 & ~_umask())
            try:
                # the whole folder appears at once, complete
                os.rename(self._staging, self.target)
                _fsync_dir(self.target.parent)
                return
            except OSError:
                if not self.target.is_dir():
                    raise
                # another writer created the folder meanwhile: replace file by file
            files = {n: _new_partial(self.target / n) for n in self._files}
            for name, tmp in files.items():
                os.replace(self._files[name], tmp)
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging, self._files = None, files
        # every file is written and synced: the replaces below take microseconds
        for name, tmp in self._files.items():
            os.chmod(tmp, _file_mode(self.target / name))
            os.replace(tmp, self.target / name)
        for name in stale:
            if name not in self._files:
                _unlink_quietly(self.target / name)
        _fsync_dir(self.target)


@contextlib.contextmanager
def atomic_folder(
    folder: str | os.PathLike, *, replaces: Iterable[str] = ()
) -> Iterator[FolderStage]:
    """Write a folder of files, each whole; a new folder appears complete or not at all.

    A new ``folder`` is built as a temporary sibling folder and renamed into place. Into an
    existing folder (which may hold the user's other files) every file is first written
    and synced under a temporary name, then all are moved over their targets in one quick
    pass; files of ``replaces`` that this write does not produce are removed then, so
    a stale part from an earlier write cannot be read together with the new ones.
    On any failure (``Ctrl-C`` included) nothing in ``folder`` changes.

    Yields
    ------
    FolderStage
        Call ``stage.write_bytes(name, data)`` for each file.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise MREOutputError(f"{target}: is a file; give a folder name.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = None
        if not target.exists():
            staging = Path(
                tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.",
                                 suffix=PARTIAL_SUFFIX)
            )
    except OSError as exc:
        raise output_error(target, exc) from None
    stage = FolderStage(target, staging)
    try:
        yield stage
        stage._commit(replaces)
    except BaseException as exc:
        stage._discard()
        if isinstance(exc, OSError):
            raise output_error(target, exc) from None
        raise
    sweep_partials(target.parent, name=target.name)
    sweep_partials(target)


# ---------------------------------------------------------------------- clean-up
def sweep_partials(
    folder: str | os.PathLike, *, name: str | None = None, older_than: float | None = None
) -> list[Path]:
    """Remove temporary files (and staging folders) left in ``folder`` by killed writes.

    Only names of our own pattern are touched: ``.<name>.<8 random>.partial`` (this module)
    and ``<name>.<ext>.partial`` (napari-mrepinn 0.1), and only when they were last
    modified before ``older_than`` (default: the start of this process, and at least a
    minute ago), so a write in progress in another process is never disturbed.

    Parameters
    ----------
    folder : str or PathLike
        Folder to clean (not recursive).
    name : str, optional
        Only the temporary files of this target name.
    older_than : float, optional
        POSIX time; only files modified before it are removed.

    Returns
    -------
    list of Path
        What was removed.
    """
    folder = Path(folder)
    cutoff = min(_STARTED, time.time() - _SWEEP_GRACE_S) if older_than is None else older_than
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PARTIAL_RE.match(entry.name) or _LEGACY_RE.match(entry.name)
        if m is None or (name is not None and m.group("name") != name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_mtime >= cutoff or stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
