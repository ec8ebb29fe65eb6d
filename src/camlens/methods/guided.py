"""Guided backpropagation (Springenberg et al. 2015) and Guided Grad-CAM (Selvaraju et al. 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._combine import weighted_sum
from ._registry import register_method

__all__ = ["guided_backprop", "guided_gradcam"]


@register_method("guided_backprop", paper="Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net")
def guided_backprop(guided_gradients: torch.Tensor) -> torch.Tensor:
    """Guided backpropagation: the input gradient with every ReLU passing only positive gradients back.

    At each ReLU the gradient becomes ``grad * [x > 0] * [grad > 0]``, which keeps the input
    detail that excites the neurons (fine, input-resolution, weakly class-dependent). The map
    is the largest absolute gradient over the input's colour channels (the saliency map of
    Simonyan et al. 2014); the gradient image itself is the ``guided_gradients`` input.

    Args:
        guided_gradients: (N, K, C_in, H, W) guided input gradients (provided by
            :func:`camlens.explain`: a forward of its own with the rule applied).

    Returns:
        (N, K, H, W) maps at the input's resolution, before normalisation.
    """
    return guided_gradients.abs().amax(dim=2)


@register_method("guided_gradcam", paper="Selvaraju et al. 2017, Grad-CAM (Guided Grad-CAM: guided backpropagation times Grad-CAM)")
def guided_gradcam(activations: torch.Tensor, gradients: torch.Tensor, guided_gradients: torch.Tensor,
                   eigen_smooth: bool = False) -> torch.Tensor:
    """Guided Grad-CAM: the guided-backpropagation map times the upsampled, rectified Grad-CAM map.

    ``M = max_c |G_c| * relu(up(Grad-CAM))``: Grad-CAM says where (class-discriminative,
    coarse), guided backpropagation what (fine detail); their product is both.

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        guided_gradients: (N, K, C_in, H, W) guided input gradients.
        eigen_smooth: first principal component for the Grad-CAM factor instead of the channel sum.

    Returns:
        (N, K, H, W) maps at the input's resolution, before normalisation.
    """
    coarse = weighted_sum(gradients.mean(dim=(3, 4)), activations, eigen_smooth).clamp_min(0)
    size = tuple(guided_gradients.shape[-2:])
    up = F.interpolate(coarse.float(), size=size, mode="bilinear", align_corners=False).to(guided_gradients.dtype)
    return guided_backprop(guided_gradients) * up
