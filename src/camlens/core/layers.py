"""Which layer do I extract? Trace a model once and describe every module call.

:func:`~camlens.core.trace.trace_model` runs one forward pass on a random input with a hook on every
module and records, for each call, the output shape, the stride relative to the
input (``224 / 7 = 32`` is why a ResNet's last feature map is ``[N, C, 7, 7]``), the
parameter count and how the call's output flows on. :func:`find_target_layer`
picks the last spatial feature map the prediction is computed from;
:func:`describe` prints it all as a table with a verdict on the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .heads import HeadVerdict, verdict_from_trace
from .layouts import Layout
from .trace import LayerCall, ModelTrace, calls_after, pick_target, trace_model

__all__ = ["find_target_layer", "describe", "ModelDescription"]

def _explain_pick(trace: ModelTrace, target: LayerCall, group: list[LayerCall]) -> str:
    layout = target.layout
    if layout.kind == "tokens":
        reason = (f"{target.key!r} ({target.type}) is the last block's first norm: the tokens that enter the "
                  f"last attention, read as {layout.reason}; after that attention only the class token "
                  "reaches a class-token head, so later layers' patch tokens get no gradient")
    elif layout.kind == "nhwc":
        reason = f"{target.key!r} ({target.type}) is the last stage's output, {layout.reason}"
    elif layout.kind == "nchw":
        c, h, w = target.shape[1:]
        stride = f", stride {target.stride:g}" if target.stride else ""
        reason = f"{target.key!r} ({target.type}) gives the last spatial feature map, {c}×{h}×{w}{stride}"
    else:
        reason = f"{target.key!r} ({target.type}) gives the last feature map, {layout.reason}"
    if target.name.startswith("backbone."):
        reason += "; the model has a backbone (detector or segmenter): its last feature map is explained"
    if target.calls > 1:
        reason += f"; the module runs {target.calls} times per forward, this is call {target.call}"
    after = calls_after(trace, group)
    consumer = next((r for r in after if r._input is not None and not any(r.contains(a) for a in after if a is not r)), None)
    if target._output is not None and target._output._version != target._version and not any(
        r._output is target._output and r._version == target._output._version for r in trace.calls
    ):
        reason += (
            "; its output is then changed in place by a functional op (e.g. F.relu(x, inplace=True)) "
            "that no hook can see: camlens uses the values the module returned"
        )
    if consumer is not None and consumer._input is not target._output:
        shape = tuple(consumer._input.shape)
        reason += (
            f"; functional ops (not modules) then turn it into the {list(shape)} input of "
            f"{consumer.name!r} ({consumer.type}); a map can only come from a module's output, and this "
            "is the last one before them"
        )
    elif consumer is not None:
        reason += f"; next comes {consumer.name!r} ({consumer.type})"
    return reason


def find_target_layer(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224)) -> str:
    """The dotted name of the module whose output is the last spatial feature map.

    That is the map the prediction is computed from: the input of the global
    pooling, never a pooling layer. A reused module comes back as ``name:k``.

    Example:
        >>> import torchvision
        >>> find_target_layer(torchvision.models.resnet18())
        'layer4'
    """
    target, _ = pick_target(trace_model(model, input_size))
    return target.key


@dataclass
class ModelDescription:
    """What :func:`describe` found; ``print()`` it for the table."""

    model_name: str
    input_size: tuple[int, ...]
    calls: list[LayerCall]
    target: str
    reason: str
    head: HeadVerdict
    output_shape: tuple[int, ...]
    layout: Layout | None = None  # the target's layout

    @property
    def layouts(self) -> dict[str, str]:
        """Each call's layout (``"nchw 7×7"``, ``"tokens (1 prefix + 14×14)"``, ``"ambiguous"``) by name."""
        return {c.key: str(c.layout) if c.layout is not None else ("ambiguous" if c.ambiguous else "-") for c in self.calls}

    def __str__(self) -> str:
        rows = [("layer", "type", "output shape", "stride", "params", "layout", "")]
        for call in sorted(self.calls, key=lambda r: r.start):
            indent = "  " * (call.depth - 1)
            shape = "×".join(str(s) for s in call.shape[1:]) if call.shape else "-"
            stride = f"{call.stride:g}" if call.stride else ""
            mark = "<- target" if call.key == self.target else ""
            layout = str(call.layout) if call.layout is not None else ("ambiguous" if call.ambiguous else "")
            rows.append((indent + call.key, call.type, shape, stride, f"{call.params:,}", layout, mark))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = [
            f"{self.model_name} on a {'×'.join(map(str, self.input_size))} input "
            f"-> output {list(self.output_shape)}",
            "Strides are input size / map size: a 224×224 image with stride 32 gives a 7×7 map.",
            "",
        ]
        for row in rows:
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]),
                     row[3].rjust(widths[3]), row[4].rjust(widths[4]), row[5].ljust(widths[5]), row[6]]
            lines.append("  ".join(cells).rstrip())
        lines += ["", f"target layer: {self.reason}.", f"head: {self.head.reason}"]
        return "\n".join(lines)


def describe(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224)) -> ModelDescription:
    """A table of the model's module calls, the target layer and a verdict on the head.

    Example:
        >>> import torchvision
        >>> d = describe(torchvision.models.resnet18())
        >>> d.target, d.head.exact
        ('layer4', True)
    """
    trace = trace_model(model, input_size)
    target, group = pick_target(trace)
    after = calls_after(trace, group)
    head = verdict_from_trace(target.key, target.layout.to_grid(target._value), trace.output, after)
    return ModelDescription(
        model_name=type(model).__name__, input_size=tuple(input_size), calls=trace.calls,
        target=target.key, reason=_explain_pick(trace, target, group), head=head,
        output_shape=tuple(trace.output.shape), layout=target.layout,
    )
