"""napari writer: the MRE example behind the layers, with its results, as NetCDF.

The layers only hold display versions (real parts, kPa, NaN outside the mask), so the
writer saves the :class:`~napari_mrepinn.data.MREExample` found in the layers'
``metadata["mre_example"]``, with the result variables of any other example among the
layers merged in when they share its grid, and the record of the run that made them (the
``mrepinn_*`` attrs of :func:`napari_mrepinn.recipe.result_attrs`: configuration, settings
such as an ensemble's seeds, history) when it has one. The file is written by
:meth:`MREExample.save` through :mod:`napari_mrepinn.outputs`: to a unique temporary name,
then moved into place, so an interrupted or failed save (full disk, no permission) never
leaves a half-written file nor destroys an earlier one, and the error is one notification.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._layers import RESULT_NAMES, _copy_results, _meta_example
from .data import MREExample, MREInputError

__all__ = ["write_mre_example"]


def _examples(layer_data: Sequence[tuple[Any, ...]]) -> list[MREExample]:
    seen: list[MREExample] = []
    for item in layer_data:
        meta = item[1] if len(item) > 1 else {}
        ex = _meta_example(meta.get("metadata") if isinstance(meta, dict) else None)
        if ex is not None and all(ex is not s for s in seen):
            seen.append(ex)
    return seen


def _copy_run_record(src: MREExample, dst: MREExample) -> None:
    """The ``mrepinn_*`` attrs of the run that made the results of ``src`` replace those of
    ``dst`` (whose results they replaced); results without a record leave ``dst``'s."""
    if "mrepinn_config_json" not in src.ds.attrs:
        return
    for key in [k for k in dst.ds.attrs if k.startswith("mrepinn_")]:
        del dst.ds.attrs[key]
    dst.ds.attrs.update({k: v for k, v in src.ds.attrs.items() if k.startswith("mrepinn_")})


def write_mre_example(path: str | os.PathLike, layer_data: Sequence[tuple[Any, ...]]) -> list[str]:
    """Write the MRE example (inputs and results) behind ``layer_data`` to a ``.nc`` file.

    Parameters
    ----------
    path : str or PathLike
        Target file; ``.nc`` is appended when missing.
    layer_data : list of (data, meta, layer_type)
        napari's multi-layer writer argument.

    Returns
    -------
    list of str
        The path written, or ``[]`` (with an error notification) when none of the layers
        comes from an MRE example.
    """
    from napari.utils.notifications import show_error

    examples = _examples(layer_data)
    if not examples:
        show_error(
            "Save as MRE example (.nc): none of the selected layers comes from an MRE "
            "example; select the layers opened from MRE data or a sample (e.g. 'wave')."
        )
        return []
    sources = {ex.source for ex in examples if ex.source is not None}
    if len(sources) > 1:
        show_error(
            "Save as MRE example (.nc): the selected layers come from several MRE examples "
            f"({', '.join(sorted(sources))}); select the layers of one example."
        )
        return []
    # the example with the most inputs is the base (results examples may be partial)
    base = max(examples, key=lambda ex: sum(n in ex for n in ("wave", "mre", "anat", "mre_mask")))
    out = base.copy()
    for other in examples:
        if other is not base and any(n in other for n in RESULT_NAMES):
            if _copy_results(other, out):
                _copy_run_record(other, out)
    target = Path(path)
    if not target.name.lower().endswith(".nc"):
        target = target.with_name(target.name + ".nc")
    try:
        out.save(target)
    except MREInputError as exc:
        show_error(str(exc))
        return []
    except OSError as exc:
        show_error(f"{target}: could not write the file ({exc}).")
        return []
    return [str(target)]
