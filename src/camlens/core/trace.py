"""One traced forward pass: every module call with its output shape, stride and dependencies.

:func:`trace_model` runs the model once on a random input with a hook on every module;
:func:`camlens.core.layers.find_target_layer` and :mod:`camlens.core.heads` read the
:class:`ModelTrace` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import InputError, model_call
from .hooks import first_tensor
from .layouts import Layout, classify, patch_embedding
from .modes import evaluation_mode

__all__ = ["LayerCall", "ModelTrace", "trace_model", "is_pooling", "pick_target", "calls_after"]

_TRANSPARENT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)


def is_pooling(module: nn.Module) -> bool:
    """True for pooling modules, torch's and third-party ones (``AdaptiveConcatPool2d``, ...)."""
    return "pool" in type(module).__name__.lower()


@dataclass
class LayerCall:
    """One call of one module during the traced forward."""

    name: str
    type: str
    call: int  # which call of this module (0-based)
    calls: int  # how many times the module ran in the forward
    depth: int
    start: int  # order in which the calls started
    shape: tuple[int, ...] | None
    stride: float | None  # input height / output height for 4-D outputs
    params: int  # parameters of the module (its own and its children's)
    pooling: bool
    dead: bool = False  # the model's output does not depend on this call's output
    layout: Layout | None = None  # what the output is (core.layouts.classify), None: no spatial layout
    ambiguous: str = ""  # why the layout could not be told, if it could not
    _module: nn.Module = field(repr=False, default=None)
    _output: torch.Tensor | None = field(repr=False, default=None)
    _input: torch.Tensor | None = field(repr=False, default=None)
    _version: int = field(repr=False, default=0)
    _value: torch.Tensor | None = field(repr=False, default=None)  # copy of a 4-D output as returned

    @property
    def key(self) -> str:
        """The name to pass as ``target_layer`` (``name:k`` for a reused module)."""
        return self.name if self.calls == 1 else f"{self.name}:{self.call}"

    @property
    def spatial(self) -> bool:
        """A feature map of more than one cell in a known layout (NCHW, NHWC, tokens, 1-D, 3-D)."""
        return self.layout is not None and self.layout.cells > 1

    def contains(self, other: "LayerCall") -> bool:
        return self.name == "" or other.name.startswith(self.name + ".")


@dataclass
class ModelTrace:
    """Every module call of one forward pass, in completion order."""

    calls: list[LayerCall]
    output: torch.Tensor
    input_size: tuple[int, ...]
    patch_grid: tuple[int, int] | None = None  # output grid of the patch embedding, if the model has one

    def find(self, key: str) -> LayerCall:
        for call in self.calls:
            if key in (call.key, call.name) and call.name:
                return call
        raise InputError(f"no traced call named {key!r}")


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter (float32 if none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def main_output(output) -> torch.Tensor | None:
    """The tensor a trace follows: ``.logits``, a segmentation ``{"out": ...}``, a detector's
    scores (``[{"boxes", "scores", "labels"}, ...]``), else the first tensor."""
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, dict) and "scores" in o for o in output):
        return torch.cat([o["scores"].flatten() for o in output])
    if isinstance(output, dict) and isinstance(output.get("out"), torch.Tensor):
        return output["out"]
    return first_tensor(getattr(output, "logits", output))


def _channels_last_hint(module: nn.Module, shape: tuple[int, ...], has_layernorm: bool) -> bool | None:
    if isinstance(module, nn.LayerNorm):
        return tuple(module.normalized_shape) == tuple(shape[-1:])
    if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or not has_layernorm:
        return False  # a conv/BatchNorm output, or a model without LayerNorm: no channels-last tensors
    return None


def classify_calls(records: list[LayerCall], input_shape: tuple[int, ...], patch_grid) -> None:
    """Set each call's :attr:`LayerCall.layout` (or why it is ambiguous)."""
    has_layernorm = any(isinstance(r._module, nn.LayerNorm) for r in records)
    for record in records:
        if record.shape is None:
            continue
        hint = _channels_last_hint(record._module, record.shape, has_layernorm)
        found = classify(record.shape, input_shape, patch_grid, hint)
        if isinstance(found, Layout):
            record.layout = found
        elif isinstance(found, str):
            record.ambiguous = found


