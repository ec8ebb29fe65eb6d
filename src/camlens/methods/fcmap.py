"""fcmap: the dense class-score map of a fully convolutional rewrite (seed 003, option 2)."""

from __future__ import annotations

import torch

from ._registry import register_method


@register_method("fcmap", paper="Long et al. 2015, Fully Convolutional Networks (the VGG-to-convolution rewrite)")
def fcmap(score_maps: torch.Tensor) -> torch.Tensor:
    """Class scores of every window: the flatten + FC head run as convolutions on an enlarged image.

    :func:`camlens.fully_convolutional` turns VGG's linear layers into convolutions;
    on an image enlarged ``fcmap_scale`` times each output position is the score the
    original network gives the window it sees (VGG16, 224 -> 448: an 8×8 map). No
    target layer and no gradient: it is the network's own prediction, densely.

    Args:
        score_maps: (N, K, h, w) pre-softmax class scores of the enlarged image for K classes.

    Returns:
        (N, K, h, w) the same maps (ReLU and normalisation come later).
    """
    return score_maps
