"""``camlens.explain``: one forward (and one backward) feeding every requested method.

How it stays fast and leaves no trace:

- The forward runs under ``torch.no_grad()``; a forward hook on the target layer
  turns gradient recording on only from there, with the layer's output as a fresh
  leaf tensor. The backward then runs through the head only, not the whole network,
  and no parameter ``.grad`` is touched (``torch.autograd.grad`` on that leaf).
- The hook hands the network a copy of the output, so an in-place op downstream
  (ResNet's ``out += identity``, ``ReLU(inplace=True)``) cannot change the stored
  activations.
- Hooks are removed in ``finally``; every module's train/eval flag is restored.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._modes import evaluation_mode
from .errors import HeadError, InputError, LayerNotExecutedError, MultipleCallsError
from .heads import HeadRecorder
from .hooks import _not_run_message, capture, first_tensor, get_module, module_name, parse_layer_name
from .layers import find_target_layer
from .methods import get_method
from .postprocess import finalize_maps

__all__ = ["Explanation", "explain", "resolve_classes"]


@dataclass
class Explanation:
    """The result of :func:`explain` for one method.

    Attributes:
        maps: (N, K, H, W) in [0, 1] at the input's resolution, one per image and class.
        raw: (N, K, h, w) at the target layer's resolution, before ReLU and normalisation.
        classes: (N, K) class indices explained.
        scores: (N, K) the model's output for those classes.
        target_layer: dotted name of the layer the maps come from.
        method: the method's name.
        logits: (N, classes) the model's whole output (for top-k lists and probabilities);
            the pre-softmax scores when the model ends in a LogSoftmax/Softmax/Sigmoid module
            (see ``score_source``).
        score_source: what ``scores`` and ``logits`` are: ``"model output"``, or the
            pre-softmax logits and the module they feed (``explain(..., score=...)``).
    """

    maps: torch.Tensor
    raw: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    target_layer: str
    method: str
    logits: torch.Tensor | None = None
    score_source: str = "model output"

    def __repr__(self) -> str:
        n, k, h, w = self.maps.shape
        return (
            f"Explanation(method={self.method!r}, target_layer={self.target_layer!r}, "
            f"maps=({n}, {k}, {h}, {w}), raw={tuple(self.raw.shape)}, classes={self.classes.tolist()})"
        )


def resolve_classes(classes: Any, logits: torch.Tensor) -> torch.Tensor:
    """Turn a ``classes`` argument into an (N, K) long tensor of class indices.

    ``None``: top-1 per image. ``int``: that class for every image. ``list``/``tuple`` of
    ints: those K classes for every image. ``"top5"`` (any k): the k best per image.
    Tensor: 0-d like an int, 1-d of length N one class per image, 2-d (N, K) as given.
    """
    n, num_classes = logits.shape
    if classes is None:
        result = logits.argmax(dim=1, keepdim=True)
    elif isinstance(classes, str):
        text = classes.lower().replace("-", "").replace("_", "")
        if not text.startswith("top") or not text[3:].isdigit() or int(text[3:]) < 1:
            raise InputError(f"classes={classes!r} is not understood; use e.g. 'top1' or 'top5', an int or a list")
        k = int(text[3:])
        if k > num_classes:
            raise InputError(f"classes={classes!r} asks for {k} classes but the model outputs {num_classes}")
        result = logits.topk(k, dim=1).indices
    elif isinstance(classes, torch.Tensor):
        result = classes.to(logits.device).long()
        if result.dim() == 0:
            result = result.expand(n).unsqueeze(1)
        elif result.dim() == 1:
            if result.shape[0] != n:
                raise InputError(
                    f"a 1-d classes tensor gives one class per image: expected {n} entries, got "
                    f"{result.shape[0]}; for several classes per image pass an (N, K) tensor or a list"
                )
            result = result.unsqueeze(1)
        elif result.dim() != 2 or result.shape[0] != n:
            raise InputError(f"classes tensor must be (N, K) with N={n}, got {tuple(result.shape)}")
    elif isinstance(classes, (int, list, tuple)) and not isinstance(classes, bool):
        values = [classes] if isinstance(classes, int) else list(classes)
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise InputError(f"classes={classes!r}: expected class indices (ints)")
        result = torch.tensor(values, device=logits.device).expand(n, len(values))
    else:
        raise InputError(f"classes of type {type(classes).__name__} is not understood; use None, an int, a list, 'top5' or a tensor")
    bad = (result < 0) | (result >= num_classes)
    if bad.any():
        raise InputError(
            f"class {int(result[bad][0])} is out of range: the model outputs {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    return result


class _TargetTap:
    """Forward hook on the target layer: stores its output, optionally as a gradient leaf."""

    def __init__(self, call: int | None, with_grad: bool) -> None:
        self.call, self.with_grad = call, with_grad
        self.calls = 0
        self.outputs: dict[int, torch.Tensor] = {}

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        index = self.calls
        self.calls += 1
        if self.call is not None and self.call >= 0 and index != self.call:
            return None
        if not isinstance(output, torch.Tensor):
            raise InputError(
                f"the target layer ({type(module).__name__}) returns {type(output).__name__}, not a "
                "tensor; pick a layer whose output is a (N, C, h, w) feature map"
            )
        if not self.with_grad:
            self.outputs[index] = output.detach().clone()
            return None
        torch.set_grad_enabled(True)
        leaf = output.detach().requires_grad_(True)
        self.outputs[index] = leaf
        return leaf.clone()

    def activations(self, name: str) -> torch.Tensor:
        base, _ = parse_layer_name(name)
        if self.calls == 0:
            raise LayerNotExecutedError(_not_run_message(f"Target layer {base!r}"))
        if self.call is None:
            if self.calls > 1:
                raise MultipleCallsError(
                    f"target layer {base!r} ran {self.calls} times in one forward (the module is "
                    f"reused); pick one call as target_layer: "
                    f"{', '.join(f'{base}:{k}' for k in range(self.calls))}"
                )
            index = 0
        else:
            index = self.call if self.call >= 0 else self.calls + self.call
        if index not in self.outputs:
            raise MultipleCallsError(f"target layer {base!r} ran {self.calls} time(s); there is no call {self.call}")
        return self.outputs[index]


_TARGET_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _default_target(model: nn.Module, input_size: tuple[int, ...]) -> str:
    """find_target_layer, cached per model, input size and module structure (a swapped head re-traces)."""
    structure = hash(tuple((name, type(module)) for name, module in model.named_modules()))
    per_model = _TARGET_CACHE.setdefault(model, {})
    key = (input_size, structure)
    if key not in per_model:
        per_model[key] = find_target_layer(model, input_size)
    return per_model[key]


def _logits(output: Any) -> torch.Tensor:
    tensor = first_tensor(getattr(output, "logits", output))
    if tensor is None or tensor.dim() != 2:
        shape = None if tensor is None else tuple(tensor.shape)
        raise InputError(f"the model must return class scores of shape (N, classes); it returned {shape}")
    return tensor


def _check_inputs(model: nn.Module, inputs: Any) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(
            "TorchScript models run compiled code that Python hooks cannot enter, so no layer can be "
            "read. Load the model in Python (architecture + state_dict) or export it with "
            "torch.export (.pt2), whose modules can be hooked."
        )
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"inputs must be a float tensor (N, C, H, W), not {type(inputs).__name__}")
    if inputs.dim() != 4:
        hint = " (add a batch dimension: x.unsqueeze(0))" if inputs.dim() == 3 else ""
        raise InputError(f"inputs must be (N, C, H, W), got shape {tuple(inputs.shape)}{hint}")
    if not inputs.is_floating_point():
        raise InputError(f"inputs must be floating point (normalised images), got {inputs.dtype}")
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != inputs.device:
        raise InputError(f"inputs are on {inputs.device} but the model is on {param.device}: move one of them")


def _modules_that_ran(model: nn.Module, inputs: torch.Tensor) -> list[str]:
    """Names of the modules that run in a forward on ``inputs`` (for error messages)."""
    with capture(model, []) as cap, evaluation_mode(model), torch.no_grad():
        model(inputs)
    return cap.ran


def _gradients(scores: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """d scores[:, k] / d activations for each k, in one batched backward: (N, K, C, h, w)."""
    with torch.enable_grad():  # the user may call explain under torch.no_grad()
        return _batched_gradients(scores, activations)


def _batched_gradients(scores: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    n, k = scores.shape
    if not scores.requires_grad:
        raise LayerNotExecutedError("the class scores do not depend on the target layer; pick a layer on the path to the output")
    if k == 1:
        (grad,) = torch.autograd.grad(scores.sum(), activations)
        return grad.unsqueeze(1)
    eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
    grad_outputs = eye[:, None, :].expand(k, n, k)
    try:
        (grad,) = torch.autograd.grad(scores, activations, grad_outputs=grad_outputs, is_grads_batched=True)
    except RuntimeError:  # an op without a batching rule: fall back to K backward passes
        grad = torch.stack([
            torch.autograd.grad(scores[:, j].sum(), activations, retain_graph=j < k - 1)[0] for j in range(k)
        ])
    return grad.transpose(0, 1)


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str | list[str] = "gradcam",
    target_layer: str | nn.Module | None = None,
    classes: Any = None,
    *,
    score: str = "logits",
    fcmap_scale: float = 2.0,
) -> Explanation | dict[str, Explanation]:
    """Class activation maps of ``model`` for ``inputs``.

    Args:
        model: a CNN classifier returning (N, classes) scores. Its train/eval flags and
            parameter ``.grad`` are left as found (it is evaluated in eval mode).
        inputs: (N, C, H, W) float tensor, already normalised, on the model's device.
        method: a name from :func:`camlens.list_methods` (``"gradcam"``, ``"cam"``, ...),
            or a list of names: then a dict name -> Explanation, from one forward/backward.
        target_layer: dotted name (``"layer4"``, ``"_swish:1"`` for call 1 of a reused
            module) or the module itself; ``None`` picks :func:`find_target_layer`.
        classes: ``None`` (top-1), an int, a list applied to every image, ``"top5"``, a
            1-d tensor (one class per image) or an (N, K) tensor.
        score: what to explain when the model ends in a ``LogSoftmax``/``Softmax``/``Sigmoid``
            module: ``"logits"`` (default), its input, the pre-softmax score; ``"output"``,
            the (log-)probability itself. Recorded in ``Explanation.score_source``.
        fcmap_scale: ``method="fcmap"`` only: how much to enlarge the image before running
            the fully convolutional rewrite (VGG16 at 224 with 2: an 8×8 score map).

    Returns:
        :class:`Explanation` (or a dict of them when ``method`` is a list).

    Example:
        >>> import torch, torchvision
        >>> model = torchvision.models.resnet18()
        >>> e = explain(model, torch.randn(2, 3, 224, 224), classes=[1, 2])
        >>> e.maps.shape, e.raw.shape, e.target_layer
        (torch.Size([2, 2, 224, 224]), torch.Size([2, 2, 7, 7]), 'layer4')
    """
    if not isinstance(model, nn.Module) and hasattr(model, "dls"):  # a fastai Learner
        from .integrations.fastai_learner import learner_model_and_inputs

        model, inputs = learner_model_and_inputs(model, inputs)
    _check_inputs(model, inputs)
    names = [method] if isinstance(method, str) else list(method)
    if not names:
        raise InputError("method is an empty list; name at least one method")
    methods = [get_method(name) for name in names]
    needs = {need for m in methods for need in m.needs}
    if "gradients" in needs and torch.is_inference_mode_enabled():
        raise InputError(
            f"{names} need gradients, which torch.inference_mode() forbids; call explain outside "
            "inference_mode (explain itself records only what the gradient needs)"
        )
    unknown = needs - {"activations", "gradients", "class_weights", "score_maps"}
    if unknown:
        raise InputError(f"methods {names} need inputs camlens.explain cannot provide: {sorted(unknown)}")

    if target_layer is None:
        layer = _default_target(model, tuple(inputs.shape[1:]))
    elif isinstance(target_layer, nn.Module):
        layer = module_name(model, target_layer)
    else:
        layer = str(target_layer)
    base, call = parse_layer_name(layer)
    module = get_module(model, base)

    tap = _TargetTap(call, with_grad="gradients" in needs)
    handles = [module.register_forward_hook(tap)]
    recorder = HeadRecorder(model, module, ops="class_weights" in needs)
    try:
        with evaluation_mode(model), torch.no_grad():
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        recorder.remove()

    output = _logits(output)
    logits, score_source = recorder.scores(output, score)
    if tap.calls == 0:
        raise LayerNotExecutedError(_not_run_message(f"Target layer {base!r}", _modules_that_ran(model, inputs)))
    activations = tap.activations(layer)
    class_index = resolve_classes(classes, logits.detach())
    with torch.enable_grad():  # the user may call explain under torch.no_grad()
        scores = logits.gather(1, class_index)
    available: dict[str, torch.Tensor] = {"activations": activations.detach()}
    if "gradients" in needs:
        available["gradients"] = _gradients(scores, activations)
    if "class_weights" in needs:
        verdict = recorder.verdict(layer, activations, output, call)
        if not verdict.exact:
            raise HeadError(f"method 'cam' needs a global-average-pool + linear head; this model's head is {verdict.reason}")
        if score == "output" and verdict.output != "scores":
            raise HeadError(
                f"CAM decomposes the pre-softmax score, but score='output' asks for the model's "
                f"{verdict.output}, which are not linear in the pooled features; use score='logits' "
                "(the default) or a gradient method such as 'gradcam'"
            )
        available["class_weights"] = verdict.weight.detach()[class_index]
    if "score_maps" in needs:
        from .rewrite import class_score_maps

        dense = class_score_maps(model, inputs, fcmap_scale)
        available["score_maps"] = dense.gather(1, class_index[:, :, None, None].expand(-1, -1, *dense.shape[2:]))

    size = tuple(inputs.shape[-2:])
    results = {}
    for m in methods:
        raw = m(**available)
        results[m.name] = Explanation(
            maps=finalize_maps(raw, size), raw=raw.detach(), classes=class_index,
            scores=scores.detach(), target_layer=layer, method=m.name, logits=logits.detach(),
            score_source=score_source,
        )
    return results if not isinstance(method, str) else results[methods[0].name]
