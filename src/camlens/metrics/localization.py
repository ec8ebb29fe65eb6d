"""Is the map on the object? Pointing game, energy pointing game, and box IoU.

- Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop",
  ECCV 2016): a hit when the map's peak lies in the object, or within ``tolerance``
  pixels of it (the paper uses 15).
- Energy-based pointing game (Wang et al., "Score-CAM", CVPR-W 2020): the share of the
  map's energy (its sum) that falls inside the object's box.
- Weakly-supervised localization IoU (Zhou et al., "Learning Deep Features for
  Discriminative Localization", CVPR 2016): keep the pixels above ``threshold`` times
  the map's max (the paper: 0.2), take the largest connected component, and compare
  its bounding box with the object's box.

Boxes are ``(x0, y0, x1, y1)`` in pixels, max exclusive: pixel (row y, column x) is
inside when ``x0 <= x < x1`` and ``y0 <= y < y1``, so a box's area is
``(x1 - x0) * (y1 - y0)``. Targets are boxes (..., 4) or boolean masks (..., H, W);
maps are (..., H, W) with the same leading shape (or targets with a prefix of it,
e.g. (N, 4) boxes for (N, K, H, W) maps). Everything is batched torch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core.errors import InputError

__all__ = [
    "boxes_to_masks", "masks_to_boxes", "box_iou", "largest_component", "boxes_from_maps",
    "pointing_game", "energy_pointing_game", "localization_iou",
]


def boxes_to_masks(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., 4) boxes -> (..., H, W) boolean masks of the pixels inside.

    Example:
        >>> boxes_to_masks(torch.tensor([1, 0, 3, 1]), (2, 4)).int()
        tensor([[0, 1, 1, 0],
                [0, 0, 0, 0]], dtype=torch.int32)
    """
    boxes = torch.as_tensor(boxes)
    if boxes.shape[-1:] != (4,):
        raise InputError(f"boxes must be (..., 4) as (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    height, width = size
    ys = torch.arange(height, device=boxes.device).view(height, 1)
    xs = torch.arange(width, device=boxes.device).view(1, width)
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) boolean masks -> (..., 4) tight boxes (x0, y0, x1, y1); an empty mask gives (0, 0, 0, 0).

    Example:
        >>> masks_to_boxes(torch.tensor([[0, 1, 1], [0, 1, 0]]).bool())
        tensor([1, 0, 3, 2])
    """
    masks = torch.as_tensor(masks).bool()
    height, width = masks.shape[-2:]
    rows, cols = masks.any(-1), masks.any(-2)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    big = max(height, width) + 1
    x0 = torch.where(cols, xs, big).amin(-1)
    x1 = torch.where(cols, xs + 1, 0).amax(-1)
    y0 = torch.where(rows, ys, big).amin(-1)
    y1 = torch.where(rows, ys + 1, 0).amax(-1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where(masks.flatten(-2).any(-1, keepdim=True), boxes, torch.zeros_like(boxes))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of paired boxes: (..., 4), (..., 4) -> (...); 0 when both are empty.

    Example:
        >>> box_iou(torch.tensor([0, 0, 4, 4]), torch.tensor([2, 0, 6, 4]))
        tensor(0.3333)
    """
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    width = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    height = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = width * height

    def area(box: torch.Tensor) -> torch.Tensor:
        return (box[..., 2] - box[..., 0]).clamp_min(0) * (box[..., 3] - box[..., 1]).clamp_min(0)

    union = area(a) + area(b) - inter
    # inter is 0 where union is (both boxes empty); elsewhere divide by the union itself, however small
    return inter / torch.where(union > 0, union, torch.ones_like(union))


