"""Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

import torch

from ._registry import register_method


@register_method("gradcam", paper="Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks")
def gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: channels weighted by the spatial mean of the class score's gradient.

    ``alpha_ck = mean_ij dS_c/dA_k(i, j)``, ``M_c = sum_k alpha_ck A_k`` (the ReLU of the
    paper is applied later, with the normalisation).

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    alpha = gradients.mean(dim=(3, 4))
    return torch.einsum("nkc,nchw->nkhw", alpha, activations)
