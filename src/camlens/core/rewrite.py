"""New heads for CAM: the two options of seed 003 for VGG-like (flatten + FC) models.

- :func:`fully_convolutional` (option 2): the linear layers after the flatten become
  convolutions, the first with the kernel size of the last feature map, the rest
  1×1. At the native input size the output equals the original logits; on a larger
  image it is a map of class scores, one per window the original network would have
  seen — a dense "approximate CAM" (``method="fcmap"`` in :func:`camlens.explain`).
- :func:`replace_head` + :func:`finetune_head` (option 1): keep the body and its
  weights, put global average pooling + one linear layer on the target layer, and
  train only that layer. Then CAM is exact and equals Grad-CAM up to the ``h·w``
  factor.

Both return new models that share no mutable state with the original: the body is a
deep copy in which the old head's modules are left out (replaced by ``nn.Identity``,
never run), so a VGG16 copy does not carry the 120M parameters of its classifier.
The new model runs the copied network only up to the cut and stops there.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .modes import evaluation_mode
from .errors import HeadError, InputError, LayerNotExecutedError
from .heads import HeadOp, _continuous, _is_pooling, _DROPOUT, _is_reshape, _score_tensor, _walk_chain, head_units
from .heads import analyze_head  # noqa: F401  (used in the examples)
from .hooks import get_module, parse_layer_name

__all__ = [
    "FullyConvolutional", "GapLinearModel", "FinetuneHistory",
    "fully_convolutional", "replace_head", "finetune_head", "class_score_maps",
]

_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.PReLU, nn.Identity,
) + _DROPOUT


class _Stop(Exception):
    """Raised by a hook to end a forward once the cut has been reached."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value


def run_until(model: nn.Module, layer: str, x: torch.Tensor, *, before: bool = False) -> torch.Tensor:
    """Run ``model`` on ``x`` only until module ``layer`` has run; return its output.

    ``before=True``: stop when the module is about to run and return its input.
    ``"name:k"`` picks call ``k`` of a reused module. The hook lives only inside the call.
    """
    base, call = parse_layer_name(layer)
    module = get_module(model, base)
    calls = [0]
    wanted = 0 if call is None else call
    if wanted < 0:
        raise InputError(f"run_until needs a non-negative call index, got {layer!r}")

    def stop(value: Any) -> None:
        calls[0] += 1
        if calls[0] - 1 == wanted:
            raise _Stop(value)

    if before:
        handle = module.register_forward_pre_hook(lambda m, args: stop(args[0]))
    else:
        handle = module.register_forward_hook(lambda m, args, out: stop(out))
    try:
        model(x)
    except _Stop as reached:
        return reached.value
    finally:
        handle.remove()
    raise LayerNotExecutedError(f"{layer!r} did not run (call {wanted}) in the forward of {type(model).__name__}")


def _copy_without(model: nn.Module, drop: Iterable[nn.Module]) -> nn.Module:
    """A deep copy of ``model`` in which the modules ``drop`` are ``nn.Identity`` (not copied)."""
    memo: dict[int, Any] = {id(module): nn.Identity() for module in drop}
    return copy.deepcopy(model, memo)


def _trace_head(model: nn.Module, input_size: tuple[int, ...], target_layer: str | None):
    from .trace import calls_after, pick_target, trace_model

    trace = trace_model(model, tuple(input_size))
    if target_layer is None:
        target, group = pick_target(trace)
    else:
        base, index = parse_layer_name(str(target_layer))
        get_module(model, base)
        calls = [c for c in trace.calls if c.name == base]
        if not calls:
            raise LayerNotExecutedError(f"target layer {base!r} did not run in the traced forward")
        target = calls[index if index is not None else -1]
        group = [target]
    after = calls_after(trace, group)
    return trace, target, group, after


def _head_only_modules(trace, group, after) -> list[nn.Module]:
    """Modules with weights that run only after the target (the old head)."""
    last = max(trace.calls.index(g) for g in group)
    before = {id(c._module) for c in trace.calls[: last + 1]}
    result, seen = [], set()
    for call in after:
        module = call._module
        if id(module) in before or id(module) in seen or not call.name:
            continue
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            seen.add(id(module))
            result.append(module)
    return result


