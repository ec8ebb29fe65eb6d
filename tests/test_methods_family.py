"""The rest of the family (issue 19): each method against pytorch-grad-cam where the formulas
coincide (Pearson r >= 0.999 on resnet18 and the pretrained EfficientNet-Lite0), or against its
closed form where camlens differs on purpose; ROAD against pytorch-grad-cam's ROAD."""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch
from torch import nn

import camlens
from camlens.methods import fem, gradcam, gradcam_elementwise, randomcam, shapleycam
from camlens.methods.dff import factorize, nmf
from camlens.methods.finercam import comparison_index, finer_targets
from camlens.methods.kpca import kernel_first_component

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from conftest import hook_count, pearson  # noqa: E402

NEW = ["gradcam_elementwise", "randomcam", "fem", "kpcacam", "shapleycam", "finercam", "fullgrad",
       "guided_backprop", "guided_gradcam", "dff"]


def peer(cls, model, layers, x, classes, **kwargs):
    """pytorch-grad-cam's maps, finalised like camlens's (ReLU, bilinear, min-max)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        with cls(model=model, target_layers=layers) as cam:
            out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes], **kwargs)
    return camlens.finalize_maps(torch.as_tensor(out).unsqueeze(1), tuple(x.shape[-2:]))[:, 0]


@pytest.fixture(scope="module")
def r18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().eval(), torch.randn(2, 3, 96, 96)


@pytest.fixture(scope="module")
def lite0_pair():
    from camlens.io.images import sample_images
    from camlens.io.models import load_model

    loaded = load_model("efficientnet_lite0")
    photos = sample_images()
    return loaded.model.eval(), loaded.preprocess([photos["chelsea"], photos["coffee"]])


def test_new_methods_registered_with_papers():
    for name in NEW:
        method = camlens.get_method(name)
        assert method.paper and method.summary, name
    assert camlens.get_method("finercam").needs == ("activations", "logits", "classes", "logit_gradients")
    assert camlens.get_method("fullgrad").needs == ("inputs", "input_gradients", "bias_gradients")


@pytest.mark.parametrize("name,cls", [("gradcam_elementwise", "GradCAMElementWise"), ("fem", "FEM"),
                                      ("fullgrad", "FullGrad"), ("shapleycam", "ShapleyCAM")])
def test_equals_pytorch_grad_cam_on_resnet18_and_lite0(name, cls, r18, lite0_pair):
    for model, x, layer in ((*r18, "layer4"), (*lite0_pair, "_blocks.15")):
        ours = camlens.explain(model, x, name, layer)
        layers = [] if name == "fullgrad" else [camlens.get_module(model, layer)]
        theirs = peer(getattr(pgc, cls), model, layers, x, ours.classes[:, 0])
        for i in range(x.shape[0]):
            assert pearson(ours.maps[i, 0], theirs[i]) >= 0.999, (name, layer, i)
        assert hook_count(model) == 0


def test_finercam_equals_pytorch_grad_cam(r18, lite0_pair):
    for model, x, layer in ((*r18, "layer4"), (*lite0_pair, "_blocks.15")):
        ours = camlens.explain(model, x, "finercam", layer)
        cam = pgc.FinerCAM(model=model, target_layers=[camlens.get_module(model, layer)])
        try:
            theirs = camlens.finalize_maps(torch.as_tensor(cam(input_tensor=x)).unsqueeze(1), tuple(x.shape[-2:]))[:, 0]
        finally:
            cam.base_cam.activations_and_grads.release()
        for i in range(x.shape[0]):
            assert pearson(ours.maps[i, 0], theirs[i]) >= 0.999


def test_finercam_closed_form_and_comparison_classes():
    logits = torch.tensor([[5.0, 4.9, 1.0, 4.0, -2.0]])
    classes = torch.tensor([[0]])
    assert comparison_index(logits, classes, similar=2).tolist() == [[[1, 3]]]
    assert comparison_index(logits, classes, comparison_classes=[4]).tolist() == [[[4]]]
    p = logits.softmax(1)[0]
    expected = (p[1] * (5 - 4.9) + p[3] * (5 - 4.0)) / (p[1] + p[3])
    assert torch.allclose(finer_targets(logits, classes, torch.tensor([[[1, 3]]]), 1.0)[0, 0], expected)
    with pytest.raises(camlens.InputError, match="comparison_classes"):
        comparison_index(logits, classes, comparison_classes=[9])


def test_finercam_with_alpha_zero_is_gradcam(r18):
    model, x = r18
    both = camlens.explain(model, x, ["finercam", "gradcam"], "layer4", alpha=0.0)
    assert torch.allclose(both["finercam"].raw, both["gradcam"].raw, atol=1e-6)


class SmoothNet(nn.Module):
    """SiLU / GELU after the target: the Hessian of the score is not zero (Shapley-CAM != Grad-CAM)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU())
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 1), nn.SiLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.head(self.body(x)).mean(dim=(2, 3)))


