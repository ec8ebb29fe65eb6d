"""Checks at explain's boundary: arguments, NaN/Inf, spatial grids, exported input shapes.

Each check raises :class:`~camlens.InputError` (a ``ValueError``) or a ``TypeError``
subclass of :class:`~camlens.CamlensError` naming the problem, where it appeared and
the way out, so a bad call never ends in a raw exception or a silently wrong map.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import nn

from ..core.errors import CamlensError, InputError
from ..methods import list_methods

__all__ = [
    "ArgumentTypeError", "method_names", "check_options", "check_finite", "grid_problem", "check_grid",
    "check_exported_shape", "class_index",
]


class ArgumentTypeError(CamlensError, TypeError):
    """An argument of the wrong type (e.g. float class indices)."""


def method_names(method: Any) -> list[str]:
    """``method`` as a non-empty list of names; anything else names the allowed values."""
    allowed = ", ".join(list_methods())
    if isinstance(method, str):
        return [method]
    if isinstance(method, (list, tuple)) and all(isinstance(name, str) for name in method):
        if not method:
            raise InputError(f"method is an empty list; name at least one method: {allowed}")
        return list(method)
    raise InputError(f"method={method!r} is not a method name or a list of names; known methods: {allowed}")


def class_index(value: Any) -> int:
    """One class index: an int (or numpy integer); floats and bools are refused, not truncated."""
    if isinstance(value, bool) or isinstance(value, float) or (
        isinstance(value, torch.Tensor) and (value.is_floating_point() or value.dtype == torch.bool)
    ):
        raise ArgumentTypeError(
            f"class index {value!r} is not an integer; pass ints (e.g. {int(value) if _is_number(value) else 3}), "
            "not floats or bools: a float index would be truncated"
        )
    try:
        return operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"class index {value!r} ({type(value).__name__}) is not an integer") from None


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def check_class_tensor(classes: torch.Tensor) -> None:
    """Class tensors hold integers: a float tensor would be truncated by ``.long()``."""
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        raise ArgumentTypeError(
            f"a classes tensor must hold integer class indices, got dtype {classes.dtype}; "
            "convert it with .long() if its values are whole numbers"
        )


_POSITIVE_INT_OPTIONS = ("top_k", "samples")


def check_options(options: dict, batch_size: Any) -> None:
    """Method options and ``batch_size`` that must be positive integers (``None``: the default)."""
    for name, value in [("batch_size", batch_size)] + [(k, options[k]) for k in _POSITIVE_INT_OPTIONS if k in options]:
        if value is None:
            continue
        if isinstance(value, (bool, float)) or not hasattr(value, "__index__"):
            raise ArgumentTypeError(f"{name}={value!r} must be a whole number >= 1 (or None for the default)")
        if operator.index(value) < 1:
            raise InputError(f"{name}={value!r} must be at least 1 (or None for the default)")


def check_finite(values: torch.Tensor, where: str, hint: str) -> None:
    """Raise :class:`InputError` when ``values`` (N, ...) hold NaN or Inf, naming ``where`` and the first image."""
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        bad = ~torch.isfinite(values.detach().reshape(values.shape[0], -1) if values.dim() else values.reshape(1, 1))
        rows = bad.any(dim=1).nonzero().flatten().tolist()
        kinds = []
        flat = values.detach()
        if bool(torch.isnan(flat).any()):
            kinds.append("NaN")
        if bool(torch.isinf(flat).any()):
            kinds.append("Inf")
        images = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
        raise InputError(f"{where} contains {' and '.join(kinds)} (image(s) {images}): {hint}")


def grid_problem(shape: tuple[int, ...], allow_1x1: bool = False) -> str | None:
    """Why an activation of ``shape`` has no usable spatial grid, or ``None`` when it has one.

    A grid is an (N, C, h, w) output with more than one cell. Layouts that turn other
    outputs into such a grid (tokens, channels-last) are applied before this check; this
    function only says what is still wrong.
    """
    if len(shape) != 4:
        return f"its output {tuple(shape)} has no spatial grid (a map needs an (N, C, h, w) feature map)"
    if shape[2] * shape[3] == 1 and not allow_1x1:
        return (
            f"its output {tuple(shape)} is a 1×1 grid: the upsampled 'map' would be a constant or rounding noise "
            "(pass allow_1x1=True if you really want it)"
        )
    if shape[2] * shape[3] == 0:
        return f"its output {tuple(shape)} has an empty spatial grid"
    return None


def nearest_grid_layer(model: nn.Module, input_size: tuple[int, ...], layer: str) -> str | None:
    """The last layer before ``layer`` (in execution order) whose output is a grid of more than 1×1 cells."""
    from ..core.trace import pick_target, trace_model

    try:
        trace = trace_model(model, input_size)
    except Exception:  # noqa: BLE001 - only for the error message; never hide the real problem
        return None
    done = trace.calls  # completion order: a block comes after its children
    mine = next((i for i, call in enumerate(done) if layer and layer in (call.key, call.name)), None)
    if mine is not None:
        own = done[mine]
        candidates = [call for call in done[:mine] if call.spatial and not own.contains(call)]
        if candidates:
            return candidates[-1].key
    try:
        return pick_target(trace)[0].key
    except Exception:  # noqa: BLE001
        return None


def check_grid(model: nn.Module, inputs: torch.Tensor, layer: str, activations: torch.Tensor, allow_1x1: bool) -> None:
    """Refuse a target layer whose output has no spatial grid (or a 1×1 one unless ``allow_1x1``)."""
    problem = grid_problem(tuple(activations.shape), allow_1x1)
    if problem is None:
        return
    nearest = nearest_grid_layer(model, tuple(inputs.shape[1:]), layer)
    hint = f"; the nearest layer with a grid is {nearest!r}" if nearest else ""
    shown = repr(layer) if layer else "'' (the whole model)"
    raise InputError(f"target layer {shown} cannot give a map: {problem}{hint}")


def check_exported_shape(model: nn.Module, inputs: torch.Tensor) -> None:
    """An exported program (``.pt2``) accepts only the shapes it was exported for: say so up front."""
    check = getattr(model, "process_forward_inputs", None)
    if check is None or type(model).__name__ != "UnflattenedModule":
        return
    try:
        check(inputs)
    except RuntimeError as error:
        first = (str(error).splitlines() or [""])[0]
        raise InputError(
            f"this exported program (.pt2) does not accept inputs of shape {tuple(inputs.shape)}: {first}. "
            "Resize/batch the inputs to the exported shape (LoadedModel.input_size, max_batch) or re-export "
            "with dynamic_shapes"
        ) from None