# -- option 2: fully convolutional ----------------------------------------------------------------


class FullyConvolutional(nn.Module):
    """A classifier whose flatten + linear head runs as convolutions: (N, 3, H, W) -> (N, classes, h, w).

    ``body`` is a copy of the original network, run up to ``cut`` (its input when
    ``before``); ``head`` are the converted layers; ``output_transform`` the final
    ``LogSoftmax``/``Softmax`` (over the class dimension) if the original had one.
    :meth:`score_map` gives the scores before it.
    """

    def __init__(self, body: nn.Module, cut: str, before: bool, head: nn.Sequential, output_transform: nn.Module | None):
        super().__init__()
        self.body, self.cut, self.before = body, cut, before
        self.head = head
        self.output_transform = output_transform

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map the head convolves: (N, C, h, w)."""
        return run_until(self.body, self.cut, x, before=self.before)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores before any output transform: (N, classes, h, w)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.score_map(x)
        return self.output_transform(scores) if self.output_transform is not None else scores

    def extra_repr(self) -> str:
        return f"cut={self.cut!r}, before={self.before}"


def _convert(op: HeadOp, grid: tuple[int, int] | None, channels: int) -> tuple[nn.Module, tuple[int, int] | None]:
    """One head module as its convolutional twin (a fresh copy, sharing nothing)."""
    module = op.module
    if isinstance(module, nn.Linear):
        kh, kw = grid if grid is not None else (1, 1)
        if module.in_features != channels * kh * kw:
            raise HeadError(
                f"{op.label} takes {module.in_features} features, but the map before it has "
                f"{channels}×{kh}×{kw} = {channels * kh * kw}: fully_convolutional cannot turn it into a convolution"
            )
        conv = nn.Conv2d(channels, module.out_features, (kh, kw), bias=module.bias is not None)
        conv = conv.to(device=module.weight.device, dtype=module.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(module.weight.detach().reshape(module.out_features, channels, kh, kw))
            if module.bias is not None:
                conv.bias.copy_(module.bias.detach())
        return conv, None
    if isinstance(module, nn.BatchNorm1d):
        bn = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        bn.load_state_dict(copy.deepcopy(module.state_dict()))
        return bn.to(next(iter(module.buffers()), torch.empty(0)).device), grid
    if isinstance(module, nn.Flatten) or _is_reshape(op):
        return nn.Identity(), grid
    if type(module) in (nn.LogSoftmax, nn.Softmax):
        if module.dim not in (1, -1, None):
            raise HeadError(f"{op.label} normalises over dim {module.dim}; expected the class dimension")
        return type(module)(dim=1), grid
    if isinstance(module, _ELEMENTWISE):
        return copy.deepcopy(module), grid
    raise HeadError(
        f"{op.label} in the head is neither linear, batch norm, dropout, flatten nor an elementwise "
        "activation, so fully_convolutional does not know its convolutional form"
    )


def fully_convolutional(
    model: nn.Module,
    input_size: tuple[int, ...] = (3, 224, 224),
    *,
    target_layer: str | None = None,
    check: bool = True,
) -> FullyConvolutional:
    """Turn the linear layers after the flatten into convolutions (seed 003, option 2).

    The first linear layer becomes a convolution with the kernel size of the last
    feature map (VGG16: 512 -> 4096, 7×7), the others 1×1 convolutions; ReLU, Dropout,
    BatchNorm1d and a final LogSoftmax/Softmax follow along. An adaptive pooling that is
    the identity at ``input_size`` (VGG's ``avgpool`` at 224) is dropped, so a larger
    image gives a larger score map: VGG16 at 448×448 -> (N, 1000, 8, 8).

    Args:
        model: a classifier whose head is flatten + linear layers (VGG, AlexNet, ...).
        input_size: (C, H, W) the model was trained at; the output equals the original
            logits there.
        target_layer: the feature layer before the head (default: found automatically).
        check: run the new model at ``input_size`` and raise if it does not reproduce
            the original output (a functional op in the head that hooks cannot see).

    Returns:
        a :class:`FullyConvolutional` sharing no parameter, buffer or module with ``model``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
        ...                     nn.Linear(4 * 6 * 6, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
        >>> fc = fully_convolutional(net, (3, 6, 6))
        >>> x = torch.randn(2, 3, 6, 6)
        >>> torch.allclose(fc(x).flatten(1), net(x), atol=1e-5), tuple(fc(torch.randn(1, 3, 12, 12)).shape)
        (True, (1, 3, 7, 7))
    """
    trace, target, group, after = _trace_head(model, input_size, target_layer)
    ops = [HeadOp(c.key, c._module, c._input, c._output) for c in head_units(after)]
    scores, transform, end = _score_tensor(ops, trace.output)
    chain, features, producer = _walk_chain(ops, scores, end)
    if not chain or not any(isinstance(op.module, nn.Linear) for op in chain):
        raise HeadError(
            f"{type(model).__name__} has no linear layers after its feature map that camlens can see, so there is "
            "nothing to make convolutional (a global-average-pool head is already usable with method='cam')"
        )
    if producer is None or producer.output is None:
        raise HeadError(
            f"the input of {chain[0].label} is not the output of a module (a functional op such as "
            "F.max_pool2d or x.view makes it), so fully_convolutional cannot find where to cut; "
            "wrap that op in a module"
        )
    fmap, before = producer.output, False
    if (isinstance(producer.module, nn.Flatten) or _is_reshape(producer)) and producer.input is not None:
        fmap, before = producer.input, True  # cut before the flatten module, which is dropped
        index = next(i for i, op in enumerate(ops) if op is producer)
        previous = next((op for op in reversed(ops[:index]) if _continuous(op.output, fmap)), None)
        if previous is not None and isinstance(previous.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            producer, before = previous, False
    if fmap.dim() != 4:
        raise HeadError(f"the map before {chain[0].label} is not (N, C, h, w); nothing to convolve")
    cut = producer.name
    pool = producer.module
    if _is_pooling(pool) and fmap.shape[2] * fmap.shape[3] == 1 and not before:
        raise HeadError(
            f"{type(model).__name__} pools globally ({producer.label}) before its linear layers, so there is no "
            "flattened map to make convolutional; a global-average-pool + linear head is already usable with "
            "method='cam' (see camlens.analyze_head)"
        )
    if isinstance(pool, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and not before:
        if producer.input is None or tuple(producer.input.shape) != tuple(fmap.shape):
            raise InputError(
                f"at input size {tuple(input_size)} {producer.label} resizes a "
                f"{'×'.join(map(str, producer.input.shape[2:]))} map to {'×'.join(map(str, fmap.shape[2:]))}; "
                "pass the input_size the model was trained at (224 for torchvision's VGG and AlexNet), where "
                "that pooling changes nothing and can be dropped"
            )
        before = True  # drop the adaptive pooling: it would squeeze a larger map back to 7x7
    channels, grid = fmap.shape[1], (fmap.shape[2], fmap.shape[3])
    converted = []
    for op in chain:
        module, grid = _convert(op, grid, channels)
        if isinstance(op.module, nn.Linear):
            channels = op.module.out_features
        converted.append(module)
    if grid is not None:
        raise HeadError("no linear layer follows the flatten; nothing to convert")
    out_transform = _convert(transform, None, channels)[0] if transform is not None else None
    dropped = [op.module for op in chain] + ([transform.module] if transform is not None else [])
    dropped += _head_only_modules(trace, group, after)
    body = _copy_without(model, [m for m in dropped if m is not producer.module])
    result = FullyConvolutional(body, cut, before, nn.Sequential(*converted), out_transform)
    result.train(model.training)
    if check:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn((1, *input_size), generator=generator).to(fmap.device)
        with evaluation_mode(result), torch.no_grad():
            got = result(x).flatten(1)
        expected = trace.output.detach()
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max().clamp_min(1))):
            diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
            raise HeadError(
                f"the convolutional head does not reproduce {type(model).__name__}'s output at {tuple(input_size)} "
                f"(max abs difference {diff:.3g}): an op in the head is not a module (e.g. F.relu) and was left out"
            )
    return result


# -- option 1: a global-average-pool + linear head ------------------------------------------------


class GapLinearModel(nn.Module):
    """``body`` up to ``target``, then global average pooling and one linear layer ``fc``.

    CAM is exact on it at the target layer (``body.<target>``).
    """

    def __init__(self, body: nn.Module, target: str, channels: int, num_classes: int) -> None:
        super().__init__()
        self.body, self.target = body, target
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The target layer's output: (N, C, h, w)."""
        return run_until(self.body, self.target, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.feature_map(x))))

    def extra_repr(self) -> str:
        return f"target={self.target!r}"


