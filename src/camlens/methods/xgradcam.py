"""XGrad-CAM (Fu et al., BMVC 2020)."""

from __future__ import annotations

import torch

from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method
from .gradcampp import _safe_divide


@register_method("xgradcam", paper="Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs")
def xgradcam(activations: torch.Tensor, gradients: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """XGrad-CAM: gradients weighted by the activations' share of their channel's sum.

    ``w_k = sum_ij (A_k(i, j) / sum_ab A_k(a, b)) dS/dA_k(i, j)`` (0 for a channel summing to 0),
    ``M = sum_k w_k A_k``.

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.

    Example:
        >>> import torch
        >>> a = torch.tensor([[[[1.0, 3.0]]]]); g = torch.tensor([[[[[2.0, 4.0]]]]])
        >>> xgradcam(a, g)  # w = (1*2 + 3*4) / 4 = 3.5
        tensor([[[[ 3.5000, 10.5000]]]])
    """
    weighted = torch.einsum("nkchw,nchw->nkc", gradients, activations)
    weights = _safe_divide(weighted, activations.sum(dim=(-2, -1)).unsqueeze(1))
    return weighted_sum(weights, activations, eigen_smooth)
