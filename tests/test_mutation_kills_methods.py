"""Kill tests for camlens.methods (issue 14): each method's formula where the other tests left it open.

The references are closed forms written out independently (loops, scikit-learn's kernels and
KernelPCA, scikit-learn's NMF, explicit autograd of the paper's target), on small hand-made
tensors, so that a changed constant, operator or reduction in a method fails here.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import camlens
from camlens.engine._scoring import Scorer
from camlens.methods import (
    cam, fem, fullgrad, gradcam, gradcam_elementwise, guided_backprop, guided_gradcam, hirescam, kpcacam,
    layercam, randomcam, shapleycam, xgradcam,
)
from camlens.methods._combine import elementwise_sum, weighted_sum
from camlens.methods.ablationcam import ablationcam
from camlens.methods.dff import dff, factorize, nmf
from camlens.methods.eigen import eigencam, eigengradcam, first_component
from camlens.methods.finercam import comparison_index, finer_targets, finercam
from camlens.methods.fullgrad import channel_minmax
from camlens.methods.gradcampp import gradcampp, smoothgradcampp
from camlens.methods.kpca import kernel_first_component, kernel_matrix
from camlens.methods.scorecam import _score_channels, masks_from_activations, score_weights, scorecam, sscam


def minmax(t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """pytorch-grad-cam's scale_cam_image on one (h, w) map: ``(t - min) / (eps + max(t - min))``."""
    t = t - t.min()
    return t / (eps + t.max())


# ------------------------------------------------------------------ registry
def test_get_method_ignores_case_dashes_and_underscores():
    assert camlens.get_method("Grad-CAM").name == "gradcam"
    assert camlens.get_method("GUIDED-BACKPROP").name == "guided_backprop"
    assert camlens.get_method("guided_gradcam").name == "guided_gradcam"
    with pytest.raises(camlens.InputError) as info:
        camlens.get_method("qqqq")
    assert "Did you mean" not in str(info.value) and "Known methods: ablationcam" in str(info.value)


def test_method_call_passes_only_its_own_options():
    torch.manual_seed(0)
    a = torch.rand(1, 3, 4, 4)
    method = camlens.get_method("fem")
    assert method.needs == ("activations",) and method.options == ("k", "eigen_smooth")
    got = method({"k": 0.5, "top_k": 3, "alpha": 2.0}, activations=a, gradients=None)
    assert torch.equal(got, fem(a, k=0.5))
    assert torch.equal(method(None, activations=a), fem(a))
    assert not torch.equal(fem(a, k=0.5), fem(a))


# ------------------------------------------------------------------ channel sums
def test_weighted_and_elementwise_sums_against_loops():
    torch.manual_seed(0)
    w, a = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 4, 2, 3)
    expected = torch.zeros(2, 3, 2, 3)
    for n in range(2):
        for k in range(3):
            for c in range(4):
                expected[n, k] += float(w[n, k, c]) * a[n, c]
    got = weighted_sum(w, a)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    weighted = w[..., None, None].float() * a.unsqueeze(1)
    torch.testing.assert_close(elementwise_sum(weighted), expected)
    # eigen_smooth: the first component of the weighted activations, signed like the plain sum
    smooth = weighted_sum(w, a, eigen_smooth=True)
    torch.testing.assert_close(smooth, first_component(weighted, expected))
    torch.testing.assert_close(elementwise_sum(weighted, True), smooth)
    assert not torch.allclose(smooth, expected)


def test_cam_gradcam_and_shapleycam_against_loops():
    torch.manual_seed(1)
    a, g, ha = torch.randn(1, 3, 2, 2), torch.randn(1, 2, 3, 2, 2), torch.randn(1, 2, 3, 2, 2)
    w = torch.randn(1, 2, 3)
    ref_cam = torch.zeros(1, 2, 2, 2)
    ref_grad = torch.zeros(1, 2, 2, 2)
    ref_shap = torch.zeros(1, 2, 2, 2)
    for k in range(2):
        for c in range(3):
            ref_cam[0, k] += w[0, k, c] * a[0, c]
            ref_grad[0, k] += g[0, k, c].mean() * a[0, c]
            ref_shap[0, k] += (g[0, k, c] - ha[0, k, c] / 2).mean() * a[0, c]
    torch.testing.assert_close(cam(a, w), ref_cam)
    torch.testing.assert_close(gradcam(a, g), ref_grad)
    torch.testing.assert_close(shapleycam(a, g, ha), ref_shap)


def test_elementwise_family_keeps_the_sign_rules():
    a = torch.tensor([[[[1.0, -2.0]], [[3.0, 1.0]]]])            # (1, 2, 1, 2)
    g = torch.tensor([[[[[2.0, 1.0]], [[-1.0, 2.0]]]]])          # (1, 1, 2, 1, 2)
    # products g*A: channel 0 (2, -2), channel 1 (-3, 2)
    torch.testing.assert_close(hirescam(a, g), torch.tensor([[[[-1.0, 0.0]]]]))
    torch.testing.assert_close(gradcam_elementwise(a, g), torch.tensor([[[[2.0, 2.0]]]]))
    torch.testing.assert_close(layercam(a, g), torch.tensor([[[[2.0, 0.0]]]]))  # relu(g) * A: (2, -2) + (0, 2)
    # xgradcam: w_c = sum(A g) / sum(A): channel 0: (2 - 2) / -1 = 0, channel 1: (-3 + 2) / 4
    torch.testing.assert_close(xgradcam(a, g), torch.tensor([[[[-0.75, -0.25]]]]))


