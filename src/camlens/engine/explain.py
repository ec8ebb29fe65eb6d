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
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.modes import evaluation_mode
from ._notebook import explanation_html, load_explanation, save_explanation
from ._outputs import logits_of
from ._scoring import Scorer
from ..core.errors import HeadError, InputError, LayerNotExecutedError, MultipleCallsError
from ..core.heads import HeadRecorder
from ..core.hooks import _not_run_message, capture, first_tensor, get_module, module_name, parse_layer_name
from ..core.layers import find_target_layer
from ..methods import get_method
from ..core.postprocess import finalize_maps, normalize_maps, upsample_maps

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


_TARGET_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _default_target(model: nn.Module, input_size: tuple[int, ...]) -> str:
    """find_target_layer, cached per model, input size and module structure (a swapped head re-traces)."""
    structure = hash(tuple((name, type(module)) for name, module in model.named_modules()))
    per_model = _TARGET_CACHE.setdefault(model, {})
    key = (input_size, structure)
    if key not in per_model:
        per_model[key] = find_target_layer(model, input_size)
    return per_model[key]


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


def _gradients(scores: torch.Tensor, activations: list[torch.Tensor]) -> list[torch.Tensor]:
    """d scores[:, k] / d activations for each k, in one batched backward: (N, K, C, h, w) each."""
    with torch.enable_grad():  # the user may call explain under torch.no_grad()
        return _batched_gradients(scores, activations)