def test_shapleycam_second_order_against_pytorch_grad_cam_and_closed_form():
    torch.manual_seed(0)
    model, x = SmoothNet().eval(), torch.randn(2, 3, 16, 16)
    e = camlens.explain(model, x, ["shapleycam", "gradcam"], "body", classes=[1])
    assert pearson(e["shapleycam"].raw, e["gradcam"].raw) < 0.9999  # the correction matters here
    theirs = peer(pgc.ShapleyCAM, model, [model.body], x, [1, 1])
    for i in range(2):
        assert pearson(e["shapleycam"].maps[i, 0], theirs[i]) >= 0.999
    # closed form: score = sum(A^2) / 2 -> g = A, H A = A, weights = mean(A - A / 2)
    a, g = torch.rand(1, 2, 3, 3), None
    g = a.unsqueeze(1)
    expected = torch.einsum("nkc,nchw->nkhw", (g - 0.5 * g).mean(dim=(3, 4)), a)
    assert torch.allclose(shapleycam(a, g, g), expected)


def test_hessian_products_are_a_double_backward():
    from camlens.engine._extra_inputs import hessian_products

    a = torch.rand(1, 2, 2, 2, requires_grad=True)
    scores = (a.pow(3).sum() / 6).view(1, 1)  # g = A^2 / 2, H = diag(A), H A = A^2
    assert torch.allclose(hessian_products(scores, a)[:, 0], a.detach().pow(2))


def test_gradcam_elementwise_and_fem_and_randomcam_closed_forms():
    torch.manual_seed(0)
    a, g = torch.randn(2, 3, 4, 5), torch.randn(2, 2, 3, 4, 5)
    assert torch.allclose(gradcam_elementwise(a, g), (g * a.unsqueeze(1)).clamp_min(0).sum(2))
    flat = a.flatten(2)
    t = flat.mean(2, keepdim=True) + 2 * flat.std(2, unbiased=False, keepdim=True)
    w = (flat > t).float().mean(2)
    assert torch.allclose(fem(a)[:, 0], torch.einsum("nc,nchw->nhw", w, a))
    assert torch.equal(randomcam(a, seed=3), randomcam(a, seed=3))
    assert not torch.equal(randomcam(a, seed=3), randomcam(a, seed=4))


def test_kpcacam_equals_scikit_learn_kernel_pca_up_to_sign(r18):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    torch.manual_seed(0)
    a = torch.randn(2, 32, 6, 6).relu()
    for kernel in ("sigmoid", "rbf", "poly", "linear", "cosine"):
        ours = kernel_first_component(a, a.mean(1), kernel)
        theirs = torch.as_tensor(get_2d_projection_kernel(a.numpy(), kernel))
        for i in range(2):
            assert abs(pearson(ours[i], theirs[i])) >= 0.9999, kernel
            # camlens fixes the sign to agree with the mean activation (scikit-learn's is arbitrary)
            assert pearson(ours[i], a[i].mean(0)) >= 0
    with pytest.raises(camlens.InputError, match="kernel"):
        kernel_first_component(a, a.mean(1), "laplace")


def test_eigen_smooth_is_the_first_component_of_the_weighted_activations():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    torch.manual_seed(0)
    a, g = torch.rand(2, 16, 5, 5), torch.randn(2, 1, 16, 5, 5)
    ours = gradcam(a, g, eigen_smooth=True)[:, 0]
    theirs = torch.as_tensor(get_2d_projection((g[:, 0].mean(dim=(2, 3))[..., None, None] * a).numpy()))
    for i in range(2):
        assert abs(pearson(ours[i], theirs[i])) >= 0.9999
        assert pearson(ours[i], gradcam(a, g)[i, 0]) > 0  # sign follows the plain map


def test_eigen_smooth_accepted_by_every_channel_method(r18):
    model, x = r18
    names = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "gradcam_elementwise", "fem",
             "randomcam", "shapleycam", "finercam", "fullgrad", "guided_gradcam"]
    out = camlens.explain(model, x[:1], names, "layer4", eigen_smooth=True)
    assert all(torch.isfinite(e.maps).all() for e in out.values())
    with pytest.raises(camlens.InputError, match="eigen_smooth"):
        camlens.explain(model, x[:1], "guided_backprop", eigen_smooth=True)


