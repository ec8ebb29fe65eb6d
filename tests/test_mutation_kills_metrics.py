"""camlens.metrics against references: the papers' formulas, brute-force loops, pytorch-grad-cam.

Each test was written against mutants of ``src/camlens/metrics`` that survived the rest of the
suite (``python tools/mutate.py metrics/``), but checks the documented behaviour, not the
mutant: a reference computed independently (a Python loop over pixels, scipy, torchvision,
pytorch-grad-cam), on inputs where the usual slips change the answer: several images and
classes (a ``mean`` is not a ``sum``), non-square images (height is not width), ties, uneven
last steps and batches that do not divide the work.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import camlens
from camlens import InputError
from camlens.metrics import (
    ConfidenceChange,
    Curves,
    Evaluation,
    MethodScores,
    RoadScores,
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
    noisy_linear_imputation,
    plot_curves,
    pointing_game,
    road,
)
from camlens.metrics._common import (
    check_inputs,
    chunks,
    flatten_pairs,
    forward_logits,
    gaussian_blur,
    logits_in_batches,
    make_baseline,
    score_fn,
)
from camlens.metrics.road import DEFAULT_FRACTIONS, removed_count

from conftest import largest_component_reference, mask_of_box  # noqa: E402


def linear_model(weights: torch.Tensor) -> nn.Module:
    """logits[k] = sum(weights[k] * x) for (K, C, H, W) weights: scores computable by hand."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weights[0].numel(), weights.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weights.flatten(1))
    return model


def small_net(channels: int = 2, classes: int = 4, seed: int = 0) -> nn.Module:
    """A seeded non-linear CNN (conv, ReLU, GAP, linear): softmax scores that move both ways."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, classes)).eval()


# =============================================================================================
# _common: inputs, pairs, scores, baselines
# =============================================================================================

def test_check_inputs_names_what_is_wrong():
    x = torch.rand(2, 1, 3, 3)
    assert check_inputs(x) is x
    with pytest.raises(InputError, match=r"got list"):
        check_inputs([[1.0]])
    with pytest.raises(InputError, match=r"got \(2, 3, 4\)"):
        check_inputs(torch.zeros(2, 3, 4))
    with pytest.raises(InputError, match=r"got \(1, 1, 2, 2\)"):
        check_inputs(torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(InputError, match="no image"):
        check_inputs(torch.zeros(0, 1, 2, 2))
    bad = x.clone()
    bad[1, 0, 2, 2] = float("inf")
    with pytest.raises(InputError, match="NaN or Inf"):
        check_inputs(bad)


def test_flatten_pairs_points_each_map_back_to_its_image():
    x = torch.rand(3, 1, 2, 5)
    maps = torch.rand(3, 2, 2, 5, dtype=torch.float64)
    classes = torch.tensor([[4, 1], [0, 2], [3, 3]])
    image_index, flat, cls = flatten_pairs(x, maps, classes)
    assert image_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert cls.tolist() == [4, 1, 0, 2, 3, 3]
    assert flat.dtype == torch.float32 and flat.shape == (6, 2, 5)
    assert torch.equal(flat[3], maps[1, 1].float())
    # one map per image: K = 1; a single int class is every image's class
    image_index, flat, cls = flatten_pairs(x, maps[:, 0], 2)
    assert image_index.tolist() == [0, 1, 2] and cls.tolist() == [2, 2, 2] and torch.equal(flat, maps[:, 0].float())
    # an Explanation: its maps and classes, unless classes are given
    explanation = camlens.explain(small_net(1), x, "gradcam", target_layer="1", classes=torch.tensor([[1, 3]] * 3))
    _, flat, cls = flatten_pairs(x, explanation, None)
    assert cls.tolist() == [1, 3] * 3 and torch.equal(flat, explanation.maps.reshape(6, 2, 5))
    _, _, cls = flatten_pairs(x, explanation, torch.tensor([[0, 1], [2, 3], [0, 0]]))
    assert cls.tolist() == [0, 1, 2, 3, 0, 0]


def test_flatten_pairs_without_classes_takes_each_images_top1_for_every_map():
    # logits = (s, -s, 0) for s = the sum of the pixels: image 0 (s = 10) is class 0, image 1 (s = -10) class 1
    weights = torch.stack([torch.full((1, 2, 5), v) for v in (1.0, -1.0, 0.0)])
    model = linear_model(weights)
    x = torch.stack([torch.full((1, 2, 5), 1.0), torch.full((1, 2, 5), -1.0)])  # top-1: class 0, then class 1
    _, _, cls = flatten_pairs(x, torch.rand(2, 2, 2, 5), None, model)
    assert cls.tolist() == [0, 0, 1, 1]
    _, _, cls = flatten_pairs(x, torch.rand(2, 2, 5), None, model)
    assert cls.tolist() == [0, 1]
    # the public metrics take the same path: the top-1 probability is the intact image's score
    curves = deletion_curve(model, x, torch.rand(2, 2, 5), step=0.5, progress=False)
    top1 = model(x).softmax(-1).amax(-1)
    assert torch.allclose(curves.scores[:, 0], top1)
    with pytest.raises(InputError, match="needs the model"):
        flatten_pairs(x, torch.rand(2, 2, 5), None)


def test_flatten_pairs_refuses_bad_maps_and_classes_with_the_reason():
    x = torch.rand(2, 1, 2, 5)
    with pytest.raises(InputError, match="got ndarray"):
        flatten_pairs(x, np.zeros((2, 2, 5)), 0)
    with pytest.raises(InputError, match=r"got \(2, 2, 5, 1, 1\)"):
        flatten_pairs(x, torch.zeros(2, 2, 5, 1, 1), 0)
    with pytest.raises(InputError, match=r"got \(2, 5\)"):
        flatten_pairs(x, torch.zeros(2, 5), 0)
    with pytest.raises(InputError, match="real numbers"):
        flatten_pairs(x, torch.zeros(2, 2, 5, dtype=torch.complex64), 0)
    with pytest.raises(InputError, match="class indices"):
        flatten_pairs(x, torch.zeros(2, 2, 5), "cat")
    for bad in (torch.tensor([0.0, 1.0]), torch.tensor([True, False])):
        with pytest.raises(InputError, match="integer class indices"):
            flatten_pairs(x, torch.zeros(2, 2, 5), bad)
    with pytest.raises(InputError, match=r"expected 4 \(2 images x 2\)"):
        flatten_pairs(x, torch.zeros(2, 2, 2, 5), [0, 1])
    # integer maps are fine (no NaN possible) and become float
    _, flat, _ = flatten_pairs(x, torch.ones(2, 2, 5, dtype=torch.long), 0)
    assert flat.dtype == torch.float32 and bool((flat == 1).all())


def test_nan_maps_are_refused_naming_the_images():
    x = torch.rand(7, 1, 2, 3)
    maps = torch.rand(7, 2, 3)
    maps[1, 0, 2] = float("nan")
    maps[4, 1, 0] = maps[4, 0, 0] = float("inf")  # twice in one image: named once
    with pytest.raises(InputError, match=r"image\(s\) 1, 4\)"):
        flatten_pairs(x, maps, 0)
    with pytest.raises(InputError, match=r"image\(s\) 1, 4\)"):  # (N, K, H, W): the image, not the pair
        flatten_pairs(x, torch.stack([maps, torch.rand(7, 2, 3)], 1), [[0, 0]] * 7)
    every = torch.full((7, 2, 3), float("nan"))
    with pytest.raises(InputError, match=r"image\(s\) 0, 1, 2, 3, 4\)"):  # the first five
        flatten_pairs(x, every, 0)


def test_score_functions_are_softmax_logit_sigmoid_or_the_callable():
    z = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    assert torch.allclose(score_fn("softmax")(z), torch.tensor([[1.0, -2.0, 0.5]]).softmax(-1))
    assert torch.equal(score_fn("logit")(z), z.float())
    assert torch.allclose(score_fn("sigmoid")(z), 1 / (1 + torch.exp(-z.float())))
    assert score_fn("softmax")(z).dtype == torch.float32
    double = lambda logits: 2 * logits  # noqa: E731
    assert score_fn(double) is double
    with pytest.raises(InputError, match="not understood"):
        score_fn("probability")


class _WithLogits(nn.Module):
    """Returns an object with ``.logits`` (as Hugging Face models do) or a tuple."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        z = self.fc(x.flatten(1))
        if self.how == "logits":
            return type("Output", (), {"logits": z})()
        if self.how == "tuple":
            return (z, "extra")
        if self.how == "list":
            return [z]
        return z[:, None]  # (N, 1, classes): not class scores


def test_forward_logits_reads_logits_attributes_and_tuples():
    x = torch.rand(2, 1, 2, 2)
    torch.manual_seed(0)
    model = _WithLogits("logits")
    expected = model.fc(x.flatten(1))
    for how in ("logits", "tuple", "list"):
        model.how = how
        assert torch.equal(forward_logits(model, x), expected)
    model.how = "bad"
    with pytest.raises(InputError, match=r"\(N, classes\)"):
        forward_logits(model, x)


def test_logits_in_batches_is_the_eval_mode_output_without_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 16, 5))
    model[1].running_mean.fill_(0.3)
    model[1].running_var.fill_(2.0)
    x = torch.randn(7, 1, 6, 6)
    model.train()
    out = logits_in_batches(model, x, 3)  # 3 + 3 + 1
    assert model.training and not out.requires_grad
    with torch.no_grad():
        expected = model.eval()(x)
    assert torch.allclose(out, expected, atol=1e-6)


def test_chunks_cover_the_range_in_order():
    assert list(chunks(10, 4)) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert list(chunks(3, 3)) == [slice(0, 3)]
    assert list(chunks(2, 1)) == [slice(0, 1), slice(1, 2)]
    with pytest.raises(InputError, match="at least 1"):
        list(chunks(3, 0))


