"""camlens.metrics against hand-computed cases: closed forms, best and worst maps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camlens import CamlensError, InputError
from camlens.metrics import (
    auc,
    box_iou,
    boxes_from_maps,
    boxes_to_masks,
    confidence_change,
    deletion_curve,
    energy_pointing_game,
    evaluate,
    evaluate_maps,
    insertion_curve,
    largest_component,
    localization_iou,
    masks_to_boxes,
    plot_curves,
    pointing_game,
)

W = torch.tensor([[4.0, 3.0], [2.0, 1.0]])


def linear_model(*weights: torch.Tensor) -> nn.Module:
    """logits[c] = sum(weights[c] * x) over a (1, 2, 2) image: scores computable by hand."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, len(weights), bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w.flatten() for w in weights]))
    return model


# --- AUC -------------------------------------------------------------------------------------

def test_auc_trapezoid_on_known_curves():
    assert auc(torch.linspace(0, 1, 11)).item() == pytest.approx(0.5)
    assert auc(torch.tensor([0.0, 1.0, 0.0])).item() == pytest.approx(0.5)
    assert auc(torch.ones(7)).item() == pytest.approx(1.0)
    # non-uniform abscissae: 0.25 * (0+1)/2 + 0.75 * (1+1)/2
    assert auc(torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 0.25, 1.0])).item() == pytest.approx(0.875)
    assert auc(torch.tensor([[1.0, 0.0], [0.0, 0.0]])).tolist() == [0.5, 0.0]
    with pytest.raises(InputError):
        auc(torch.tensor([1.0]))


# --- deletion / insertion ----------------------------------------------------------------------

def test_deletion_and_insertion_on_a_linear_model_by_hand():
    model, x = linear_model(W, torch.zeros(2, 2)), torch.ones(1, 1, 2, 2)
    kw = dict(step=1, score="logit", baseline="zeros", progress=False)
    best = deletion_curve(model, x, W[None], 0, **kw)
    assert best.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert best.scores.tolist() == [[10, 6, 3, 1, 0]]
    assert best.auc.item() == pytest.approx(0.25 * (8 + 4.5 + 2 + 0.5))  # 3.75
    worst = deletion_curve(model, x, -W[None], 0, **kw)  # reversed map: least important first
    assert worst.scores.tolist() == [[10, 9, 7, 4, 0]]
    assert worst.auc.item() == pytest.approx(6.25) and worst.auc > best.auc

    ins_best = insertion_curve(model, x, W[None], 0, **kw)
    assert ins_best.scores.tolist() == [[0, 4, 7, 9, 10]] and ins_best.auc.item() == pytest.approx(6.25)
    ins_worst = insertion_curve(model, x, -W[None], 0, **kw)
    assert ins_worst.scores.tolist() == [[0, 1, 3, 6, 10]] and ins_worst.auc.item() == pytest.approx(3.75)


def test_step_as_fraction_or_pixel_count():
    model, x = linear_model(W, torch.zeros(2, 2)), torch.ones(1, 1, 2, 2)
    half = deletion_curve(model, x, W[None], 0, step=0.5, score="logit", progress=False)
    assert half.fractions.tolist() == [0.0, 0.5, 1.0] and half.scores.tolist() == [[10, 3, 0]]
    three = deletion_curve(model, x, W[None], 0, step=3, score="logit", progress=False)
    assert three.fractions.tolist() == [0.0, 0.75, 1.0] and three.scores.tolist() == [[10, 1, 0]]
    assert three.auc.item() == pytest.approx(0.75 * 5.5 + 0.25 * 0.5)
    for bad in (0, -2, 1.5, 0.0, "1"):
        with pytest.raises(InputError):
            deletion_curve(model, x, W[None], 0, step=bad, progress=False)


def test_baselines_mean_blur_number_and_tensor():
    model = linear_model(W, torch.zeros(2, 2))
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    kw = dict(step=4, score="logit", progress=False)
    # deleting every pixel leaves the baseline: its score is sum(W * baseline)
    assert deletion_curve(model, x, W[None], 0, baseline="mean", **kw).scores[0, -1].item() == pytest.approx(2.5 * 10)
    assert deletion_curve(model, x, W[None], 0, baseline=-1.0, **kw).scores[0, -1].item() == pytest.approx(-10)
    assert deletion_curve(model, x, W[None], 0, baseline=torch.ones(1, 1, 1, 1), **kw).scores[0, -1].item() == pytest.approx(10)
    flat = torch.full((1, 1, 2, 2), 0.5)  # blurring a constant image changes nothing
    assert insertion_curve(model, flat, W[None], 0, baseline="blur", **kw).scores[0, 0].item() == pytest.approx(5.0)
    with pytest.raises(InputError, match="baseline"):
        deletion_curve(model, x, W[None], 0, baseline="noise", **kw)


