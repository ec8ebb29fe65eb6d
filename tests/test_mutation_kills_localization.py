"""camlens.metrics.localization and metrics._common against references: hand-computed boxes,
IoUs and components, brute-force loops, scipy and torchvision.

Each test was written against mutants that survived the rest of the suite
(``python tools/mutate.py metrics/localization``), but checks the documented behaviour, not the
mutant.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camlens import InputError
from camlens.metrics import (
    box_iou,
    boxes_from_maps,
    deletion_curve,
    energy_pointing_game,
    largest_component,
    localization_iou,
    pointing_game,
)
from camlens.metrics._common import flatten_pairs, score_fn

from conftest import largest_component_reference, mask_of_box  # noqa: E402


def torchvision_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torchvision's IoU of paired boxes, in float64 (the diagonal of its pairwise matrix)."""
    from torchvision.ops import box_iou as tv_box_iou

    return torch.stack([tv_box_iou(x[None].double(), y[None].double())[0, 0] for x, y in zip(a, b)])


# =============================================================================================
# box_iou: fractional, tiny and half-precision boxes against torchvision
# =============================================================================================

def test_box_iou_of_fractional_boxes_equals_torchvision():
    """Boxes need not sit on the pixel grid (a box from resized coordinates, a sub-pixel box):
    sides under 1 and unions under 1 must count as they are, not as one pixel."""
    a = torch.tensor([[0.0, 0.0, 0.5, 4.0],   # 0.5 wide: area 2
                      [0.0, 0.0, 4.0, 0.25],  # 0.25 high: area 1
                      [0.0, 0.0, 0.5, 0.5],   # union 0.25 with itself
                      [0.1, 0.2, 0.7, 0.9],
                      [1.5, 2.5, 3.25, 2.75]])
    b = torch.tensor([[0.0, 0.0, 4.0, 4.0],
                      [0.0, 0.0, 4.0, 4.0],
                      [0.0, 0.0, 0.5, 0.5],
                      [0.4, 0.0, 1.0, 0.6],
                      [2.0, 2.0, 3.0, 3.0]])
    expected = torchvision_iou(a, b)
    assert torch.allclose(box_iou(a, b).double(), expected, atol=1e-6)
    assert box_iou(a, b)[:3].tolist() == pytest.approx([2 / 16, 4 / 64, 1.0])


def test_box_iou_does_not_depend_on_the_unit():
    """IoU is a ratio of areas: boxes in pixels, in normalised [0, 1] coordinates or scaled down to
    tiny sizes give the same IoU (a floor on the union would shrink it for tiny boxes)."""
    a = torch.tensor([[0, 0, 4, 4], [2, 1, 9, 5], [3, 3, 5, 8]], dtype=torch.float64)
    b = torch.tensor([[2, 0, 6, 4], [0, 0, 6, 6], [3, 3, 5, 8]], dtype=torch.float64)
    expected = torchvision_iou(a, b)
    for scale in (1.0, 1 / 224, 1e-4, 1e-7):
        assert torch.allclose(box_iou(a * scale, b * scale).double(), expected, rtol=1e-5), scale
    assert box_iou(a[2] * 1e-7, b[2] * 1e-7).item() == pytest.approx(1.0)  # identical tiny boxes: 1


def test_box_iou_computes_in_float32_whatever_the_boxes_dtype():
    """Half-precision boxes (from an AMP detector) of 300 x 300 pixels: the area 90000 overflows
    float16 (max 65504), so the areas must be computed in float32, as documented float results."""
    a = torch.tensor([[0, 0, 300, 300], [10, 20, 310, 260], [0, 0, 256, 256]], dtype=torch.float16)
    b = torch.tensor([[0, 0, 300, 300], [0, 0, 300, 300], [128, 0, 384, 256]], dtype=torch.float16)
    expected = torchvision_iou(a, b)
    assert expected[0].item() == 1.0
    for x, y in ((a, b), (a, b.float()), (a.float(), b), (a.double(), b), (a, b.double())):
        got = box_iou(x, y)
        assert got.dtype == torch.float32, (x.dtype, y.dtype)
        assert torch.allclose(got.double(), expected, atol=1e-6), (x.dtype, y.dtype)
    assert box_iou(a.long(), b.long()).dtype == torch.float32  # integer pixel boxes too


# =============================================================================================
# largest_component: the first pixel, one-row and one-column maps, runs crossed in one round
# =============================================================================================

