"""Deep Feature Factorization (Collins et al. 2018): non-negative matrix factorisation of the activations."""

from __future__ import annotations

import torch

from ..core.errors import InputError
from ._registry import register_method

__all__ = ["nmf", "factorize", "dff"]


def nmf(matrix: torch.Tensor, k: int, iterations: int = 200, seed: int = 0,
        eps: float = float(torch.finfo(torch.float32).eps),
        init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative ``matrix`` (M, P) ~ ``W @ H``, W (M, k), H (k, P), by Lee & Seung's multiplicative updates.

    Minimises the Frobenius error; each iteration ``W <- W (V H^T) / (W H H^T)``, then
    ``H <- H (W^T V) / (W^T W H)`` (float64; a denominator that is exactly 0 becomes ``eps``).
    The start is scikit-learn's ``"random"`` init, ``sqrt(mean(V) / k) * |N(0, 1)|`` from a
    generator seeded with ``seed``, unless ``init`` gives (W, H). The same updates, in the same
    order and with the same ``eps``, as scikit-learn's ``NMF(solver="mu")`` (tested against it).
    """
    if matrix.dim() != 2 or bool((matrix < 0).any()):
        raise InputError("nmf needs a non-negative (M, P) matrix")
    if not 1 <= k <= min(matrix.shape):
        raise InputError(f"k={k} concepts: need 1 <= k <= {min(matrix.shape)} for a {tuple(matrix.shape)} matrix")
    v = matrix.double()
    if init is None:
        generator = torch.Generator().manual_seed(seed)
        scale = (v.mean() / k).sqrt().cpu()
        w = (scale * torch.randn(v.shape[0], k, generator=generator, dtype=torch.float64).abs()).to(v.device)
        h = (scale * torch.randn(k, v.shape[1], generator=generator, dtype=torch.float64).abs()).to(v.device)
    else:
        w, h = (t.double() for t in init)  # the updates below make new tensors: init is not changed
    for _ in range(iterations):
        w = w * (v @ h.T) / _nonzero(w @ (h @ h.T), eps)
        h = h * (w.T @ v) / _nonzero((w.T @ w) @ h, eps)
    return w, h


def _nonzero(denominator: torch.Tensor, eps: float) -> torch.Tensor:
    """``denominator`` with its exact zeros replaced by ``eps`` (scikit-learn's rule)."""
    return torch.where(denominator == 0, eps, denominator)


def factorize(activations: torch.Tensor, k: int = 5, iterations: int = 200, seed: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """k concepts shared by the (N, C, h, w) activations, and where each one is.

    As pytorch-grad-cam's ``dff``: every pixel of every image is a column of the (C, N*h*w)
    matrix, each channel shifted by its minimum (so it is non-negative), factorised by
    :func:`nmf`; the concept vectors get the shift back. Each concept is scaled so that its
    map peaks at 1: its vector is then the activation where it is strongest.

    Returns:
        concepts (C, k): each concept's direction in channel space; maps (N, k, h, w): its
        strength at every pixel.
    """
    n, c, h, w = activations.shape
    matrix = activations.detach().transpose(0, 1).reshape(c, -1).double().nan_to_num(0.0)
    offset = matrix.amin(dim=1, keepdim=True)
    weights, strengths = nmf(matrix - offset, k, iterations, seed)
    scale = strengths.amax(dim=1).clamp_min(1e-12)  # NMF's scale is free: a concept = its strongest pixel
    weights, strengths = weights * scale, strengths / scale[:, None]
    return (weights + offset).to(activations.dtype), strengths.view(k, n, h, w).transpose(0, 1).to(activations.dtype)


@register_method("dff", paper="Collins et al. 2018, Deep Feature Factorization For Concept Discovery")
def dff(activations: torch.Tensor, class_weights: torch.Tensor, k: int = 5, iterations: int = 200,
        seed: int = 0) -> torch.Tensor:
    """DFF as a class map: the map of the concept whose direction scores the class highest.

    Each image's activations are factorised into ``k`` concepts (:func:`factorize`); on a
    global-average-pool + linear head the class score is ``w_c . mean_ij A`` and
    ``A ~ sum_j concept_j map_j``, so concept ``j`` adds ``(w_c . concept_j) mean(map_j)``:
    the map of the concept with the largest ``w_c . concept_j`` is shown. For all ``k`` maps
    with their labels and a figure, :func:`camlens.dff`.

    Args:
        activations: (N, C, h, w) output of the target layer.
        class_weights: (N, K, C) rows of the final linear layer for the K classes.
        k: number of concepts per image.
        iterations: NMF iterations.
        seed: seed of the NMF's random start.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    maps = []
    for i in range(activations.shape[0]):
        concepts, strengths = factorize(activations[i : i + 1], k, iterations, seed)  # (C, k), (1, k, h, w)
        best = (class_weights[i].to(concepts.dtype) @ concepts).argmax(dim=1)  # (K,)
        maps.append(strengths[0, best])
    return torch.stack(maps)
