"""The training dock's controls, made from the option table of :mod:`napari_mrepinn.config`.

One control per :func:`~napari_mrepinn.config.options` row with ``widget=True`` (a spin
box, combo box or check box from the option's type, limits, choices and label; its
tooltip is the option's help and unit) and one weight spin box per loss term of
:data:`~napari_mrepinn.config.LOSS_TERMS`. :func:`read_config` turns the controls back
into a :class:`~napari_mrepinn.config.TrainingConfig` and :func:`set_controls` sets them
from one (a loaded checkpoint's). A new ``TrainingConfig`` field with ``widget=True`` shows
up in the dock without touching this module.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox
from magicgui.widgets.bases import ValueWidget

from ..config import LOSS_TERMS, LossWeights, Option, TrainingConfig, options

__all__ = [
    "device_choices",
    "make_controls",
    "read_config",
    "set_controls",
    "warmup_note",
    "weight_name",
]

#: the spin boxes' range where an option sets no limit
_INT_MAX = 2**31 - 1
_FLOAT_MAX = 1e12
#: decimals of float spin boxes (more are added when a value needs them)
_DECIMALS = 6


def device_choices(*_: Any) -> list[str]:
    """The devices :func:`~napari_mrepinn.config.resolve_device` accepts on this machine:
    ``auto``, ``cpu`` and one ``cuda:N`` per GPU PyTorch sees."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["auto", "cpu", *(f"cuda:{i}" for i in range(n))]


#: options whose choices depend on the machine (looked up when the combo box refreshes)
_DYNAMIC_CHOICES: dict[str, Callable[..., list[str]]] = {"device": device_choices}


def weight_name(term: str) -> str:
    """The control name of a loss term's weight (``pde`` → ``pde_weight``)."""
    return f"{term}_weight"


def _nullable(name: str) -> bool:
    """Whether the config field ``name`` accepts None (its annotation says ``| None``)."""
    field = {f.name: f for f in dataclasses.fields(TrainingConfig)}[name]
    return "None" in str(field.type)


def _label(opt: Option) -> str:
    label = opt.label
    if opt.unit and not (opt.unit == "it" and "iteration" in label):
        label += f" ({opt.unit})"
    if opt.type is int and _nullable(opt.name):
        label += " (-1 = random)" if opt.name == "seed" else " (-1 = none)"
    return label


def _tooltip(opt: Option) -> str:
    unit = {"it": "iterations"}.get(opt.unit, opt.unit)
    return f"{opt.help[:1].upper()}{opt.help[1:]}" + (f" [{unit}]." if unit else ".")


def _control(opt: Option, value: Any) -> ValueWidget:
    """The control of one option, showing ``value``."""
    common = {"name": opt.name, "label": _label(opt), "tooltip": _tooltip(opt)}
    if opt.name in _DYNAMIC_CHOICES:
        widget = ComboBox(choices=_DYNAMIC_CHOICES[opt.name], **common)
    elif opt.choices:
        widget = ComboBox(choices=opt.choices, **common)
    elif opt.type is bool:
        widget = CheckBox(**common)
    elif opt.type is int:
        low = -1 if _nullable(opt.name) else -_INT_MAX
        low = int(opt.minimum) if opt.minimum is not None else low
        high = int(opt.maximum) if opt.maximum is not None else _INT_MAX
        widget = SpinBox(min=low, max=high, **common)
    elif opt.type is float:
        low = opt.minimum if opt.minimum is not None else -_FLOAT_MAX
        high = opt.maximum if opt.maximum is not None else _FLOAT_MAX
        widget = _float_box(min=low, max=high, **common)
    else:
        widget = LineEdit(**common)
    _set_value(widget, opt, value)
    return widget


def _float_box(**kwargs: Any) -> FloatSpinBox:
    """A float spin box with adaptive steps (the arrows change a value by a tenth of its
    size, whatever it is) and :data:`_DECIMALS` decimals."""
    widget = FloatSpinBox(step=None, **kwargs)
    widget.native.setDecimals(_DECIMALS)
    return widget


def _weight_control(term: Any, value: float) -> FloatSpinBox:
    widget = _float_box(
        name=weight_name(term.name), label=f"{term.label} loss weight", min=0.0,
        max=_FLOAT_MAX, tooltip=f"Weight of the {term.label} loss: {term.help}.",
    )
    _set_float(widget, value)
    return widget


def make_controls(config: TrainingConfig | None = None) -> list[ValueWidget]:
    """One control per option shown in the dock, in the table's order, set to ``config``
    (default: the recipe's defaults).

    Returns
    -------
    list of magicgui ValueWidget
        Named after the options (``iters``, ``lr``, ...); the loss weights are one spin box
        per term named by :func:`weight_name` (``wave_weight``, ``pde_weight``, ...).
    """
    config = config or TrainingConfig()
    out: list[ValueWidget] = []
    for opt in options():
        if not opt.widget:
            continue
        if opt.type is LossWeights:
            out += [_weight_control(t, config.loss_weights[t.name]) for t in LOSS_TERMS]
        else:
            out.append(_control(opt, getattr(config, opt.name)))
    return out


def read_config(controls: Any, base: TrainingConfig | None = None) -> TrainingConfig:
    """The configuration the controls show.

    Parameters
    ----------
    controls : Container
        Holds the controls of :func:`make_controls` (looked up by name).
    base : TrainingConfig, optional
        Values of the options without a control (default: the recipe's).

    Raises
    ------
    MREInputError
        When a control holds a value the option does not accept (as the CLI says it).
    """
    base = base or TrainingConfig()
    values: dict[str, Any] = {}
    for opt in _shown():
        if opt.type is LossWeights:
            values[opt.name] = {t.name: float(controls[weight_name(t.name)].value)
                                for t in LOSS_TERMS}
            continue
        value = controls[opt.name].value
        if opt.type is int and _nullable(opt.name) and value is not None and value < 0:
            value = None
        values[opt.name] = value
    return base.replace(**values)


def set_controls(controls: Any, config: TrainingConfig) -> None:
    """Show ``config`` in the controls (e.g. a loaded checkpoint's options)."""
    for opt in _shown():
        if opt.type is LossWeights:
            for t in LOSS_TERMS:
                _set_float(controls[weight_name(t.name)], config.loss_weights[t.name])
        else:
            _set_value(controls[opt.name], opt, getattr(config, opt.name))


def warmup_note(config: TrainingConfig) -> str:
    """What the warm-up control cannot show: the warm-up that will run when it is not the
    one asked for (``""`` otherwise)."""
    if config.warmup_iters == config.pde_warmup_iters:
        return ""
    return (f"{config.warmup_iters} of {config.iters} iterations: capped at half the run")


def _shown() -> Iterable[Option]:
    return (opt for opt in options() if opt.widget)


def _set_value(widget: ValueWidget, opt: Option, value: Any) -> None:
    if opt.type is int and _nullable(opt.name) and value is None:
        value = -1
    if isinstance(widget, FloatSpinBox):
        _set_float(widget, value)
    else:
        widget.value = value


def _set_float(widget: FloatSpinBox, value: float) -> None:
    """Set a float spin box, with enough decimals to show ``value`` (1e-10 is not 0)."""
    value = float(value)
    if value and math.isfinite(value):
        needed = 2 - math.floor(math.log10(abs(value)))  # three significant digits
        if needed > widget.native.decimals():
            widget.native.setDecimals(min(needed, 15))
    widget.value = value