def test_largest_component_keeps_a_component_in_the_top_left_pixel():
    """Pixel (0, 0) has label 1, the first pixel a label can name: it is a component like any other."""
    alone = torch.zeros(3, 4, dtype=torch.bool)
    alone[0, 0] = True
    assert torch.equal(largest_component(alone), alone)
    assert torch.equal(largest_component(torch.ones(1, 1, dtype=torch.bool)), torch.ones(1, 1, dtype=torch.bool))
    generator = torch.Generator().manual_seed(5)
    masks = torch.rand(6, 5, 7, generator=generator) > 0.7
    masks[:, 0, 0] = True  # the top-left pixel in every mask, isolated in some
    masks[0, :2, :2] = False
    masks[0, 0, 0] = True
    masks[0, 3:, 4:] = False
    for i in range(6):
        assert np.array_equal(largest_component(masks[i]).numpy(), largest_component_reference(masks[i].numpy())), i
    maps = torch.zeros(2, 4, 6)
    maps[:, 0, 0] = 1.0  # the peak in the first pixel: CAM's box is that pixel
    maps[1, 3, 5] = 0.1
    assert boxes_from_maps(maps).tolist() == [[0, 0, 1, 1]] * 2


def test_largest_component_of_one_row_or_one_column_equals_scipy():
    """Maps of height or width 1 (a strip): the runs across the short side have length 1."""
    row = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1]], dtype=torch.bool)
    for mask in (row, row.T, row.flip(-1), torch.stack([row, row.flip(-1)])):
        got = largest_component(mask)
        for index in np.ndindex(mask.shape[:-2]):
            expected = largest_component_reference(mask[index].numpy())
            assert np.array_equal(got[index].numpy(), expected), (tuple(mask.shape), index)
    assert largest_component(row).nonzero()[:, 1].tolist() == [6, 7, 8]
    maps = torch.tensor([[0.9, 0.8, 0.0, 0.7, 0.0, 1.0, 0.0, 0.5, 0.6, 0.9]])
    assert boxes_from_maps(maps).tolist() == [7, 0, 10, 1]
    assert boxes_from_maps(maps.T).tolist() == [0, 7, 1, 10]


def test_a_straight_run_is_one_component_after_a_single_round():
    """The docstring: a label crosses a long horizontal or vertical run of mask pixels in one step
    (a segmented max). So one round (``max_iterations=1``) labels a straight bar as one component,
    and it beats a smaller blob; a pixel-by-pixel growth would still have the bar in pieces."""
    bar = torch.zeros(5, 40, dtype=torch.bool)
    bar[2, 3:35] = True  # 32 pixels in a row
    bar[0, 0:3] = bar[4, 37:40] = True  # two blobs of 3
    for mask in (bar, bar.T, bar.flip(-1), bar.T.flip(-2)):
        expected = largest_component_reference(mask.numpy())
        assert expected.sum() == 32
        assert np.array_equal(largest_component(mask, max_iterations=1).numpy(), expected), tuple(mask.shape)
    # several maps at once, each with its bar along a different axis
    both = torch.zeros(2, 40, 40, dtype=torch.bool)
    both[0, 7, 2:38] = True
    both[1, 2:38, 30] = True
    both[:, 0, 0:2] = True
    got = largest_component(both, max_iterations=1)
    assert got.sum((1, 2)).tolist() == [36, 36] and bool(got[0, 7, 2:38].all()) and bool(got[1, 2:38, 30].all())


# =============================================================================================
# pointing game, energy, CAM's IoU: defaults, one-pixel maps, small or half-precision maps
# =============================================================================================

def test_pointing_game_default_tolerance_is_zero_pixels():
    """Without ``tolerance`` the peak must lie inside the target: a peak one pixel beside the box
    misses (tolerance 1 would count it)."""
    maps = torch.zeros(2, 6, 9)
    maps[0, 2, 5] = 1.0  # column 5: just right of the box (x1 = 5 exclusive)
    maps[1, 2, 4] = 1.0  # column 4: inside
    boxes = torch.tensor([[1, 1, 5, 4], [1, 1, 5, 4]])
    assert pointing_game(maps, boxes).tolist() == [False, True]
    assert pointing_game(maps, boxes, 1).tolist() == [True, True]
    mask = torch.from_numpy(mask_of_box([1, 1, 5, 4], 6, 9))
    assert pointing_game(maps, mask).tolist() == [False, True]


