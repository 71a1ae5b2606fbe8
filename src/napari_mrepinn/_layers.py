"""MRE variables as napari layers: one place for axis order, scale, colormaps and limits.

Used by the reader, the sample data and the widgets.

Conventions
-----------
- MRE dims are ``(frequency, x, y, z, component)`` (SI units); napari arrays are
  ``(..., row, col)``. Layers are therefore transposed to
  ``(frequency?, sequence?, component?, z?, y, x)``: x runs horizontally, y vertically,
  the other axes become sliders.
- napari right-aligns the axes of layers with different ndim, so a layer that lacks a
  leading axis the others have (``mre`` with a frequency axis but no component axis, say)
  is broadcast (a read-only view, no copy) over the missing leading axes; otherwise its
  frequency axis would share the slider of the wave's component axis.
- ``scale`` is the voxel spacing in mm (1 for non-spatial axes), ``translate`` the first
  voxel centre in mm; ``axis_labels`` name the dims.
- Every layer's ``metadata["mre_example"]`` is the :class:`MREExample` it shows and
  ``metadata["mre_variable"]`` the variable name, so widgets and the writer get the data
  back with :func:`example_from_layers`.
- Moduli are shown as ``|G*|`` in kPa with fixed contrast limits; waves as their real part
  with symmetric limits around 0; results are NaN (transparent) outside the mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .data import MREExample, MREInputError
from .metrics import truth_for

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "DEFAULT_MODULUS_MAX_KPA",
    "LAYER_STYLES",
    "LIVE_RESULTS",
    "RESULT_NAMES",
    "display_limits",
    "empty_results",
    "example_from_layers",
    "example_layers",
    "example_to_layer_data",
    "put_layer",
    "result_geometry",
    "result_layer_data",
    "result_layer_tuples",
    "update_result_layers",
    "variable_layer_data",
]

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: Upper contrast limit of |G*| maps (kPa) when the example has no ground truth.
DEFAULT_MODULUS_MAX_KPA = 12.0

# The one table of display choices. Keys:
#   type      napari layer type
#   value     how the (complex) variable becomes a real image:
#             "real" part, "abs" |.|, "kpa" |.|/1000, "kpa_diff" (|pred|-|true|)/1000,
#             "percent" (a fraction × 100), "labels"
#   limits    "percentile" (0.5-99.5 %), "wave" (± 99.5 % of |Re wave|, shared by wave,
#             wave_pred, wave_diff), "modulus" (0..max, fixed, shared by mre/mu_*),
#             "modulus_diff" (± max/2), "residual" (0..99 % inside the mask)
#   masked    NaN outside mre_mask (NaN renders transparent, so the anatomy stays visible)
#   visible   shown when first added
LAYER_STYLES: dict[str, dict[str, Any]] = {
    "anat": dict(type="image", value="real", colormap="gray", blending="translucent",
                 opacity=1.0, limits="percentile", masked=False, visible=True, unit=""),
    "mre_mask": dict(type="labels", value="labels", blending="translucent", opacity=0.4,
                     masked=False, visible=True, unit=""),
    "wave": dict(type="image", value="real", colormap="PiYG", blending="translucent",
                 opacity=0.8, limits="wave", masked=False, visible=True, unit="a.u."),
    "mre": dict(type="image", value="kpa", colormap="magma", blending="translucent",
                opacity=0.7, limits="modulus", masked=False, visible=False, unit="kPa"),
    "wave_pred": dict(type="image", value="real", colormap="PiYG", blending="translucent",
                      opacity=0.8, limits="wave", masked=True, visible=False, unit="a.u."),
    "mu_pred": dict(type="image", value="kpa", colormap="magma", blending="translucent",
                    opacity=0.7, limits="modulus", masked=True, visible=True, unit="kPa"),
    "pde_residual": dict(type="image", value="abs", colormap="inferno", blending="additive",
                         opacity=0.8, limits="residual", masked=True, visible=False, unit=""),
    "mu_ahi": dict(type="image", value="kpa", colormap="magma", blending="translucent",
                   opacity=0.7, limits="modulus", masked=True, visible=False, unit="kPa"),
    "mu_mdev": dict(type="image", value="kpa", colormap="magma", blending="translucent",
                    opacity=0.7, limits="modulus", masked=True, visible=False, unit="kPa"),
    "kmdev_speed": dict(type="image", value="real", colormap="viridis",
                        blending="translucent", opacity=0.7, limits="percentile", masked=True,
                        visible=False, unit="m/s"),
    "mu_pred_f": dict(type="image", value="kpa", colormap="magma", blending="translucent",
                      opacity=0.7, limits="modulus", masked=True, visible=False, unit="kPa"),
    "mu_alpha": dict(type="image", value="real", colormap="viridis", blending="translucent",
                     opacity=0.7, limits="percentile", masked=True, visible=False, unit=""),
    "mu_spread": dict(type="image", value="percent", colormap="viridis",
                      blending="translucent", opacity=0.7, limits="percentile",
                      masked=True, visible=False, unit="%"),
    "mu_uncertainty": dict(type="image", value="percent", colormap="viridis",
                           blending="translucent", opacity=0.7, limits="percentile",
                           masked=True, visible=False, unit="%"),
    "wave_diff": dict(type="image", value="real", colormap="bwr", blending="translucent",
                      opacity=0.8, limits="wave", masked=True, visible=False, unit="a.u."),
    "mu_diff": dict(type="image", value="kpa_diff", colormap="bwr", blending="translucent",
                    opacity=0.8, limits="modulus_diff", masked=True, visible=False, unit="kPa"),
}  # fmt: skip

#: Result layers, in the order they are added (the later, the higher in the stack).
RESULT_NAMES = (
    "kmdev_speed", "mu_ahi", "mu_mdev", "mu_alpha", "mu_spread", "mu_uncertainty", "mu_pred_f",
    "pde_residual", "wave_pred", "wave_diff", "mu_diff", "mu_pred",
)
#: The results a training run shows as it goes (:func:`empty_results` makes their
#: placeholders before the first prediction).
LIVE_RESULTS = ("wave_pred", "mu_pred", "pde_residual")
_INPUT_NAMES = ("anat", "wave", "mre", "mre_mask")
_LEADING = ("frequency", "sequence", "component")  # napari order of the non-spatial axes
_SPATIAL_NAPARI = ("z", "y", "x")


# ====================================================================== limits
def _robust_max(values: np.ndarray, q: float = 99.5) -> float:
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    m = float(np.percentile(v, q))
    if m <= 0:
        m = float(v.max())
    return m if m > 0 else 1.0


def display_limits(example: MREExample) -> dict[str, tuple[float, float]]:
    """Contrast limits shared by the layers of one example (the ``limits`` kinds).

    The modulus range is fixed per example so that maps compare across training steps
    and methods: 0 to 1.1 × the 99.5th percentile of the ground truth ``|mre|`` (inside
    ``mre_mask`` when there is one), rounded
    up to a whole kPa, or 0–12 kPa without ground truth.
    """
    ds = example.ds
    if "mre" in ds:
        mre = abs(ds["mre"])
        if "mre_mask" in ds:
            # the range that matters is the region of interest (not bone or air around it)
            mre = mre.where(ds["mre_mask"] > 0)
        hi = math.ceil(1.1 * _robust_max(mre.values) / 1e3)
    else:
        hi = DEFAULT_MODULUS_MAX_KPA
    hi = float(max(hi, 1.0))
    wave_src = ds["wave"] if "wave" in ds else ds.get("wave_pred")
    a = _robust_max(np.real(wave_src.values)) if wave_src is not None else 1.0
    return {
        "wave": (-a, a),
        "modulus": (0.0, hi),
        "modulus_diff": (-hi / 2, hi / 2),
    }


# ====================================================================== geometry
def _leading_dims(*examples: MREExample | None) -> tuple[str, ...]:
    present = set()
    for ex in examples:
        if ex is None:
            continue
        for name in (*_INPUT_NAMES, *RESULT_NAMES):
            if name in ex.ds:
                present.update(ex.ds[name].dims)
    return tuple(d for d in _LEADING if d in present)


def _geometry(example: MREExample, spatial: tuple[str, ...]) -> tuple[list[float], list[float]]:
    """Scale (mm per voxel) and translate (mm) of the spatial napari axes."""
    sp = example.spacing
    inplane = float(np.mean([sp["x"], sp["y"]]))
    scale, translate = [], []
    for d in spatial:
        s = sp.get(d, float("nan"))
        # a single z slice has no spacing of its own; any positive value displays it
        scale.append((s if np.isfinite(s) else inplane) * 1e3)
        translate.append(float(example.ds[d].values[0]) * 1e3)
    return scale, translate


def _to_napari(
    var: xr.DataArray, leading: tuple[str, ...], sizes: Mapping[str, int]
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Transpose to napari order and broadcast over missing leading axes.

    Returns the (possibly broadcast, read-only) array, its dims, and the array before
    broadcasting (for statistics that should not count repeated values).
    """
    own = [d for d in _LEADING if d in var.dims]
    spatial = tuple(d for d in _SPATIAL_NAPARI if d in var.dims)
    arr = np.asarray(var.transpose(*own, *spatial).values)
    if not own:
        return arr, spatial, arr
    # every layer's leading axes are a suffix of the viewer's list, so right-aligned
    # sliders mean the same dim in every layer
    suffix = leading[leading.index(own[0]) :] if own[0] in leading else ()
    lead = tuple(d for d in _LEADING if d in set(suffix) | set(own))
    full = arr
    for i, d in enumerate(lead):
        if d not in own:
            full = np.expand_dims(full, i)
    target = tuple(var.sizes[d] if d in own else int(sizes.get(d, 1)) for d in lead)
    target += arr.shape[len(own) :]
    if target != full.shape:
        full = np.broadcast_to(full, target)  # a view: no memory for the repeats
    return full, lead + spatial, arr