def _batched_gradients(scores: torch.Tensor, activations: list[torch.Tensor]) -> list[torch.Tensor]:
    n, k = scores.shape
    if not scores.requires_grad:
        raise LayerNotExecutedError("the class scores do not depend on the target layer; pick a layer on the path to the output")
    if k == 1:
        grads = torch.autograd.grad(scores.sum(), activations, allow_unused=True)
        grads = [None if g is None else g.unsqueeze(1) for g in grads]
    else:
        eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
        grad_outputs = eye[:, None, :].expand(k, n, k)
        try:
            grads = torch.autograd.grad(
                scores, activations, grad_outputs=grad_outputs, is_grads_batched=True, allow_unused=True
            )
        except RuntimeError:  # an op without a batching rule: fall back to K backward passes
            per_class = [
                torch.autograd.grad(scores[:, j].sum(), activations, retain_graph=j < k - 1, allow_unused=True)
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
            layers.append(str(item))
    return layers


def _forward(model: nn.Module, inputs: torch.Tensor, layers: list[str], with_grad: bool, score: str = "logits",
             ops: bool = False):
    """One forward (no grad before the first target layer) with a tap on every target layer.

    Returns the model's output, the scores to explain (pre-softmax when the model ends in a
    LogSoftmax/Softmax/Sigmoid module, see :class:`HeadRecorder`), what they are, the
    activations of each layer and the head recorder (for CAM's verdict).
    """
    taps, handles = [], []
    recorder = None
    try:
        for layer in layers:
            base, call = parse_layer_name(layer)
            taps.append(_TargetTap(call, with_grad))
            handles.append(get_module(model, base).register_forward_hook(taps[-1]))
        recorder = HeadRecorder(model, get_module(model, parse_layer_name(layers[0])[0]), ops=ops)
        with evaluation_mode(model), torch.no_grad():
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        if recorder is not None:
            recorder.remove()
    output = logits_of(output)
    logits, score_source = recorder.scores(output, score)
    activations = []
    for layer, tap in zip(layers, taps):
        if tap.calls == 0:
            base, _ = parse_layer_name(layer)
            raise LayerNotExecutedError(_not_run_message(f"Target layer {base!r}", _modules_that_ran(model, inputs)))
        activations.append(tap.activations(layer))
    return output, logits, score_source, activations, recorder


_INPUTS = ("activations", "gradients", "class_weights", "score_maps", "scorer")
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


def _scorer(model, inputs, layer, class_index, scores, activations, gradients, batch_size, progress, score) -> Scorer:
    def gradient_fn(x: torch.Tensor) -> torch.Tensor:
        _, logits, _, (acts,), _ = _forward(model, x, [layer], with_grad=True, score=score)
        with torch.enable_grad():
            return _gradients(logits.gather(1, class_index), [acts])[0]

    def importance_fn() -> torch.Tensor:
        grad = gradients if gradients is not None else gradient_fn(inputs)
        return grad.mean(dim=(3, 4)).clamp_min(0) * activations.mean(dim=(2, 3)).unsqueeze(1)

    return Scorer(
        model, inputs, class_index, scores.detach(), layer, batch_size=batch_size, progress=progress,
        gradient_fn=gradient_fn, importance_fn=importance_fn, score=score,
    )


def _explain(model, inputs, methods, layers, classes, fuse, batch_size, progress, options, score, fcmap_scale
             ) -> dict[str, Explanation]:
    """One forward (and one backward for all gradient methods and classes) for every layer."""
    needs = {need for m in methods for need in m.needs}
    output, logits, score_source, activations, recorder = _forward(
        model, inputs, layers, "gradients" in needs, score, ops="class_weights" in needs
    )
    class_index = resolve_classes(classes, logits.detach())
    with torch.enable_grad():  # the user may call explain under torch.no_grad()
        scores = logits.gather(1, class_index)
    gradients = _gradients(scores, activations) if "gradients" in needs else [None] * len(layers)
    k = class_index.shape[1]
    raws: dict[str, list[torch.Tensor]] = {m.name: [] for m in methods}
    for layer, acts, grads in zip(layers, activations, gradients):
        available: dict[str, Any] = {"activations": acts.detach()}
        if grads is not None:
            available["gradients"] = grads
        if "class_weights" in needs:
            verdict = recorder.verdict(layer, acts, output, parse_layer_name(layer)[1])
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
            from ..core.rewrite import class_score_maps

            dense = class_score_maps(model, inputs, fcmap_scale)
            available["score_maps"] = dense.gather(1, class_index[:, :, None, None].expand(-1, -1, *dense.shape[2:]))
        if "scorer" in needs:
            available["scorer"] = _scorer(
                model, inputs, layer, class_index, scores, available["activations"], grads, batch_size, progress, score
            )
        for m in methods:
            raw = m(options, **available).detach()
            raws[m.name].append(raw.expand(-1, k, -1, -1) if raw.shape[1] == 1 and k > 1 else raw)

    size = tuple(inputs.shape[-2:])
    results = {}
    for m in methods:
        per_layer = raws[m.name]
        if len(per_layer) == 1:
            raw, maps = per_layer[0], finalize_maps(per_layer[0], size)
        else:
            finest = max((tuple(r.shape[-2:]) for r in per_layer), key=lambda hw: hw[0] * hw[1])
            maps = normalize_maps(_fuse([finalize_maps(r, size) for r in per_layer], fuse))
            raw = _fuse([finalize_maps(r, finest) for r in per_layer], fuse)
        results[m.name] = Explanation(
            maps=maps, raw=raw, classes=class_index, scores=scores.detach(),
            target_layer="+".join(layers), method=m.name, logits=logits.detach(), score_source=score_source,
        )
    return results


def _explain_augmented(model, inputs, methods, layers, classes, augment, *args) -> dict[str, Explanation]:
    """Average the maps of flipped/rescaled copies of the inputs, each mapped back first."""
    pairs = _augmentations(augment)
    plain = _explain(model, inputs, methods, layers, classes, *args)
    class_index = next(iter(plain.values())).classes
    size = tuple(inputs.shape[-2:])
    collected: dict[str, tuple[list, list]] = {name: ([], []) for name in plain}
    for flip, scale in pairs:
        if not flip and scale == 1.0:
            results = plain
        else:
            x = inputs.flip(-1) if flip else inputs
            if scale != 1.0:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            results = _explain(model, x, methods, layers, class_index, *args)
        for name, e in results.items():
            maps, raw = (e.maps.flip(-1), e.raw.flip(-1)) if flip else (e.maps, e.raw)
            collected[name][0].append(upsample_maps(maps, size))
            collected[name][1].append(upsample_maps(raw, tuple(plain[name].raw.shape[-2:])))
    for name, (maps, raws) in collected.items():
        e = plain[name]
        e.maps, e.raw = normalize_maps(torch.stack(maps).mean(dim=0)), torch.stack(raws).mean(dim=0)
    return plain


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str | list[str] = "gradcam",
    target_layer: str | nn.Module | list | None = None,
    classes: Any = None,
    *,
    fuse: str = "mean",
    augment: Any = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    score: str = "logits",
    fcmap_scale: float = 2.0,
    **options: Any,
) -> Explanation | dict[str, Explanation]:
    """Class activation maps of ``model`` for ``inputs``.

    Args:
        model: a CNN classifier returning (N, classes) scores. Its train/eval flags and
            parameter ``.grad`` are left as found (it is evaluated in eval mode).
        inputs: (N, C, H, W) float tensor, already normalised, on the model's device.
        method: a name from :func:`camlens.list_methods` (``"gradcam"``, ``"cam"``, ...),
            or a list of names: then a dict name -> Explanation. All gradient methods share
            one forward and one backward (batched over the K classes).
        target_layer: dotted name (``"layer4"``, ``"_swish:1"`` for call 1 of a reused
            module) or the module itself; ``None`` picks :func:`find_target_layer`. A list of
            layers fuses their maps (upsampled to the input, normalised, then ``fuse``d);
            ``raw`` is then the fused normalised maps at the finest layer's resolution.
        classes: ``None`` (top-1), an int, a list applied to every image, ``"top5"``, a
            1-d tensor (one class per image) or an (N, K) tensor.
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
        **options: method options, e.g. ``top_k=64`` (Score-CAM fast mode), ``samples=``;
            each goes to the requested methods that take it.

    Returns:
        :class:`Explanation` (or a dict of them when ``method`` is a list).

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
    unknown = needs - set(_INPUTS)
    if unknown:
        raise InputError(f"methods {names} need inputs camlens.explain cannot provide: {sorted(unknown)}")
    _check_options(methods, options)
    if fuse not in ("mean", "max"):
        raise InputError(f"fuse={fuse!r} is not known; use 'mean' or 'max'")
    layers = _resolve_layers(model, inputs, target_layer)
    args = (fuse, batch_size, progress, options, score, fcmap_scale)
    if augment is None or augment is False:
        results = _explain(model, inputs, methods, layers, classes, *args)
    else:
        results = _explain_augmented(model, inputs, methods, layers, classes, augment, *args)
    for result in results.values():
        result.inputs = inputs
    return results if not isinstance(method, str) else results[methods[0].name]