def test_several_classes_per_image_and_batching_agree():
    w2 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    model = linear_model(W, w2)
    x = torch.stack([torch.ones(1, 2, 2), 2 * torch.ones(1, 2, 2)])
    maps = torch.stack([torch.stack([W, w2])] * 2)  # (N=2, K=2, 2, 2): each class's own weights
    classes = torch.tensor([[0, 1], [0, 1]])
    one = deletion_curve(model, x, maps, classes, step=1, score="logit", batch_size=1, progress=False)
    many = deletion_curve(model, x, maps, classes, step=1, score="logit", batch_size=100, progress=False)
    assert torch.equal(one.scores, many.scores)
    assert one.scores[0].tolist() == [10, 6, 3, 1, 0]            # image 0, class 0
    assert one.scores[1].tolist() == [10, 6, 3, 1, 0]            # image 0, class 1 (order 4, 3, 2, 1)
    assert one.scores[2].tolist() == [20, 12, 6, 2, 0]           # image 1 (pixels are 2)


def test_softmax_score_and_model_state_left_as_found():
    model = linear_model(W, torch.zeros(2, 2)).train()
    x = torch.ones(1, 1, 2, 2)
    curve = deletion_curve(model, x, W[None], 0, step=1, progress=False)
    expected = torch.tensor([10.0, 0.0]).softmax(0)[0]
    assert curve.scores[0, 0].item() == pytest.approx(expected.item())
    assert curve.scores[0, -1].item() == pytest.approx(0.5)  # all zeros: logits tie
    assert model.training and model[1].weight.grad is None


def test_explanation_object_is_accepted():
    from camlens import explain

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    x = torch.randn(2, 3, 12, 12)
    e = explain(net, x, "gradcam", target_layer="1", classes=[1, 3])
    curve = insertion_curve(net, x, e, step=0.25, progress=False)
    assert curve.scores.shape == (4, 5)
    probs = net(x).softmax(-1)
    assert torch.allclose(curve.scores[:, -1], probs[:, [1, 3]].flatten(), atol=1e-6)  # fully inserted = intact


def test_bad_maps_are_explained():
    model, x = linear_model(W, torch.zeros(2, 2)), torch.ones(1, 1, 2, 2)
    with pytest.raises(InputError, match="upsample"):
        deletion_curve(model, x, torch.zeros(1, 3, 3), 0, progress=False)
    with pytest.raises(InputError, match="inputs hold 1"):
        deletion_curve(model, x, torch.zeros(2, 2, 2), 0, progress=False)
    with pytest.raises(InputError, match="one class per map"):
        deletion_curve(model, x, torch.zeros(1, 2, 2, 2), [0], progress=False)
    assert issubclass(InputError, CamlensError)


# --- average drop / increase in confidence -----------------------------------------------------

def test_confidence_change_by_hand():
    model, x = linear_model(W, torch.zeros(2, 2)), torch.ones(1, 1, 2, 2)
    change = confidence_change(model, x, torch.tensor([[[1.0, 0.5], [0.0, 0.0]]]), 0, score="logit")
    assert change.full.tolist() == [10] and change.masked.tolist() == [5.5]
    assert change.average_drop == pytest.approx(45.0) and change.increase_in_confidence == 0
    exact = confidence_change(model, x, torch.ones(1, 2, 2), 0, score="logit")  # the whole image: no drop
    assert exact.average_drop == 0
    # a negative pixel: hiding it raises the score -> an increase, and no drop
    signed = linear_model(torch.tensor([[4.0, -3.0], [2.0, 1.0]]), torch.zeros(2, 2))
    up = confidence_change(signed, x, torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]), 0, score="logit")
    assert up.full.tolist() == [4] and up.masked.tolist() == [7]
    assert up.increase.tolist() == [True] and up.average_drop == 0 and up.increase_in_confidence == 100
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        confidence_change(model, x, 2 * torch.ones(1, 2, 2), 0)


# --- localization ------------------------------------------------------------------------------

BOX = torch.tensor([[3, 2, 7, 5]])  # x0, y0, x1, y1 on a 10 x 12 image