def test_one_pixel_maps_are_maps_and_empty_maps_are_refused():
    """A 1 x 1 map is a valid map: no peak (it is constant), all its energy in a box over it, and
    CAM's box is the pixel itself. A map with no pixel is refused."""
    maps = torch.tensor([[[3.0]], [[0.0]]])
    assert pointing_game(maps, torch.tensor([[0, 0, 1, 1]] * 2)).tolist() == [False, False]
    assert energy_pointing_game(maps, torch.tensor([[0, 0, 1, 1]] * 2)).tolist() == [1.0, 0.0]
    assert energy_pointing_game(maps, torch.tensor([[0, 0, 0, 0]] * 2)).tolist() == [0.0, 0.0]
    assert boxes_from_maps(maps).tolist() == [[0, 0, 1, 1], [0, 0, 0, 0]]
    assert localization_iou(maps, torch.tensor([[0, 0, 1, 1]] * 2)).tolist() == [1.0, 0.0]
    for empty in (torch.zeros(2, 0, 5), torch.zeros(0, 3, 3), torch.zeros(4, 0)):
        for metric in (pointing_game, energy_pointing_game, localization_iou):
            with pytest.raises(InputError, match="not empty"):
                metric(empty, torch.tensor([0, 0, 1, 1]))


def test_energy_share_does_not_depend_on_the_maps_scale():
    """The share of the map's sum inside the box: maps summing to less than 1, or tiny ones (raw
    gradient maps can be 1e-20), give the same share as the map scaled to [0, 1]."""
    maps = torch.zeros(2, 4, 5)
    maps[:, 0, 0], maps[:, 3, 4], maps[:, 1, 2] = 0.3, 0.1, 0.2
    maps[1] = maps[1].flip(-1)
    boxes = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 4]])
    expected = []
    for i in range(2):
        values = maps[i].numpy().astype(np.float64)
        expected.append(values[mask_of_box(boxes[i], 4, 5)].sum() / values.sum())
    assert expected == pytest.approx([0.5, 1 / 6])
    for scale in (1.0, 0.01, 1e-20, 1e5):
        assert energy_pointing_game(maps * scale, boxes).tolist() == pytest.approx(expected, rel=1e-5), scale


def test_half_and_double_maps_are_measured_in_float32():
    """Maps in float16 (autocast) or float64: energies are float32 shares, computed in float32, so
    a 300 x 300 map whose sum (90000) overflows float16 still gives its share."""
    ones = torch.ones(2, 300, 300)
    ones[1, :, 150:] = 3.0
    boxes = torch.tensor([[0, 0, 150, 150], [0, 0, 150, 300]])  # a quarter; the left half
    for dtype in (torch.float16, torch.float64, torch.float32):
        got = energy_pointing_game(ones.to(dtype), boxes)
        assert got.dtype == torch.float32, dtype
        assert got.tolist() == pytest.approx([0.25, 0.25], rel=1e-5), dtype
        assert pointing_game(ones.to(dtype), boxes).tolist() == [False, False]  # map 0 is constant
        assert localization_iou(ones.to(dtype), boxes).dtype == torch.float32


def test_mask_targets_of_width_4_are_masks_not_boxes():
    """A target whose last side is 4 is a box only with fewer dims than the maps: masks (N, H, 4)
    for (N, H, 4) maps, or (H, 4) for one (H, 4) map, are masks."""
    maps = torch.zeros(2, 3, 4)
    maps[0, 1, 3] = maps[1, 2, 0] = 1.0
    masks = torch.zeros(2, 3, 4, dtype=torch.bool)
    masks[0, :, 2:] = True  # holds the peak (1, 3)
    masks[1, 0] = True  # misses the peak (2, 0)
    assert pointing_game(maps, masks).tolist() == [True, False]
    assert energy_pointing_game(maps, masks).tolist() == [1.0, 0.0]
    assert pointing_game(maps[0], masks[0]).item() is True
    assert energy_pointing_game(maps[1], masks[1]).item() == 0.0
    boxes = torch.tensor([[2, 0, 4, 3], [0, 0, 4, 1]])  # the same pixels as boxes
    assert pointing_game(maps, boxes).tolist() == [True, False]


