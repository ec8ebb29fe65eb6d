"""LayerCAM (Jiang et al., IEEE TIP 2021) and HiResCAM (Draelos & Carin 2020): no pooling."""

from __future__ import annotations

import torch

from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method


@register_method("layercam", paper="Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for Localization")
def layercam(activations: torch.Tensor, gradients: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """LayerCAM: each activation weighted by its own positive gradient, summed over channels.

    ``M(i, j) = sum_k relu(dS/dA_k(i, j)) A_k(i, j)``. No spatial pooling, so it also gives
    fine maps at early layers.

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.

    Example:
        >>> import torch
        >>> layercam(torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[[3.0, -1.0]]]]]))
        tensor([[[[3., 0.]]]])
    """
    return elementwise_sum(gradients.clamp_min(0) * activations.unsqueeze(1), eigen_smooth)


@register_method("hirescam", paper="Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations")
def hirescam(activations: torch.Tensor, gradients: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """HiResCAM: element-wise gradient times activation, summed over channels (no pooling).

    ``M(i, j) = sum_k dS/dA_k(i, j) A_k(i, j)``. For a head that is linear in the activations
    (global average pool + linear), ``sum_ij M(i, j) = score - bias``.

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.

    Example:
        >>> import torch
        >>> hirescam(torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[[3.0, -1.0]]]]]))
        tensor([[[[ 3., -2.]]]])
    """
    return elementwise_sum(gradients * activations.unsqueeze(1), eigen_smooth)
