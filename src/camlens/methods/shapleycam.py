"""Shapley-CAM (Cai 2025): Grad-CAM's weights with a second-order (Hessian-vector) correction."""

from __future__ import annotations

import torch

from ._combine import weighted_sum
from ._registry import register_method

__all__ = ["shapleycam"]


@register_method("shapleycam", paper="Cai 2025, CAMs as Shapley Value-based Explainers (Shapley-CAM)")
def shapleycam(activations: torch.Tensor, gradients: torch.Tensor, hessian_products: torch.Tensor,
               eigen_smooth: bool = False) -> torch.Tensor:
    """Shapley-CAM: channel weights ``w_k = mean_ij (g - H A / 2)_k(i, j)``, ``M = sum_k w_k A_k``.

    The second-order Taylor expansion of the class score around the activations gives each
    activation's Shapley value ``A (g - H A / 2)`` (``g`` the gradient, ``H A`` the Hessian of
    the score times the activations); averaging the bracket over pixels gives the weights, as
    in pytorch-grad-cam's ShapleyCAM. ``H A`` comes from a double backward through the layers
    after the target (no new forward); where those are piecewise linear (ReLU, max pooling,
    linear layers) ``H A = 0`` and the map is Grad-CAM's.

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        hessian_products: (N, K, C, h, w) Hessian of each class score times the activations.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.

    Example:
        >>> import torch
        >>> a = torch.ones(1, 1, 1, 2); g = torch.full((1, 1, 1, 1, 2), 2.0); ha = torch.full((1, 1, 1, 1, 2), 2.0)
        >>> shapleycam(a, g, ha)  # w = 2 - 2 / 2 = 1
        tensor([[[[1., 1.]]]])
    """
    weights = (gradients - 0.5 * hessian_products).mean(dim=(3, 4))
    return weighted_sum(weights, activations, eigen_smooth)