def trace_model(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), *, batch: int = 1) -> ModelTrace:
    """Run one forward on a seeded random input and record every module call.

    The model is run in eval mode; its train/eval flags are restored afterwards.
    """
    if len(input_size) not in (2, 3, 4):
        raise InputError(f"input_size must be (C, H, W), (C, L) or (C, T, H, W), got {tuple(input_size)}")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *input_size), generator=generator).to(_model_device(model), model_dtype(model))
    x.requires_grad_(True)
    depth_of = {name: (0 if not name else name.count(".") + 1) for name, _ in model.named_modules()}
    records: list[LayerCall] = []
    counts: dict[str, int] = {}
    starts: list[int] = []
    handles = []

    def make_hooks(name: str, module: nn.Module):
        def pre_hook(mod, args):
            starts.append(len(starts))
            stack.append(starts[-1])

        def hook(mod, args, output):
            tensor = first_tensor(output)
            shape = tuple(tensor.shape) if tensor is not None else None
            stride = None
            if shape is not None and len(shape) == 4 and shape[2] > 0 and len(input_size) == 3:
                stride = input_size[1] / shape[2]
            call = counts.get(name, 0)
            counts[name] = call + 1
            records.append(
                LayerCall(
                    name=name, type=type(mod).__name__, call=call, calls=0, depth=depth_of[name],
                    start=stack.pop(), shape=shape, stride=stride, params=_param_count(mod),
                    pooling=is_pooling(mod), _module=mod, _output=tensor, _input=first_tensor(args),
                    _version=tensor._version if tensor is not None else 0,
                    _value=tensor.detach().clone() if shape is not None and len(shape) in (3, 4, 5) else None,
                )
            )

        return pre_hook, hook

    stack: list[int] = []
    try:
        for name, module in model.named_modules():
            if not name:
                continue
            pre_hook, hook = make_hooks(name, module)
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(hook))
        with evaluation_mode(model), torch.enable_grad(), model_call(model, x):
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    output = main_output(output)
    if output is None:
        raise InputError(f"{type(model).__name__} returned no tensor; camlens needs class scores (N, classes)")
    for record in records:
        record.calls = counts[record.name]
    patch = patch_embedding(model)
    patch_grid = None
    if patch is not None:
        first = next((r for r in records if r._module is patch[1] and r.shape is not None and len(r.shape) == 4), None)
        patch_grid = tuple(first.shape[2:]) if first is not None else None
    classify_calls(records, (batch, *input_size), patch_grid)
    trace = ModelTrace(records, output, tuple(input_size), patch_grid)
    _mark_dependencies(trace)
    return trace


def _mark_dependencies(trace: ModelTrace) -> None:
    """Drop spatial outputs that the model's output does not depend on (dead branches)."""
    spatial = [r for r in trace.calls if r.spatial and r._output is not None and r._output.requires_grad]
    if not spatial or not trace.output.requires_grad or trace.output.numel() == 0:
        return
    unique = list({id(r._output): r._output for r in spatial}.values())
    grads = torch.autograd.grad(trace.output.sum(), unique, allow_unused=True)
    used = {id(t) for t, g in zip(unique, grads) if g is not None}
    for record in spatial:
        record.dead = id(record._output) not in used


def _same_value(a: LayerCall, b: LayerCall) -> bool:
    return a._output is b._output and a._version == b._version


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower() or (
        type(module).__name__ == "Attention")


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def _dense_scope(trace: ModelTrace) -> str | None:
    """``"backbone.body"`` / ``"backbone"`` for torchvision-style detectors and segmenters."""
    names = {r.name for r in trace.calls}
    for scope in ("backbone.body", "backbone"):
        if any(n.startswith(scope + ".") for n in names):
            return scope
    return None


def pick_target(trace: ModelTrace) -> tuple[LayerCall, list[LayerCall]]:
    """The call to explain, and the calls sharing its output.

    - CNNs: the last spatial feature map (the input of the global pooling, never a pooling).
    - Token models (ViT, DeiT, DINOv2): the last block's first norm, the tokens that enter the
      last attention (after it only the class token reaches a class-token head, so the patch
      tokens of later layers get no gradient).
    - Channels-last models (Swin): the last stage's output, before the final norm/permute.
    - Detectors and segmenters with a ``backbone``: the backbone's last feature map.
    """
    pooled = {(id(r._output), r._version) for r in trace.calls if r.pooling and r._output is not None}
    scope = _dense_scope(trace)
    candidates = [
        r
        for r in trace.calls
        if r.spatial
        and not r.pooling
        and not r.dead
        and (id(r._output), r._version) not in pooled
        and (scope is None or r.name.startswith(scope + "."))
    ]
    if not candidates:
        ambiguous = next((r for r in reversed(trace.calls) if r.ambiguous and not r.dead), None)
        hint = f" ({ambiguous.key!r}: {ambiguous.ambiguous})" if ambiguous is not None else ""
        raise InputError(
            "no module of this model outputs a spatial feature map ((N, C, h, w), channels-last, tokens, "
            f"(N, C, L) or (N, C, T, H, W)) that the prediction depends on{hint}; is the input size right "
            "for it? Pass input_size=(C, H, W), or name target_layer= with layout=/reshape=."
        )
    last = candidates[-1]
    if last.layout.kind == "tokens":
        attentions = [r for r in trace.calls if _is_attention(r._module) and not any(
            o is not r and o.contains(r) and _is_attention(o._module) for o in trace.calls)]
        if attentions:
            begin = attentions[-1].start
            norms = [r for r in candidates if r.layout.kind == "tokens" and _is_norm(r._module) and r.start < begin]
            if norms:
                last = norms[-1]
    elif any(r.layout.kind == "nhwc" for r in candidates):
        index = candidates.index(last)
        while index > 0 and (
            _is_norm(candidates[index]._module) or type(candidates[index]._module).__name__ in ("Permute", "Identity")
        ) and candidates[index - 1].layout.grid == candidates[index].layout.grid:
            index -= 1
        last = candidates[index]
    group = [r for r in candidates if _same_value(r, last)]
    outermost = [r for r in group if not any(o is not r and o.contains(r) for o in group)]
    transparent_free = [r for r in outermost if not isinstance(r._module, _TRANSPARENT)] or outermost
    return min(transparent_free, key=lambda r: r.start), group


def calls_after(trace: ModelTrace, group: list[LayerCall]) -> list[LayerCall]:
    """Calls that completed after every call of ``group``, minus the containers of the group."""
    last = max(trace.calls.index(g) for g in group)
    return [r for r in trace.calls[last + 1 :] if not any(r.contains(g) for g in group)]
