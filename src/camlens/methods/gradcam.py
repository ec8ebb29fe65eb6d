"""Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

import torch

from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method


@register_method("gradcam", paper="Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks")
def gradcam(activations: torch.Tensor, gradients: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """Grad-CAM: channels weighted by the spatial mean of the class score's gradient.

    ``alpha_ck = mean_ij dS_c/dA_k(i, j)``, ``M_c = sum_k alpha_ck A_k`` (the ReLU of the
    paper is applied later, with the normalisation).

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    alpha = gradients.mean(dim=(3, 4))
    return weighted_sum(alpha, activations, eigen_smooth)