# ------------------------------------------------------------------ FEM and Random-CAM
def test_fem_constant_channel_has_no_pixel_above_its_threshold():
    a = torch.tensor([[[[2.0, 2.0], [2.0, 2.0]], [[0.0, 0.0], [0.0, 8.0]]]])  # constant channel, one peak
    # channel 1: mean 2, population std sqrt(12): t = 2 + 2 sqrt(12) = 8.93 > 8: weight 0 with k=2
    assert torch.equal(fem(a), torch.zeros(1, 1, 2, 2))
    # k=1: t = 2 + 3.46 = 5.46 < 8: weight 1/4; channel 0 (std 0) stays at 0: 2 is not > 2
    torch.testing.assert_close(fem(a, k=1.0), 0.25 * a[:, 1:2])
    # k=1.6: with the sample std (4) t would be 8.4 > 8, with the population std 2 + 5.54 = 7.54 < 8
    torch.testing.assert_close(fem(a, k=1.6), 0.25 * a[:, 1:2])


def test_randomcam_weights_are_uniform_in_minus_one_one_per_image_and_channel():
    c = 2000
    a = torch.eye(c).reshape(1, c, c, 1).repeat(2, 1, 1, 1)  # channel k is 1 at pixel k: the map is the weights
    maps = randomcam(a, seed=7)
    assert maps.shape == (2, 1, c, 1)
    weights = maps[:, 0, :, 0]
    assert -1 <= float(weights.min()) < -0.99 and 0.99 < float(weights.max()) < 1
    assert abs(float(weights.mean())) < 0.05 and abs(float(weights.std()) - (1 / 3) ** 0.5) < 0.02
    assert not torch.allclose(weights[0], weights[1])  # one draw per image
    generator = torch.Generator().manual_seed(7)  # the documented draw: rand(N, 1, C) * 2 - 1
    expected = torch.rand(2, 1, c, generator=generator, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(weights, expected[:, 0].float())


# ------------------------------------------------------------------ guided backpropagation
def test_guided_maps_against_their_closed_forms():
    torch.manual_seed(2)
    guided = torch.randn(1, 2, 3, 8, 8)
    expected = torch.zeros(1, 2, 8, 8)
    for k in range(2):
        for i in range(8):
            for j in range(8):
                expected[0, k, i, j] = max(abs(float(v)) for v in guided[0, k, :, i, j])
    torch.testing.assert_close(guided_backprop(guided), expected)
    a, g = torch.randn(1, 4, 2, 2), torch.randn(1, 2, 4, 2, 2)
    coarse = gradcam(a, g)
    assert (coarse < 0).any() and (coarse > 0).any()
    up = F.interpolate(coarse.clamp_min(0), size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(guided_gradcam(a, g, guided), expected * up)
    smooth = guided_gradcam(a, g, guided, eigen_smooth=True)
    up = F.interpolate(gradcam(a, g, eigen_smooth=True).clamp_min(0), size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(smooth, expected * up)


# ------------------------------------------------------------------ FullGrad
def test_channel_minmax_is_pytorch_grad_cams_scaling():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 0.5  # max after the shift below 1: the eps shows
    got = channel_minmax(x)
    for n in range(2):
        for c in range(3):
            torch.testing.assert_close(got[n, c], minmax(x[n, c]), rtol=1e-12, atol=1e-12)
    assert torch.equal(channel_minmax(torch.full((1, 2, 2), 3.0)), torch.zeros(1, 2, 2))


def test_fullgrad_against_the_decomposition_term_by_term():
    torch.manual_seed(4)
    x = torch.randn(1, 2, 8, 8)
    xg = torch.randn(1, 2, 2, 8, 8)
    same = torch.randn(1, 2, 3, 8, 8)    # a layer at the input's resolution
    small = torch.randn(1, 2, 4, 4, 4)   # a layer at half of it
    expected = torch.zeros(1, 2, 8, 8)
    for k in range(2):
        for c in range(2):
            expected[0, k] += minmax((xg[0, k, c] * x[0, c]).abs())
        for c in range(3):
            expected[0, k] += minmax(same[0, k, c].abs())
        low = sum(minmax(small[0, k, c].abs()) for c in range(4))
        expected[0, k] += F.interpolate(low[None, None], size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(fullgrad(x, xg, [same, small]), expected)


def test_fullgrad_eigen_smooth_is_the_first_component_at_an_eighth_of_the_input():
    torch.manual_seed(5)
    x, xg = torch.randn(1, 2, 16, 16), torch.randn(1, 1, 2, 16, 16)
    layer = torch.randn(1, 1, 3, 8, 8)
    terms = [minmax((xg[0, 0, c] * x[0, c]).abs()) for c in range(2)]
    low = sum(minmax(layer[0, 0, c].abs()) for c in range(3))
    terms.append(F.interpolate(low[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0])
    stacked = F.interpolate(torch.stack(terms)[None], size=(2, 2), mode="bilinear", align_corners=False)[0]
    stacked = torch.stack([minmax(t) for t in stacked])  # (3, 2, 2)
    projection = first_component(stacked[None], stacked.sum(0)[None])[0]
    expected = F.interpolate(projection[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0]
    got = fullgrad(x, xg, [layer], eigen_smooth=True)
    assert got.shape == (1, 1, 16, 16)
    torch.testing.assert_close(got[0], expected)
    # an input under 16 pixels has a single pixel at 1/8: its centred first component is 0
    tiny = fullgrad(x[..., :12, :12], xg[..., :12, :12], [layer[..., :6, :6]], eigen_smooth=True)
    assert tiny.shape == (1, 1, 12, 12) and torch.equal(tiny, torch.zeros_like(tiny))


# ------------------------------------------------------------------ KPCA-CAM
def _sklearn_kernels(x, gamma):
    from sklearn.metrics import pairwise

    return {
        "sigmoid": pairwise.sigmoid_kernel(x, gamma=gamma, coef0=1.0),
        "rbf": pairwise.rbf_kernel(x, gamma=gamma),
        "poly": pairwise.polynomial_kernel(x, degree=3, gamma=gamma, coef0=1.0),
        "linear": pairwise.linear_kernel(x),
        "cosine": pairwise.cosine_similarity(x),
    }


@pytest.mark.parametrize("gamma", [None, 0.3])
def test_kernel_matrix_equals_scikit_learn(gamma):
    torch.manual_seed(6)
    x = torch.randn(2, 7, 5, dtype=torch.float64) * 0.3  # norms below 1 (cosine's clamp must not reach them)
    for b in range(2):
        expected = _sklearn_kernels(x[b].numpy(), gamma if gamma is not None else 1 / 5)
        for kernel, reference in expected.items():
            got = kernel_matrix(x, kernel, gamma)[b]
            torch.testing.assert_close(got, torch.from_numpy(reference), rtol=1e-10, atol=1e-12, msg=kernel)
    for dtype in (torch.float64, torch.float32):  # a zero row: cosine 0 (scikit-learn's value), not NaN
        rows = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]]], dtype=dtype)
        assert torch.equal(kernel_matrix(rows, "cosine"), torch.tensor([[[0.0, 0.0], [0.0, 1.0]]], dtype=dtype))
    # constant activations: every centred pixel vector is 0, the map is 0 for every kernel
    for kernel in ("sigmoid", "rbf", "poly", "linear", "cosine"):
        assert torch.equal(kpcacam(torch.ones(1, 3, 2, 2), kernel=kernel), torch.zeros(1, 1, 2, 2)), kernel


@pytest.mark.parametrize("kernel", ["sigmoid", "rbf", "poly", "linear", "cosine"])
def test_kernel_first_component_equals_scikit_learn_kernel_pca(kernel):
    from sklearn.decomposition import KernelPCA

    torch.manual_seed(7)
    features = torch.randn(2, 6, 3, 4, dtype=torch.float64).relu() * 3 + 1
    reference = features.mean(dim=1)
    got = kernel_first_component(features, reference, kernel)
    for n in range(2):
        x = features[n].reshape(6, -1).T.numpy()
        x = x - x.mean(axis=0)
        ours = got[n].flatten()
        theirs = torch.from_numpy(KernelPCA(n_components=1, kernel=kernel).fit_transform(x)[:, 0])
        ref = reference[n].flatten() - reference[n].mean()
        if float((theirs * ref).sum()) < 0:
            theirs = -theirs
        torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)
    assert torch.allclose(kpcacam(features.float(), kernel=kernel)[:, 0].double(), got, rtol=1e-4, atol=1e-5)


def test_kernel_first_component_in_float32_is_computed_in_float64():
    torch.manual_seed(8)
    features = (torch.randn(1, 8, 4, 4) * 30 + 100).float()  # large mean, small spread
    got = kernel_first_component(features, features.mean(dim=1), "linear")
    assert got.dtype == torch.float32
    exact = kernel_first_component(features.double(), features.double().mean(dim=1), "linear")
    torch.testing.assert_close(got.double(), exact, rtol=1e-6, atol=1e-4)


# ------------------------------------------------------------------ Eigen-CAM sign and branches
def test_first_component_sign_follows_the_reference_and_zero_stays_zero():
    torch.manual_seed(9)
    features = torch.randn(1, 5, 3, 3, dtype=torch.float64)
    reference = features.mean(dim=1)
    plus = first_component(features, reference)
    minus = first_component(features, -reference)
    torch.testing.assert_close(minus, -plus)
    centred = reference - reference.mean()
    assert float((plus * centred).sum()) > 0
    zero = first_component(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2))
    assert torch.equal(zero, torch.zeros(1, 2, 2))
    assert torch.equal(eigencam(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 1, 2, 2))


