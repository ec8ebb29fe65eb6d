"""Tests that fail when the code is wrong: each was written against a mutant that survived the
rest of the suite (``python tools/mutate.py``, README "Development").

The expected values are computed by hand in the comments, on inputs chosen so that the
usual slips change the answer: negative activations (a dropped ReLU, a sign error), several
images and classes (``mean`` vs ``sum``), runs longer than one chunk.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens
from camlens.methods import get_method, list_methods


# -- gradient methods on activations with negative values, maps computed by hand ----------
class FlatHead(nn.Module):
    """The input *is* the target layer's output (``feat``), then flatten + linear.

    ``score_k = sum_cj V[k, c, j] A_c(j)``, so ``dscore_k / dA_c(j) = V[k, c, j]``: a gradient
    that changes from pixel to pixel.
    """

    def __init__(self, V: torch.Tensor) -> None:
        super().__init__()
        self.feat = nn.Identity()
        self.fc = nn.Linear(V[0].numel(), V.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(V.flatten(1))

    def forward(self, x):
        return self.fc(self.feat(x).flatten(1))


A = torch.tensor([[[[1.0, -2.0, 0.5]], [[-3.0, 2.0, 2.0]]]])  # (1, 2, 1, 3): channel sums -0.5 and 1
V = torch.tensor([[[1.0, -1.0, 2.0], [0.0, 1.0, 1.0]],          # class 0
                  [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])         # class 1 (unused but present)

# raw maps of class 0 (before ReLU):
#   Grad-CAM  alpha_c = mean_j V[0, c]      = (2/3, 2/3)     -> 2/3 (A0 + A1)      = (-4/3, 0, 5/3)
#   XGrad-CAM w_c = sum_j A_c V_c / sum A_c = (4 / -0.5, 4 / 1) = (-8, 4) -> -8 A0 + 4 A1 = (-20, 24, 4)
#   HiResCAM  sum_c V_c A_c                                                         = (1, 4, 3)
#   LayerCAM  sum_c relu(V_c) A_c                                                   = (1, 2, 3)
HAND = {
    "gradcam": [-4 / 3, 0.0, 5 / 3],
    "xgradcam": [-20.0, 24.0, 4.0],
    "hirescam": [1.0, 4.0, 3.0],
    "layercam": [1.0, 2.0, 3.0],
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_gradient_methods_on_negative_activations_match_hand_computed_maps(name):
    result = camlens.explain(FlatHead(V), A.clone(), name, target_layer="feat", classes=[0])
    raw = torch.tensor(HAND[name])
    torch.testing.assert_close(result.raw[0, 0, 0], raw)  # pre-ReLU: negative values kept
    relu = raw.clamp_min(0)
    torch.testing.assert_close(result.maps[0, 0, 0], (relu - relu.min()) / (relu.max() - relu.min()))


def test_map_is_relu_then_min_max():
    # Grad-CAM above: relu(-4/3, 0, 5/3) / (5/3) = (0, 0, 1); without the ReLU it would be (0, .44, 1)
    result = camlens.explain(FlatHead(V), A.clone(), "gradcam", target_layer="feat", classes=[0])
    torch.testing.assert_close(result.maps[0, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    # XGrad-CAM: relu(-20, 24, 4) / 24 = (0, 1, 1/6)
    result = camlens.explain(FlatHead(V), A.clone(), "xgradcam", target_layer="feat", classes=[0])
    torch.testing.assert_close(result.maps[0, 0, 0], torch.tensor([0.0, 1.0, 1 / 6]))


def test_gap_head_cam_and_gradcam_on_negative_activations():
    """GAP + linear: CAM = W A, Grad-CAM = W A / (h w), signs kept in ``raw``."""

    class Gap(nn.Module):
        def __init__(self):
            super().__init__()
            self.feat = nn.Identity()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2, 2)
            with torch.no_grad():
                self.fc.weight.copy_(torch.tensor([[1.5, 3.0], [-1.0, 0.5]]))
                self.fc.bias.zero_()

        def forward(self, x):
            return self.fc(self.pool(self.feat(x)).flatten(1))

    out = camlens.explain(Gap(), A.clone(), ["cam", "gradcam"], target_layer="feat", classes=[0, 1])
    # class 0: 1.5 A0 + 3 A1 = (-7.5, 3, 6.75); class 1: -A0 + .5 A1 = (-2.5, 3, 0.5)
    cam = torch.tensor([[-7.5, 3.0, 6.75], [-2.5, 3.0, 0.5]])
    torch.testing.assert_close(out["cam"].raw[0, :, 0], cam)
    torch.testing.assert_close(out["gradcam"].raw[0, :, 0], cam / 3)


# -- the registry ---------------------------------------------------------------------------
def test_method_summary_is_the_first_docstring_line():
    assert get_method("gradcam").summary == "Grad-CAM: channels weighted by the spatial mean of the class score's gradient."
    assert all(get_method(name).summary for name in list_methods())


def test_unknown_method_lists_three_close_matches():
    with pytest.raises(camlens.InputError, match=r"Did you mean gradcam, xgradcam, gradcampp\? Known methods: ablationcam"):
        get_method("gradcm")  # eigengradcam is close too, but only three are listed


def test_xgradcam_channel_summing_to_zero_gets_weight_zero():
    # channel 0 sums to 0 (1 - 1): its weight is 0, not 1 (the fallback of the safe division)
    a = torch.tensor([[[[1.0, -1.0]], [[1.0, 3.0]]]])       # (1, 2, 1, 2)
    g = torch.tensor([[[[[5.0, 7.0]], [[2.0, 4.0]]]]])      # (1, 1, 2, 1, 2)
    # channel 1: w = (1*2 + 3*4) / 4 = 3.5 -> M = 3.5 * (1, 3)
    torch.testing.assert_close(get_method("xgradcam").fn(a, g), torch.tensor([[[[3.5, 10.5]]]]))


# -- the scoring methods against step-by-step references -------------------------------------
from test_methods_explain import activations, tiny  # noqa: E402  (the tiny model of those tests)
from camlens.core.postprocess import normalize_maps  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _layer_gradients(model, x, layer, classes):
    """(N, K, C, h, w) gradients of the logits of ``classes`` (N, K) w.r.t. ``layer``'s output."""
    out = []
    handle = camlens.get_module(model, layer).register_forward_hook(lambda m, i, o: out.append(o))
    logits = model(x)
    handle.remove()
    grads = [torch.autograd.grad(logits.gather(1, classes[:, k : k + 1]).sum(), out[0], retain_graph=True)[0]
             for k in range(classes.shape[1])]
    return torch.stack(grads, dim=1)


