"""napari reader: MRE examples from ``.nc``, ``.mat`` and NIfTI folders.

Which paths are claimed
-----------------------
Those that a reader of :data:`napari_mrepinn.io.READERS` claims (the one registry of input
formats): ``*.nc`` and ``*.mat`` always (a malformed file is reported by the reader
function); a folder, or a ``*.nii[.gz]``/``*.json`` file, only when the folder holds a
``wave*.nii[.gz]`` file. A foreign NIfTI file or folder gets ``None`` so that napari's
own reader (or another plugin) can open it.

How errors reach the user
-------------------------
``napari_get_reader`` never raises (npe2's contract). The reader function raises
:class:`~napari_mrepinn.data.MREInputError` with one message naming the file and the
problem (checked with napari 0.9.2):

- ``viewer.open(path, plugin="napari-mrepinn")`` in a script raises our MREInputError
  unchanged; no layer is added.
- Drag-and-drop and File › Open call napari with ``plugin=None``. For ``.nc``/``.mat``
  (our reader only) napari wraps the error in a ``ReaderPluginError`` whose text ends
  with ``MREInputError: <our message>``; for a folder or NIfTI file (napari's builtins
  also claim those) napari first asks which reader to use, and after "MRE-PINN" the
  MREInputError comes through unchanged. Either way the exception reaches napari's Qt
  exception hook, which shows it as an error notification (a toast with the message and
  a "View Traceback" button), not a traceback dialog, and the viewer is left as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._layers import LayerDataTuple, example_to_layer_data
from .io import find_reader, load_example

__all__ = ["napari_get_reader", "read_mre"]

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def _single_path(path: PathOrPaths) -> Path | None:
    if isinstance(path, str | os.PathLike):
        return Path(path)
    paths = list(path)
    # a stack of several MRE files has no meaning: one example per path
    return Path(paths[0]) if len(paths) == 1 else None


def napari_get_reader(path: PathOrPaths) -> Callable[..., list[LayerDataTuple]] | None:
    """Return :func:`read_mre` if ``path`` looks like MRE data, else None.

    Parameters
    ----------
    path : str, PathLike or list of them
        What the user opened; a list must hold exactly one path.

    Returns
    -------
    callable or None
        The reader function, or None for paths this plugin does not read.
    """
    try:
        p = _single_path(path)
        return read_mre if p is not None and find_reader(p) is not None else None
    except (OSError, TypeError, ValueError):
        # npe2: get_reader must not raise; an unreadable path is simply not ours
        return None


def read_mre(path: PathOrPaths, **_: Any) -> list[LayerDataTuple]:
    """Read an MRE example into layer data tuples.

    Raises
    ------
    MREInputError
        If the data are malformed; napari shows the message to the user.
    """
    p = _single_path(path)
    if p is None:
        from .data import MREInputError

        raise MREInputError("open one MRE file or folder at a time (got several paths).")
    example = load_example(p)
    return example_to_layer_data(example)