# ------------------------------------------------------------------ DFF
def test_nmf_input_checks():
    with pytest.raises(camlens.InputError, match="non-negative"):
        nmf(torch.ones(2, 3, 1), 1)
    with pytest.raises(camlens.InputError, match="non-negative"):
        nmf(torch.tensor([[1.0, -1e-9], [1.0, 1.0]]), 1)
    with pytest.raises(camlens.InputError, match="need 1 <= k <= 2"):
        nmf(torch.ones(2, 3), 3)
    with pytest.raises(camlens.InputError, match="need 1 <= k <= 2"):
        nmf(torch.ones(2, 3), 0)
    for k in (1, 2):  # both ends of the range
        w, h = nmf(torch.ones(2, 3), k)
        torch.testing.assert_close(w @ h, torch.ones(2, 3, dtype=torch.float64), rtol=1e-3, atol=1e-3)
    w, h = nmf(torch.zeros(2, 3), 2, iterations=3)  # an all-zero matrix is non-negative: no NaN
    assert torch.isfinite(w).all() and torch.isfinite(h).all() and (w @ h).abs().max() == 0


def test_nmf_equals_scikit_learn_mu_also_on_tiny_values():
    from sklearn.decomposition import NMF

    torch.manual_seed(10)
    for scale in (1.0, 1e-4):  # at 1e-4 every denominator is below 1e-10: only exact zeros may be replaced
        v = (torch.rand(6, 3, dtype=torch.float64) @ torch.rand(3, 10, dtype=torch.float64)) * scale
        w0, h0 = (torch.rand(6, 2) * scale ** 0.5).float(), (torch.rand(2, 10) * scale ** 0.5).float()
        kept = (w0.clone(), h0.clone())
        w, h = nmf(v.float(), 2, iterations=30, init=(w0, h0))
        assert w.dtype == h.dtype == torch.float64
        assert torch.equal(w0, kept[0]) and torch.equal(h0, kept[1])  # the start is not changed in place
        model = NMF(2, init="custom", solver="mu", max_iter=30, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w_sk = model.fit_transform(v.float().double().numpy(), W=w0.double().numpy(), H=h0.double().numpy())
        torch.testing.assert_close(w, torch.from_numpy(w_sk), rtol=1e-9, atol=0.0)
        torch.testing.assert_close(h, torch.from_numpy(model.components_), rtol=1e-9, atol=0.0)


def test_nmf_random_start_is_scikit_learns_random_init_from_a_torch_generator():
    torch.manual_seed(11)
    v = torch.rand(5, 7, dtype=torch.float64) * 4
    w, h = nmf(v, 3, iterations=0, seed=2)
    generator = torch.Generator().manual_seed(2)
    scale = (v.mean() / 3).sqrt()
    torch.testing.assert_close(w, scale * torch.randn(5, 3, generator=generator, dtype=torch.float64).abs())
    torch.testing.assert_close(h, scale * torch.randn(3, 7, generator=generator, dtype=torch.float64).abs())
    w1, h1 = nmf(v, 3, seed=2)
    w2, h2 = nmf(v, 3, iterations=201, seed=2)
    assert not torch.equal(w1, w2)  # the default is 200 iterations
    w3, _ = nmf(v, 3, iterations=200, seed=2)
    assert torch.equal(w1, w3)
    assert torch.equal(nmf(v, 3, iterations=0)[0], nmf(v, 3, iterations=0, seed=0)[0])  # the default seed is 0
    assert not torch.equal(nmf(v, 3, iterations=0)[0], nmf(v, 3, iterations=0, seed=1)[0])


def test_factorize_and_dff_defaults_are_five_concepts_200_iterations_seed_0():
    torch.manual_seed(14)
    a = torch.rand(2, 6, 3, 3)
    weights = torch.randn(2, 2, 6)
    concepts, maps = factorize(a)
    expected = factorize(a, k=5, iterations=200, seed=0)
    assert concepts.shape == (6, 5) and torch.equal(concepts, expected[0]) and torch.equal(maps, expected[1])
    for other in (dict(iterations=201), dict(seed=1)):
        assert not torch.equal(factorize(a, **other)[0], concepts)
    assert torch.equal(dff(a, weights), dff(a, weights, k=5, iterations=200, seed=0))
    assert not torch.equal(dff(a, weights), dff(a, weights, k=4))
    assert not torch.equal(dff(a, weights), dff(a, weights, seed=1))
    assert not torch.equal(dff(a, weights), dff(a, weights, iterations=201))


def _concept_activations():
    """(2, 4, 3, 3) activations made of two concepts: channels (0, 1) at the left column, (2, 3) at the right."""
    a = torch.zeros(2, 4, 3, 3)
    left = torch.tensor([0.0, 1.0, 0.5])
    a[:, 0, :, 0] = 2.0 * left
    a[:, 1, :, 0] = 1.0 * left
    a[:, 2, :, 2] = 3.0
    a[:, 3, :, 2] = 1.5
    return a + 0.5  # a shift: factorize takes each channel's minimum off and puts it back


def test_factorize_recovers_the_concepts_with_maps_peaking_at_one():
    a = _concept_activations()
    concepts, maps = factorize(a, k=2, iterations=500)
    assert concepts.shape == (4, 2) and maps.shape == (2, 2, 3, 3) and maps.dtype == a.dtype
    torch.testing.assert_close(maps.amax(dim=(0, 2, 3)), torch.ones(2))
    offset = a.transpose(0, 1).reshape(4, -1).amin(dim=1, keepdim=True)
    rebuilt = (concepts - offset) @ maps.transpose(0, 1).reshape(2, -1) + offset
    torch.testing.assert_close(rebuilt, a.transpose(0, 1).reshape(4, -1), rtol=1e-3, atol=1e-3)
    # each concept vector is the activation where its map peaks
    order = concepts[0].argsort(descending=True)
    torch.testing.assert_close(concepts[:, order[0]], torch.tensor([2.5, 1.5, 0.5, 0.5]), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(concepts[:, order[1]], torch.tensor([0.5, 0.5, 3.5, 2.0]), rtol=1e-3, atol=1e-3)
    with_nan = a.clone()
    with_nan[0, 0, 1, 1] = float("nan")  # a NaN activation counts as 0, the concepts stay finite
    concepts, maps = factorize(with_nan, k=2)
    assert torch.isfinite(concepts).all() and torch.isfinite(maps).all()
    concepts, maps = factorize(a.clone().requires_grad_(), k=2, iterations=5)  # no graph is kept
    assert not concepts.requires_grad and not maps.requires_grad


def test_dff_shows_the_concept_that_scores_each_class_highest():
    a = _concept_activations()
    class_weights = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    maps = dff(a, class_weights.expand(2, 3, 4), k=2, iterations=500)
    assert maps.shape == (2, 3, 3, 3)
    left = torch.zeros(3, 3)
    left[:, 0] = torch.tensor([0.0, 1.0, 0.5])
    right = torch.zeros(3, 3)
    right[:, 2] = 1.0
    for n in range(2):
        torch.testing.assert_close(maps[n, 0], left, rtol=1e-3, atol=1e-3)   # class 0 reads channels 0, 1
        torch.testing.assert_close(maps[n, 1], right, rtol=1e-3, atol=1e-3)  # class 1 reads channel 2
        # class 2 (-channel 0): the concept with the smaller channel 0 (0.5 vs 2.5) scores higher
        torch.testing.assert_close(maps[n, 2], right, rtol=1e-3, atol=1e-3)
    torch.manual_seed(13)
    two = torch.rand(2, 4, 3, 3)
    both = dff(two, class_weights.expand(2, 3, 4), k=2, iterations=50)
    for n in range(2):  # each image is factorised alone
        torch.testing.assert_close(both[n], dff(two[n : n + 1], class_weights[None], k=2, iterations=50)[0])


# ------------------------------------------------------------------ Finer-CAM
def test_comparison_index_checks_and_picks_the_closest_scores_either_side():
    logits = torch.tensor([[0.0, 2.9, 3.0, 3.2, 10.0, 2.0]])
    classes = torch.tensor([[2]])
    assert comparison_index(logits, classes).tolist() == [[[1, 3, 5]]]  # |z_j - 3|: .1, .2, 1 (the default: 3)
    assert comparison_index(logits, classes, similar=5).tolist() == [[[1, 3, 5, 0, 4]]]
    assert comparison_index(logits, classes, similar=1).tolist() == [[[1]]]
    assert comparison_index(logits, torch.tensor([[0, 4]]), similar=1).tolist() == [[[5], [3]]]
    assert comparison_index(logits, classes, comparison_classes=5).tolist() == [[[5]]]
    assert comparison_index(logits, classes, comparison_classes=[0, 5]).tolist() == [[[0, 5]]]
    for bad in ([], [6], [-1], [True], [1.0]):
        with pytest.raises(camlens.InputError, match="comparison_classes"):
            comparison_index(logits, classes, comparison_classes=bad)
    for bad in (0, 6):
        with pytest.raises(camlens.InputError, match="similar"):
            comparison_index(logits, classes, similar=bad)


def test_comparison_index_keeps_the_first_of_equally_close_classes():
    logits = torch.zeros(1, 300)
    logits[0, 0] = 1.0
    got = comparison_index(logits, torch.tensor([[0]]), similar=200)
    assert got.tolist() == [[list(range(1, 201))]]  # all at distance 1: the lowest indices, in order


def test_finer_targets_with_alpha():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]])
    p = logits.softmax(dim=1)[0]
    got = finer_targets(logits, torch.tensor([[1]]), torch.tensor([[[0, 2]]]), alpha=0.5)
    expected = (p[0] * (2 - 0.5 * 1.0) + p[2] * (2 - 0.5 * 0.5)) / (p[0] + p[2])
    torch.testing.assert_close(got, expected.view(1, 1))


