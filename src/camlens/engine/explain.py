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
- Thread-safe: a call holds the model's lock (:func:`camlens.core.locks.model_lock`) from
  finding the target to the last re-run forward, so concurrent calls on one model take
  turns (and equal sequential calls); calls on different models run in parallel.
- Bad arguments, NaN/Inf and layers without a spatial grid raise a clear error
  (:mod:`camlens.engine._validate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.locks import model_lock
from ..core.modes import evaluation_mode
from . import _validate
from ..core.layouts import Layout, finalize_natural, layout_for, patch_embedding
from ..core.trace import model_dtype
from ..core.wrappers import unwrap_layer_name, unwrap_model
from ._extra_inputs import GRAPH_INPUTS, PASS_INPUTS, graph_inputs, keeps_graph, pass_inputs
from ._notebook import explanation_html, load_explanation, save_explanation
from ._outputs import select_output
from ._scoring import Scorer
from .targets import ClassScore, FunctionTarget, as_target, resolve_classes
from ..core.errors import HeadError, InputError, LayerNotExecutedError, MultipleCallsError, model_call
from ..core.heads import HeadRecorder
from ..core.hooks import _not_run_message, capture, first_tensor, get_module, module_name, parse_layer_name
from ..core.layers import find_target_layer
from ..methods import get_method
from ..core.postprocess import finalize_maps, normalize_maps, upsample_maps

__all__ = ["Explanation", "explain", "explain_detections", "resolve_classes"]


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
            pre-softmax logits and the module they feed (``explain(..., score=...)``); for
            other targets what the target computes.
        target: the target explained (``ClassScore(None)``, ``SegmentationMask(3)``, ...).
        layout: the target layer's layout (``"nchw 7×7"``, ``"tokens (1 prefix + 14×14)"``).
        boxes: (N, K, 4) detection targets only: the explained detections' boxes.

    ``maps`` are (N, K, L) for 1-D signals and (N, K, T, H, W) for volumes (``raw`` likewise
    at the layer's resolution).
        inputs: the (N, C, H, W) batch explained (a reference, not a copy), for the pictures
            of ``_repr_html_`` and :meth:`save`.
    """

    maps: torch.Tensor
    raw: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    target_layer: str
    method: str
    logits: torch.Tensor | None = None
    score_source: str = "model output"
    target: str = "ClassScore(None)"
    layout: str = ""
    boxes: torch.Tensor | None = None
    inputs: torch.Tensor | None = field(default=None, repr=False, compare=False)  # for pictures only

    def _repr_html_(self) -> str:
        """Jupyter: a small grid of overlays with class names, scores and probabilities."""
        return explanation_html(self)

    def to_html(self, images: Any = None, class_names: Any = None, max_images: int = 8) -> str:
        """The notebook grid as HTML; ``images``: the photos (else the un-normalised inputs)."""
        return explanation_html(self, images, class_names, max_images)

    def save(self, folder: Any, images: Any = None, class_names: Any = None, alpha: float = 0.5,
             cmap: str = "jet") -> Any:
        """Write overlays, ``raw.npy``, ``maps.npy`` and an ``explanation.json`` sidecar (atomically).

        Returns the sidecar's path; :meth:`load` reads the folder back.
        """
        return save_explanation(self, folder, images, class_names, alpha, cmap)

    @classmethod
    def load(cls, folder: Any) -> "Explanation":
        """Read a folder written by :meth:`save`."""
        return load_explanation(folder, cls)

    def __repr__(self) -> str:
        return (
            f"Explanation(method={self.method!r}, target_layer={self.target_layer!r}, "
            f"maps={tuple(self.maps.shape)}, raw={tuple(self.raw.shape)}, classes={self.classes.tolist()})"
        )


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
        if torch.is_grad_enabled() and output.requires_grad:
            # An earlier target layer (fusion) already turned grad on: keep this output in
            # the graph so that the gradient still flows back to that layer.
            self.outputs[index] = output
            return output.clone()
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


def _default_target(model: nn.Module, input_size: tuple[int, ...]) -> str:
    """find_target_layer, remembered per model, input size and module structure (a swapped head re-traces).

    The memo is the model's own (:func:`camlens.core.locks.model_lock`), read and written
    under its lock: it dies with the model and threads never see it half-written.
    """
    structure = tuple((name, type(module)) for name, module in model.named_modules())
    with model_lock(model) as state:
        targets = state.memo.setdefault("target_layer", {})
        key = (input_size, structure)
        if key not in targets:
            if len(targets) >= 8:  # a model explained at many sizes: keep the memo small
                targets.pop(next(iter(targets)))
            targets[key] = find_target_layer(model, input_size)
        return targets[key]


def _check_inputs(model: nn.Module, inputs: Any) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(
            "TorchScript models run compiled code that Python hooks cannot enter, so no layer can be "
            "read. Load the model in Python (architecture + state_dict) or export it with "
            "torch.export (.pt2), whose modules can be hooked."
        )
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"inputs must be a float tensor (N, C, H, W), not {type(inputs).__name__}")
    signal = inputs.dim() == 3 and any(isinstance(m, nn.Conv1d) for m in model.modules()) and not any(
        isinstance(m, nn.Conv2d) for m in model.modules())
    if inputs.dim() not in (4, 5) and not signal:
        hint = " (add a batch dimension: x.unsqueeze(0))" if inputs.dim() == 3 else ""
        raise InputError(
            f"inputs must be (N, C, H, W) images, (N, C, L) signals (for a model with Conv1d layers) or "
            f"(N, C, T, H, W) volumes, got shape {tuple(inputs.shape)}{hint}"
        )
    if not inputs.is_floating_point():
        raise InputError(f"inputs must be floating point (normalised images), got {inputs.dtype}")
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != inputs.device:
        raise InputError(f"inputs are on {inputs.device} but the model is on {param.device}: move one of them")
    if min(inputs.shape) == 0:
        raise InputError(f"inputs must hold at least one image of at least 1×1 pixels, got shape {tuple(inputs.shape)}")
    _validate.check_finite(inputs, "the input", "replace or drop those pixels/images before explaining")
    _validate.check_exported_shape(model, inputs)


def _modules_that_ran(model: nn.Module, inputs: torch.Tensor) -> list[str]:
    """Names of the modules that run in a forward on ``inputs`` (for error messages)."""
    with capture(model, []) as cap, evaluation_mode(model), torch.no_grad():
        model(inputs)
    return cap.ran


def _gradients(scores: torch.Tensor, activations: list[torch.Tensor], retain_graph: bool = False) -> list[torch.Tensor]:
    """d scores[:, k] / d activations for each k, in one batched backward: (N, K, C, h, w) each."""
    with torch.enable_grad():  # the user may call explain under torch.no_grad()
        return _batched_gradients(scores, activations, retain_graph)


def _batched_gradients(scores: torch.Tensor, activations: list[torch.Tensor], retain_graph: bool = False) -> list[torch.Tensor]:
    n, k = scores.shape
    if not scores.requires_grad:
        raise LayerNotExecutedError("the class scores do not depend on the target layer; pick a layer on the path to the output")
    if k == 1:
        grads = torch.autograd.grad(scores.sum(), activations, retain_graph=retain_graph, allow_unused=True)
        grads = [None if g is None else g.unsqueeze(1) for g in grads]
    else:
        eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
        grad_outputs = eye[:, None, :].expand(k, n, k)
        try:
            grads = torch.autograd.grad(
                scores, activations, grad_outputs=grad_outputs, is_grads_batched=True, allow_unused=True,
                retain_graph=retain_graph,
            )
        except RuntimeError:  # an op without a batching rule: fall back to K backward passes
            per_class = [
                torch.autograd.grad(scores[:, j].sum(), activations, retain_graph=retain_graph or j < k - 1,
                                    allow_unused=True)
                for j in range(k)
            ]
            grads = [None if g[0] is None else torch.stack(g) for g in zip(*per_class)]
        grads = [None if g is None else g.transpose(0, 1) for g in grads]
    if any(g is None for g in grads):
        raise LayerNotExecutedError(
            "the class scores do not depend on one of the target layers; pick layers on the path to the output"
        )
    return list(grads)


def _resolve_layers(model: nn.Module, inputs: torch.Tensor, target_layer: Any) -> list[str]:
    items = list(target_layer) if isinstance(target_layer, (list, tuple)) else [target_layer]
    if not items:
        raise InputError("target_layer is an empty list; name at least one layer (or pass None)")
    layers = []
    for item in items:
        if item is None:
            layers.append(_default_target(model, tuple(inputs.shape[1:])))
        elif isinstance(item, nn.Module):
            layers.append(module_name(model, item))
        else:
            layers.append(unwrap_layer_name(model, str(item)))
    return layers


@dataclass(frozen=True)
class _Request:
    """What one explain call asks for beyond methods and layers."""

    target: Any  # a camlens.targets.Target
    output: Any = None  # output= key
    layout: str | None = None
    reshape: Any = None
    score: str = "logits"


class _PatchGrid:
    """Forward hook on the patch embedding: the (h, w) grid it outputs in this forward."""

    def __init__(self) -> None:
        self.grid: tuple[int, int] | None = None

    def __call__(self, module, args, output) -> None:
        if self.grid is None and isinstance(output, torch.Tensor) and output.dim() == 4:
            self.grid = tuple(output.shape[2:])


def _forward(model: nn.Module, inputs: torch.Tensor, layers: list[str], with_grad: bool, request: _Request,
             ops: bool = False):
    """One forward (no grad before the first target layer) with a tap on every target layer.

    Returns the bound target (its scores: pre-softmax for class scores when the model ends in
    a LogSoftmax/Softmax/Sigmoid module, see :class:`HeadRecorder`), the model's output, the
    activations of each layer (as the layer returned them), their layouts and the head recorder.
    """
    taps, handles = [], []
    recorder = None
    patch = _PatchGrid()
    try:
        for layer in layers:
            base, call = parse_layer_name(layer)
            taps.append(_TargetTap(call, with_grad))
            handles.append(get_module(model, base).register_forward_hook(taps[-1]))
        embedding = patch_embedding(model)
        if embedding is not None:
            handles.append(embedding[1].register_forward_hook(patch))
        recorder = HeadRecorder(model, get_module(model, parse_layer_name(layers[0])[0]), ops=ops)
        with evaluation_mode(model), torch.no_grad(), model_call(model, inputs):
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        if recorder is not None:
            recorder.remove()
    activations, layouts = [], []
    for layer, tap in zip(layers, taps):
        if tap.calls == 0:
            base, _ = parse_layer_name(layer)
            raise LayerNotExecutedError(_not_run_message(f"Target layer {base!r}", _modules_that_ran(model, inputs)))
        acts = tap.activations(layer)
        if acts.dim() < 3:  # (N, F): no layout can make a grid of it; name the nearest layer that has one
            _validate.check_grid(model, inputs, layer, acts, False)
        activations.append(acts)
        layouts.append(layout_for(acts, tuple(inputs.shape), patch.grid, request.layout, request.reshape,
                                  f"target layer {layer!r}", _channels_last_hint(model, layer, acts)))
    bound = request.target.bind(_pick(output, request), recorder, request.score)
    return bound, output, activations, layouts, recorder


def _pick(output: Any, request: _Request) -> Any:
    """The output the target reads: ``output=``'s pick; a callable target gets the whole output."""
    if request.output is None and isinstance(request.target, FunctionTarget):
        return output
    return select_output(output, request.output)


def _channels_last_hint(model: nn.Module, layer: str, acts: torch.Tensor) -> bool | None:
    module = get_module(model, parse_layer_name(layer)[0])
    if isinstance(module, nn.LayerNorm):
        return tuple(module.normalized_shape) == tuple(acts.shape[-1:])
    if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or not any(isinstance(m, nn.LayerNorm) for m in model.modules()):
        return False  # a conv/BatchNorm output, or a model without LayerNorm: no channels-last tensors
    return None


_INPUTS = ("activations", "gradients", "class_weights", "score_maps", "scorer") + GRAPH_INPUTS + PASS_INPUTS
_AUGMENTS = {
    "flip": ((False, 1.0), (True, 1.0)),
    "tta": ((False, 1.0), (True, 1.0), (False, 1.15), (True, 1.15)),
}


def _check_options(methods: list, options: dict) -> None:
    accepted = {name for m in methods for name in m.options}
    unknown = sorted(set(options) - accepted)
    if unknown:
        hint = ", ".join(f"{m.name}: {', '.join(m.options) or 'none'}" for m in methods)
        raise InputError(f"option(s) {unknown} are not taken by the requested methods; options per method: {hint}")


def _augmentations(augment: Any) -> tuple[tuple[bool, float], ...]:
    if isinstance(augment, str):
        if augment.lower() not in _AUGMENTS:
            raise InputError(f"augment={augment!r} is not known; use 'flip', 'tta' or a list of (hflip, scale) pairs")
        return _AUGMENTS[augment.lower()]
    try:
        pairs = tuple((bool(flip), float(scale)) for flip, scale in augment)
    except (TypeError, ValueError):
        raise InputError(f"augment={augment!r}: expected 'flip', 'tta' or a list of (hflip: bool, scale: float) pairs") from None
    if not pairs or any(scale <= 0 for _, scale in pairs):
        raise InputError(f"augment={augment!r}: give at least one (hflip, scale) pair with scale > 0")
    return pairs


def _fuse(maps: list[torch.Tensor], how: str) -> torch.Tensor:
    stacked = torch.stack(maps)
    return stacked.mean(dim=0) if how == "mean" else stacked.amax(dim=0)


def _scorer(model, inputs, layer, bound, layout, original, activations, gradients, batch_size, progress,
            request) -> Scorer:
    def gradient_fn(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *inputs.shape[1:])
        b, _, (acts,), (lay,), _ = _forward(model, x, [layer], True, _Request(_Rebound(bound), request.output,
                                                                                 request.layout, request.reshape,
                                                                                 request.score))
        with torch.enable_grad():
            return lay.gradients_to_grid(_gradients(b.scores, [acts])[0]).float()

    def importance_fn() -> torch.Tensor:
        grad = gradients if gradients is not None else gradient_fn(inputs)
        return grad.mean(dim=(3, 4)).clamp_min(0) * activations.mean(dim=(2, 3)).unsqueeze(1)

    return Scorer(
        model, inputs, bound.labels, bound.scores.detach(), layer, batch_size=batch_size, progress=progress,
        gradient_fn=gradient_fn, importance_fn=importance_fn, score=request.score,
        select=lambda output, recorder, index: bound.rows(_pick(output, request), index, recorder),
        layout=layout, original=original,
    )


class _Rebound:
    """A bound target re-read on another forward of the same N images (SmoothGrad's noisy copies)."""

    def __init__(self, bound) -> None:
        self.bound = bound

    def bind(self, output, recorder=None, score="logits"):
        from dataclasses import replace

        with torch.enable_grad():
            return replace(self.bound, scores=self.bound.batch(output, recorder))


def _explain(model, inputs, methods, layers, request, fuse, batch_size, progress, options, fcmap_scale,
             allow_1x1=False) -> dict[str, Explanation]:
    """One forward (and one backward for all gradient methods and classes) for every layer."""
    needs = {need for m in methods for need in m.needs}
    graph = keeps_graph(needs)  # Shapley-CAM, Finer-CAM: more backwards through the head (_extra_inputs)
    bound, output, activations, layouts, recorder = _forward(
        model, inputs, layers, "gradients" in needs or graph, request, ops="class_weights" in needs
    )
    scores, class_index = bound.scores, bound.labels
    if scores.dim() != 2 or scores.shape[0] != inputs.shape[0]:
        raise InputError(f"the target gave scores of shape {list(scores.shape)}; expected (N={inputs.shape[0]}, K)")
    _validate.check_finite(
        scores.detach(), "the model's output (the explained scores)",
        "the input is finite, so the model produced it (check its weights, dtype and normalisation)",
    )
    is_class = isinstance(request.target, ClassScore)
    extra = needs & set(GRAPH_INPUTS + PASS_INPUTS)
    if extra and (not is_class or bound.graph_logits is None):
        raise InputError(f"methods {[m.name for m in methods]} explain class scores only; use a gradient method "
                         f"for target={request.target!r}")
    gradients = _gradients(scores, activations, graph) if "gradients" in needs else [None] * len(layers)
    full_pass = pass_inputs(needs, model, inputs, class_index, request.score) if extra else {}
    k = scores.shape[1]
    raws: dict[str, list[torch.Tensor]] = {m.name: [] for m in methods}
    for layer, acts, lay, grads in zip(layers, activations, layouts, gradients):
        grid = lay.to_grid(acts.detach()).float()
        if grid.dim() == 4:
            _validate.check_grid(model, inputs, layer, grid, allow_1x1)
        available: dict[str, Any] = {"activations": grid, **full_pass}
        if extra:  # gradients w.r.t. the layer's own output, put on the grid like `gradients`
            from_graph = graph_inputs(needs, bound.graph_logits, class_index, acts)
            if "hessian_products" in from_graph:
                from_graph["hessian_products"] = lay.gradients_to_grid(from_graph["hessian_products"]).float()
            if "logit_gradients" in from_graph:
                per_layer = from_graph["logit_gradients"]
                from_graph["logit_gradients"] = lambda fn, per_layer=per_layer, lay=lay: lay.gradients_to_grid(per_layer(fn)).float()
            available.update(from_graph)
        if grads is not None:
            available["gradients"] = lay.gradients_to_grid(grads).float()
        if ("class_weights" in needs or "score_maps" in needs) and not is_class:
            raise InputError(f"methods {[m.name for m in methods]} explain class scores only; use a gradient method "
                             f"for target={request.target!r}")
        if "class_weights" in needs:
            verdict = recorder.verdict(layer, grid, _pick(output, request), parse_layer_name(layer)[1])
            if not verdict.exact:
                raise HeadError(f"method 'cam' needs a global-average-pool + linear head; this model's head is {verdict.reason}")
            if request.score == "output" and verdict.output != "scores":
                raise HeadError(
                    f"CAM decomposes the pre-softmax score, but score='output' asks for the model's "
                    f"{verdict.output}, which are not linear in the pooled features; use score='logits' "
                    "(the default) or a gradient method such as 'gradcam'"
                )
            available["class_weights"] = verdict.weight.detach().float()[class_index]
        if "score_maps" in needs:
            from ..core.rewrite import class_score_maps

            dense = class_score_maps(model, inputs, fcmap_scale)
            available["score_maps"] = dense.gather(1, class_index[:, :, None, None].expand(-1, -1, *dense.shape[2:]))
        if "scorer" in needs:
            available["scorer"] = _scorer(
                model, inputs, layer, bound, lay, acts.detach(), available["activations"],
                available.get("gradients"), batch_size, progress, request,
            )
        for m in methods:
            raw = m(options, **available).detach().float()
            _validate.check_finite(
                raw, f"method {m.name!r}'s map at layer {layer!r}",
                "the layer's activations or gradients overflow (try another layer, float32, or another method)",
            )
            raw = raw.expand(-1, k, -1, -1) if raw.shape[1] == 1 and k > 1 else raw
            raws[m.name].append(lay.natural(raw))

    size = tuple(inputs.shape[2:])
    results = {}
    for m in methods:
        per_layer = raws[m.name]
        if len(per_layer) == 1:
            raw, maps = per_layer[0], finalize_natural(per_layer[0], size)
        else:
            finest = max((tuple(r.shape[2:]) for r in per_layer), key=lambda hw: torch.Size(hw).numel())
            maps = finalize_natural(_fuse([finalize_natural(r, size) for r in per_layer], fuse), size)
            raw = _fuse([finalize_natural(r, finest) for r in per_layer], fuse)
        results[m.name] = Explanation(
            maps=maps, raw=raw, classes=class_index, scores=scores.detach().float(),
            target_layer="+".join(layers), method=m.name,
            logits=None if bound.logits is None else bound.logits.float(), score_source=bound.source,
            target=repr(request.target), layout=" + ".join(str(lay) for lay in layouts), boxes=bound.boxes,
        )
    return results


def _explain_augmented(model, inputs, methods, layers, request, augment, *args) -> dict[str, Explanation]:
    """Average the maps of flipped/rescaled copies of the inputs, each mapped back first."""
    if not isinstance(request.target, ClassScore) or inputs.dim() != 4:
        raise InputError("augment= flips and rescales images explained for class scores; leave it out for other "
                         "targets and for signals or volumes")
    pairs = _augmentations(augment)
    plain = _explain(model, inputs, methods, layers, request, *args)
    class_index = next(iter(plain.values())).classes
    from dataclasses import replace

    same_classes = replace(request, target=ClassScore(class_index))
    size = tuple(inputs.shape[-2:])
    collected: dict[str, tuple[list, list]] = {name: ([], []) for name in plain}
    for flip, scale in pairs:
        if not flip and scale == 1.0:
            results = plain
        else:
            x = inputs.flip(-1) if flip else inputs
            if scale != 1.0:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            results = _explain(model, x, methods, layers, same_classes, *args)
        for name, e in results.items():
            maps, raw = (e.maps.flip(-1), e.raw.flip(-1)) if flip else (e.maps, e.raw)
            collected[name][0].append(upsample_maps(maps, size))
            collected[name][1].append(upsample_maps(raw, tuple(plain[name].raw.shape[-2:])))
    for name, (maps, raws) in collected.items():
        e = plain[name]
        e.maps, e.raw = normalize_maps(torch.stack(maps).mean(dim=0)), torch.stack(raws).mean(dim=0)
    return plain


def _prepare(model: Any, inputs: Any) -> tuple[nn.Module, torch.Tensor]:
    """Unwrap compiled/data-parallel models; stack a list of images; cast inputs to a half model's dtype."""
    if isinstance(model, nn.Module):
        model = unwrap_model(model)
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        shapes = {tuple(t.shape) for t in inputs}
        if len(shapes) != 1:
            raise InputError(f"a list of images of different sizes ({sorted(shapes)}); explain one image at a time")
        inputs = torch.stack(list(inputs))
    if isinstance(model, nn.Module) and isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
        dtype = model_dtype(model)
        if dtype in (torch.float16, torch.bfloat16) and inputs.dtype != dtype:
            inputs = inputs.to(dtype)
    return model, inputs


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str | list[str] = "gradcam",
    target_layer: str | nn.Module | list | None = None,
    classes: Any = None,
    *,
    target: Any = None,
    output: Any = None,
    layout: str | None = None,
    reshape: Any = None,
    fuse: str = "mean",
    augment: Any = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    score: str = "logits",
    fcmap_scale: float = 2.0,
    allow_1x1: bool = False,
    **options: Any,
) -> Explanation | dict[str, Explanation]:
    """Class activation maps of ``model`` for ``inputs``.

    Args:
        model: a classifier (CNN or transformer), segmenter, detector or any model whose
            output the ``target`` reads; ``torch.compile``d and ``DataParallel``/``DDP``
            wrapped models are explained through the module they wrap; float16/bfloat16
            models run in their dtype (maps are computed in float32). Its train/eval flags
            and parameter ``.grad`` are left as found (it is evaluated in eval mode).
        inputs: (N, C, H, W) float tensor, already normalised, on the model's device
            ((N, C, L) signals and (N, C, T, H, W) volumes too; a list of same-size images
            for detectors).
        method: a name from :func:`camlens.list_methods` (``"gradcam"``, ``"cam"``, ...),
            or a list of names: then a dict name -> Explanation. All gradient methods share
            one forward and one backward (batched over the K classes).
        target_layer: dotted name (``"layer4"``, ``"_swish:1"`` for call 1 of a reused
            module) or the module itself; ``None`` picks :func:`find_target_layer`. A list of
            layers fuses their maps (upsampled to the input, normalised, then ``fuse``d);
            ``raw`` is then the fused normalised maps at the finest layer's resolution.
        classes: ``None`` (top-1), an int, a list applied to every image, ``"top5"``, a
            1-d tensor (one class per image) or an (N, K) tensor; short for
            ``target=ClassScore(classes)``.
        target: what to explain (:mod:`camlens.targets`): ``ClassScore``,
            ``SegmentationMask(class_index)``, ``BoxScore(box)`` (detectors),
            ``Similarity(reference)``, ``Regression(index)``, or any callable
            ``outputs -> (N,)`` or ``(N, K)``.
        output: which output of a model returning a tuple/dict to explain (an index or a
            key); by default the logits when unambiguous, else an error listing the outputs.
        layout: the target layer's layout when it cannot be found: ``"nchw"``, ``"nhwc"``,
            ``"tokens"``, ``"ncl"``, ``"ncthw"`` (see :mod:`camlens.core.layouts`).
        reshape: a callable ``activation -> (N, C, h, w)`` (pytorch-grad-cam's
            ``reshape_transform``), applied to activations and gradients alike.
        fuse: ``"mean"`` or ``"max"``, how several target layers are fused.
        augment: test-time augmentation: ``"flip"`` (original + horizontal flip), ``"tta"``
            (flips x scales 1 and 1.15) or a list of ``(hflip, scale)`` pairs. Each copy is
            explained for the classes of the original, its maps flipped/resized back, and the
            normalised maps averaged (then normalised again).
        batch_size: chunk size of the re-run forwards of gradient-free methods (default:
            from the memory available; on the CPU at most 8 masked 224x224 images, or as
            many pixels, which keeps each forward's activations in the caches).
        progress: progress bar for gradient-free methods: ``None`` when slow, or forced.
        score: what to explain when the model ends in a ``LogSoftmax``/``Softmax``/``Sigmoid``
            module: ``"logits"`` (default), its input, the pre-softmax score; ``"output"``,
            the (log-)probability itself. Recorded in ``Explanation.score_source``.
        fcmap_scale: ``method="fcmap"`` only: how much to enlarge the image before running
            the fully convolutional rewrite (VGG16 at 224 with 2: an 8×8 score map).
        allow_1x1: accept a target layer whose output is a 1×1 grid (its "map" is one
            number per class, upsampled); refused by default.
        **options: method options, e.g. ``top_k=64`` (Score-CAM fast mode), ``samples=``;
            each goes to the requested methods that take it.

    Returns:
        :class:`Explanation` (or a dict of them when ``method`` is a list).

    Thread safety: the call holds a per-model lock around its hooks and forwards, so
    concurrent calls on one model run one after the other and give the same results as
    sequential calls; the train/eval flags are restored before the lock is released.

    Raises:
        InputError / TypeError subclasses of CamlensError: bad arguments (with the
        allowed values), NaN/Inf in the input, the model's output or a map (saying
        where), a target layer without a spatial grid (naming the nearest one with a grid).

    Example:
        >>> import torch, torchvision
        >>> model = torchvision.models.resnet18()
        >>> e = explain(model, torch.randn(2, 3, 224, 224), classes=[1, 2])
        >>> e.maps.shape, e.raw.shape, e.target_layer
        (torch.Size([2, 2, 224, 224]), torch.Size([2, 2, 7, 7]), 'layer4')
        >>> many = explain(model, torch.randn(1, 3, 224, 224), ["gradcampp", "layercam"], "layer4", "top3")
        >>> {name: tuple(e.maps.shape) for name, e in many.items()}
        {'gradcampp': (1, 3, 224, 224), 'layercam': (1, 3, 224, 224)}
    """
    if not isinstance(model, nn.Module) and hasattr(model, "dls"):  # a fastai Learner
        from ._learner import learner_model_and_inputs

        model, inputs = learner_model_and_inputs(model, inputs)
    model, inputs = _prepare(model, inputs)
    _check_inputs(model, inputs)
    names = _validate.method_names(method)
    _validate.check_options(options, batch_size)
    methods = [get_method(name) for name in names]
    needs = {need for m in methods for need in m.needs}
    if needs & {"gradients", "logit_gradients", "hessian_products", "input_gradients", "bias_gradients",
                "guided_gradients"} and torch.is_inference_mode_enabled():
        raise InputError(
            f"{names} need gradients, which torch.inference_mode() forbids; call explain outside "
            "inference_mode (explain itself records only what the gradient needs)"
        )
    unknown = needs - set(_INPUTS)
    if unknown:
        raise InputError(f"methods {names} need inputs camlens.explain cannot provide: {sorted(unknown)}")
    _check_options(methods, options)
    if fuse not in ("mean", "max"):
        raise InputError(f"fuse={fuse!r} is not known; use 'mean' or 'max'")
    if score not in ("logits", "output"):
        raise InputError(f"score={score!r} is not understood; use 'logits' (pre-softmax, the default) or 'output'")
    request = _Request(as_target(target, classes), output, layout, reshape, score)
    args = (fuse, batch_size, progress, options, fcmap_scale, bool(allow_1x1))
    with model_lock(model):  # concurrent calls on one model take turns (see "Thread safety")
        layers = _resolve_layers(model, inputs, target_layer)
        if augment is None or augment is False:
            results = _explain(model, inputs, methods, layers, request, *args)
        else:
            results = _explain_augmented(model, inputs, methods, layers, request, augment, *args)
    for result in results.values():
        result.inputs = inputs
    return results if not isinstance(method, str) else results[methods[0].name]


def explain_detections(
    model: nn.Module,
    image: torch.Tensor,
    score: float = 0.5,
    method: str | list[str] = "gradcam",
    target_layer: str | nn.Module | list | None = None,
    **kwargs: Any,
) -> Explanation | dict[str, Explanation]:
    """One map per detection scoring >= ``score``, from one forward (torchvision detectors).

    Args:
        model: a torchvision detector (Faster R-CNN, RetinaNet, FCOS, SSD) or any model
            returning ``[{"boxes", "scores", "labels"}]``.
        image: (C, H, W) or (1, C, H, W), as the detector takes it (values in [0, 1]).
        score: the least detection score explained.
        method, target_layer, **kwargs: as for :func:`explain` (default layer: the
            backbone's last feature map).

    Returns:
        an :class:`Explanation` with ``maps`` (1, K, H, W), one per detection, ``boxes``
        (1, K, 4), ``classes`` (1, K) the detections' labels and ``scores`` theirs.
    """
    from .targets import Detections

    if isinstance(image, torch.Tensor) and image.dim() == 3:
        image = image.unsqueeze(0)
    return explain(model, image, method, target_layer, target=Detections(score), **kwargs)
