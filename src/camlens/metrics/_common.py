"""Shared machinery of the metrics: (image, map, class) pairs, baselines, batched scoring.

A metric is computed on *pairs*: one map per (image, class). Maps come as (N, H, W)
with one class per image, as (N, K, H, W) with (N, K) classes, or as an
:class:`~camlens.Explanation` (its ``maps`` and ``classes``). They are flattened to
P = N*K pairs that point back to their image, so the images are never copied K times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.modes import evaluation_mode
from ..core.errors import InputError

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def check_inputs(inputs: Any) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise InputError(f"inputs must be a float tensor (N, C, H, W) of normalised images, got {shape}")
    if inputs.shape[0] == 0:
        raise InputError("inputs hold no image (N = 0)")
    if not bool(torch.isfinite(inputs).all()):
        raise InputError("the inputs contain NaN or Inf: a metric of such images means nothing; clean them first")
    return inputs


def flatten_pairs(
    inputs: torch.Tensor, maps: Any, classes: Any, model: nn.Module | None = None, score: str | ScoreFn = "softmax",
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image index (P,), maps (P, H, W), classes (P,)) from the forms a user may pass.

    ``classes=None`` takes the model's top-1 class per image (one pass over the images,
    ``batch_size`` per forward, so a metric's memory bound holds for it too).
    """
    inputs = check_inputs(inputs)
    if hasattr(maps, "maps") and hasattr(maps, "classes"):  # an Explanation
        maps, classes = maps.maps, maps.classes if classes is None else classes
    if not isinstance(maps, torch.Tensor) or maps.dim() not in (3, 4):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise InputError(f"maps must be (N, H, W), (N, K, H, W) or an Explanation, got {shape}")
    n, _, height, width = inputs.shape
    if maps.shape[0] != n:
        raise InputError(f"maps are for {maps.shape[0]} images but inputs hold {n}")
    if tuple(maps.shape[-2:]) != (height, width):
        raise InputError(
            f"maps are {tuple(maps.shape[-2:])} but the inputs are {(height, width)}: upsample them "
            "(camlens.upsample_maps) or pass Explanation.maps, which are at the input's size"
        )
    if maps.is_complex():
        raise InputError(f"maps must be real numbers, got {maps.dtype}")
    if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
        bad = sorted(set((~torch.isfinite(maps)).reshape(maps.shape[0], -1).any(1).nonzero().flatten().tolist()))
        raise InputError(
            f"the maps contain NaN or Inf (image(s) {', '.join(map(str, bad[:5]))}): a pixel order from them would be "
            "arbitrary; use maps from camlens.explain, or clean them (torch.nan_to_num)"
        )
    k = 1 if maps.dim() == 3 else maps.shape[1]
    if classes is None:
        if model is None:
            raise InputError("classes=None needs the model to pick the top-1 class; pass classes")
        classes = logits_in_batches(model, inputs, batch_size).argmax(1, keepdim=True).expand(n, k)
    try:
        classes = torch.as_tensor(classes, device=inputs.device)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"classes must be class indices (ints), got {classes!r}") from None
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        raise InputError(f"classes must be integer class indices, got dtype {classes.dtype} (a float would be truncated)")
    classes = classes.long()
    if classes.dim() == 0:
        classes = classes.expand(n)
    if classes.numel() != n * k:
        raise InputError(f"classes must give one class per map: expected {n * k} ({n} images x {k}), got {tuple(classes.shape)}")
    image_index = torch.arange(n, device=inputs.device).repeat_interleave(k)
    return image_index, maps.reshape(n * k, height, width).to(inputs.device).float(), classes.reshape(n * k)


def score_fn(score: str | ScoreFn) -> ScoreFn:
    """``"softmax"`` (probability, as in RISE and Grad-CAM++), ``"logit"``, ``"sigmoid"`` or a callable."""
    if callable(score):
        return score
    table: dict[str, ScoreFn] = {
        "softmax": lambda z: z.float().softmax(-1),
        "logit": lambda z: z.float(),
        "sigmoid": lambda z: z.float().sigmoid(),
    }
    if score not in table:
        raise InputError(f"score={score!r} is not understood; use 'softmax', 'logit', 'sigmoid' or a callable on logits")
    return table[score]


def forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's (B, classes) scores for ``x`` (``.logits`` or the first tensor of a tuple)."""
    out = model(x)
    out = getattr(out, "logits", out)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise InputError("the model must return class scores of shape (N, classes)")
    return out


def logits_in_batches(model: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's (N, classes) output in eval mode without gradients, ``batch_size`` at a time."""
    with evaluation_mode(model), torch.no_grad():
        return torch.cat([forward_logits(model, inputs[job]) for job in chunks(inputs.shape[0], batch_size)])


def gaussian_blur(inputs: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflect padding (RISE's insertion substrate: 11, 5)."""
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=inputs.dtype, device=inputs.device) - radius
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = inputs.shape[1]
    pad_mode = "reflect" if min(inputs.shape[-2:]) > radius else "replicate"
    x = F.pad(inputs, (radius, radius, radius, radius), mode=pad_mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, kernel_size), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, kernel_size, 1), groups=channels)


def make_baseline(inputs: torch.Tensor, baseline: str | float | torch.Tensor) -> torch.Tensor:
    """The image that removed pixels are replaced with: (N, C, H, W).

    ``"zeros"`` (zero in the model's input space: the normalisation mean colour for
    mean/std-normalised inputs), ``"blur"`` (Gaussian, kernel 11, sigma 5), ``"mean"``
    (each image's per-channel mean), a number, or a tensor broadcastable to the inputs.
    """
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(inputs).expand_as(inputs)
        except RuntimeError:
            raise InputError(f"a baseline tensor must broadcast to the inputs {tuple(inputs.shape)}, got {tuple(baseline.shape)}") from None
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(inputs, float(baseline))
    if baseline == "zeros":
        return torch.zeros_like(inputs)
    if baseline == "blur":
        return gaussian_blur(inputs)
    if baseline == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    raise InputError(f"baseline={baseline!r} is not understood; use 'zeros', 'blur', 'mean', a number or a tensor")


def chunks(total: int, size: int) -> Iterator[slice]:
    if size < 1:
        raise InputError(f"batch_size must be at least 1, got {size}")
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))