def test_gaussian_blur_equals_torchvision_and_scipy():
    """RISE's blur (kernel 11, sigma 5): torchvision's reflect-padded Gaussian; on images too small
    to reflect (a side <= the radius 5), scipy's ``mode="nearest"`` (replicate)."""
    from scipy.ndimage import gaussian_filter
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    torch.manual_seed(0)
    x = torch.rand(2, 3, 9, 14)
    assert torch.allclose(gaussian_blur(x), tv_blur(x, [11, 11], [5.0, 5.0]), atol=1e-5)
    assert torch.allclose(make_baseline(x, "blur"), tv_blur(x, [11, 11], [5.0, 5.0]), atol=1e-5)
    assert torch.allclose(gaussian_blur(x, 5, 1.5), tv_blur(x, [5, 5], [1.5, 1.5]), atol=1e-5)
    six = torch.rand(1, 2, 6, 6)  # 6 > 5: reflect still possible
    assert torch.allclose(gaussian_blur(six), tv_blur(six, [11, 11], [5.0, 5.0]), atol=1e-5)
    for shape in ((1, 2, 5, 5), (1, 1, 4, 20), (1, 1, 20, 3)):  # a side of at most 5: replicate
        small = torch.rand(shape, dtype=torch.float64)
        expected = gaussian_filter(small.numpy(), sigma=(0, 0, 5, 5), mode="nearest", truncate=1.0)
        assert torch.allclose(gaussian_blur(small), torch.from_numpy(expected), atol=1e-6), shape


def test_baselines_are_what_the_docstring_says():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(make_baseline(x, "zeros"), torch.zeros_like(x))
    mean = make_baseline(x, "mean")
    for i in range(2):
        for c in range(3):  # each image's own per-channel mean, everywhere
            assert torch.allclose(mean[i, c], x[i, c].mean().expand(4, 5))
    assert torch.equal(make_baseline(x, 2), torch.full_like(x, 2.0))
    assert torch.equal(make_baseline(x, -0.5), torch.full_like(x, -0.5))
    colour = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    out = make_baseline(x, colour)
    assert out.shape == x.shape and torch.equal(out[1, 2], torch.full((4, 5), 3.0))
    with pytest.raises(InputError, match=r"broadcast to the inputs \(2, 3, 4, 5\), got \(2,\)"):
        make_baseline(x, torch.zeros(2))
    for bad in (True, "noise"):  # a bool is not a number here
        with pytest.raises(InputError, match="not understood"):
            make_baseline(x, bad)


# =============================================================================================
# faithfulness: RISE deletion / insertion, Grad-CAM++'s average drop and increase in confidence
# =============================================================================================

def rise_reference(model, x, maps, classes, step, baseline, mode, score="softmax"):
    """Deletion / insertion by a plain loop (RISE, Petsiuk et al. 2018): ((N*K, T) scores, (T,) fractions).

    For each (image, class) pair, the pixels are ordered most salient first (ties: raster order),
    and after every ``step`` of them (the last step may be shorter) the first ``count`` are
    replaced by the baseline (deletion) or copied from the image onto the baseline (insertion).
    """
    n, c, h, w = x.shape
    total = h * w
    counts = list(range(0, total, step)) + [total]
    rows = []
    for i in range(n):
        for k in range(maps.shape[1]):
            values = maps[i, k].flatten().tolist()
            order = sorted(range(total), key=lambda j: -values[j])
            row = []
            for count in counts:
                chosen = order[:count]
                start, source = (x[i], baseline[i]) if mode == "deletion" else (baseline[i], x[i])
                image = start.clone().reshape(c, total)
                image[:, chosen] = source.reshape(c, total)[:, chosen]
                with torch.no_grad():
                    logits = model(image.view(1, c, h, w))[0]
                value = logits.softmax(-1) if score == "softmax" else logits
                row.append(float(value[int(classes[i][k])]))
            rows.append(row)
    return torch.tensor(rows), torch.tensor(counts, dtype=torch.float32) / total


def trapezoid_reference(scores: list[float], fractions: list[float]) -> float:
    return sum((fractions[t + 1] - fractions[t]) * (scores[t] + scores[t + 1]) / 2 for t in range(len(scores) - 1))