def replace_head(
    model: nn.Module,
    num_classes: int,
    input_size: tuple[int, ...] = (3, 224, 224),
    *,
    target_layer: str | None = None,
) -> GapLinearModel:
    """Swap the head for global average pooling + one linear layer (seed 003, option 1).

    The body (everything up to the target layer) is deep-copied with its weights; the
    old head is left out. The new ``fc`` is freshly initialised: train it with
    :func:`finetune_head`. The original model is not changed.

    Args:
        model: any CNN classifier.
        num_classes: outputs of the new linear layer.
        input_size: (C, H, W) used to trace the model once and find the target layer.
        target_layer: where to cut (default: :func:`camlens.find_target_layer`).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> vgg_like = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        ...                          nn.Linear(8 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 5))
        >>> new = replace_head(vgg_like, 10, (3, 16, 16))
        >>> new.target, new.fc, tuple(new(torch.randn(2, 3, 16, 16)).shape)
        ('1', Linear(in_features=8, out_features=10, bias=True), (2, 10))
        >>> analyze_head(new, (3, 16, 16)).kind
        'gap_linear'
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes must be a positive int, got {num_classes!r}")
    trace, target, group, after = _trace_head(model, input_size, target_layer)
    channels = target.shape[1] if target.shape is not None and len(target.shape) == 4 else None
    if channels is None:
        raise InputError(f"{target.key!r} does not output a (N, C, h, w) feature map; pick one that does")
    body = _copy_without(model, _head_only_modules(trace, group, after))
    device = target._output.device if target._output is not None else torch.device("cpu")
    new = GapLinearModel(body, target.key, channels, num_classes).to(device)
    new.train(model.training)
    return new


@dataclass
class FinetuneHistory:
    """Per-epoch training loss and accuracy of :func:`finetune_head` (and on ``val_loader``)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)