def test_guided_backprop_equals_pytorch_grad_cam_on_resnet18(r18):
    from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel

    from camlens.engine._extra_inputs import pass_inputs

    model, x = r18
    ours = pass_inputs({"guided_gradients"}, model, x[:1], torch.tensor([[3]]), "logits")["guided_gradients"]
    theirs = GuidedBackpropReLUModel(model)(x[:1].clone(), 3)
    assert pearson(ours[0, 0].permute(1, 2, 0), theirs) >= 0.999
    assert hook_count(model) == 0
    assert all(isinstance(m, nn.ReLU) for name, m in model.named_modules() if name.endswith("relu"))


def test_guided_rule_closed_form_also_for_functional_relu_and_relu6():
    import torch.nn.functional as F

    from camlens.engine._extra_inputs import GuidedReLUs

    w = torch.tensor([[1.0, -2.0, 3.0], [-1.0, 1.0, 1.0]])
    v = torch.tensor([1.0, -1.0])
    x = torch.tensor([0.5, -0.2, 1.0], requires_grad=True)

    def net(t):
        return v @ F.relu6(torch.relu(w @ t * 1.0) + 0.0)

    with GuidedReLUs():
        (guided,) = torch.autograd.grad(net(x), x)
    pre = w @ x.detach()  # [3.5, 1.7]: both ReLUs open; the gradient into them is v = [1, -1]
    expected = (v.clamp_min(0) * (pre > 0) * (pre < 6)) @ w  # negative gradient is stopped
    assert torch.allclose(guided, expected)
    (plain,) = torch.autograd.grad(net(x), x)
    assert torch.allclose(plain, ((v * (pre > 0)) @ w))  # the mode ended with the block


def test_guided_gradcam_closed_form(r18):
    model, x = r18
    out = camlens.explain(model, x[:1], ["guided_gradcam", "guided_backprop", "gradcam"], "layer4", classes=[2])
    up = torch.nn.functional.interpolate(out["gradcam"].raw.clamp_min(0), size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)
    assert torch.allclose(out["guided_gradcam"].raw, out["guided_backprop"].raw * up, atol=1e-6)
    assert out["guided_backprop"].raw.shape == (1, 1, 96, 96)


def test_fullgrad_completeness_on_a_linear_network():
    # score = <w, x> + b for a conv + GAP + linear network without ReLU: the full-gradient terms sum to the score
    from camlens.engine._extra_inputs import pass_inputs

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2, bias=False)).eval()
    x = torch.randn(1, 2, 6, 6)
    inputs = pass_inputs({"inputs", "input_gradients", "bias_gradients"}, model, x, torch.tensor([[1]]), "logits")
    total = (inputs["input_gradients"] * x.unsqueeze(1)).sum() + sum(g.sum() for g in inputs["bias_gradients"])
    assert torch.allclose(total, model(x)[0, 1], atol=1e-5)