def test_smoothgradcampp_matches_a_step_by_step_reference_with_noise_and_defaults():
    torch.manual_seed(1)
    model, x = tiny(), torch.randn(2, 3, 12, 12)
    for options, (samples, std) in (({"samples": 3, "noise_std": 0.5}, (3, 0.5)), ({}, (8, 0.3))):
        e = camlens.explain(model, x, "smoothgradcampp", "conv1", classes="top2", **options)
        generator = torch.Generator().manual_seed(0)
        total = [0, 0, 0]
        for _ in range(samples):
            noisy = x + std * torch.randn(x.shape, generator=generator)
            g = _layer_gradients(model, noisy, "conv1", e.classes)
            total = [total[0] + g, total[1] + g ** 2, total[2] + g ** 3]
        g1, g2, g3 = (t / samples for t in total)
        a = activations(model, x, "conv1")
        alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True).unsqueeze(1) * g3)
        alpha = torch.where(torch.isfinite(alpha), alpha, torch.zeros_like(alpha))
        weights = (alpha * g1.clamp_min(0)).sum(dim=(3, 4))                 # (N, K, C)
        expected = (weights[..., None, None] * a[:, None]).sum(dim=2)
        torch.testing.assert_close(e.raw, expected, rtol=1e-4, atol=1e-6)


