"""CAM: class activation mapping (Zhou et al., CVPR 2016)."""

from __future__ import annotations

import torch

from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method


@register_method("cam", paper="Zhou et al. 2016, Learning Deep Features for Discriminative Localization")
def cam(activations: torch.Tensor, class_weights: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """CAM: the final linear weights of the class times the activations, summed over channels.

    ``M_c(i, j) = sum_k w_ck A_k(i, j)``; exact only for a global-average-pool + linear head,
    where ``score_c = mean_ij M_c(i, j) + b_c``.

    Args:
        activations: (N, C, h, w) output of the last feature layer.
        class_weights: (N, K, C) rows of the final linear layer for K classes per image.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    return weighted_sum(class_weights, activations, eigen_smooth)