def _batches(loader: Iterable) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise InputError("the loader must yield (images, labels) pairs")
        yield batch[0], batch[1]


def _pooled(model: GapLinearModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), evaluation_mode(model.body):
        return model.flatten(model.pool(model.feature_map(x)))


def evaluate_head(model: GapLinearModel, loader: Iterable, device: torch.device | str | None = None) -> float:
    """Accuracy of ``model`` on ``loader`` (eval mode, no gradients)."""
    device = device or next(model.parameters()).device
    correct = total = 0
    with torch.no_grad():
        for x, y in _batches(loader):
            logits = model.fc(_pooled(model, x.to(device)))
            correct += int((logits.argmax(1).cpu() == y.cpu()).sum())
            total += len(y)
    return correct / max(total, 1)


def finetune_head(
    model: GapLinearModel,
    loader: Iterable,
    epochs: int = 1,
    *,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    val_loader: Iterable | None = None,
    progress: bool = True,
    cache_features: bool = False,
) -> FinetuneHistory:
    """Train only ``model.fc`` (the head made by :func:`replace_head`), body frozen, with a progress bar.

    The body runs in eval mode under ``torch.no_grad()``: its weights, batch-norm
    statistics and ``.grad`` stay as they were. Adam, cross-entropy.

    Args:
        model: a :class:`GapLinearModel`.
        loader: yields ``(images, labels)`` batches (a ``DataLoader``, or a list of pairs).
        epochs: passes over ``loader``.
        lr, weight_decay: Adam's.
        val_loader: if given, accuracy on it after each epoch.
        progress: show a tqdm bar.
        cache_features: keep each batch's pooled body features from the first epoch and
            train later epochs on them (the body is frozen, so they do not change; the same for
            ``val_loader``). Only
            when the loader yields the same images every epoch: no random augmentation.
    """
    if not isinstance(model, GapLinearModel):
        raise InputError(
            f"finetune_head trains the global-average-pool + linear head made by camlens.replace_head; "
            f"got a {type(model).__name__}. Call replace_head(model, num_classes) first."
        )
    from tqdm.auto import tqdm

    device = model.fc.weight.device
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=lr, weight_decay=weight_decay)
    history = FinetuneHistory()
    was_training = model.fc.training
    model.fc.train()
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    val_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for epoch in range(epochs):
            total_loss = correct = seen = 0.0
            cached = cache_features and epoch > 0
            if cached:
                order = torch.randperm(len(cache)).tolist()
                batches: Iterable = [cache[i] for i in order]
            else:
                batches = _batches(loader)
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
            for x, y in bar:
                y = y.to(device)
                pooled = x if cached else _pooled(model, x.to(device))
                if cache_features and not cached:
                    cache.append((pooled, y))
                logits = model.fc(pooled)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach()) * len(y)
                correct += float((logits.argmax(1) == y).sum())
                seen += len(y)
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
            history.loss.append(total_loss / max(seen, 1))
            history.accuracy.append(correct / max(seen, 1))
            if val_loader is not None:
                if cache_features:
                    if not val_cache:
                        val_cache.extend((_pooled(model, x.to(device)), y.to(device)) for x, y in _batches(val_loader))
                    with torch.no_grad():
                        hits = sum(int((model.fc(p).argmax(1) == y).sum()) for p, y in val_cache)
                    history.val_accuracy.append(hits / max(sum(len(y) for _, y in val_cache), 1))
                else:
                    history.val_accuracy.append(evaluate_head(model, val_loader, device))
    finally:
        model.fc.train(was_training)
        for p in model.fc.parameters():
            p.grad = None
    return history