def box_map() -> torch.Tensor:
    return boxes_to_masks(BOX, (10, 12)).float()


def test_boxes_masks_round_trip_and_iou_by_hand():
    mask = box_map()
    assert mask.sum().item() == 4 * 3 and mask[0, 2, 3] == 1 and mask[0, 5, 3] == 0 and mask[0, 2, 7] == 0
    assert masks_to_boxes(mask.bool()).tolist() == BOX.tolist()
    assert masks_to_boxes(torch.zeros(1, 4, 4, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]
    assert box_iou(torch.tensor([0, 0, 2, 2]), torch.tensor([1, 1, 3, 3])).item() == pytest.approx(1 / 7)
    assert box_iou(torch.tensor([0, 0, 2, 2]), torch.tensor([2, 2, 4, 4])).item() == 0
    assert box_iou(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 0])).item() == 0


def test_a_map_that_is_the_box_scores_perfectly():
    maps = box_map()
    assert pointing_game(maps, BOX).tolist() == [True]
    assert energy_pointing_game(maps, BOX).tolist() == [1.0]
    assert localization_iou(maps, BOX).tolist() == [1.0]
    mask = maps.bool()  # masks as targets give the same
    assert pointing_game(maps, mask).tolist() == [True] and energy_pointing_game(maps, mask).tolist() == [1.0]


def test_a_reversed_map_scores_worst():
    maps = 1 - box_map()
    assert pointing_game(maps, BOX).tolist() == [False]
    assert energy_pointing_game(maps, BOX).tolist() == [0.0]
    # the complement is one component spanning the image: its box is the whole 10 x 12 image
    assert boxes_from_maps(maps).tolist() == [[0, 0, 12, 10]]
    assert localization_iou(maps, BOX).item() == pytest.approx(12 / 120)


def test_pointing_game_tolerance_and_constant_maps():
    maps = torch.zeros(1, 30, 30)
    maps[0, 10, 19] = 1.0  # 3 columns right of a box whose last column is 16 (x1 = 17)
    box = torch.tensor([[5, 5, 17, 15]])
    assert [pointing_game(maps, box, t).item() for t in (0, 2, 3, 15)] == [False, False, True, True]
    maps[0, 10, 19], maps[0, 19, 19] = 0.0, 1.0  # 3 right of and 5 below the corner (16, 14): sqrt(34)
    assert [pointing_game(maps, box, t).item() for t in (5.8, 5.9)] == [False, True]
    assert pointing_game(torch.ones(1, 30, 30), box).tolist() == [False]  # no peak, no hit
    assert energy_pointing_game(torch.zeros(1, 30, 30), box).tolist() == [0.0]


def test_energy_is_the_share_inside():
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0], maps[0, 1, 1], maps[0, 3, 3] = 2.0, 1.0, 1.0
    assert energy_pointing_game(maps, torch.tensor([[0, 0, 2, 2]])).item() == pytest.approx(0.75)
    maps[0, 3, 3] = -5.0  # negative values carry no energy
    assert energy_pointing_game(maps, torch.tensor([[0, 0, 2, 2]])).item() == pytest.approx(1.0)


def test_largest_component_keeps_the_biggest_8_connected_blob():
    m = torch.zeros(2, 8, 8, dtype=torch.bool)
    m[0, 0, 0] = m[0, 1, 1] = m[0, 2, 2] = True  # a diagonal: one 8-connected component of 3
    m[0, 5:7, 5:7] = True  # a 2x2 square: 4 pixels
    m[0, 0, 7] = True
    out = largest_component(m)
    assert out[0].sum() == 4 and out[0, 5:7, 5:7].all()
    assert not out[1].any()  # an empty mask stays empty
    m[0, 3, 3] = m[0, 4, 4] = True  # the diagonal now touches the square: 3 + 2 + 4 = 9
    assert largest_component(m)[0].sum() == 9


def test_largest_component_matches_scipy_on_random_masks():
    ndimage = pytest.importorskip("scipy.ndimage")
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 40, 40, generator=generator) > 0.55
    out = largest_component(masks)
    for mask, got in zip(masks, out):
        labels, count = ndimage.label(mask.numpy(), structure=[[1, 1, 1]] * 3)
        sizes = [(labels == i).sum() for i in range(1, count + 1)]
        assert got.sum().item() == max(sizes)
        assert len(set(labels[got.numpy()].tolist())) == 1