def _reference_scores(model, x, acts, classes, std=0.0, samples=1, scales=(1.0,), seed=0, channels=None):
    """(N, C, K) mean logit of the input masked by each channel's mask (+ noise, x each scale),
    in the order of the generator draws of the published algorithms: one draw per sample and
    distinct mask, the distinct masks in ``torch.unique`` order."""
    n, c, h, w = acts.shape
    generator = torch.Generator().manual_seed(seed)
    out = torch.full((n, c, classes.shape[1]), float("-inf"))
    for i in range(n):
        chosen = torch.arange(c) if channels is None else channels[i]
        low = normalize_maps(acts[i : i + 1]).flatten(2)[0, chosen]
        unique, inverse = torch.unique(low, dim=0, return_inverse=True)
        up = F.interpolate(unique.view(1, -1, h, w), size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        masks = normalize_maps(up)
        noise = torch.randn((samples, *masks.shape), generator=generator) * std if std > 0 else None
        for j, k in enumerate(chosen.tolist()):
            u = int(inverse[j])
            total = 0.0
            for s in range(samples):
                for scale in scales:
                    mask = masks[u] + (noise[s, u] if noise is not None else 0)
                    with torch.no_grad():
                        total = total + model(x[i : i + 1] * (scale * mask))[0, classes[i]]
            out[i, k] = total / (samples * len(scales))
    return out


def _weighted(acts, scores):
    weights = torch.softmax(scores.transpose(1, 2), dim=-1)        # (N, K, C)
    return (weights[..., None, None] * acts[:, None]).sum(dim=2)


def test_sscam_with_noise_that_matters_matches_the_reference():
    torch.manual_seed(1)
    model, x = tiny(), torch.randn(2, 3, 12, 12)
    acts = activations(model, x)
    for options, (samples, std) in (({"samples": 2, "noise_std": 0.5}, (2, 0.5)), ({}, (10, 2.0))):
        e = camlens.explain(model, x, "sscam", "act2", classes="top2", **options)
        expected = _weighted(acts, _reference_scores(model, x, acts, e.classes, std=std, samples=samples))
        torch.testing.assert_close(e.raw, expected, rtol=1e-4, atol=1e-5)
    clean = camlens.explain(model, x, "scorecam", "act2", classes="top2")
    assert not torch.allclose(e.raw, clean.raw, rtol=1e-4, atol=1e-5)  # the noise changed the map


def test_iscam_default_is_ten_steps():
    torch.manual_seed(1)
    model, x = tiny(), torch.randn(1, 3, 12, 12)
    acts = activations(model, x)
    e = camlens.explain(model, x, "iscam", "act2")
    scales = tuple(sum(j / 10 for j in range(1, i + 1)) for i in range(1, 11))
    expected = _weighted(acts, _reference_scores(model, x, acts, e.classes, scales=scales))
    torch.testing.assert_close(e.raw, expected, rtol=1e-4, atol=1e-5)


def test_scorecam_fast_mode_scores_the_top_k_channels_by_their_best_class():
    """top_k channels per image by ``max_k relu(mean dS_k/dA_c) * mean A_c``; the others weigh 0."""
    torch.manual_seed(4)
    model, x = tiny(), torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        model.conv2.weight[1] = torch.randn_like(model.conv2.weight[1])  # make every live mask distinct
    classes = torch.tensor([[0, 1], [2, 4]])
    e = camlens.explain(model, x, "scorecam", "act2", classes=classes, top_k=2)
    acts = activations(model, x)
    grads = _layer_gradients(model, x, "act2", classes)
    contribution = grads.mean(dim=(3, 4)).clamp_min(0) * acts.mean(dim=(2, 3))[:, None]   # (N, K, C)
    best = contribution.amax(dim=1).topk(2, dim=1).indices                                  # per image
    # the two classes disagree on the best channels, so taking either class alone would differ
    per_class = [set(contribution[:, k].topk(2, dim=1).indices[i].tolist()) for i in range(2) for k in range(2)]
    assert any(p != set(best[i // 2].tolist()) for i, p in enumerate(per_class))
    expected = _weighted(acts, _reference_scores(model, x, acts, classes, channels=best))
    torch.testing.assert_close(e.raw, expected, rtol=1e-4, atol=1e-5)


def test_ablationcam_does_not_rerun_dead_channels():
    from unittest import mock

    from camlens.engine._scoring import Scorer

    torch.manual_seed(1)
    model, x = tiny(), torch.randn(2, 3, 12, 12)   # act2: channels 0 and 3 of 6 are dead
    with mock.patch.object(Scorer, "score_activations", autospec=True, side_effect=Scorer.score_activations) as scoring:
        camlens.explain(model, x, "ablationcam", "act2")
    assert [call.args[3] for call in scoring.call_args_list] == [4, 4]  # live channels only, per image


# -- Eigen-CAM in float32 and at small magnitudes --------------------------------------------
def _svd_projection(features, reference):
    import numpy as np

    out = []
    for n in range(features.shape[0]):
        x = features[n].double().reshape(features.shape[1], -1).T.numpy()
        x = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        projection = torch.from_numpy(x @ vt[0]).reshape(features.shape[2:])
        if float((projection * (reference[n].double() - reference[n].double().mean())).sum()) < 0:
            projection = -projection
        out.append(projection)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 64, 3, 3)])
def test_first_component_in_float32_is_computed_in_float64(shape):
    from camlens.methods.eigen import first_component

    torch.manual_seed(5)
    features = (torch.randn(shape) * 30 + 100).float()   # large mean, small spread: float32 Gram matrices lose it
    reference = features.mean(dim=1)
    got = first_component(features, reference)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _svd_projection(features, reference), rtol=1e-5, atol=1e-4)


def test_first_component_of_small_features_is_not_clamped_to_one():
    from camlens.methods.eigen import first_component

    torch.manual_seed(6)
    features = torch.randn(2, 64, 3, 3, dtype=torch.float64) * 1e-3   # top eigenvalue << 1 (h*w <= C branch)
    reference = features.mean(dim=1)
    torch.testing.assert_close(first_component(features, reference), _svd_projection(features, reference),
                               rtol=1e-7, atol=1e-12)