def largest_component(masks: torch.Tensor, max_iterations: int | None = None) -> torch.Tensor:
    """The largest 8-connected component of each (..., H, W) boolean mask.

    Label propagation in torch: every pixel starts with its own label and takes the
    largest label of its 3x3 neighbourhood (a max-pool), then of its whole horizontal
    and vertical run of mask pixels (a segmented max, so a label crosses a long blob in
    one step), and takes the label of the pixel its label names (pointer jumping),
    until nothing changes. Ties between equal-sized components go to the
    one that holds the last pixel in raster order. An empty mask stays empty.

    Example:
        >>> m = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]).bool()
        >>> largest_component(m).int()
        tensor([[0, 0, 0, 0],
                [0, 0, 0, 1],
                [0, 0, 0, 1]], dtype=torch.int32)
    """
    masks = torch.as_tensor(masks).bool()
    lead, (height, width) = masks.shape[:-2], masks.shape[-2:]
    flat = masks.reshape(-1, 1, height, width)
    count = height * width
    if count > 2**24:  # labels 1..count are exact in float32 up to 2**24
        raise InputError(f"maps of {height}x{width} are too large for float labels; downsample them first")
    keep = flat.float()
    labels = (torch.arange(1, count + 1, device=masks.device, dtype=torch.float32).view(1, 1, height, width)) * keep
    for iteration in range(max_iterations or count):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * keep
        grown = _run_max(_run_max(grown, flat, -1), flat, -2)
        # pointer jumping: a label names a pixel of the same component; take that pixel's label
        index = (grown.flatten(1).long() - 1).clamp_min(0)
        grown = grown.flatten(1).gather(1, index).view_as(grown) * keep
        if torch.equal(grown, labels):
            break
        labels = grown
    labels = labels.long().reshape(flat.shape[0], count)
    offsets = torch.arange(flat.shape[0], device=masks.device).view(-1, 1) * (count + 1)
    sizes = torch.bincount((labels + offsets).flatten(), minlength=flat.shape[0] * (count + 1))
    sizes = sizes.view(flat.shape[0], count + 1)
    sizes[:, 0] = 0
    # argmax picks the first of equal sizes; flip so the tie goes to the larger label (raster-last pixel)
    best = count - sizes.flip(1).argmax(1)
    component = (labels == best.view(-1, 1)) & (sizes.amax(1, keepdim=True) > 0)
    return component.view(*lead, height, width)


