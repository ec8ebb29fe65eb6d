"""Turn raw maps into pictures: ReLU, upsample to the input size, normalise to [0, 1].

All batched torch on the maps' device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["normalize_maps", "upsample_maps", "finalize_maps"]


def normalize_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise each (h, w) map of a (..., h, w) tensor to [0, 1].

    A constant map becomes all zeros (never NaN).
    """
    flat = maps.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    out = torch.where(span > eps, (flat - low) / span.clamp_min(eps), torch.zeros_like(flat))
    return out.view_as(maps)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (N, K, h, w) maps to (N, K, *size)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.float(), size=tuple(size), mode="bilinear", align_corners=False)


def finalize_maps(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU, upsample to ``size`` and normalise: (N, K, h, w) -> (N, K, H, W) in [0, 1]."""
    return normalize_maps(upsample_maps(raw.float().clamp_min(0), size))
