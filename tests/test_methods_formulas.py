"""Each method's formula against its closed form on hand-made activations/gradients.

The references are written element by element (loops / explicit sums), independent of the
einsum/where code under test, so that a lost division or a wrong power fails.
"""

import math

import pytest
import torch

from camlens.methods import (
    eigencam, eigengradcam, get_method, gradcam, gradcampp, hirescam, layercam, list_methods, xgradcam,
)
from camlens.methods.ablationcam import ablation_weights
from camlens.methods.eigen import first_component
from camlens.methods.gradcampp import gradcampp_weights
from camlens.methods.scorecam import masks_from_activations, score_weights


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 4, 5, generator=g) * 2          # (N, C, h, w), positive
    a[0, 1] = 0.0                                          # a dead channel
    grads = torch.randn(2, 2, 3, 4, 5, generator=g)        # (N, K, C, h, w)
    return a.double(), grads.double()


def test_all_issue_methods_registered():
    expected = {"gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigengradcam", "eigencam",
                "scorecam", "sscam", "iscam", "ablationcam", "smoothgradcampp"}
    assert expected <= set(list_methods())
    assert get_method("Grad-CAM++".replace("+", "p")).name == "gradcampp"
    assert get_method("scorecam").options == ("top_k", "eigen_smooth")


def test_gradcampp_closed_form(tensors):
    a, g = tensors
    n_, k_, c_, h_, w_ = g.shape
    expected = torch.zeros(n_, k_, h_, w_, dtype=a.dtype)
    for n in range(n_):
        for k in range(k_):
            for c in range(c_):
                s = float(a[n, c].sum())
                weight = 0.0
                for i in range(h_):
                    for j in range(w_):
                        gij = float(g[n, k, c, i, j])
                        denominator = 2 * gij ** 2 + s * gij ** 3
                        alpha = gij ** 2 / denominator if denominator != 0 else 0.0
                        weight += alpha * max(gij, 0.0)
                expected[n, k] += weight * a[n, c]
    torch.testing.assert_close(gradcampp(a, g), expected)


def test_gradcampp_uses_powers_two_and_three():
    # One pixel pair, values chosen so that g^2 vs g^3 and 2*g^2 vs g^2 all change the answer.
    a = torch.tensor([[[[1.0, 3.0]]]])
    g = torch.tensor([[[[[2.0, 0.5]]]]])
    # sum A = 4; alpha = g^2 / (2 g^2 + 4 g^3): 4/(8+32) = 0.1 and 0.25/(0.5+0.5) = 0.25
    w = 0.1 * 2.0 + 0.25 * 0.5
    torch.testing.assert_close(gradcampp(a, g), torch.tensor([[[[w * 1.0, w * 3.0]]]]))


def test_gradcampp_zero_activations_and_gradients_no_nan():
    a = torch.zeros(1, 2, 3, 3)
    g = torch.zeros(1, 1, 2, 3, 3)
    assert torch.equal(gradcampp(a, g), torch.zeros(1, 1, 3, 3))
    # denominator exactly zero: 2 g^2 + S g^3 = 0 for g = -2/S
    a = torch.tensor([[[[1.0, 1.0]]]])  # S = 2 -> g = -1 zeroes the denominator
    g = torch.tensor([[[[[-1.0, 1.0]]]]])
    out = gradcampp(a, g)
    assert torch.isfinite(out).all()
    # pixel 2: alpha = 1 / (2 + 2) = .25, relu(g) = 1 -> w = .25
    torch.testing.assert_close(out, torch.tensor([[[[0.25, 0.25]]]]))


def test_gradcampp_weights_with_averaged_moments():
    a = torch.tensor([[[[2.0]]]])
    g1, g2, g3 = (torch.tensor([[[[[v]]]]]) for v in (1.0, 3.0, 5.0))
    # alpha = 3 / (6 + 2 * 5) = 3/16, w = 3/16 * 1
    torch.testing.assert_close(gradcampp_weights(a, g1, g2, g3), torch.tensor([[[3 / 16]]]))


def test_xgradcam_closed_form(tensors):
    a, g = tensors
    expected = torch.zeros(2, 2, 4, 5, dtype=a.dtype)
    for n in range(2):
        for k in range(2):
            for c in range(3):
                total = float(a[n, c].sum())
                weight = sum(float(a[n, c, i, j] / total * g[n, k, c, i, j]) for i in range(4) for j in range(5)) if total else 0.0
                expected[n, k] += weight * a[n, c]
    out = xgradcam(a, g)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected)