def _mask_values(example: MREExample, var: xr.DataArray) -> xr.DataArray:
    if "mre_mask" not in example.ds:
        return var
    mask = example.ds["mre_mask"] > 0
    return var.where(mask)


def _value(example: MREExample, name: str, var: xr.DataArray, how: str) -> xr.DataArray:
    if how == "real":
        return xr.apply_ufunc(np.real, var)
    if how == "abs":
        return abs(var)
    if how == "kpa":
        return abs(var) / 1e3
    if how == "percent":  # a fraction shown in %
        return xr.apply_ufunc(np.real, var) * 100
    if how == "kpa_diff":
        return xr.apply_ufunc(np.real, var) / 1e3
    if how == "labels":
        return var
    raise ValueError(f"unknown display value {how!r} for {name}")


# ====================================================================== layer tuples
def variable_layer_data(
    example: MREExample,
    name: str,
    var: xr.DataArray | None = None,
    *,
    leading: tuple[str, ...] | None = None,
    limits: Mapping[str, tuple[float, float]] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> LayerDataTuple:
    """The layer data tuple of one variable of ``example``.

    Parameters
    ----------
    example : MREExample
        The example the variable belongs to (geometry, mask and metadata).
    name : str
        Variable name, a key of :data:`LAYER_STYLES`; also the layer name.
    var : xarray.DataArray, optional
        The values to show instead of ``example.ds[name]`` (used for derived maps).
    leading : tuple of str, optional
        The leading (slider) dims of the viewer, in napari order; default: the example's.
    limits : mapping, optional
        Shared contrast limits (:func:`display_limits`); default: the example's.
    sizes : mapping, optional
        Sizes of the leading dims to broadcast over; default: the example's.
    """
    style = LAYER_STYLES[name]
    if var is None:
        var = example.ds[name]
    leading = _leading_dims(example) if leading is None else leading
    limits = display_limits(example) if limits is None else limits
    shown = _value(example, name, var, style["value"])
    if style["masked"]:
        shown = _mask_values(example, shown)
    sizes = dict(example.ds.sizes) if sizes is None else sizes
    # cast before broadcasting, so that the repeats stay a view
    shown = shown.astype(np.int32 if style["type"] == "labels" else np.float32)
    data, dims, unbroadcast = _to_napari(shown, leading, sizes)
    spatial = tuple(d for d in dims if d in _SPATIAL_NAPARI)
    scale, translate = _geometry(example, spatial)
    n_lead = len(dims) - len(spatial)
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": [1.0] * n_lead + scale,
        "translate": [0.0] * n_lead + translate,
        "axis_labels": list(dims),
        # napari's default unit for index axes is the pixel; spatial axes are in mm
        "units": ["pixel"] * n_lead + ["mm"] * len(spatial),
        "blending": style["blending"],
        "opacity": style["opacity"],
        "visible": style["visible"],
        "metadata": {
            "mre_example": example,
            "mre_variable": name,
            "unit": style["unit"],
            "display": style["value"],
            "frequencies_hz": example.frequencies.tolist(),
        },
    }
    if style["type"] == "labels":
        return data, kwargs, "labels"
    kwargs["colormap"] = style["colormap"]
    kwargs["contrast_limits"] = _limits(style["limits"], unbroadcast, limits)
    return data, kwargs, "image"


