"""Kill tests for camlens.methods (issue 14): each method's formula where the other tests left it open.

The references are closed forms written out independently (loops, scikit-learn's kernels and
KernelPCA, scikit-learn's NMF, explicit autograd of the paper's target), on small hand-made
tensors, so that a changed constant, operator or reduction in a method fails here.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import camlens
from camlens.methods import (
    cam, fem, fullgrad, gradcam, gradcam_elementwise, guided_backprop, guided_gradcam, hirescam, kpcacam,
    layercam, randomcam, shapleycam, xgradcam,
)
from camlens.methods._combine import elementwise_sum, weighted_sum
from camlens.methods.dff import dff, factorize, nmf
from camlens.methods.eigen import eigencam, first_component
from camlens.methods.finercam import comparison_index, finer_targets, finercam
from camlens.methods.fullgrad import channel_minmax
from camlens.methods.kpca import kernel_first_component, kernel_matrix


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