@pytest.fixture(scope="module")
def faithfulness_case():
    """3 images of 2 x 5 x 6 (30 pixels, not square), 2 classes each, maps with ties."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 5, 6, generator=generator)
    maps = (torch.rand(3, 2, 5, 6, generator=generator) * 10).round() / 10  # ties: raster order decides
    classes = torch.tensor([[0, 3], [2, 1], [1, 1]])
    return small_net(channels=2, classes=4), x, maps, classes


def test_deletion_curves_equal_a_pixel_loop_over_images_and_classes(faithfulness_case):
    model, x, maps, classes = faithfulness_case
    for baseline, reference_baseline in (("zeros", torch.zeros_like(x)), ("mean", x.mean((2, 3), keepdim=True).expand_as(x)),
                                         (0.7, torch.full_like(x, 0.7))):
        curves = deletion_curve(model, x, maps, classes, step=4, baseline=baseline, batch_size=5, progress=False)
        expected, fractions = rise_reference(model, x, maps, classes, 4, reference_baseline, "deletion")
        assert curves.mode == "deletion"
        assert torch.allclose(curves.fractions, fractions)  # 0, 4/30, ..., 28/30, 1: an uneven last step
        assert torch.allclose(curves.scores, expected, atol=1e-6), baseline
        for p in range(6):
            assert curves.auc[p].item() == pytest.approx(trapezoid_reference(expected[p].tolist(), fractions.tolist()), abs=1e-6)
        assert curves.mean_auc == pytest.approx(float(curves.auc.mean()))


def test_insertion_curves_equal_a_pixel_loop_from_the_blurred_image(faithfulness_case):
    from scipy.ndimage import gaussian_filter

    model, x, maps, classes = faithfulness_case
    curves = insertion_curve(model, x, maps, classes, step=7, batch_size=4, progress=False)  # default: RISE's blur
    # kernel 11, sigma 5; a side of 5 is too short to reflect 5 pixels: replicate ("nearest")
    blurred = torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, 5, 5), mode="nearest", truncate=1.0))
    expected, fractions = rise_reference(model, x, maps, classes, 7, blurred, "insertion")
    assert curves.mode == "insertion" and curves.fractions.tolist() == pytest.approx([0, 7 / 30, 14 / 30, 21 / 30, 28 / 30, 1])
    assert torch.allclose(curves.scores, expected, atol=1e-5)
    assert torch.allclose(curves.auc, torch.tensor([trapezoid_reference(r.tolist(), fractions.tolist()) for r in expected]),
                          atol=1e-5)
    # a fractional step is that share of the pixels: 0.1 of 30 = 3 pixels, logits as scores
    curves = insertion_curve(model, x, maps, classes, step=0.1, baseline="zeros", score="logit", progress=False)
    expected, _ = rise_reference(model, x, maps, classes, 3, torch.zeros_like(x), "insertion", score="logit")
    assert curves.fractions.numel() == 11 and torch.allclose(curves.scores, expected, atol=1e-5)


def test_steps_round_to_whole_pixels_and_at_least_one():
    model = linear_model(torch.rand(2, 1, 5, 6))
    x, maps = torch.rand(1, 1, 5, 6), torch.rand(1, 5, 6)
    points = lambda step: deletion_curve(model, x, maps, 0, step=step, progress=False).fractions.numel()  # noqa: E731
    assert points(0.01) == 31  # 0.3 pixels rounds to 0: one pixel per step
    assert points(1) == 31 and points(29) == 3 and points(30) == 2 and points(31) == 2
    assert points(1.0) == 2 and points(0.5) == 3 and points(0.05) == 16  # 1.5 pixels -> 2
    for bad in (True, 0, -1, 0.0, -0.1, 1.01, "2", None):
        with pytest.raises(InputError, match="step"):
            points(bad)


def test_the_map_order_is_most_salient_first_and_ties_keep_raster_order():
    weights = torch.tensor([[[[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]]]])  # each pixel's weight: a unique binary digit
    model, x = linear_model(weights), torch.ones(1, 1, 2, 3)
    ties = torch.tensor([[[0.5, 0.9, 0.5], [0.9, 0.1, 0.5]]])  # order: (0, 1), (1, 0), (0, 0), (0, 2), (1, 2), (1, 1)
    curves = deletion_curve(model, x, ties, 0, step=1, score="logit", progress=False)
    assert curves.scores[0].tolist() == [63, 61, 53, 52, 48, 16, 0]
    curves = insertion_curve(model, x, ties, 0, step=1, score="logit", baseline="zeros", progress=False)
    assert curves.scores[0].tolist() == [0, 2, 10, 11, 15, 47, 63]


def test_auc_is_the_trapezoid_rule_on_even_or_given_abscissae():
    assert auc(torch.tensor([0.0, 2.0, 0.0, 0.0])).item() == pytest.approx(2 / 3)  # x = 0, 1/3, 2/3, 1
    assert auc([0.0, 1.0]).item() == pytest.approx(0.5)
    assert auc(torch.tensor([1.0, 3.0, 3.0]), [0.0, 0.5, 2.0]).item() == pytest.approx(1.0 + 4.5)
    batch = auc(torch.tensor([[[1.0, 1.0, 0.0]], [[0.0, 0.0, 4.0]]]))  # (2, 1, 3) -> (2, 1)
    assert batch.shape == (2, 1) and batch.flatten().tolist() == pytest.approx([0.75, 1.0])
    with pytest.raises(InputError, match="at least 2 points"):
        auc(torch.ones(3, 1))


def test_curves_summary_is_the_mean_over_pairs():
    scores = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    curves = Curves("deletion", torch.tensor([0.0, 1.0]), scores, auc(scores))
    assert curves.mean_auc == pytest.approx(0.625)  # (0.5 + 1 + 0 + 1) / 4
    assert repr(curves) == "Curves(mode='deletion', pairs=4, points=2, mean_auc=0.6250)"


def test_confidence_change_properties_follow_grad_cam_plus_plus():
    """Average drop = 100 mean(max(0, Y - O) / Y); increase in confidence = 100 mean(O > Y)."""
    change = ConfidenceChange(full=torch.tensor([0.5, 0.8, 0.4, 0.2]), masked=torch.tensor([0.25, 0.9, 0.1, 0.2]))
    assert change.drop.tolist() == pytest.approx([0.5, 0.0, 0.75, 0.0])
    assert change.increase.tolist() == [False, True, False, False]  # equal is no increase
    assert change.average_drop == pytest.approx(100 * 1.25 / 4)
    assert change.increase_in_confidence == pytest.approx(25.0)
    assert repr(change) == "ConfidenceChange(pairs=4, average_drop=31.25%, increase_in_confidence=25.00%)"


def test_confidence_change_equals_pytorch_grad_cam_and_a_loop(faithfulness_case):
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange, DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, maps, classes = faithfulness_case
    change = confidence_change(model, x, maps, classes, batch_size=4)  # 6 pairs, 3 images: batches of 4 and 2
    assert change.full.shape == change.masked.shape == (6,)
    for k in range(2):
        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes[:, k]]
        cams = maps[:, k].numpy()
        difference = CamMultImageConfidenceChange()(x, cams, targets, model)  # O - Y
        assert torch.allclose(change.masked[k::2] - change.full[k::2], torch.as_tensor(difference).flatten(), atol=1e-6)
        dropped = DropInConfidence()(x, cams, targets, model)  # max(0, Y - O), not yet divided by Y
        assert torch.allclose(change.drop[k::2] * change.full[k::2], torch.as_tensor(dropped).flatten(), atol=1e-6)
        rose = IncreaseInConfidence()(x, cams, targets, model)
        assert change.increase[k::2].tolist() == (torch.as_tensor(rose).flatten() > 0).tolist()
    probs = model(x).softmax(-1)
    assert torch.allclose(change.full, probs.gather(1, classes).flatten())
    assert 0 < change.increase_in_confidence < 100 and 0 < change.average_drop < 100  # both ways: means, not sums
    # another baseline b: the model sees b + map (x - b)
    masked = 0.3 + maps.flatten(0, 1)[:, None] * (x.repeat_interleave(2, 0) - 0.3)
    expected = model(masked).softmax(-1).gather(1, classes.view(-1, 1)).flatten()
    other = confidence_change(model, x, maps, classes, baseline=0.3, batch_size=1)
    assert torch.allclose(other.masked, expected, atol=1e-6) and torch.allclose(other.full, change.full)


def test_confidence_change_refuses_maps_outside_0_1():
    model, x = linear_model(torch.rand(2, 1, 2, 2)), torch.rand(2, 1, 2, 2)
    for bad in (torch.full((2, 2, 2), -0.01), torch.full((2, 2, 2), 1.01)):
        with pytest.raises(InputError, match=r"\[0, 1\]"):
            confidence_change(model, x, bad, 0)
    ends = torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])  # 0 and 1 themselves are fine
    change = confidence_change(model, x, ends, 0, score="logit")
    assert change.masked[0].item() == 0 and change.masked[1].item() == pytest.approx(change.full[1].item())


# =============================================================================================
# localization: pointing game, energy, CAM's boxes, against loops and scipy
# =============================================================================================

def box_of_mask(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [0, 0, 0, 0] if ys.size == 0 else [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def random_boxes(generator, shape, height, width) -> torch.Tensor:
    x = torch.randint(-2, width + 3, (*shape, 2), generator=generator).sort(-1).values
    y = torch.randint(-2, height + 3, (*shape, 2), generator=generator).sort(-1).values
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


def test_boxes_to_masks_and_back_equal_pixel_loops():
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(generator, (4, 3), 7, 11)
    boxes[0, 0] = torch.tensor([3, 1, 2, 5])  # x1 < x0: empty
    masks = boxes_to_masks(boxes, (7, 11))
    assert masks.shape == (4, 3, 7, 11) and masks.dtype == torch.bool
    for index in np.ndindex(4, 3):
        assert np.array_equal(masks[index].numpy(), mask_of_box(boxes[index], 7, 11)), index
    random_masks = torch.rand(5, 2, 7, 11, generator=generator) > 0.93
    random_masks[0, 0] = False
    random_masks[0, 1, 6, 10] = True  # only the last pixel (column 10 > height 7)
    random_masks[1, 0] = False
    random_masks[1, 0, 2, 9:] = True  # a row segment at the right edge
    got = masks_to_boxes(random_masks)
    assert got.shape == (5, 2, 4)
    for index in np.ndindex(5, 2):
        assert got[index].tolist() == box_of_mask(random_masks[index].numpy()), index
    tall = torch.zeros(12, 3, dtype=torch.bool)
    tall[10:, 2] = True  # row 10 > width 3
    assert masks_to_boxes(tall).tolist() == [2, 10, 3, 12]
    with pytest.raises(InputError, match=r"\(\.\.\., 4\)"):
        boxes_to_masks(torch.zeros(2, 3), (4, 4))


def test_box_iou_equals_the_iou_of_the_pixel_sets():
    generator = torch.Generator().manual_seed(1)
    a, b = random_boxes(generator, (40,), 9, 8), random_boxes(generator, (40,), 9, 8)
    a[0], b[0] = torch.tensor([5, 5, 2, 7]), torch.tensor([0, 0, 8, 9])  # an inverted box is empty: IoU 0
    a[1], b[1] = torch.tensor([4, 6, 4, 9]), torch.tensor([4, 6, 4, 9])  # both empty: 0, not NaN
    a[2], b[2] = torch.tensor([1, 2, 5, 3]), torch.tensor([1, 2, 5, 3])  # identical: 1
    got = box_iou(a, b)
    for i in range(40):  # boxes reach -2: count pixels on a grid shifted by 3
        ma, mb = mask_of_box(a[i] + 3, 20, 20), mask_of_box(b[i] + 3, 20, 20)
        union = (ma | mb).sum()
        expected = (ma & mb).sum() / union if union else 0.0
        assert got[i].item() == pytest.approx(expected, abs=1e-6), (a[i].tolist(), b[i].tolist())
    assert got[2].item() == 1.0 and got[0].item() == 0.0 and got[1].item() == 0.0


def test_largest_component_equals_scipy_with_its_tie_rule():
    generator = torch.Generator().manual_seed(2)
    masks = torch.rand(2, 3, 9, 13, generator=generator) > 0.6  # (2, 3) leading shape, not square
    masks[0, 0] = False
    masks[0, 0, 0, 0:2] = masks[0, 0, 5, 10:12] = True  # two components of 2: the later one wins
    masks[0, 1] = False  # empty stays empty
    got = largest_component(masks)
    assert got.shape == masks.shape
    for index in np.ndindex(2, 3):
        assert np.array_equal(got[index].numpy(), largest_component_reference(masks[index].numpy())), index
    assert got[0, 0].nonzero().tolist() == [[5, 10], [5, 11]]
    # a 2-D mask: one long winding component crossed in few steps, plus a smaller one
    snake = torch.zeros(15, 15, dtype=torch.bool)
    snake[::2] = True
    for row in range(1, 15, 2):
        snake[row, 14 if row % 4 == 1 else 0] = True
    snake[14, 3:] = False
    snake[14, 0:2] = True
    assert np.array_equal(largest_component(snake).numpy(), largest_component_reference(snake.numpy()))


def test_largest_component_refuses_maps_too_large_for_float_labels():
    """Labels 1..H*W are float32: exact up to 2**24 pixels (4096 x 4096), not beyond."""
    with pytest.raises(InputError, match="4097x4096 are too large"):
        largest_component(torch.zeros(4097, 4096, dtype=torch.bool))
    with pytest.raises(InputError, match="too large"):
        largest_component(torch.zeros(2, 1, 2**24 + 1, dtype=torch.bool))


@pytest.mark.slow
def test_largest_component_takes_maps_of_exactly_2_to_the_24_pixels():
    out = largest_component(torch.zeros(4096, 4096, dtype=torch.bool))  # labels up to 2**24: still exact
    assert out.shape == (4096, 4096) and not bool(out.any())


def pointing_reference(maps: torch.Tensor, mask: np.ndarray, tolerance: float) -> bool:
    """Zhang et al.: the first maximum in raster order, a hit within ``tolerance`` pixels of the target."""
    values = maps.numpy()
    if values.max() == values.min():
        return False
    peak_y, peak_x = np.unravel_index(np.argmax(values), values.shape)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return False
    return bool(np.sqrt((ys - peak_y) ** 2 + (xs - peak_x) ** 2).min() <= tolerance)


@pytest.fixture(scope="module")
def localization_case():
    """(3, 2, 7, 11) maps with a peak each (some negative values), boxes and irregular masks."""
    generator = torch.Generator().manual_seed(4)
    maps = torch.rand(3, 2, 7, 11, generator=generator) - 0.2
    for i, k, y, x in ((0, 0, 1, 9), (0, 1, 6, 0), (1, 0, 3, 5), (1, 1, 0, 10), (2, 0, 5, 8), (2, 1, 2, 1)):
        maps[i, k, y, x] = 2.0
    maps[2, 1] = maps[2, 1].clamp_max(0.3)  # a plateau map: many pixels at the peak, the first one counts
    maps[2, 1, 4, 4] = 0.3
    boxes = torch.tensor([[2, 1, 6, 5], [4, 0, 11, 3], [0, 3, 3, 7]])
    masks = torch.rand(3, 7, 11, generator=generator) > 0.8
    return maps, boxes, masks


def test_pointing_game_equals_a_loop_for_boxes_masks_and_tolerances(localization_case):
    maps, boxes, masks = localization_case
    for tolerance in (0, 1, 2.5, 4):
        for targets, target_masks in ((boxes, [mask_of_box(b, 7, 11) for b in boxes]), (masks, list(masks.numpy()))):
            got = pointing_game(maps, targets, tolerance)
            assert got.shape == (3, 2) and got.dtype == torch.bool
            expected = [[pointing_reference(maps[i, k], target_masks[i], tolerance) for k in range(2)] for i in range(3)]
            assert got.tolist() == expected, tolerance
    constant = torch.full((2, 7, 11), 0.5)
    assert pointing_game(constant, boxes[:2], 100).tolist() == [False, False]  # no peak: a miss even with tolerance
    empty = torch.zeros(2, 7, 11, dtype=torch.bool)
    assert pointing_game(maps[:2, 0], empty, 100).tolist() == [False, False]  # nothing to point at


def test_pointing_game_tolerance_is_euclidean_on_a_wide_map():
    maps = torch.zeros(1, 4, 20)
    maps[0, 3, 17] = 1.0
    box = torch.tensor([[2, 0, 14, 1]])  # nearest pixel (row 0, column 13): 4 columns and 3 rows away, distance 5
    assert [pointing_game(maps, box, t).item() for t in (4.99, 5.0, 7)] == [False, True, True]
    maps[0, 3, 17], maps[0, 0, 16] = 0.0, 1.0  # same row, 3 columns away
    assert [pointing_game(maps, box, t).item() for t in (2.9, 3)] == [False, True]


def test_energy_pointing_game_is_the_share_of_the_positive_mass_inside(localization_case):
    maps, boxes, masks = localization_case
    for targets, target_masks in ((boxes, [mask_of_box(b, 7, 11) for b in boxes]), (masks, list(masks.numpy()))):
        got = energy_pointing_game(maps, targets)
        for i in range(3):
            for k in range(2):
                positive = maps[i, k].clamp_min(0).numpy()
                assert got[i, k].item() == pytest.approx(positive[target_masks[i]].sum() / positive.sum(), abs=1e-6)
    per_class = torch.stack([boxes, boxes.flip(0)], 1)  # (N, K, 4): one box per map
    got = energy_pointing_game(maps, per_class)
    assert got[0, 1].item() == pytest.approx(energy_pointing_game(maps[0, 1], boxes[2]).item())
    assert energy_pointing_game(-maps.abs(), boxes).tolist() == [[0.0, 0.0]] * 3  # no positive mass: 0


def test_cam_boxes_and_localization_iou_equal_the_recipe_step_by_step(localization_case):
    """Zhou et al.: keep pixels above threshold x max, the largest 8-connected component, its box, IoU."""
    maps, boxes, masks = localization_case
    for threshold in (0.0, 0.2, 0.5, 0.95):
        got_boxes = boxes_from_maps(maps, threshold)
        got_iou = localization_iou(maps, boxes, threshold)
        mask_iou = localization_iou(maps, masks, threshold)
        assert got_boxes.shape == (3, 2, 4) and got_iou.shape == (3, 2)
        for i in range(3):
            for k in range(2):
                values = maps[i, k].numpy()
                component = largest_component_reference(values > threshold * values.max())
                expected = box_of_mask(component)
                assert got_boxes[i, k].tolist() == expected, (threshold, i, k)
                ma, mb = mask_of_box(expected, 7, 11), mask_of_box(boxes[i], 7, 11)
                assert got_iou[i, k].item() == pytest.approx((ma & mb).sum() / (ma | mb).sum(), abs=1e-6)
                mb = mask_of_box(box_of_mask(masks[i].numpy()), 7, 11)  # a mask target: its bounding box
                assert mask_iou[i, k].item() == pytest.approx((ma & mb).sum() / (ma | mb).sum(), abs=1e-6)


def test_cam_box_threshold_is_strict_and_needs_a_positive_peak():
    maps = torch.zeros(1, 6, 9)
    maps[0, 1, 1] = 1.0
    maps[0, 4, 6:9] = 0.2  # exactly 0.2 x max: not above it
    assert boxes_from_maps(maps, 0.2).tolist() == [[1, 1, 2, 2]]
    maps[0, 4, 6:9] = 0.21  # above it, and the larger component
    assert boxes_from_maps(maps, 0.2).tolist() == [[6, 4, 9, 5]]
    assert boxes_from_maps(-torch.rand(2, 6, 9) - 0.1).tolist() == [[0, 0, 0, 0]] * 2  # max < 0
    assert boxes_from_maps(torch.zeros(6, 9), 0.0).tolist() == [0, 0, 0, 0]
    for bad in (1.0, -0.01, 1.5):
        with pytest.raises(InputError, match="threshold"):
            boxes_from_maps(maps, bad)


# =============================================================================================
# ROAD (Rong et al. 2022) against pytorch-grad-cam's NoisyLinearImputer and ROAD metrics
# =============================================================================================

def test_imputation_equals_pytorch_grad_cam_on_edges_corners_and_several_images():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    generator = torch.Generator().manual_seed(5)
    images = torch.randn(4, 3, 9, 7, generator=generator)
    removed = torch.rand(4, 9, 7, generator=generator) > 0.55
    removed[1] = False
    removed[1, 0, :] = removed[1, -1, :] = removed[1, :, 0] = removed[1, :, -1] = True  # the whole border
    removed[2] = False  # nothing removed: unchanged
    removed[3] = True
    removed[3, 4, 3] = False  # one kept pixel: every removed pixel is its (weighted) neighbourhood's mean
    theirs = torch.stack([images[2]] + [NoisyLinearImputer(noise=0.0)(images[i], (~removed[i]).float()) for i in (0, 1, 3)])
    for shaped in (removed, removed[:, None], removed[:, None].float()):
        out = noisy_linear_imputation(images, shaped, noise=0.0)
        assert torch.allclose(out[[2, 0, 1, 3]], theirs, atol=1e-5)
    assert torch.equal(out[2], images[2])
    assert torch.allclose(out[3], images[3, :, 4, 3, None, None].expand(3, 9, 7), atol=1e-5)
    double = noisy_linear_imputation(images.double(), removed, noise=0.0)
    assert double.dtype == torch.float64 and torch.allclose(double.float(), out, atol=1e-5)
    assert images.grad is None and not out.requires_grad


def test_imputation_noise_is_gaussian_with_the_given_deviation_on_the_removed_pixels_only():
    images = torch.rand(2, 2, 24, 24, generator=torch.Generator().manual_seed(0))
    removed = torch.zeros(2, 24, 24, dtype=torch.bool)
    removed[:, 4:20, 4:20] = True  # 256 pixels x 2 channels x 2 images
    clean = noisy_linear_imputation(images, removed, noise=0.0)
    noisy = noisy_linear_imputation(images, removed, noise=0.05, generator=torch.Generator().manual_seed(1))
    difference = (noisy - clean)[removed[:, None].expand_as(images)] / 0.05
    assert difference.numel() == 1024
    assert abs(float(difference.mean())) < 0.15 and 0.9 < float(difference.std()) < 1.1
    assert torch.equal(noisy[~removed[:, None].expand_as(images)], images[~removed[:, None].expand_as(images)])
    again = noisy_linear_imputation(images, removed, noise=0.05, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy, again)
    torch.manual_seed(7)
    first = noisy_linear_imputation(images, removed, noise=0.05)  # no generator: torch's global one
    torch.manual_seed(7)
    assert torch.equal(first, noisy_linear_imputation(images, removed, noise=0.05))


def test_imputation_refuses_bad_masks():
    images = torch.rand(2, 1, 4, 5)
    for bad in (torch.zeros(3, 4, 5, dtype=torch.bool), torch.zeros(2, 5, 4, dtype=torch.bool),
                torch.zeros(2, 1, 4, 4, dtype=torch.bool)):
        with pytest.raises(InputError, match="removed must be"):
            noisy_linear_imputation(images, bad)
    everything = torch.zeros(2, 4, 5, dtype=torch.bool)
    everything[1] = True
    with pytest.raises(InputError, match="at least one kept pixel"):
        noisy_linear_imputation(images, everything)


def test_removed_count_is_the_pixels_at_or_above_numpys_percentile():
    """pytorch-grad-cam removes ``mask >= np.percentile(mask, p)`` with p = 100 (1 - fraction)."""
    generator = np.random.default_rng(0)
    for total in (2, 7, 10, 25, 100, 144, 1001):
        values = generator.permutation(total).astype(np.float64)  # tie-free
        for fraction in DEFAULT_FRACTIONS + (0.05, 0.25, 0.33, 0.75, 0.99):
            percentile = round(100 * (1 - fraction), 6)  # what a user passes: 30 for 0.7, not 30.000000000000004
            expected = int((values >= np.percentile(values, percentile)).sum())
            assert removed_count(fraction, total) == expected, (fraction, total)


@pytest.fixture(scope="module")
def road_case():
    """3 images of 2 x 8 x 10, 2 classes each, tie-free maps; the softmax scores of small_net."""
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(3, 2, 8, 10, generator=generator)
    maps = torch.rand(3, 2, 8, 10, generator=generator)
    classes = torch.tensor([[1, 2], [0, 3], [2, 2]])
    return small_net(channels=2, classes=4, seed=1), x, maps, classes


def test_road_equals_pytorch_grad_cam_morf_lerf_and_combined(road_case):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        AveragerAcrossThresholds,
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, maps, classes = road_case
    fractions = (0.1, 0.45, 0.8)
    ours = road(model, x, maps, classes, fractions=fractions, noise=0.0, batch_size=5)  # 36 images, batches of 5
    assert ours.morf.shape == ours.lerf.shape == (6, 3) and ours.fractions.tolist() == pytest.approx(fractions)
    assert torch.allclose(ours.full, model(x).softmax(-1).gather(1, classes).flatten())
    percentiles = [round(100 * (1 - f)) for f in fractions]

    def metric(order):
        return lambda p: PerturbationConfidenceMetric(order(p, NoisyLinearImputer(noise=0.0)))

    combined = []
    for k in range(2):
        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes[:, k]]
        cams = maps[:, k].numpy()
        for t, p in enumerate(percentiles):
            for order, mine in ((RemoveMostRelevantFirst, ours.morf), (RemoveLeastRelevantFirst, ours.lerf)):
                theirs = torch.as_tensor(metric(order)(p)(x, cams, targets, model, return_diff=False)).flatten()
                assert torch.allclose(mine[k::2, t], theirs, atol=1e-4), (order.__name__, p, k)
        # ROADCombined: (LeRF - MoRF) / 2 of the score changes, averaged over the percentiles
        lerf = AveragerAcrossThresholds(metric(RemoveLeastRelevantFirst), percentiles)(x, cams, targets, model)
        morf = AveragerAcrossThresholds(metric(RemoveMostRelevantFirst), percentiles)(x, cams, targets, model)
        combined.append((lerf - morf) / 2)
    assert ours.combined == pytest.approx(float(np.mean(combined)), abs=1e-5)
    assert ours.morf_mean == pytest.approx(float(ours.morf.mean())) and ours.lerf_mean == pytest.approx(float(ours.lerf.mean()))


def test_road_noise_follows_the_seed(road_case):
    model, x, maps, classes = road_case
    kw = dict(fractions=(0.5,), noise=0.5, score="logit")
    one, again, other = (road(model, x[:2], maps[:2, 0], classes[:2, 0], seed=s, **kw) for s in (0, 0, 1))
    assert torch.equal(one.morf, again.morf) and torch.equal(one.lerf, again.lerf)
    assert not torch.allclose(one.morf, other.morf, atol=1e-4)
    clean = road(model, x[:2], maps[:2, 0], classes[:2, 0], fractions=(0.5,), noise=0.0, score="logit")
    assert not torch.allclose(one.morf, clean.morf, atol=1e-4)


def test_road_scores_are_means_over_pairs_and_shares():
    scores = RoadScores(fractions=torch.tensor([0.2, 0.6]), full=torch.tensor([0.9, 0.8, 0.7]),
                        morf=torch.tensor([[0.5, 0.1], [0.3, 0.1], [0.2, 0.0]]),
                        lerf=torch.tensor([[0.9, 0.8], [0.7, 0.7], [0.6, 0.5]]))
    assert scores.morf_mean == pytest.approx(0.2) and scores.lerf_mean == pytest.approx(0.7)
    assert scores.combined == pytest.approx(0.25)
    assert repr(scores) == "RoadScores(pairs=3, fractions=2, morf=0.2000, lerf=0.7000, combined=0.2500)"


def test_road_refuses_shares_outside_0_1(road_case):
    model, x, maps, classes = road_case
    for bad in ((), (0.0,), (1.0,), (0.5, 1.2), (-0.1,)):
        with pytest.raises(InputError, match="strictly between 0 and 1"):
            road(model, x, maps, classes, fractions=bad)
    assert DEFAULT_FRACTIONS == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])  # pytorch-grad-cam's


# =============================================================================================
# evaluate: summaries, the table, evaluate_maps and evaluate against the metrics one by one
# =============================================================================================

def hand_scores(name: str = "a", with_road: bool = True) -> MethodScores:
    """A MethodScores with 4 pairs whose means are easy: see test_summary_is_the_mean_of_each_metric."""
    return MethodScores(
        method=name, images=2, seconds_per_image=0.0125,
        deletion=Curves("deletion", torch.tensor([0.0, 1.0]), torch.zeros(4, 2), torch.tensor([0.2, 0.4, 0.1, 0.3])),
        insertion=Curves("insertion", torch.tensor([0.0, 1.0]), torch.zeros(4, 2), torch.tensor([0.6, 0.8, 0.9, 0.9])),
        confidence=ConfidenceChange(torch.tensor([0.5, 0.8, 0.4, 0.2]), torch.tensor([0.25, 0.9, 0.1, 0.15])),
        road=RoadScores(torch.tensor([0.5]), torch.ones(4), torch.tensor([[0.1], [0.2], [0.3], [0.2]]),
                        torch.tensor([[0.9], [0.8], [0.6], [0.5]])) if with_road else None,
        pointing=torch.tensor([True, False, True, True]),
        energy=torch.tensor([0.5, 0.25, 1.0, 0.25]),
        iou=torch.tensor([0.5, 0.49, 0.9, 0.1]),
    )


def test_summary_is_the_mean_of_each_metric():
    summary = hand_scores().summary()
    assert list(summary) == ["pointing", "energy", "iou50", "iou", "deletion", "insertion", "average_drop", "increase",
                             "road_morf", "road_lerf", "road_combined", "ms_per_image"]
    expected = {"pointing": 0.75, "energy": 0.5, "iou50": 0.5,  # IoU >= 0.5 counts: 0.5 and 0.9
                "iou": 0.4975, "deletion": 0.25, "insertion": 0.8,
                "average_drop": 100 * (0.5 + 0 + 0.75 + 0.25) / 4, "increase": 25.0,
                "road_morf": 0.2, "road_lerf": 0.7, "road_combined": 0.25, "ms_per_image": 12.5}
    assert summary == pytest.approx(expected)
    empty = MethodScores(method="none", pointing=torch.zeros(0, dtype=torch.bool)).summary()
    assert all(math.isnan(value) for value in empty.values())  # nothing computed, or no pair: NaN, not 0
    assert MethodScores("x").images == 0 and MethodScores("x").error is None


def test_table_rows_formats_and_skipped_methods():
    evaluation = Evaluation({"a": hand_scores("a"), "b": MethodScores("b", images=3, seconds_per_image=0.002),
                             "c": MethodScores("c", error="no GAP head")})
    lines = evaluation.table().splitlines()
    assert lines[0] == ("| method | images | pointing game ↑ | energy PG ↑ | IoU≥0.5 ↑ | deletion AUC ↓ | insertion AUC ↑ "
                        "| avg drop % ↓ | increase % ↑ | ROAD MoRF ↓ | ROAD LeRF ↑ | ROAD ↑ | ms/image |")
    assert lines[1] == "|---|" + "|".join(["---:"] * 12) + "|"
    assert lines[2] == "| a | 2 | 75.0% | 0.500 | 50.0% | 0.250 | 0.800 | 37.5 | 25.0 | 0.200 | 0.700 | 0.250 | 12.5 |"
    assert lines[3] == "| b | 3 | – | – | – | – | – | – | – | – | – | – | 2.0 |"
    assert lines[4:] == ["", "- c: skipped (no GAP head)"]
    assert str(evaluation) == evaluation.table()
    assert list(evaluation.summary()) == ["a", "b"]
    without_road = Evaluation({"a": hand_scores("a", with_road=False)}).table().splitlines()
    assert "ROAD" not in without_road[0] and without_road[0].endswith("| increase % ↑ | ms/image |")
    assert without_road[2].endswith("| 37.5 | 25.0 | 12.5 |") and len(without_road) == 3


@pytest.fixture(scope="module")
def evaluate_case():
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(3, 2, 8, 10, generator=generator)
    maps = torch.rand(3, 2, 8, 10, generator=generator)
    classes = torch.tensor([[1, 2], [0, 3], [2, 2]])
    boxes = torch.tensor([[1, 1, 6, 5], [0, 4, 10, 8], [5, 0, 9, 3]])
    return small_net(channels=2, classes=4, seed=2), x, maps, classes, boxes


def test_evaluate_maps_passes_every_setting_to_its_metric(evaluate_case):
    model, x, maps, classes, boxes = evaluate_case
    result = evaluate_maps(model, x, maps, classes, boxes, name="mine", step=3, deletion_baseline="mean",
                           insertion_baseline=0.25, confidence_baseline=0.1, score="logit", tolerance=2, threshold=0.6,
                           batch_size=7, road=True, road_fractions=(0.3, 0.6), progress=False)
    assert result.method == "mine" and result.images == 3
    assert result.pointing.tolist() == pointing_game(maps, boxes, 2).flatten().tolist()
    assert torch.equal(result.energy, energy_pointing_game(maps, boxes).flatten())
    assert torch.equal(result.iou, localization_iou(maps, boxes, 0.6).flatten())
    assert not torch.equal(result.iou, localization_iou(maps, boxes).flatten())  # the threshold matters here
    kw = dict(step=3, score="logit", progress=False)
    assert torch.allclose(result.deletion.scores, deletion_curve(model, x, maps, classes, baseline="mean", **kw).scores)
    assert torch.allclose(result.insertion.scores, insertion_curve(model, x, maps, classes, baseline=0.25, **kw).scores)
    expected = confidence_change(model, x, maps, classes, baseline=0.1, score="logit")
    assert torch.allclose(result.confidence.masked, expected.masked) and torch.allclose(result.confidence.full, expected.full)
    expected = road(model, x, maps, classes, fractions=(0.3, 0.6), score="logit")
    assert torch.allclose(result.road.morf, expected.morf) and torch.allclose(result.road.lerf, expected.lerf)
    assert result.road.fractions.tolist() == pytest.approx([0.3, 0.6])
    assert result.deletion.fractions.numel() == 28  # 80 pixels, 3 at a time
    # only what was asked: no targets, no localization; faithfulness off, no model run
    bare = evaluate_maps(model, x, maps[:, 0], classes[:, 0], faithfulness=False, progress=False)
    assert bare.pointing is None and bare.energy is None and bare.iou is None
    assert bare.deletion is None and bare.insertion is None and bare.confidence is None and bare.road is None
    defaults = evaluate_maps(model, x, maps[:, 0], classes[:, 0], boxes, progress=False)
    assert defaults.method == "maps" and defaults.road is None and defaults.deletion.fractions.numel() == 21
    assert defaults.pointing.tolist() == pointing_game(maps[:, 0], boxes, 15).tolist()
    assert torch.allclose(defaults.insertion.scores,
                          insertion_curve(model, x, maps[:, 0], classes[:, 0], baseline="blur", progress=False).scores)


def test_evaluate_equals_explain_then_evaluate_maps(evaluate_case):
    model, x, _, _, boxes = evaluate_case
    x = torch.cat([x, x.flip(-1)])[:5]  # 5 images: explained 1 + 2 + 2 at a time
    boxes = torch.cat([boxes, boxes])[:5]
    result = evaluate(model, x, ["Grad-CAM", "scorecam"], classes=[1, 3], targets=boxes, target_layer="1", step=0.25,
                      score="logit", explain_batch_size=2, explain_options={"top_k": 2, "no_such_option": 1},
                      tolerance=1, threshold=0.3, batch_size=9, progress=False)
    assert list(result.scores) == ["gradcam", "scorecam"]
    assert result.settings == dict(step=0.25, deletion_baseline="zeros", insertion_baseline="blur",
                                   confidence_baseline="zeros", score="logit", tolerance=1, threshold=0.3, road=False,
                                   road_fractions=DEFAULT_FRACTIONS, images=5,
                                   explain_options={"top_k": 2, "no_such_option": 1})
    for name, options in (("gradcam", {}), ("scorecam", {"top_k": 2})):
        maps = camlens.explain(model, x, name, target_layer="1", classes=[1, 3], **options).maps
        expected = evaluate_maps(model, x, maps, torch.tensor([[1, 3]] * 5), boxes, step=0.25, score="logit",
                                 tolerance=1, threshold=0.3, progress=False)
        got = result.scores[name]
        assert got.images == 5 and got.seconds_per_image > 0 and got.error is None
        for key, value in expected.summary().items():
            if key != "ms_per_image":
                assert got.summary()[key] == pytest.approx(value, rel=1e-5, abs=1e-5, nan_ok=True), (name, key)
        assert torch.allclose(got.deletion.scores, expected.deletion.scores, atol=1e-5)


def test_evaluate_top1_classes_found_layer_and_time_budget(evaluate_case):
    model, x, _, _, boxes = evaluate_case
    found = evaluate(model, x, "gradcam", step=0.5, progress=False)  # classes=None: top-1; the layer is found
    named = evaluate(model, x, "gradcam", target_layer="1", step=0.5, progress=False)
    top1 = model(x).softmax(-1).amax(-1)
    assert torch.allclose(found.scores["gradcam"].deletion.scores[:, 0], top1)
    assert torch.allclose(found.scores["gradcam"].deletion.scores, named.scores["gradcam"].deletion.scores)
    budget = evaluate(model, x, "gradcam", classes=[0, 1], targets=boxes, target_layer="1", step=0.5,
                      max_seconds_per_method=0.0, progress=False)
    one = budget.scores["gradcam"]
    assert one.images == 1 and one.pointing.shape == (2,)  # the first image's 2 classes, and its box
    maps = camlens.explain(model, x[:1], "gradcam", target_layer="1", classes=[0, 1]).maps
    assert one.energy.tolist() == pytest.approx(energy_pointing_game(maps, boxes[:1]).flatten().tolist())
    roomy = evaluate(model, x, "gradcam", target_layer="1", step=0.5, max_seconds_per_method=1e6, progress=False)
    assert roomy.scores["gradcam"].images == 3


def test_evaluate_reports_skipped_methods_and_refuses_bad_arguments(evaluate_case):
    model, x, _, _, _ = evaluate_case
    flat_head = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 80, 4))
    result = evaluate(flat_head, x, ["cam", "gradcam"], target_layer="1", step=0.5, progress=False)
    assert result.scores["cam"].images == 0 and result.scores["cam"].deletion is None and result.scores["cam"].error
    assert result.scores["gradcam"].images == 3
    with pytest.raises(InputError, match="empty list"):
        evaluate(model, x, [], target_layer="1")
    with pytest.raises(InputError, match="explain_batch_size"):
        evaluate(model, x, "gradcam", target_layer="1", explain_batch_size=0)
    with pytest.raises(InputError, match="unknown method"):
        evaluate(model, x, "gradcm", target_layer="1")


@pytest.mark.slow
def test_evaluate_without_methods_runs_every_registered_method():
    model = small_net(channels=1, classes=3)
    result = evaluate(model, torch.randn(1, 1, 6, 6), None, target_layer="1", step=1.0, progress=False)
    assert list(result.scores) == camlens.list_methods()


def test_plot_curves_draws_the_mean_curve_of_each_method(evaluate_case):
    import matplotlib.pyplot as plt

    model, x, maps, classes, _ = evaluate_case
    good = evaluate_maps(model, x, maps, classes, step=0.25, progress=False)
    worse = evaluate_maps(model, x, 1 - maps, classes, step=0.25, progress=False)
    evaluation = Evaluation({"good": good, "(reversed)": worse, "skipped": MethodScores("skipped", error="no")})
    figure = plot_curves(evaluation, title="two maps")
    try:
        deletion, insertion = figure.axes
        assert len(deletion.lines) == len(insertion.lines) == 2
        for ax, which in ((deletion, "deletion"), (insertion, "insertion")):
            for line, scores, style in zip(ax.lines, (good, worse), ("-", "--")):
                curves = getattr(scores, which)
                assert np.allclose(line.get_xdata(), curves.fractions.numpy())
                assert np.allclose(line.get_ydata(), curves.scores.mean(0).numpy())  # the mean over the 6 pairs
                assert line.get_linestyle() == style
            labels = [text.get_text() for text in ax.get_legend().get_texts()]
            assert labels == [f"good ({getattr(good, which).mean_auc:.3f})", f"(reversed) ({getattr(worse, which).mean_auc:.3f})"]
        assert deletion.lines[0].get_color() != deletion.lines[1].get_color()
        assert deletion.get_xlabel() == "share of pixels removed" and insertion.get_xlabel() == "share of pixels inserted"
        assert "lower is better" in deletion.get_title() and "higher is better" in insertion.get_title()
        assert deletion.get_ylabel() == "class score" and figure._suptitle.get_text() == "two maps"
    finally:
        plt.close(figure)
    many = plot_curves({f"m{i}": good for i in range(9)})  # a plain dict; more than 8: two legend columns
    try:
        assert many._suptitle is None and many.axes[0].get_legend()._ncols == 2
        assert len(many.axes[0].lines) == 9
    finally:
        plt.close(many)


# =============================================================================================
# Defaults a user relies on without passing them: steps, memory bounds, noise, seeds, bars
# =============================================================================================

def recording(model: nn.Module) -> tuple[nn.Module, list[int]]:
    """The model and the batch size of every forward it runs (the largest is the memory bound)."""
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    return model, sizes


def screen(text: str) -> list[str]:
    """The non-blank lines a terminal shows after ``text`` (``\\r`` returns to the line's start).

    Enough for one tqdm bar at a time: its updates overwrite the line, and a bar made with
    ``leave=False`` writes spaces over itself when it closes.
    """
    lines = []
    for line in text.split("\n"):
        shown: list[str] = []
        column = 0
        for char in line:
            if char == "\r":
                column = 0
                continue
            shown[column:column + 1] = [char]
            column += 1
        lines.append("".join(shown).rstrip())
    return [line for line in lines if line]


def test_curve_defaults_step_0_05_batches_of_64_and_a_bar_that_goes_away(capsys):
    """Deletion and insertion with every default: 0.05 of the pixels per step ("21 points"), at
    most 64 perturbed images per forward, and a progress bar on stderr that is cleared when the
    curve is done. 4 images of 4 x 10 = 40 pixels: 2 pixels a step, 84 images per curve, so a
    batch of 64 is filled and one of 65 would be seen."""
    generator = torch.Generator().manual_seed(11)
    model, sizes = recording(linear_model(torch.randn(3, 1, 4, 10, generator=generator)))
    x = torch.rand(4, 1, 4, 10, generator=generator)
    maps = torch.rand(4, 4, 10, generator=generator)
    classes = torch.tensor([0, 2, 1, 0])
    for curve, mode, baseline in ((deletion_curve, "deletion", torch.zeros_like(x)),
                                  (insertion_curve, "insertion", gaussian_blur(x))):
        expected, fractions = rise_reference(model, x, maps[:, None], classes[:, None], 2, baseline, mode)
        sizes.clear()
        capsys.readouterr()
        curves = curve(model, x, maps, classes)
        err = capsys.readouterr().err
        assert curves.fractions.numel() == 21 and torch.allclose(curves.fractions, fractions)
        assert torch.allclose(curves.scores, expected, atol=1e-6)
        assert max(sizes) == 64, mode
        assert f"{mode}:" in err and "84/84" not in screen(err), mode  # shown while running ...
        assert screen(err) == [], mode  # ... and gone afterwards


def test_confidence_change_defaults_batches_of_64_and_no_bar_unless_asked(capsys):
    """33 images x 2 classes = 66 masked images: forwards of at most 64 by default; no progress
    bar by default (one forward per batch is quick); with progress=True a bar that is cleared."""
    generator = torch.Generator().manual_seed(12)
    model, sizes = recording(linear_model(torch.randn(3, 1, 2, 3, generator=generator)))
    x = torch.randn(33, 1, 2, 3, generator=generator)
    maps = torch.rand(33, 2, 2, 3, generator=generator)
    classes = torch.randint(0, 3, (33, 2), generator=generator)
    capsys.readouterr()
    change = confidence_change(model, x, maps, classes)
    assert capsys.readouterr().err == ""
    assert max(sizes) == 64
    with torch.no_grad():
        masked = model(x.repeat_interleave(2, 0) * maps.flatten(0, 1)[:, None]).softmax(-1)
    assert torch.allclose(change.masked, masked.gather(1, classes.view(-1, 1)).flatten(), atol=1e-6)
    confidence_change(model, x, maps, classes, progress=True)
    err = capsys.readouterr().err
    assert "confidence:" in err and screen(err) == []


def test_confidence_change_looks_at_every_pixel_of_the_maps():
    """One pixel out of [0, 1] among in-range ones is refused: the smallest and the largest value."""
    model, x = linear_model(torch.rand(2, 1, 2, 2)), torch.rand(2, 1, 2, 2)
    for bad in (-0.01, 1.01):
        maps = torch.full((2, 2, 2), 0.5)
        maps[1, 1, 0] = bad
        with pytest.raises(InputError, match=r"\[0, 1\]"):
            confidence_change(model, x, maps, 0)


def test_auc_of_integer_scores_is_the_area_of_the_same_floats():
    """A curve of ints (counts, hits) has the area of the same floats: x = 0, 0.5, 1 stays fractional."""
    area = auc(torch.tensor([1, 0, 0]))
    assert area.is_floating_point() and area.item() == pytest.approx(0.25)
    assert auc([[2, 2, 0], [0, 1, 0]]).tolist() == pytest.approx([1.5, 0.5])


# =============================================================================================
# ROAD: a hand-solved imputation, the noise and seed defaults, ties, masks
# =============================================================================================

def test_imputation_solves_the_papers_system_by_hand_on_two_neighbouring_holes():
    """Rong et al.: each removed pixel is the weighted mean of its in-image neighbours, edges 1/6,
    corners 1/12. On the 3 x 4 image below, u = (1, 1) and v = (0, 1) are removed:

        u = (v + 10 + 5 + 7) / 6 + (1 + 3 + 9 + 11) / 12        (all 8 neighbours inside, weight 1)
        (2/3) v = (1 + 3 + u) / 6 + (5 + 7) / 12                 (top row: 3 edges, 2 corners inside)

    so v = u / 4 + 5/2, u = 146/23 and v = 94/23. The second channel is ten times the first (the
    system is linear, channel by channel); the image is wider than tall (rows are not columns)."""
    first = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]])
    images = torch.stack([first, 10 * first])[None]
    removed = torch.zeros(1, 3, 4, dtype=torch.bool)
    removed[0, 1, 1] = removed[0, 0, 1] = True
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert out[0, :, 1, 1].tolist() == pytest.approx([146 / 23, 1460 / 23], rel=1e-6)
    assert out[0, :, 0, 1].tolist() == pytest.approx([94 / 23, 940 / 23], rel=1e-6)
    assert torch.equal(out[~removed[:, None].expand_as(out)], images[~removed[:, None].expand_as(images)])


def test_imputation_default_noise_is_0_01_times_the_generators_normal_draws():
    """noise * N(0, 1) is added to each filled value, Rong et al.'s 0.01 by default; the draws come
    from the generator in order: image by image, removed pixels in raster order, channels inside."""
    generator = torch.Generator().manual_seed(13)
    images = torch.rand(3, 2, 5, 6, generator=generator)
    removed = torch.rand(3, 5, 6, generator=generator) > 0.6
    removed[1] = False  # nothing removed: no draw
    clean = noisy_linear_imputation(images, removed, noise=0.0)
    out = noisy_linear_imputation(images, removed, generator=torch.Generator().manual_seed(4))
    draws, expected = torch.Generator().manual_seed(4), clean.clone()
    for i in range(3):
        pixels = removed[i].flatten().nonzero().flatten()
        if pixels.numel():
            expected[i].view(2, -1)[:, pixels] += 0.01 * torch.randn(pixels.numel(), 2, generator=draws).T
    assert torch.allclose(out, expected, atol=1e-7)
    assert not torch.allclose(out, clean, atol=1e-3)


def test_imputation_of_images_that_require_grad_is_detached():
    """The imputed images are data, not a graph: same values as for detached images, no grad."""
    images = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(14)).requires_grad_()
    removed = torch.zeros(2, 4, 5, dtype=torch.bool)
    removed[:, 1:3, 1:4] = True
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert not out.requires_grad
    assert torch.equal(out, noisy_linear_imputation(images.detach(), removed, noise=0.0))


def test_imputation_refuses_masks_with_channels_and_images_without_a_batch():
    """A mask is one per image, (B, H, W) or (B, 1, H, W): a (B, C, H, W) mask is refused rather
    than read from its first channel; (C, H, W) images (no batch) are refused by name."""
    images = torch.rand(2, 3, 4, 5)
    per_channel = torch.zeros(2, 3, 4, 5, dtype=torch.bool)
    per_channel[:, 1:, 1, 1] = True  # channel 0 removes nothing
    with pytest.raises(InputError, match="removed must be"):
        noisy_linear_imputation(images, per_channel)
    with pytest.raises(InputError, match=r"images must be \(B, C, H, W\)"):
        noisy_linear_imputation(images[0], torch.zeros(3, 4, 5, dtype=torch.bool))


def road_reference(model, x, maps, classes, fractions, noise, seed, score=lambda z: z.softmax(-1)):
    """ROAD by a loop: (MoRF, LeRF) scores (P, T) for one map per image.

    Pixels ranked by a stable sort (equal values in raster order), the ``removed_count`` most
    (MoRF) or least (LeRF) relevant removed, filled noise-free, then ``noise`` times draws of one
    generator seeded with ``seed``, in the order MoRF then LeRF, pair by pair, share by share."""
    draws = torch.Generator().manual_seed(seed)
    pairs, channels, total = x.shape[0], x.shape[1], maps[0].numel()
    results = torch.empty(2, pairs, len(fractions))
    for lerf in (0, 1):
        for p in range(pairs):
            values = maps[p].flatten().tolist()
            order = sorted(range(total), key=lambda j: -values[j])
            for t, fraction in enumerate(fractions):
                count = removed_count(fraction, total)
                removed = torch.zeros(total, dtype=torch.bool)
                removed[order[total - count:] if lerf else order[:count]] = True
                image = noisy_linear_imputation(x[p:p + 1], removed.view(1, *maps.shape[-2:]), noise=0.0)
                pixels = removed.nonzero().flatten()
                draw = torch.randn(pixels.numel(), channels, generator=draws)
                image[0].view(channels, -1)[:, pixels] += noise * draw.T
                with torch.no_grad():
                    results[lerf, p, t] = score(model(image))[0, int(classes[p])]
    return results[0], results[1]


def test_road_defaults_noise_0_01_seed_0_batches_of_32_and_no_bar(capsys):
    """road() with every default equals the loop with Rong et al.'s noise 0.01 and seed 0 at
    pytorch-grad-cam's 9 shares; 2 pairs x 9 shares x 2 orders = 36 imputed images: forwards of at
    most 32; no progress bar unless asked, and then one that is cleared."""
    generator = torch.Generator().manual_seed(15)
    model, sizes = recording(linear_model(3 * torch.randn(3, 2, 4, 5, generator=generator)))
    x = torch.randn(2, 2, 4, 5, generator=generator)
    maps = torch.rand(2, 4, 5, generator=generator)
    classes = torch.tensor([0, 2])
    capsys.readouterr()
    ours = road(model, x, maps, classes)
    assert capsys.readouterr().err == ""
    assert max(sizes) == 32
    morf, lerf = road_reference(model, x, maps, classes, DEFAULT_FRACTIONS, 0.01, 0)
    assert torch.allclose(ours.morf, morf, atol=1e-6) and torch.allclose(ours.lerf, lerf, atol=1e-6)
    other_seed, _ = road_reference(model, x, maps, classes, DEFAULT_FRACTIONS, 0.01, 1)
    assert not torch.allclose(ours.morf, other_seed, atol=1e-4)  # the noise shows at this size
    road(model, x, maps, classes, fractions=(0.5,), progress=True)
    err = capsys.readouterr().err
    assert "ROAD:" in err and screen(err) == []


def test_road_ranks_equal_values_in_raster_order():
    """An 8 x 10 map of three values (each 26 or 27 times): MoRF removes the first pixels in raster
    order among equals, LeRF the last, as deletion_curve ranks them."""
    generator = torch.Generator().manual_seed(16)
    model = linear_model(torch.randn(2, 1, 8, 10, generator=generator))
    x = torch.randn(1, 1, 8, 10, generator=generator)
    maps = (torch.arange(80) % 3).float().view(1, 8, 10) / 2
    logit = lambda z: z  # noqa: E731
    ours = road(model, x, maps, 1, fractions=(0.2, 0.5), noise=0.0, score="logit")
    morf, lerf = road_reference(model, x, maps, [1], (0.2, 0.5), 0.0, 0, score=logit)
    assert torch.allclose(ours.morf, morf, atol=1e-5) and torch.allclose(ours.lerf, lerf, atol=1e-5)


# =============================================================================================
# evaluate and evaluate_maps: defaults, the time budget, the layer, the progress bars
# =============================================================================================

def test_evaluate_maps_defaults_tolerance_15_batches_of_64_and_progress_bars(capsys):
    """evaluate_maps with every default: the pointing game's 15-pixel tolerance (peaks 16, 15, 17
    and 3 pixels from a box in column 0 of a 2 x 20 image: hits only at 15 and 3), forwards of
    at most 64 (4 images x 21 points = 84 per curve), and a bar per metric, each cleared."""
    generator = torch.Generator().manual_seed(17)
    model, sizes = recording(linear_model(torch.randn(3, 1, 2, 20, generator=generator)))
    x = torch.rand(4, 1, 2, 20, generator=generator)
    maps = torch.zeros(4, 2, 20)
    for i, column in enumerate((16, 15, 17, 3)):
        maps[i, 0, column] = 1.0
    boxes = torch.tensor([[0, 0, 1, 2]] * 4)
    capsys.readouterr()
    result = evaluate_maps(model, x, maps, torch.tensor([0, 1, 2, 0]), boxes)
    err = capsys.readouterr().err
    assert result.pointing.tolist() == [False, True, False, True]
    assert max(sizes) == 64
    assert "deletion:" in err and "insertion:" in err and "confidence:" in err and screen(err) == []


def test_evaluate_defaults_step_tolerance_explain_batches_and_progress(capsys):
    """evaluate with the defaults that batch_size=4 leaves visible: 21 deletion points (step
    0.05 of 2 x 40 pixels), the 15-pixel tolerance (boxes placed 16 pixels from each Grad-CAM
    peak: all miss, at 16 they would hit), :func:`camlens.explain` on at most 16 images at a time
    (18 images: 1 to time the method, then 16, then 1), and progress bars."""
    model = small_net(channels=1, classes=3, seed=3)
    x = torch.randn(18, 1, 2, 40, generator=torch.Generator().manual_seed(18))
    maps = camlens.explain(model, x, "gradcam", target_layer="1").maps[:, 0]
    peaks = maps.flatten(1).argmax(1) % 40
    boxes = torch.tensor([[c - 16, 0, c - 15, 2] if c >= 16 else [c + 16, 0, c + 17, 2] for c in peaks.tolist()])
    assert pointing_game(maps, boxes, 16).all() and not pointing_game(maps, boxes, 15).any()  # the input decides
    model, sizes = recording(model)
    capsys.readouterr()
    result = evaluate(model, x, "gradcam", targets=boxes, target_layer="1", batch_size=4)
    err = capsys.readouterr().err
    scores = result.scores["gradcam"]
    assert scores.images == 18 and scores.deletion.fractions.numel() == 21
    assert not scores.pointing.any()
    assert max(sizes) == 16  # explain's batches; every metric forward holds at most 4
    assert "deletion:" in err


def test_evaluate_scores_at_most_64_images_per_forward_by_default(evaluate_case):
    """4 images x 21 points = 84 perturbed images per curve: forwards of 64 and 20."""
    model, sizes = recording(small_net(channels=2, classes=4, seed=2))
    _, x, _, _, _ = evaluate_case
    x = torch.cat([x, x.flip(-1)])[:4]
    evaluate(model, x, "gradcam", target_layer="1", explain_batch_size=2, progress=False)
    assert max(sizes) == 64


def test_time_budget_stops_a_method_after_the_images_that_fit(evaluate_case, monkeypatch):
    """A fake clock that runs 0.5 s per image the model sees: the first image takes 0.5 s, so a
    budget of 1.6 s explains int(1.6 / 0.5) = 3 of the 5 images (one at a time), and the time
    reported is 1.5 s / 3 images = 0.5 s per image."""
    import sys
    from types import SimpleNamespace

    _, x, _, _, boxes = evaluate_case
    x, boxes = torch.cat([x, x.flip(-1)])[:5], torch.cat([boxes, boxes])[:5]
    model = small_net(channels=2, classes=4, seed=2)
    clock = [100.0]
    model.register_forward_pre_hook(lambda module, args: clock.__setitem__(0, clock[0] + 0.5 * args[0].shape[0]))
    monkeypatch.setattr(sys.modules["camlens.metrics.evaluate"], "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    result = evaluate(model, x, "gradcam", classes=[0, 1], targets=boxes, target_layer="1", step=0.5,
                      explain_batch_size=1, max_seconds_per_method=1.6, progress=False)
    scores = result.scores["gradcam"]
    assert scores.images == 3 and scores.pointing.shape == (6,)
    assert scores.seconds_per_image == pytest.approx(0.5)
    maps = camlens.explain(model, x[:3], "gradcam", target_layer="1", classes=[0, 1]).maps
    assert scores.energy.tolist() == pytest.approx(energy_pointing_game(maps, boxes[:3]).flatten().tolist())


def test_evaluate_explains_at_the_named_layer():
    """target_layer="1" (the first ReLU) is used as given, not replaced by the layer camlens would
    find (the last ReLU): the maps, and so the energy in the boxes, differ between the two."""
    torch.manual_seed(19)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.randn(2, 1, 6, 8)
    boxes = torch.tensor([[0, 0, 3, 3], [4, 2, 8, 6]])
    named = camlens.explain(model, x, "gradcam", target_layer="1").maps
    found = camlens.explain(model, x, "gradcam").maps
    assert not torch.allclose(energy_pointing_game(named, boxes), energy_pointing_game(found, boxes), atol=1e-3)
    result = evaluate(model, x, "gradcam", targets=boxes, target_layer="1", step=0.5, progress=False)
    expected = energy_pointing_game(named, boxes).flatten()
    assert result.scores["gradcam"].energy.tolist() == pytest.approx(expected.tolist())


def test_evaluate_shows_a_methods_bar_naming_each_method_only_when_asked(evaluate_case, capsys):
    """progress=False: nothing on stderr. By default, for two methods or more, a "methods" bar
    whose postfix names the method being evaluated."""
    model, x, _, _, _ = evaluate_case
    capsys.readouterr()
    evaluate(model, x, ["gradcam", "hirescam"], target_layer="1", step=0.5, progress=False)
    assert capsys.readouterr().err == ""
    evaluate(model, x, ["gradcam", "hirescam"], target_layer="1", step=0.5)
    err = capsys.readouterr().err
    assert "methods:" in err and ", gradcam]" in err and ", hirescam]" in err


# =============================================================================================
# plot_curves: what the figure shows
# =============================================================================================

def curves_of(mode: str, rows: list[list[float]]) -> Curves:
    scores = torch.tensor(rows)
    fractions = torch.linspace(0, 1, scores.shape[1])
    return Curves(mode, fractions, scores, auc(scores, fractions))


def test_plot_curves_shares_the_score_axis_and_gives_each_method_its_colour():
    """Deletion scores in [0, 0.5] and insertion scores in [0.4, 0.95] on one score axis (the
    panels compare by eye); x from 0 to 1. 21 methods: the first 20 get the 20 colours of tab20,
    the 21st starts the palette again, so no two neighbours in the legend look alike."""
    import matplotlib.pyplot as plt

    one = MethodScores("one", deletion=curves_of("deletion", [[0.5, 0.2, 0.0], [0.3, 0.1, 0.0]]),
                       insertion=curves_of("insertion", [[0.4, 0.8, 0.95], [0.5, 0.7, 0.9]]))
    figure = plot_curves({"one": one})
    try:
        deletion, insertion = figure.axes
        assert deletion.get_ylim() == insertion.get_ylim()
        low, high = deletion.get_ylim()
        assert low <= 0.0 and high >= 0.95
        for ax, mean in ((deletion, [0.4, 0.15, 0.0]), (insertion, [0.45, 0.75, 0.925])):
            assert ax.get_xlim()[0] <= 0 and ax.get_xlim()[1] >= 1
            assert ax.lines[0].get_xdata().tolist() == pytest.approx([0, 0.5, 1])
            assert ax.lines[0].get_ydata().tolist() == pytest.approx(mean)
    finally:
        plt.close(figure)
    many = plot_curves({f"m{i}": one for i in range(21)})
    try:
        colours = [tuple(line.get_color()) for line in many.axes[0].lines]
        assert len(colours) == 21 and len(set(colours[:20])) == 20
        assert all(a != b for a, b in zip(colours, colours[1:])) and colours[20] == colours[0]
    finally:
        plt.close(many)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_imputation_road_and_plot_curves_take_cuda_tensors():
    """On a GPU: the imputation (solved on the CPU) returns to the images' device with the same
    values, ROAD scores equal the CPU's, and curves computed on the GPU plot."""
    import matplotlib.pyplot as plt

    generator = torch.Generator().manual_seed(20)
    images = torch.randn(2, 2, 5, 6, generator=generator)
    removed = torch.rand(2, 5, 6, generator=generator) > 0.5
    out = noisy_linear_imputation(images.cuda(), removed.cuda(), noise=0.0)
    assert out.device.type == "cuda" and torch.allclose(out.cpu(), noisy_linear_imputation(images, removed, noise=0.0))
    model, maps = small_net(channels=2, classes=3), torch.rand(2, 5, 6, generator=generator)
    cpu = road(model, images, maps, 0, fractions=(0.3, 0.6), noise=0.0)
    gpu = road(model.cuda(), images.cuda(), maps.cuda(), 0, fractions=(0.3, 0.6), noise=0.0)
    assert torch.allclose(gpu.morf.cpu(), cpu.morf, atol=1e-5) and torch.allclose(gpu.lerf.cpu(), cpu.lerf, atol=1e-5)
    curves = deletion_curve(model, images.cuda(), maps.cuda(), 0, step=10, progress=False)
    figure = plot_curves({"gpu": MethodScores("gpu", deletion=curves, insertion=curves)})
    try:
        assert figure.axes[0].lines[0].get_ydata().tolist() == pytest.approx(curves.scores.mean(0).tolist())
    finally:
        plt.close(figure)