def _limits(
    kind: str, data: np.ndarray, shared: Mapping[str, tuple[float, float]]
) -> tuple[float, float]:
    if kind in shared:
        return tuple(float(v) for v in shared[kind])  # type: ignore[return-value]
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    if kind == "residual":
        hi = float(np.percentile(finite, 99))
        return (0.0, hi if hi > 0 else 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


def example_to_layer_data(example: MREExample) -> list[LayerDataTuple]:
    """Layer data tuples for the inputs (and any results) of an example.

    Order (bottom to top): ``anat``, ``wave``, ``mre``, results, ``mre_mask``. An ``anat``
    with several sequences keeps them on a ``sequence`` slider.
    """
    leading = _leading_dims(example)
    limits = display_limits(example)
    out = []
    for name in ("anat", "wave", "mre"):
        if name in example.ds:
            out.append(variable_layer_data(example, name, leading=leading, limits=limits))
    if "anat" not in example.ds:
        # without anatomy the wave is the background: show it opaque
        for _, kwargs, _ in out:
            if kwargs["name"] == "wave":
                kwargs["opacity"] = 1.0
    out.extend(result_layer_data(example, leading=leading, limits=limits))
    if "mre_mask" in example.ds:
        out.append(variable_layer_data(example, "mre_mask", leading=leading, limits=limits))
    return out


def _at_frequency(var: xr.DataArray, frequency: float | None) -> xr.DataArray:
    if "frequency" not in var.dims:
        return var
    if frequency is None:
        raise MREInputError(
            f"'{var.name}' has several frequencies but the prediction has one; "
            "select the frequency first."
        )
    i = int(np.argmin(np.abs(var["frequency"].values - frequency)))
    return var.isel(frequency=i, drop=True)


def _derived(example: MREExample) -> dict[str, xr.DataArray]:
    """``wave_diff`` (prediction − truth) and ``mu_diff`` (|G*| pred − true, kPa)."""
    ds = example.ds
    f = ds.attrs.get("frequency")
    f = float(f) if f is not None else None
    out: dict[str, xr.DataArray] = {}
    if "wave_pred" in ds and "wave" in ds:
        truth = _truth(ds["wave"], ds["wave_pred"], f)
        if truth.shape == ds["wave_pred"].transpose(*truth.dims).shape:
            out["wave_diff"] = ds["wave_pred"] - truth
    if "mu_pred" in ds and "mre" in ds:
        truth = _truth(ds["mre"], ds["mu_pred"], f)
        if set(truth.dims) == set(ds["mu_pred"].dims):
            out["mu_diff"] = abs(ds["mu_pred"]) - abs(truth)
    return out


def _truth(truth: xr.DataArray, pred: xr.DataArray, frequency: float | None) -> xr.DataArray:
    """The truth on the prediction's axes: all frequencies for a multi-frequency
    prediction, the prediction's own frequency (a joint fit's reference frequency), else
    the example's."""
    if "frequency" in pred.dims:
        return truth
    if "frequency" in pred.attrs:
        return truth_for(pred, truth)
    return _at_frequency(truth, frequency)


def result_layer_data(
    example: MREExample,
    *,
    leading: tuple[str, ...] | None = None,
    limits: Mapping[str, tuple[float, float]] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> list[LayerDataTuple]:
    """Layer data tuples of the result variables present in ``example`` (and the diffs)."""
    leading = _leading_dims(example) if leading is None else leading
    limits = display_limits(example) if limits is None else limits
    derived = _derived(example)
    out = []
    for name in RESULT_NAMES:
        var = derived.get(name, example.ds.get(name))
        if var is not None:
            out.append(
                variable_layer_data(example, name, var, leading=leading, limits=limits, sizes=sizes)
            )
    return out


# ====================================================================== viewer helpers
def example_from_layers(
    source: napari.Viewer | napari.layers.Layer | Iterable[Any],
) -> MREExample | None:
    """The :class:`MREExample` behind a viewer's (or a layer's) MRE layers.

    Looks at the selected layer first, then the ``wave`` layer, then any layer whose
    ``metadata["mre_example"]`` is set. Of a viewer, the input layers come before the
    result layers (which may carry a run's result example, not the one opened): the
    results a run copies back, and the geometry its layers share, must not depend on
    which layer happens to be selected. Returns None when there is none.
    """
    layers: list[Any]
    if hasattr(source, "layers"):
        sel = list(getattr(source.layers, "selection", []) or [])
        ordered = sel + [lyr for lyr in source.layers if lyr.name == "wave"] + list(source.layers)
        layers = sorted(ordered, key=_is_result_layer)  # stable: the order above within each
    elif hasattr(source, "metadata"):
        layers = [source]
    else:
        layers = list(source)
    for layer in layers:
        ex = _meta_example(getattr(layer, "metadata", None))
        if ex is not None:
            return ex
    return None


def _is_result_layer(layer: Any) -> bool:
    meta = getattr(layer, "metadata", None)
    return isinstance(meta, Mapping) and meta.get("mre_variable") in RESULT_NAMES


def _meta_example(meta: Any) -> MREExample | None:
    if isinstance(meta, Mapping):
        ex = meta.get("mre_example")
        if isinstance(ex, MREExample):
            return ex
    return None


def update_result_layers(
    viewer: napari.Viewer,
    results: MREExample | Mapping[str, Any],
    *,
    example: MREExample | None = None,
    names: Iterable[str] | None = None,
) -> list[Any]:
    """Add the result layers, or update them in place when they already exist.

    Layers are named exactly by the variable names (``mu_pred``, ``wave_pred``,
    ``pde_residual``, ``mu_ahi``, ``wave_diff``, ``mu_diff``); a second call replaces
    ``layer.data`` (no duplicate layers) and keeps the user's colormap and opacity;
    fixed contrast limits stay fixed, the residual's are refreshed.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer to update.
    results : MREExample or mapping
        An example holding result variables (MRE dims, complex, SI units), or a mapping
        of result name to ``xarray.DataArray``/array on the grid of ``example``.
    example : MREExample, optional
        The example the results belong to when ``results`` is a mapping; default: the
        one behind the viewer's layers.
    names : iterable of str, optional
        Only these result layers (default: all present).

    Returns
    -------
    list of napari.layers.Layer
        The added or updated layers.
    """
    wanted = set(names) if names is not None else None
    return [
        put_layer(viewer, data, kwargs, layer_type)
        for data, kwargs, layer_type in result_layer_tuples(viewer, results, example=example)
        if wanted is None or kwargs["name"] in wanted
    ]


def result_layer_tuples(
    viewer: napari.Viewer,
    results: MREExample | Mapping[str, Any],
    *,
    example: MREExample | None = None,
) -> list[LayerDataTuple]:
    """The layer data tuples :func:`update_result_layers` shows (same arguments).

    The results are also copied into the example behind the viewer's input layers when
    they share its grid (so that saving the inputs saves the results too).
    """
    base = example_from_layers(viewer)
    if isinstance(results, MREExample):
        target = results
    else:
        target = example if example is not None else base
        if target is None:
            raise MREInputError(
                "No MRE example in the viewer; open MRE data (or a sample) before adding results."
            )
        target = _with_results(target, results)
    if base is not None and base is not target:
        _copy_results(target, base)
    return result_layer_data(target, **result_geometry(base, target))


def result_geometry(base: MREExample | None, target: MREExample) -> dict[str, Any]:
    """The shared display geometry of the results of ``target`` shown over the layers of
    ``base`` (the viewer's example): keyword arguments of :func:`result_layer_data` and
    :func:`variable_layer_data` (``leading``, ``sizes``, ``limits``).

    Plain tuples and dicts: a training worker computes its layer data with them off the
    GUI thread.
    """
    return {
        "leading": _leading_dims(base, target),
        "sizes": {**(dict(base.ds.sizes) if base is not None else {}), **dict(target.ds.sizes)},
        "limits": display_limits(target if "mre" in target.ds or base is None else base),
    }


def put_layer(
    viewer: napari.Viewer, data: Any, kwargs: dict[str, Any], layer_type: str, *,
    live: bool = False,
) -> Any:
    """Show one layer data tuple: add the layer, or update the one of that name.

    A layer on another grid (a new example) is replaced at the same place in the stack.
    ``live`` (a refresh during training): only the data of a *visible* layer is replaced
    (and the residual's contrast limits); setting scale and translate would make napari
    recompute every extent, and a hidden layer catches up at the end of the run.
    """
    name = kwargs["name"]
    if name not in viewer.layers:
        return _insert(viewer, _make_layer(data, kwargs, layer_type), _place(viewer, name))
    layer = viewer.layers[name]
    if layer.data.shape != np.shape(data) or layer.ndim != np.ndim(data):
        index = viewer.layers.index(layer)
        viewer.layers.remove(layer)
        return _insert(viewer, _make_layer(data, kwargs, layer_type), index)
    if live and not layer.visible:
        return layer
    layer.data = data
    if name == "pde_residual" and "contrast_limits" in kwargs:
        layer.contrast_limits = kwargs["contrast_limits"]
    if live:
        return layer
    layer.metadata = kwargs["metadata"]
    # setting scale/translate makes napari recompute extents: only on change
    if not np.allclose(layer.scale, kwargs["scale"]):
        layer.scale = kwargs["scale"]
    if not np.allclose(layer.translate, kwargs["translate"]):
        layer.translate = kwargs["translate"]
    return layer


def example_layers(viewer: napari.Viewer | None) -> list[Any]:
    """Input layers of ``viewer`` that carry an :class:`MREExample`, one per example.

    Result layers (``mu_pred``...) also carry an example, but training on them would make no
    sense, so they are skipped; of the layers showing one example, ``wave`` is preferred.
    """
    if viewer is None:
        return []
    chosen: dict[int, Any] = {}
    for layer in viewer.layers:
        ex = _meta_example(layer.metadata)
        if ex is None or layer.metadata.get("mre_variable") in RESULT_NAMES:
            continue
        key = id(ex)
        if key not in chosen or layer.metadata.get("mre_variable") == "wave":
            chosen[key] = layer
    return list(chosen.values())


def _make_layer(data: Any, kwargs: dict[str, Any], layer_type: str) -> Any:
    from napari.layers import Image, Labels

    cls = Labels if layer_type == "labels" else Image
    return cls(data, **kwargs)


def _place(viewer: napari.Viewer, name: str) -> int:
    """Where a new result layer goes in the stack: below the result layers that come after
    it in :data:`RESULT_NAMES` and below the mask outline (kept on top so that the region
    stays visible); on top otherwise."""
    later = RESULT_NAMES[RESULT_NAMES.index(name) + 1 :] if name in RESULT_NAMES else ()
    above = [i for i, other in enumerate(viewer.layers) if other.name in (*later, "mre_mask")]
    return min(above, default=len(viewer.layers))


def _insert(viewer: napari.Viewer, layer: Any, index: int) -> Any:
    """Insert ``layer`` at ``index`` of the layer list: at its place directly, because
    appending and then moving it costs a second round of napari's reorder events."""
    viewer.layers.insert(index, layer)
    return layer


def _with_results(example: MREExample, results: Mapping[str, Any]) -> MREExample:
    for name, value in results.items():
        if name not in LAYER_STYLES:
            raise MREInputError(f"unknown result variable {name!r}.")
        if isinstance(value, xr.DataArray):
            example.ds[name] = value
        else:
            arr = np.asarray(value)
            ref = "wave" if name in ("wave_pred", "pde_residual") else None
            dims = (
                example.ds["wave"].dims
                if ref and arr.shape == example.ds["wave"].shape
                else example.spatial_dims
            )
            if ref and "frequency" in dims and arr.ndim == len(dims) - 1:
                dims = tuple(d for d in dims if d != "frequency")
            if arr.shape != tuple(example.ds.sizes[d] for d in dims):
                raise MREInputError(
                    f"result {name!r} has shape {arr.shape}; expected "
                    f"{tuple(example.ds.sizes[d] for d in dims)} ({', '.join(dims)})."
                )
            example.ds[name] = (dims, arr)
    return example


def _copy_results(src: MREExample, dst: MREExample) -> bool:
    """Copy result variables into the viewer's example when both share the grid (True
    when they did)."""
    for d in dst.spatial_dims:
        if d not in src.ds.coords or src.ds.sizes.get(d) != dst.ds.sizes.get(d):
            return False
        if not np.allclose(src.ds[d].values, dst.ds[d].values):
            return False
    for name in RESULT_NAMES:
        if name in src.ds and name not in ("wave_diff", "mu_diff"):
            dst.ds[name] = src.ds[name]
    return True


def empty_results(example: MREExample, *, ahi: bool = False) -> MREExample:
    """A copy of ``example`` with NaN results of the shapes a training run
    fills (``wave_pred`` and ``pde_residual`` like ``wave``, ``mu_pred`` and, with ``ahi``
    when the example has none yet, ``mu_ahi`` on the grid).

    The training dock creates its result layers from these before the first prediction
    arrives, so that a live refresh only swaps data in (NaN renders transparent).
    """
    out = example.copy()
    wave = out.ds["wave"]
    shape = tuple(out.ds.sizes[d] for d in out.spatial_dims)
    # the LIVE_RESULTS
    out.ds["wave_pred"] = xr.full_like(wave, np.nan)
    out.ds["pde_residual"] = xr.full_like(wave, np.nan, dtype=float)
    out.ds["mu_pred"] = (out.spatial_dims, np.full(shape, np.nan, dtype=complex))
    if ahi and "mu_ahi" not in out.ds:
        out.ds["mu_ahi"] = (out.spatial_dims, np.full(shape, np.nan, dtype=complex))
    if len(out.frequencies) > 1:  # a joint fit's modulus stands for its reference frequency
        from .multifreq import reference_frequency

        f_ref = reference_frequency(out.frequencies)
        for name in ("mu_pred", "mu_ahi"):
            if name in out.ds:
                out.ds[name].attrs.setdefault("frequency", f_ref)
    return out