# -- the dense class-score map used by method="fcmap" ---------------------------------------------

_FC_CACHE: "dict[int, tuple[Any, tuple, FullyConvolutional]]" = {}


def _state_key(model: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in list(model.parameters()) + list(model.buffers()))


def _cached_fully_convolutional(model: nn.Module, input_size: tuple[int, ...]) -> FullyConvolutional:
    import weakref

    key = (id(model), tuple(input_size))
    state = _state_key(model)
    entry = _FC_CACHE.get(key)
    if entry is not None and entry[0]() is model and entry[1] == state:
        return entry[2]
    converted = fully_convolutional(model, input_size)
    for stale in [k for k, v in _FC_CACHE.items() if v[0]() is None]:
        del _FC_CACHE[stale]
    _FC_CACHE[key] = (weakref.ref(model), state, converted)
    return converted


def class_score_maps(model: nn.Module, inputs: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """Dense class scores of ``inputs`` enlarged ``scale`` times: (N, classes, h, w), pre-softmax.

    The model is made fully convolutional at the inputs' size (cached while its weights
    do not change), the images are resized bilinearly by ``scale`` and run through it.
    VGG16 at 224 with ``scale=2``: (N, 1000, 8, 8).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
        ...                     nn.Linear(4 * 6 * 6, 3)).eval()
        >>> tuple(class_score_maps(net, torch.randn(1, 3, 6, 6), scale=2).shape)
        (1, 3, 7, 7)
    """
    if not scale or scale < 1:
        raise InputError(f"fcmap_scale must be >= 1 (how much to enlarge the image), got {scale!r}")
    converted = _cached_fully_convolutional(model, tuple(inputs.shape[1:]))
    size = [max(1, round(s * scale)) for s in inputs.shape[-2:]]
    enlarged = inputs if scale == 1 else F.interpolate(inputs, size=size, mode="bilinear", align_corners=False)
    with evaluation_mode(converted), torch.no_grad():
        return converted.score_map(enlarged)