def test_largest_component_follows_a_long_snake():
    m = torch.zeros(1, 9, 9, dtype=torch.bool)
    for row in range(0, 9, 2):  # a serpentine path: label propagation must walk all of it
        m[0, row, :] = True
        m[0, row + 1 if row + 1 < 9 else row, 8 if row % 4 == 0 else 0] = True
    m[0, 8, 8] = False
    assert largest_component(m)[0].sum() == m.sum()


def test_cam_box_threshold_drops_the_low_plateau():
    maps = torch.full((1, 20, 20), 0.1)
    maps[0, 4:9, 10:16] = 1.0
    assert boxes_from_maps(maps, threshold=0.2).tolist() == [[10, 4, 16, 9]]
    assert boxes_from_maps(maps, threshold=0.05).tolist() == [[0, 0, 20, 20]]
    assert boxes_from_maps(torch.zeros(1, 5, 5)).tolist() == [[0, 0, 0, 0]]
    with pytest.raises(InputError):
        boxes_from_maps(maps, threshold=1.5)


def test_targets_broadcast_over_classes():
    maps = torch.stack([box_map()[0], 1 - box_map()[0]])[None]  # (N=1, K=2, 10, 12)
    assert pointing_game(maps, BOX).tolist() == [[True, False]]  # (N, 4) boxes for (N, K, H, W) maps
    per_class = torch.stack([BOX[0], torch.tensor([0, 0, 12, 10])])[None]  # (N, K, 4)
    assert energy_pointing_game(maps, per_class).tolist() == [[1.0, 1.0]]
    with pytest.raises(InputError, match="boxes"):
        pointing_game(maps, torch.zeros(1, 3))


# --- evaluate ----------------------------------------------------------------------------------

def gap_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


def test_evaluate_reports_every_metric_and_the_table():
    net, x = gap_net(), torch.randn(3, 1, 16, 16)
    boxes = torch.tensor([[0, 0, 8, 8], [4, 4, 12, 12], [8, 8, 16, 16]])
    result = evaluate(net, x, ["gradcam", "cam"], targets=boxes, target_layer="1", step=0.25, tolerance=2, progress=False)
    assert list(result.scores) == ["gradcam", "cam"]
    cam = result.scores["cam"]
    assert cam.images == 3 and cam.pointing.shape == (3,) and cam.deletion.scores.shape == (3, 5)
    summary = result.summary()["cam"]
    assert 0 <= summary["energy"] <= 1 and 0 <= summary["pointing"] <= 1 and summary["ms_per_image"] > 0
    # CAM and Grad-CAM coincide on a GAP + linear head, so every metric agrees
    grad = result.summary()["gradcam"]
    for key in ("pointing", "energy", "iou", "deletion", "insertion", "average_drop"):
        assert grad[key] == pytest.approx(summary[key], abs=1e-5), key
    table = result.table()
    assert table.splitlines()[0].startswith("| method | images | pointing game") and "| cam | 3 |" in table


def test_evaluate_skips_a_method_the_head_cannot_support():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    result = evaluate(net, torch.randn(2, 1, 8, 8), ["cam", "gradcam"], target_layer="1", step=0.5, progress=False)
    assert result.scores["cam"].error and "global-average-pool" in result.scores["cam"].error
    assert "cam: skipped" in result.table() and "cam" not in result.summary()
    assert math.isnan(result.summary()["gradcam"]["pointing"])  # no targets: no localization


def test_evaluate_time_budget_limits_the_images():
    net, x = gap_net(), torch.randn(4, 1, 16, 16)
    result = evaluate(net, x, "gradcam", target_layer="1", step=0.5, max_seconds_per_method=0.0, progress=False)
    assert result.scores["gradcam"].images == 1 and result.scores["gradcam"].deletion.scores.shape[0] == 1


def test_evaluate_maps_on_perfect_and_reversed_maps_and_plot():
    net = gap_net()
    x = torch.randn(1, 1, 10, 12)
    kw = dict(step=0.5, tolerance=0, progress=False)
    good = evaluate_maps(net, x, box_map(), 0, BOX, name="box", **kw)
    bad = evaluate_maps(net, x, 1 - box_map(), 0, BOX, name="reversed", **kw)
    assert good.summary()["pointing"] == 1 and good.summary()["iou50"] == 1 and good.summary()["energy"] == 1
    assert bad.summary()["pointing"] == 0 and bad.summary()["iou50"] == 0 and bad.summary()["energy"] == 0
    figure = plot_curves({"box": good, "reversed": bad})
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == 2
    import matplotlib.pyplot as plt

    plt.close(figure)