def test_fullgrad_on_signals_and_volumes_scales_each_channel_over_all_its_positions():
    # |x * dS/dx| per input channel, min-max scaled over that channel's positions (the paper's
    # per-channel scaling), summed over channels; signals also with eigen_smooth (along L)
    torch.manual_seed(0)
    signal_model = nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                                 nn.Linear(8, 3)).eval()
    volume_model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                                 nn.Linear(4, 3)).eval()
    for model, x in ((signal_model, torch.randn(2, 2, 40) * torch.tensor([1.0, 50.0])[:, None]),
                     (volume_model, torch.randn(1, 2, 3, 5, 6) * torch.tensor([1.0, 50.0])[:, None, None, None])):
        result = camlens.explain(model, x, method="fullgrad", classes=[1], progress=False)
        x_grad = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x_grad)[:, 1].sum(), x_grad)
        term = (grad * x).abs().flatten(2)  # (N, C, positions)
        low, high = term.amin(-1, keepdim=True), term.amax(-1, keepdim=True)
        want = ((term - low) / (1e-7 + high - low)).sum(1).reshape(x.shape[0], 1, *x.shape[2:])
        assert result.raw.shape == want.shape
        torch.testing.assert_close(result.raw, want, rtol=1e-4, atol=1e-5)  # channel 1 (x50) does not swamp channel 0
    smooth = camlens.explain(signal_model, torch.randn(2, 2, 40), method="fullgrad", eigen_smooth=True, progress=False)
    assert smooth.maps.shape == (2, 1, 40) and torch.isfinite(smooth.raw).all()
    with pytest.raises(camlens.InputError, match="volumes"):
        camlens.explain(volume_model, torch.randn(1, 2, 3, 5, 6), method="fullgrad", eigen_smooth=True, progress=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_ablationcam_on_float64_and_bfloat16_models_equals_float32(dtype):
    # the methods work in float32; the ablated activations go back into the next layers in the layer's dtype
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    x = torch.randn(2, 3, 12, 12)
    want = camlens.explain(model, x, method="ablationcam", target_layer="3", classes=[1, 2], progress=False)
    got = camlens.explain(model.to(dtype), x.to(dtype), method="ablationcam", target_layer="3", classes=[1, 2],
                          progress=False)
    assert got.raw.dtype == torch.float32
    if dtype == torch.float64:
        torch.testing.assert_close(got.raw, want.raw, rtol=1e-4, atol=1e-5)
    else:
        assert pearson(got.raw, want.raw) > 0.99


def test_nmf_matches_scikit_learn_multiplicative_updates_and_recovers_factors():
    from sklearn.decomposition import NMF

    torch.manual_seed(0)
    w0, h0 = torch.rand(12, 3, dtype=torch.float64), torch.rand(3, 40, dtype=torch.float64)
    v = w0 @ h0
    w_init, h_init = torch.rand(12, 3, dtype=torch.float64), torch.rand(3, 40, dtype=torch.float64)
    w, h = nmf(v, 3, iterations=50, init=(w_init, h_init))
    model = NMF(3, init="custom", solver="mu", max_iter=50, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_sk = model.fit_transform(v.numpy(), W=w_init.numpy().copy(), H=h_init.numpy().copy())
    assert pearson(w @ h, torch.as_tensor(w_sk @ model.components_)) >= 0.9999
    w, h = nmf(v, 3, iterations=2000)
    assert float((w @ h - v).norm() / v.norm()) < 0.02


def test_factorize_and_camlens_dff(r18):
    model, x = r18
    concepts, maps = factorize(torch.rand(2, 8, 4, 4), k=3)
    assert concepts.shape == (8, 3) and maps.shape == (2, 3, 4, 4) and bool((maps >= 0).all())
    result = camlens.dff(model, x, k=4)
    assert result.vectors.shape == (512, 4) and result.maps.shape == (2, 4, 96, 96)
    assert len(result.labels) == 4 and len(result.labels[0]) == 2 and hook_count(model) == 0
    # the label is what the head says of the concept vector put at every position
    fc = model.fc(result.vectors.T)
    assert torch.allclose(result.scores, fc, atol=1e-4)
    figure = result.figure(x[0].sigmoid())
    assert len(figure.axes) == 2


def test_new_methods_leave_no_hooks_and_no_grads(r18):
    model, x = r18
    for p in model.parameters():  # the peers' backward (earlier tests) fills .grad; camlens must not
        p.grad = None
    out = camlens.explain(model, x[:1], NEW, "layer4", classes=[1, 2])
    assert set(out) == set(NEW)
    assert all(e.maps.shape == (1, 2, 96, 96) for e in out.values())
    assert hook_count(model) == 0 and all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------ ROAD
def test_imputation_equals_pytorch_grad_cam_noisy_linear_imputer():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from camlens.metrics import noisy_linear_imputation

    torch.manual_seed(0)
    image = torch.randn(3, 24, 20)
    keep = (torch.rand(24, 20) > 0.6).float()
    theirs = NoisyLinearImputer(noise=0.0)(image, keep)
    ours = noisy_linear_imputation(image[None], (keep == 0)[None], noise=0.0)[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    with pytest.raises(camlens.InputError, match="kept pixel"):
        noisy_linear_imputation(image[None], torch.ones(1, 24, 20, dtype=torch.bool))


def test_road_agrees_with_pytorch_grad_cam(r18):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from camlens.metrics import road

    model, _ = r18
    torch.manual_seed(1)
    x = torch.randn(2, 3, 40, 40)
    maps = torch.nn.functional.interpolate(torch.rand(2, 1, 5, 5), size=(40, 40), mode="bilinear")[:, 0]
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(2)]
    ours = road(model, x, maps, torch.tensor([1, 2]), fractions=(0.2, 0.7), noise=0.0, score="logit")
    for t, percentile in enumerate((80, 30)):
        for order, mine in ((RemoveMostRelevantFirst, ours.morf), (RemoveLeastRelevantFirst, ours.lerf)):
            metric = PerturbationConfidenceMetric(order(percentile, NoisyLinearImputer(noise=0.0)))
            theirs = torch.as_tensor(metric(x, maps.numpy(), targets, model, return_diff=False)).flatten()
            assert torch.allclose(mine[:, t], theirs, atol=2e-2), (order.__name__, percentile)
    assert ours.combined == pytest.approx((ours.lerf_mean - ours.morf_mean) / 2)


def test_road_in_evaluate():
    from camlens.metrics import evaluate

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    result = evaluate(net, torch.randn(2, 1, 12, 12), ["gradcam"], target_layer="1", step=0.5, road=True,
                      road_fractions=(0.5,), progress=False)
    summary = result.summary()["gradcam"]
    assert {"road_morf", "road_lerf", "road_combined"} <= set(summary)
    assert "ROAD" in result.table()