def test_targets_with_more_leading_dims_than_the_maps_are_refused():
    """Targets share a prefix of the maps' leading shape: (2, 3, 3, 5) masks for (2, 3, 5) maps are
    not one target per map (nor per image) and are refused, naming the shapes."""
    maps = torch.rand(2, 3, 5)
    for metric in (pointing_game, energy_pointing_game, localization_iou):
        with pytest.raises(InputError, match="leading shape"):
            metric(maps, torch.ones(2, 3, 3, 5, dtype=torch.bool))
        with pytest.raises(InputError, match="leading shape"):
            metric(maps[0], torch.ones(3, 5, 3, 5, dtype=torch.bool))


# =============================================================================================
# _common: explanations, top-1 batches, score dtypes
# =============================================================================================

def test_flatten_pairs_takes_only_whole_explanations():
    """An Explanation has ``maps`` and ``classes``; an object with only one of them is not one,
    and is refused as bad maps (not an AttributeError)."""
    from types import SimpleNamespace

    x = torch.rand(2, 1, 3, 4)
    for half in (SimpleNamespace(maps=torch.rand(2, 3, 4)), SimpleNamespace(classes=torch.tensor([0, 1]))):
        with pytest.raises(InputError, match="SimpleNamespace"):
            flatten_pairs(x, half, None)
        with pytest.raises(InputError, match="SimpleNamespace"):
            flatten_pairs(x, half, [0, 1])
    whole = SimpleNamespace(maps=torch.rand(2, 3, 4), classes=torch.tensor([1, 0]))
    assert flatten_pairs(x, whole, None)[2].tolist() == [1, 0]


class _BatchRecorder(nn.Module):
    """A linear classifier that records the size of every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.fc(x.flatten(1))


def test_top1_classes_are_found_in_batches_of_at_most_64_by_default():
    """``classes=None`` runs the model over the images, at most ``batch_size`` (default 64) at a time:
    the metrics' memory bound (one batch of images) holds for that pass too. 130 images: 64, 64, 2."""
    torch.manual_seed(0)
    model = _BatchRecorder()
    x = torch.randn(130, 1, 2, 2)
    _, _, cls = flatten_pairs(x, torch.rand(130, 2, 2), None, model)
    assert model.sizes == [64, 64, 2]
    with torch.no_grad():
        assert cls.tolist() == model.fc(x.flatten(1)).argmax(1).tolist()
    model.sizes.clear()
    _, _, again = flatten_pairs(x, torch.rand(130, 2, 2), None, model, batch_size=50)
    assert model.sizes == [50, 50, 30] and torch.equal(again, cls)
    model.sizes.clear()
    deletion_curve(model, x, torch.rand(130, 2, 2), step=0.5, progress=False)  # default batch_size 64
    assert max(model.sizes) <= 64


def test_every_metric_finds_top1_classes_in_its_own_batch_size():
    """With ``classes=None`` the top-1 pass runs inside each metric: its ``batch_size`` bounds that
    pass too (ROAD's default is 32, the others' 64; here 8: 20 images give 8, 8, 4 at the least)."""
    from camlens.metrics import confidence_change, evaluate_maps, insertion_curve, road

    torch.manual_seed(0)
    model = _BatchRecorder()
    x = torch.randn(20, 1, 2, 2)
    maps = torch.rand(20, 2, 2)
    runs = {
        "deletion": lambda: deletion_curve(model, x, maps, step=0.5, batch_size=8, progress=False),
        "insertion": lambda: insertion_curve(model, x, maps, step=0.5, batch_size=8, progress=False),
        "confidence": lambda: confidence_change(model, x, maps, batch_size=8),
        "road": lambda: road(model, x, maps, fractions=(0.5,), batch_size=8),
        "evaluate_maps": lambda: evaluate_maps(model, x, maps, batch_size=8, progress=False),
    }
    for name, run in runs.items():
        model.sizes.clear()
        run()
        assert model.sizes[:3] == [8, 8, 4] and max(model.sizes) <= 8, name  # the top-1 pass comes first


def test_logit_scores_are_float32_like_the_others():
    """Every named score is float32 whatever the model's dtype (float16 under AMP, float64): the
    metrics' score tables are float32, and a curve's points must not change dtype with the score."""
    z = torch.tensor([[1.5, -2.25, 0.5], [0.0, 3.0, -1.0]])
    for dtype in (torch.float16, torch.float64, torch.bfloat16):
        for name in ("softmax", "logit", "sigmoid"):
            got = score_fn(name)(z.to(dtype))
            assert got.dtype == torch.float32, (name, dtype)
        assert torch.equal(score_fn("logit")(z.to(dtype)), z)  # these values are exact in every dtype
