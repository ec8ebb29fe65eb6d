"""FullGrad (Srinivas & Fleuret 2019): input-gradient x input plus every layer's bias-gradients."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.errors import InputError
from ._registry import register_method
from .eigen import first_component

__all__ = ["channel_minmax", "fullgrad"]


def channel_minmax(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Each (h, w) channel of (..., h, w) shifted to min 0 and divided by ``eps + max`` (pytorch-grad-cam's scaling)."""
    flat = x.flatten(-2)
    flat = flat - flat.amin(dim=-1, keepdim=True)
    return (flat / (eps + flat.amax(dim=-1, keepdim=True))).view_as(x)


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, K, h, w) to ``size`` (the identity at that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    n, k = x.shape[:2]
    return F.interpolate(x.flatten(0, 1).unsqueeze(1).to(_working_dtype(x)), size=size, mode="bilinear",
                         align_corners=False).view(n, k, *size).to(x.dtype)


def _working_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision terms (resized in float32), float64 kept (not rounded to float32)."""
    return torch.promote_types(x.dtype, torch.float32)


@register_method("fullgrad", paper="Srinivas & Fleuret 2019, Full-Gradient Representation for Neural Network Visualization")
def fullgrad(inputs: torch.Tensor, input_gradients: torch.Tensor, bias_gradients: list,
             eigen_smooth: bool = False) -> torch.Tensor:
    """FullGrad: ``|x * dS/dx|`` plus ``|b * dS/dz|`` of every Conv2d / BatchNorm2d, each channel scaled.

    The full-gradient decomposition ``S = <dS/dx, x> + sum_l <dS/dz_l, b_l>`` (exact for a
    piecewise-linear network) gives one input-resolution term per input channel and one per
    layer channel; as in the paper's code (and pytorch-grad-cam's FullGrad) each term is made
    non-negative (abs), scaled to [0, 1] per channel, upsampled to the input and summed. No
    target layer: every layer with a bias takes part (BatchNorm's effective bias
    ``b - mean * w / sqrt(var + eps)``).

    Args:
        inputs: (N, C_in, H, W).
        input_gradients: (N, K, C_in, H, W) d score_k / d inputs.
        bias_gradients: one (N, K, C_l, h_l, w_l) tensor per layer: bias times the score's gradient
            at the layer's output (all from one backward, provided by :func:`camlens.explain`).
        eigen_smooth: first principal component of the stacked terms (at 1/8 of the input's
            resolution, as pytorch-grad-cam does) instead of their sum.

    Signals (N, C, L) and volumes (N, C, T, H, W) have no layer terms (their layers are not
    Conv2d / BatchNorm2d): each input channel is scaled over all its positions; ``eigen_smooth``
    works on signals (along L) and is refused for volumes.

    Returns:
        (N, K, H, W) maps at the input's resolution (signals (N, K, L), volumes (N, K, T, H, W)),
        before normalisation.
    """
    if inputs.dim() != 4:
        return _fullgrad_flat(inputs, input_gradients, bias_gradients, eigen_smooth)
    size = tuple(inputs.shape[-2:])
    input_term = channel_minmax((input_gradients * inputs.unsqueeze(1)).abs())  # (N, K, C_in, H, W)
    if not eigen_smooth:
        total = input_term.sum(dim=2)
        for grads in bias_gradients:
            total = total + _upsample(channel_minmax(grads.abs()).sum(dim=2), size)
        return total
    small = (max(1, size[0] // 8), max(1, size[1] // 8))
    terms = [input_term] + [_upsample(channel_minmax(g.abs()).sum(dim=2), size) for g in bias_gradients]
    n, k = input_gradients.shape[:2]
    stacked = torch.cat([t.view(n, k, -1, *size) for t in terms], dim=2)  # (N, K, T, H, W)
    stacked = channel_minmax(F.interpolate(stacked.flatten(0, 1).to(_working_dtype(stacked)), size=small,
                                           mode="bilinear", align_corners=False)).view(n, k, -1, *small)
    return _upsample(first_component(stacked, stacked.sum(dim=2)), size)


def _fullgrad_flat(inputs: torch.Tensor, input_gradients: torch.Tensor, bias_gradients: list,
                   eigen_smooth: bool) -> torch.Tensor:
    """FullGrad of signals and volumes: their positions laid out as one row, (N, C, 1, positions)."""
    spatial = tuple(inputs.shape[2:])
    if bias_gradients:
        raise InputError(f"fullgrad: layer terms (Conv2d / BatchNorm2d) for inputs of shape {tuple(inputs.shape)}; "
                         "FullGrad combines them with the input term on images (N, C, H, W) only")
    if eigen_smooth and len(spatial) != 1:
        raise InputError("fullgrad: eigen_smooth works on images and signals, not volumes (N, C, T, H, W); "
                         "drop eigen_smooth")
    n, k = input_gradients.shape[:2]
    row = (1, math.prod(spatial))
    maps = fullgrad(inputs.reshape(*inputs.shape[:2], *row), input_gradients.reshape(n, k, -1, *row), [], eigen_smooth)
    return maps.reshape(n, k, *spatial)