def test_finercam_is_gradcam_of_the_finer_target():
    torch.manual_seed(12)
    a = torch.rand(2, 3, 2, 2, requires_grad=True)
    head = torch.nn.Linear(3, 6)
    logits = head(a.mean(dim=(2, 3)))
    classes = torch.tensor([[4], [1]])

    def logit_gradients(target_fn):
        targets = target_fn(logits)
        return torch.stack([torch.autograd.grad(targets[:, k].sum(), a, retain_graph=True)[0]
                            for k in range(targets.shape[1])], dim=1)

    got = finercam(a.detach(), logits.detach(), classes, logit_gradients)
    for n in range(2):
        z = logits[n]
        zs = z.detach()
        c = int(classes[n, 0])
        closest = sorted((j for j in range(6) if j != c), key=lambda j: abs(float(zs[j] - zs[c])))[:3]
        p = z.softmax(dim=0)
        target = sum(p[j] * (z[c] - z[j]) for j in closest) / sum(p[j] for j in closest)
        (grad,) = torch.autograd.grad(target, a, retain_graph=True)
        expected = (grad[n].mean(dim=(1, 2))[:, None, None] * a[n].detach()).sum(dim=0)
        torch.testing.assert_close(got[n, 0], expected)


# ================================================================== second round (issue 14)
# Half-precision inputs (float16 / bfloat16, as under autocast), float64 inputs and badly scaled
# references, where a skipped conversion or a changed reduction shows.


