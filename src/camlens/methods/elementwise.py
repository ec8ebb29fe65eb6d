"""Grad-CAM element-wise (pytorch-grad-cam's GradCAMElementWise) and the random-weight baseline."""

from __future__ import annotations

import torch

from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method

__all__ = ["gradcam_elementwise", "randomcam"]


@register_method(
    "gradcam_elementwise",
    paper="Grad-CAM (Selvaraju et al. 2017) with the ReLU moved inside the sum, as in pytorch-grad-cam's GradCAMElementWise",
)
def gradcam_elementwise(activations: torch.Tensor, gradients: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """Grad-CAM element-wise: the positive part of each gradient x activation, summed over channels.

    ``M(i, j) = sum_k relu(dS/dA_k(i, j) A_k(i, j))``: HiResCAM with the ReLU inside the sum, so a
    channel that argues against the class cannot cancel one that argues for it.

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.

    Example:
        >>> import torch
        >>> gradcam_elementwise(torch.tensor([[[[1.0]], [[2.0]]]]), torch.tensor([[[[[3.0]], [[-1.0]]]]]))
        tensor([[[[3.]]]])
    """
    return elementwise_sum((gradients * activations.unsqueeze(1)).clamp_min(0), eigen_smooth)


@register_method("randomcam", paper="a sanity baseline (Adebayo et al. 2018, Sanity Checks for Saliency Maps): random channel weights, as pytorch-grad-cam's RandomCAM")
def randomcam(activations: torch.Tensor, seed: int = 0, eigen_smooth: bool = False) -> torch.Tensor:
    """Random-CAM: the activations weighted by random channel weights, uniform in [-1, 1), seeded.

    A baseline for the metrics: a method that scores no better than this map does not explain
    the model. The weights come from a ``torch.Generator`` seeded with ``seed`` (one draw of
    (N, C) per call), so the map is reproducible and does not depend on the class.

    Args:
        activations: (N, C, h, w) output of the target layer.
        seed: seed of the weights' generator.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, 1, h, w) maps before ReLU and normalisation.
    """
    n, c = activations.shape[:2]
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(n, 1, c, generator=generator, dtype=torch.float64).mul(2).sub(1)
    return weighted_sum(weights.to(activations.device), activations, eigen_smooth)