def test_layercam_and_hirescam_closed_form(tensors):
    a, g = tensors
    lc = torch.zeros(2, 2, 4, 5, dtype=a.dtype)
    hr = torch.zeros(2, 2, 4, 5, dtype=a.dtype)
    for c in range(3):
        lc += torch.clamp(g[:, :, c], min=0) * a[:, None, c]
        hr += g[:, :, c] * a[:, None, c]
    torch.testing.assert_close(layercam(a, g), lc)
    torch.testing.assert_close(hirescam(a, g), hr)


def test_hirescam_sums_to_score_for_linear_head():
    # score = mean_ij sum_c W_c A_c(i, j): gradient W_c / (h w); sum of the HiResCAM map = score
    a = torch.rand(1, 4, 3, 3)
    weight = torch.randn(4)
    score = (a.mean(dim=(2, 3)) * weight).sum()
    g = (weight / 9).view(1, 1, 4, 1, 1).expand(1, 1, 4, 3, 3)
    torch.testing.assert_close(hirescam(a, g).sum(), score)
    torch.testing.assert_close(gradcam(a, g).sum(), score)  # constant gradient: the same map


def test_first_component_matches_numpy_svd_and_sign(tensors):
    a, _ = tensors
    for n in range(2):
        x = a[n].reshape(3, -1).T.numpy()
        x = x - x.mean(axis=0)
        import numpy as np

        _, _, vt = np.linalg.svd(x, full_matrices=True)
        projection = torch.from_numpy(x @ vt[0]).reshape(4, 5)
        mean_map = a[n].mean(dim=0)
        if float(((projection - 0) * (mean_map - mean_map.mean())).sum()) < 0:
            projection = -projection
        torch.testing.assert_close(eigencam(a)[n, 0].double(), projection, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 3, 4, 5), (3, 64, 3, 3)])  # both Gram matrices: C x C and hw x hw
def test_first_component_equals_svd_projection_for_both_gram_sizes(shape):
    import numpy as np

    torch.manual_seed(2)
    features = torch.randn(shape, dtype=torch.float64).relu()
    reference = features.mean(dim=1)
    got = first_component(features, reference)
    for n in range(shape[0]):
        x = features[n].reshape(shape[1], -1).T.numpy()
        x = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        projection = torch.from_numpy(x @ vt[0]).reshape(shape[2:])
        if float((projection * (reference[n] - reference[n].mean())).sum()) < 0:
            projection = -projection
        torch.testing.assert_close(got[n], projection, rtol=1e-7, atol=1e-9)


def test_eigencam_sign_follows_mean_activation():
    # rank one: channel 1 = 2 * channel 0; the map must rise where the activations rise
    base = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2)
    a = torch.cat([base, 2 * base], dim=1)
    out = eigencam(a).flatten()
    assert out[3] > out[0]
    torch.testing.assert_close(out, (base.flatten() - 1.5) * math.sqrt(5))
    torch.testing.assert_close(eigencam(-a + 10).flatten(), -out)  # mean map reversed -> map reversed


def test_eigen_of_zeros_is_zero_not_nan():
    assert torch.equal(first_component(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2)), torch.zeros(1, 2, 2))


def test_eigengradcam_is_first_component_of_product(tensors):
    a, g = tensors
    product = g * a[:, None]
    expected = first_component(product, product.sum(dim=2))
    torch.testing.assert_close(eigengradcam(a, g), expected)
    # sign follows HiResCAM
    assert ((eigengradcam(a, g) * (hirescam(a, g) - hirescam(a, g).mean(dim=(2, 3), keepdim=True))).sum(dim=(2, 3)) >= 0).all()


def test_scorecam_masks_and_weights():
    a = torch.tensor([[[[1.0, 3.0], [1.0, 1.0]], [[5.0, 5.0], [5.0, 5.0]]]])  # channel 1 constant
    masks = masks_from_activations(a, (2, 2))
    torch.testing.assert_close(masks[0, 0], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(masks[0, 1], torch.zeros(2, 2))  # constant channel: zero mask, not NaN
    scores = torch.tensor([[[1.0], [math.log(3.0)]]])  # (N, C, K)
    weights = score_weights(scores)
    torch.testing.assert_close(weights, torch.tensor([[[math.e / (math.e + 3), 3 / (math.e + 3)]]]))
    unscored = score_weights(torch.tensor([[[2.0], [float("-inf")]]]))
    torch.testing.assert_close(unscored, torch.tensor([[[1.0, 0.0]]]))


def test_ablation_weights_relative_drop():
    scores = torch.tensor([[4.0, 0.0]])                 # (N, K); class 1 scores exactly 0
    ablated = torch.tensor([[[3.0, -1.0], [5.0, 2.0]]])  # (N, C, K)
    expected = torch.tensor([[[0.25, -0.25], [1.0, -2.0]]])  # (y - y_k)/y ; plain drop when y = 0
    torch.testing.assert_close(ablation_weights(scores, ablated), expected)