def test_randomcam_default_seed_is_0():
    a = torch.eye(6).reshape(1, 6, 6, 1)  # channel k is 1 at pixel k: the map is the weights
    expected = torch.rand(1, 1, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(randomcam(a)[0, 0, :, 0], expected[0, 0].float())
    assert not torch.equal(randomcam(a), randomcam(a, seed=1))


# ------------------------------------------------------------------ principal-component sign
_PAIR = torch.tensor([1.0, -1.0, 0, 0, 0, 0, 0, 0], dtype=torch.float64)  # one channel: the component is +-itself


def _bumped(base: torch.Tensor, value, pixels=(0, 1)) -> torch.Tensor:
    """(2, 1, 8) references: ``base`` with pixel 0 (image 0) or pixel 1 (image 1) set to ``value``."""
    ref = base.repeat(2, 1, 1).clone()
    for image, pixel in enumerate(pixels):
        ref[image, 0, pixel] = value
    return ref


_COMPONENTS = {
    "first_component": first_component,
    "kernel_first_component": lambda f, r: kernel_first_component(f, r, "linear"),
}


@pytest.mark.parametrize("component", sorted(_COMPONENTS))
def test_component_sign_follows_the_references_variation_at_any_offset_and_scale(component):
    """The sign comes from the centred reference, in float64, whatever its offset, scale or dtype.

    Both images have the same features (a pixel pair +1/-1): the same component up to sign, so
    the eigen-solver gives both the same sign; the references raise pixel 0 (image 0: +map)
    or pixel 1 (image 1: -map) by one unit in the last place, so only a rule that reads that
    unit gets both right.
    """
    fn = _COMPONENTS[component]
    features = _PAIR.view(1, 1, 1, 8).repeat(2, 1, 1, 1)
    expected = torch.stack([_PAIR, -_PAIR]).view(2, 1, 8)
    # offset 2^40, raised by its ulp 2^-12: ref + mean or ref - sum would round the raise away
    offset = torch.full((1, 1, 8), 2.0 ** 40, dtype=torch.float64)
    torch.testing.assert_close(fn(features, _bumped(offset, 2.0 ** 40 + 2.0 ** -12)), expected, rtol=1e-12, atol=1e-12)
    # the smallest subnormal: the sum of the products is +-5e-324, their mean would round to 0
    tiny = torch.tensor(5e-324, dtype=torch.float64)
    assert tiny > 0 and tiny / 8 == 0
    torch.testing.assert_close(fn(features, _bumped(torch.zeros(1, 1, 8, dtype=torch.float64), tiny)), expected,
                               rtol=1e-12, atol=1e-12)
    # bfloat16 (autocast): 1 and 1 + 2^-7 minus the bfloat16 mean 225 both round to -224 in bfloat16
    ref = torch.tensor([[[1.0, 1.0078125] + [300.0] * 6]], dtype=torch.bfloat16).repeat(2, 1, 1)
    ref[1, 0, :2] = ref[1, 0, :2].flip(0)  # image 0: pixel 1 higher (-map); image 1: pixel 0 higher (+map)
    got = fn(features.bfloat16(), ref)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, -expected.bfloat16())