def _run_max(labels: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """Each pixel of ``keep`` takes the max label of its run of ``keep`` pixels along ``dim``."""
    x, k = labels.transpose(dim, -1), keep.transpose(dim, -1)
    length = x.shape[-1]
    previous = F.pad(k[..., :-1], (1, 0), value=False)
    run = torch.cumsum(k & ~previous, dim=-1)  # 1, 2, ... per run within a line
    line = torch.arange(x[..., 0].numel(), device=x.device).view(x.shape[:-1] + (1,))
    ids = (line * (length + 1) + run).flatten()
    best = torch.zeros(line.numel() * (length + 1), dtype=x.dtype, device=x.device)
    best = best.scatter_reduce(0, ids, x.flatten(), reduce="amax")
    return (best[ids].view_as(x) * k).transpose(dim, -1)


def boxes_from_maps(maps: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """CAM's box from a map: pixels above ``threshold`` x max, largest component, its box.

    (..., H, W) -> (..., 4). A map whose max is not positive gives the empty box (0, 0, 0, 0).
    """
    maps = _checked_maps(maps)
    if not 0 <= threshold < 1:
        raise InputError(f"threshold is a fraction of each map's max in [0, 1), got {threshold}")
    peak = maps.flatten(-2).amax(-1)[..., None, None]
    above = (maps > threshold * peak) & (peak > 0)
    return masks_to_boxes(largest_component(above))


def _checked_maps(maps: Any) -> torch.Tensor:
    """(..., H, W) float maps; refused when not at least 2-D, empty, or holding NaN/Inf."""
    try:
        maps = torch.as_tensor(maps).float()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"maps must be a tensor (..., H, W), got {type(maps).__name__}") from None
    if maps.dim() < 2 or maps.numel() == 0:
        raise InputError(f"maps must be (..., H, W) and not empty, got shape {tuple(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise InputError("the maps contain NaN or Inf: their peak and energy are undefined; use maps from "
                         "camlens.explain, or clean them (torch.nan_to_num)")
    return maps


def _targets_as_masks(maps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Boxes (..., 4) or masks (..., H, W) -> masks with the maps' full shape."""
    targets = torch.as_tensor(targets, device=maps.device)
    size = tuple(maps.shape[-2:])
    if targets.dim() >= 1 and targets.shape[-1] == 4 and targets.dim() <= maps.dim() - 1:
        masks = boxes_to_masks(targets, size)
    elif tuple(targets.shape[-2:]) == size:
        masks = targets.bool()
    else:
        raise InputError(
            f"targets must be boxes (..., 4) or masks (..., {size[0]}, {size[1]}) matching maps "
            f"{tuple(maps.shape)}; got {tuple(targets.shape)}"
        )
    return _expand_like(masks, maps, "targets")


def _expand_like(masks: torch.Tensor, maps: torch.Tensor, what: str) -> torch.Tensor:
    lead_maps, lead = tuple(maps.shape[:-2]), tuple(masks.shape[:-2])
    if lead_maps[: len(lead)] != lead:
        raise InputError(f"{what} have leading shape {lead} but the maps {lead_maps}: give one target per map, or one per image")
    while masks.dim() < maps.dim():
        masks = masks.unsqueeze(len(lead))
    return masks.expand(maps.shape)


def pointing_game(maps: torch.Tensor, targets: torch.Tensor, tolerance: float = 0) -> torch.Tensor:
    """Pointing game hits (Zhang et al. 2016): (..., H, W) maps -> (...) bool.

    A hit when the map's peak (its first maximum in raster order) lies inside the
    target, or within ``tolerance`` pixels (Euclidean) of it; the paper uses 15. A
    constant map has no peak and misses.

    Example:
        >>> maps = torch.zeros(2, 8, 8); maps[0, 2, 3] = 1; maps[1, 7, 7] = 1
        >>> pointing_game(maps, torch.tensor([[2, 1, 5, 4], [2, 1, 5, 4]]))
        tensor([ True, False])
    """
    maps = _checked_maps(maps)
    masks = _targets_as_masks(maps, targets)
    height, width = maps.shape[-2:]
    flat = maps.flatten(-2)
    peak = flat.argmax(-1)
    py, px = (peak // width).float(), (peak % width).float()
    ys = torch.arange(height, device=maps.device, dtype=torch.float32).view(height, 1)
    xs = torch.arange(width, device=maps.device, dtype=torch.float32).view(1, width)
    dist2 = (ys - py[..., None, None]) ** 2 + (xs - px[..., None, None]) ** 2
    nearest = torch.where(masks, dist2, torch.full_like(dist2, float("inf"))).flatten(-2).amin(-1)
    has_peak = flat.amax(-1) > flat.amin(-1)
    return (nearest <= float(tolerance) ** 2) & has_peak


def energy_pointing_game(maps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game (Score-CAM, Wang et al. 2020): (..., H, W) -> (...) in [0, 1].

    The share of the (ReLU'd) map's sum that lies inside the target; 0 for an all-zero map.

    Example:
        >>> maps = torch.zeros(1, 4, 4); maps[0, 0, 0] = 3; maps[0, 3, 3] = 1
        >>> energy_pointing_game(maps, torch.tensor([[0, 0, 2, 2]]))
        tensor([0.7500])
    """
    maps = _checked_maps(maps).clamp_min(0)
    masks = _targets_as_masks(maps, targets)
    total = maps.flatten(-2).sum(-1)
    inside = (maps * masks).flatten(-2).sum(-1)
    # inside is 0 where total is (an all-zero map); elsewhere the share is exact however small the map
    return inside / torch.where(total > 0, total, torch.ones_like(total))


def localization_iou(maps: torch.Tensor, targets: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """IoU of CAM's box (see :func:`boxes_from_maps`) with the target's box: (..., H, W) -> (...).

    The CAM paper counts a localization correct at IoU >= 0.5. Mask targets are compared
    through their bounding box.

    Example:
        >>> maps = torch.zeros(1, 8, 8); maps[0, 2:6, 1:5] = 1
        >>> localization_iou(maps, torch.tensor([[1, 2, 5, 6]])), localization_iou(maps, torch.tensor([[3, 2, 7, 6]]))
        (tensor([1.]), tensor([0.3333]))
    """
    maps = _checked_maps(maps)
    masks = _targets_as_masks(maps, targets)
    return box_iou(boxes_from_maps(maps, threshold), masks_to_boxes(masks))