def test_a_reference_without_variation_leaves_the_solvers_sign():
    """A constant reference neither agrees nor disagrees with the component: it is kept as the
    eigen-solver gives it (no flip), here computed the same way from torch.linalg.eigh."""
    torch.manual_seed(26)
    features = torch.randn(1, 3, 2, 4, dtype=torch.float64)  # 8 pixels > 3 channels: the (C, C) Gram matrix
    constant = torch.full((1, 2, 4), 5.0, dtype=torch.float64)
    x = features.reshape(1, 3, 8).transpose(1, 2)
    x = x - x.mean(dim=1, keepdim=True)
    _, vectors = torch.linalg.eigh(x.transpose(1, 2) @ x)
    torch.testing.assert_close(first_component(features, constant).flatten(), (x @ vectors[..., -1:]).flatten(),
                               rtol=0, atol=0)
    gram = x @ x.transpose(1, 2)  # linear kernel, already centred (x is)
    gram = gram - gram.mean(dim=1, keepdim=True) - gram.mean(dim=2, keepdim=True) + gram.mean(dim=(1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh(gram)
    expected = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()
    torch.testing.assert_close(kernel_first_component(features, constant, "linear").flatten(), expected.flatten(),
                               rtol=0, atol=0)


def test_first_component_decomposes_the_smaller_gram_matrix(monkeypatch):
    """The documented cost: eigh of the (h*w)^2 Gram matrix only when h*w <= C, else of the C^2 one."""
    sizes = []
    eigh = torch.linalg.eigh

    def spy(matrix):
        sizes.append(matrix.shape[-1])
        return eigh(matrix)

    monkeypatch.setattr(torch.linalg, "eigh", spy)
    torch.manual_seed(15)
    for shape, size in (((1, 4, 4, 4), 4), ((1, 20, 2, 2), 4), ((1, 6, 3, 1), 3), ((1, 2, 1, 3), 2)):
        sizes.clear()
        first_component(torch.randn(shape, dtype=torch.float64), torch.randn(shape[0], *shape[2:]))
        assert sizes == [size], shape


def _svd_component(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N, h*w) float64 first principal component of each (C, h, w) map by SVD, signed like ``reference``."""
    out = []
    for f, r in zip(features.double(), reference.double()):
        x = f.flatten(1).T
        u, s, _ = torch.linalg.svd(x - x.mean(dim=0), full_matrices=False)
        p = u[:, 0] * s[0]
        out.append(-p if float((p * (r.flatten() - r.mean())).sum()) < 0 else p)
    return torch.stack(out)


def test_eigencam_and_kpcacam_in_float16_near_the_top_of_its_range():
    """float16 activations around 3e4: the channel mean is the reference (their sum overflows to inf)."""
    g = torch.Generator().manual_seed(16)
    n, c = 12, 4
    mix = torch.einsum("ncd,ndhw->nchw", torch.randn(n, c, c, generator=g), torch.randn(n, c, 3, 3, generator=g))
    a = (30000 + 2000 * torch.randn(n, c, 1, 1, generator=g) + 1500 * mix).half()
    assert torch.isinf(a.sum(dim=1)).any() and torch.isfinite(a.mean(dim=1)).all()
    expected = _svd_component(a, a.double().mean(dim=1))
    scale = expected.abs().amax()
    for got in (eigencam(a), kpcacam(a, kernel="linear")):
        assert got.dtype == torch.float16
        torch.testing.assert_close(got[:, 0].double().flatten(1) / scale, expected / scale, rtol=0, atol=1e-3)


def test_eigengradcam_with_subnormal_float16_gradients():
    """float16 gradients so small they are subnormal (what AMP's loss scaling is for).

    The sign follows the HiResCAM map ``sum_k g_k A_k`` (k*2^-24 here, exact); its channel mean
    (below 2^-25 for 64 channels) would round to 0 in float16 and leave the sign to chance.
    """
    g = torch.Generator().manual_seed(17)
    n, c = 12, 64
    units = torch.randint(-20, 21, (n, 1, c, 3, 3), generator=g).double()
    hires = torch.randint(-20, 21, (n, 1, 3, 3), generator=g).double()
    units[:, :, -1] = hires - units[:, :, :-1].sum(dim=2)  # every channel sum is a chosen k in [-20, 20]
    gradients = (units * 2.0 ** -24).half()
    assert torch.equal(gradients.double() / 2.0 ** -24, units)  # exact subnormals
    activations = torch.ones(n, c, 3, 3, dtype=torch.float16)
    got = eigengradcam(activations, gradients)
    assert got.dtype == torch.float16
    expected = _svd_component(units[:, 0], hires[:, 0])
    torch.testing.assert_close(got[:, 0].double().flatten(1) / 2.0 ** -24, expected, rtol=0, atol=0.51)


# ------------------------------------------------------------------ KPCA-CAM kernels
def test_rbf_kernel_stays_at_most_one_when_the_expanded_distance_cancels():
    """Two clusters at +-1e8: |x|^2 + |y|^2 - 2<x, y> cancels to rounding (some < 0): clamped, exp(-g d) <= 1."""
    g = torch.Generator().manual_seed(18)
    side = torch.tensor([1.0] * 20 + [-1.0] * 20, dtype=torch.float64).view(1, 40, 1)
    x = 0.3 * torch.randn(1, 40, 3, generator=g, dtype=torch.float64) + side * torch.tensor([1e8, 0, 0], dtype=torch.float64)
    square = x.pow(2).sum(dim=-1, keepdim=True)
    assert (square + square.transpose(-1, -2) - 2 * x @ x.transpose(-1, -2) < 0).any()
    k = kernel_matrix(x, "rbf")
    assert float(k.max()) <= 1.0 and float(k.min()) >= 0.0
    torch.testing.assert_close(k[0, :20, 20:], torch.zeros(20, 20, dtype=torch.float64))  # 2e8 apart


def test_kpcacam_is_zero_not_nan_when_no_kernel_component_is_positive():
    """sigmoid with gamma < 0 (not positive semi-definite): every centred eigenvalue is <= 0 up to rounding.

    The top one is the constant vector's exact 0, computed as +-1e-16: the map is sqrt(max(l, 0)) u ~ 0.
    """
    import numpy as np

    g = torch.Generator().manual_seed(19)
    a = torch.randn(32, 2, 1, 3, generator=g, dtype=torch.float64) * 30
    maps = kpcacam(a, kernel="sigmoid", gamma=-1.0)
    assert torch.isfinite(maps).all()
    flat = 0
    for n in range(32):
        x = a[n].reshape(2, 3).T.numpy()
        x = x - x.mean(axis=0)
        k = np.tanh(-(x @ x.T) + 1.0)
        k = k - k.mean(axis=0) - k.mean(axis=1, keepdims=True) + k.mean()
        if np.linalg.eigvalsh(k)[-1] < 1e-12:  # no positive component (most of these images)
            flat += 1
            assert float(maps[n].abs().max()) < 1e-6
    assert flat >= 16


# ------------------------------------------------------------------ DFF
def test_factorize_computes_in_float64_whatever_the_activations_dtype():
    torch.manual_seed(20)
    a = torch.rand(1, 5, 4, 4) * 3 + torch.rand(1, 5, 1, 1)  # each channel minus its minimum: inexact in float32
    concepts, maps = factorize(a, k=2, iterations=50)
    exact = factorize(a.double(), k=2, iterations=50)
    assert concepts.dtype == maps.dtype == torch.float32
    assert torch.equal(concepts, exact[0].float()) and torch.equal(maps, exact[1].float())


def test_factorize_counts_a_nan_activation_as_zero():
    a = _concept_activations()
    with_nan, with_zero = a.clone(), a.clone()
    with_nan[0, 0, 1, 1], with_zero[0, 0, 1, 1] = float("nan"), 0.0
    got, expected = factorize(with_nan, k=2, iterations=20), factorize(with_zero, k=2, iterations=20)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_factorize_of_constant_activations_and_of_tiny_ones():
    concepts, maps = factorize(torch.full((1, 3, 2, 2), 0.25), k=2, iterations=10)
    assert torch.equal(maps, torch.zeros(1, 2, 2, 2))  # nothing left after the shift: no concept, no NaN
    assert torch.equal(concepts, torch.full((3, 2), 0.25))
    a = _concept_activations() * 1e-3  # NMF's factors are then far below 1: the maps are still scaled to peak at 1
    _, maps = factorize(a, k=2, iterations=200)
    torch.testing.assert_close(maps.amax(dim=(0, 2, 3)), torch.ones(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nmf_on_cuda_equals_the_cpu():
    torch.manual_seed(21)
    v = torch.rand(6, 9, dtype=torch.float64)
    w, h = nmf(v.cuda(), 2, iterations=20)
    expected = nmf(v, 2, iterations=20)
    torch.testing.assert_close(w.cpu(), expected[0])
    torch.testing.assert_close(h.cpu(), expected[1])


# ------------------------------------------------------------------ Finer-CAM
def test_finer_targets_adds_1e_minus_9_to_tiny_comparison_probabilities():
    """Comparison classes 30 logits below: sum p_j ~ 1e-13, the 1e-9 of pytorch-grad-cam's FinerWeightedTarget dominates."""
    logits = torch.tensor([[30.0, 0.0, -1.0, 5.0]])
    p = logits.double().softmax(dim=1)[0]
    got = finer_targets(logits, torch.tensor([[0]]), torch.tensor([[[1, 2]]]), alpha=1.0)
    expected = (p[1] * 30 + p[2] * 31) / (p[1] + p[2] + 1e-9)
    assert 3e-3 < float(expected) < 5e-3
    torch.testing.assert_close(got.double(), expected.view(1, 1), rtol=1e-5, atol=0.0)


# ------------------------------------------------------------------ FullGrad in float64, non-square
@pytest.mark.parametrize("eigen_smooth", [False, True])
def test_fullgrad_in_float64_on_a_non_square_input(eigen_smooth):
    """float64 terms stay float64 (1e-12 against the loop), and the smoothing grid is (H/8, W/8)."""
    torch.manual_seed(22)
    x, xg = torch.randn(1, 2, 16, 32, dtype=torch.float64), torch.randn(1, 1, 2, 16, 32, dtype=torch.float64)
    same, small = torch.randn(1, 1, 3, 16, 32, dtype=torch.float64), torch.randn(1, 1, 4, 4, 8, dtype=torch.float64)
    terms = [minmax((xg[0, 0, c] * x[0, c]).abs()) for c in range(2)]
    terms.append(sum(minmax(same[0, 0, c].abs()) for c in range(3)))
    low = sum(minmax(small[0, 0, c].abs()) for c in range(4))
    terms.append(F.interpolate(low[None, None], size=(16, 32), mode="bilinear", align_corners=False)[0, 0])
    got = fullgrad(x, xg, [same, small], eigen_smooth=eigen_smooth)
    assert got.dtype == torch.float64 and got.shape == (1, 1, 16, 32)
    if not eigen_smooth:
        torch.testing.assert_close(got[0, 0], sum(terms), rtol=1e-12, atol=1e-12)
        return
    stacked = F.interpolate(torch.stack(terms)[None], size=(2, 4), mode="bilinear", align_corners=False)[0]
    stacked = torch.stack([minmax(t) for t in stacked])  # (4, 2, 4): each term scaled again, eps included
    projection = first_component(stacked[None], stacked.sum(0)[None])[0]
    expected = F.interpolate(projection[None, None], size=(16, 32), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(got[0, 0], expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ Smooth Grad-CAM++, Guided Grad-CAM
def test_smoothgradcampp_with_an_input_independent_gradient_is_gradcampp():
    """A scorer returning the same gradient tensor for every noisy copy (a linear model's):
    the averages of g, g^2, g^3 are g, g^2, g^3, and that tensor is left unchanged."""
    torch.manual_seed(23)
    a, g = torch.rand(1, 3, 2, 2), torch.randn(1, 2, 3, 2, 2)
    kept = g.clone()
    scorer = SimpleNamespace(inputs=torch.zeros(1, 3, 4, 4), gradients=lambda x: g)
    torch.testing.assert_close(smoothgradcampp(a, scorer, samples=3), gradcampp(a, g))
    assert torch.equal(g, kept)


def test_guided_gradcam_upsamples_a_float16_gradcam_in_float32():
    """float16 activations and gradients (autocast) with float32 guided gradients: the bilinear
    up-sampling of the float16 Grad-CAM map is not rounded to float16 on the way."""
    torch.manual_seed(24)
    a, g = torch.randn(1, 4, 3, 3).half(), torch.randn(1, 1, 4, 3, 3).half()
    guided = torch.randn(1, 1, 3, 12, 12)
    got = guided_gradcam(a, g, guided)
    assert got.dtype == torch.float32
    coarse = gradcam(a, g).clamp_min(0)
    assert (coarse > 0).sum() > 3
    up = F.interpolate(coarse.double(), size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got.double(), guided.double().abs().amax(dim=2) * up, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ Ablation-CAM and Score-CAM with a real Scorer
def _dead_layer_model() -> torch.nn.Module:
    """float64 model whose first conv is -1 everywhere: the ReLU after it zeroes every channel, so the
    class scores are the head's bias (not float32 numbers) and ablating any channel changes nothing."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).double().eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(-1.0)
        model[4].bias.copy_(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    return model


def test_ablationcam_is_zero_when_no_ablation_changes_the_score():
    model = _dead_layer_model()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    classes = torch.tensor([[0, 2]])
    activations = model[0](x).detach()
    assert torch.equal(activations, -torch.ones(1, 4, 5, 5, dtype=torch.float64))
    scores = model(x).detach()[:, classes[0]]
    scorer = Scorer(model, x, classes, scores, "0")
    maps = ablationcam(activations, scorer)
    assert maps.shape == (1, 2, 5, 5) and torch.equal(maps, torch.zeros_like(maps))  # w_k = (y - y_k) / y = 0


def _scorecam_setup():
    """A small conv net, two images, two classes each, and its Scorer at the first conv."""
    torch.manual_seed(25)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.randn(2, 3, 6, 6)
    classes = torch.tensor([[0, 2], [1, 1]])
    with torch.no_grad():
        scores = model(x).gather(1, classes)
    return model, x, classes, Scorer(model, x, classes, scores, "0")


def test_score_channels_is_the_mean_score_of_the_masked_inputs():
    model, x, classes, scorer = _scorecam_setup()
    activations = torch.rand(2, 4, 3, 3)
    masks = masks_from_activations(activations, (6, 6))
    expected = torch.zeros(2, 4, 2)
    with torch.no_grad():
        for n in range(2):
            for c in range(4):
                expected[n, c] = model(x[n : n + 1] * masks[n, c])[0, classes[n]]
    torch.testing.assert_close(_score_channels(activations, scorer, None), expected)
    # IS-CAM's scales: the mean over the scaled masks
    scaled = torch.zeros(2, 4, 2)
    with torch.no_grad():
        for n in range(2):
            for c in range(4):
                scaled[n, c] = sum(model(x[n : n + 1] * s * masks[n, c])[0, classes[n]] for s in (0.5, 2.0)) / 2
    torch.testing.assert_close(_score_channels(activations, scorer, None, scales=(0.5, 2.0)), scaled)


def test_score_cam_masks_and_scores_of_float16_activations_are_float32():
    model, x, classes, scorer = _scorecam_setup()
    a = torch.rand(2, 4, 3, 3).half()
    # masks at the activations' own size: min-max in float32 of the float16 values, not in float16
    flat = a.double().flatten(2)
    expected = (flat - flat.amin(-1, keepdim=True)) / (flat.amax(-1, keepdim=True) - flat.amin(-1, keepdim=True))
    masks = masks_from_activations(a, (3, 3))
    assert masks.dtype == torch.float32
    torch.testing.assert_close(masks.double().flatten(2), expected, rtol=1e-6, atol=1e-7)
    # the channels' scores: the float16 maps normalised (and told apart) in float32
    assert torch.equal(_score_channels(a, scorer, None), _score_channels(a.float(), scorer, None))
    # the softmax of float16 scores in float32
    scores = (torch.randn(2, 4, 3) * 4).half()
    weights = score_weights(scores)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights.double(), scores.double().transpose(1, 2).softmax(dim=-1), rtol=1e-6, atol=1e-7)


def test_scorecam_top_k_of_every_channel_needs_no_ranking():
    """top_k >= C scores every channel: no Grad-CAM ranking (a scorer without an importance function works)."""
    _, _, _, scorer = _scorecam_setup()
    a = torch.rand(2, 4, 3, 3)
    exact = scorecam(a, scorer)
    for top_k in (4, 5):
        assert torch.equal(scorecam(a, scorer, top_k=top_k), exact)
    with pytest.raises(RuntimeError, match="importance"):
        scorecam(a, scorer, top_k=3)


def test_sscam_refuses_a_negative_noise_std():
    _, _, _, scorer = _scorecam_setup()
    a = torch.rand(2, 4, 3, 3)
    with pytest.raises(camlens.InputError, match="noise_std"):
        sscam(a, scorer, noise_std=-1.0, samples=2)
    assert torch.equal(sscam(a, scorer, noise_std=0.0, samples=2), scorecam(a, scorer))  # no noise: Score-CAM
