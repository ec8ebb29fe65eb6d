"""explain(): CAM and Grad-CAM against hand-computed references, classes, and leaving no trace."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import camlens
from conftest import MnistNet, hook_count


def _reference_gradcam(model, layer: nn.Module, x, cls):
    """Grad-CAM by hand (Selvaraju et al.): autograd of the score w.r.t. the layer output,
    channel means of the gradient, weighted sum of the activations, ReLU."""
    stored = {}

    def keep(module, args, output):
        stored["a"] = output
        return output.clone()  # a later in-place op must not change the stored value

    handle = layer.register_forward_hook(keep)
    try:
        scores = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(scores[torch.arange(len(x)), cls].sum(), stored["a"])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * stored["a"]).sum(1).detach(), stored["a"].detach()


def test_cam_is_the_seed_einsum_and_proportional_to_gradcam(resnet18):
    x = torch.randn(2, 3, 224, 224)
    out = camlens.explain(resnet18, x, method=["cam", "gradcam"], classes=[3, 9])
    with camlens.Hook(resnet18.layer4) as hook, torch.no_grad():
        resnet18(x)
    act = hook.stored  # (2, 512, 7, 7)
    for i in range(2):  # the fastai book's einsum, image by image
        expected = torch.einsum("ck,kij->cij", resnet18.fc.weight.detach(), act[i])[[3, 9]]
        torch.testing.assert_close(out["cam"].raw[i], expected, rtol=1e-5, atol=1e-5)
    # d score / d A = w / (h*w): Grad-CAM is CAM divided by 49, exactly
    torch.testing.assert_close(out["gradcam"].raw * 49, out["cam"].raw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["gradcam"].maps, out["cam"].maps, rtol=1e-4, atol=1e-4)
    # and CAM's spatial mean plus the bias is the class score
    torch.testing.assert_close(out["cam"].raw.mean((2, 3)) + resnet18.fc.bias[[3, 9]].detach(), out["cam"].scores)


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.0"])
def test_gradcam_equals_the_hand_computed_reference(resnet18, layer):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 224, 224)
    classes = torch.tensor([1, 500, 999])
    explanation = camlens.explain(resnet18, x, "gradcam", target_layer=layer, classes=classes)
    expected, activation = _reference_gradcam(resnet18, camlens.get_module(resnet18, layer), x, classes)
    assert explanation.raw.shape == (3, 1, *activation.shape[-2:])
    torch.testing.assert_close(explanation.raw[:, 0], expected, rtol=1e-4, atol=1e-6)
    assert expected.abs().max() > 1e-4  # the comparison is not between zeros
    maps = explanation.maps
    assert maps.shape == (3, 1, 224, 224) and maps.min() >= 0 and maps.max() <= 1
    assert torch.allclose(maps.amax((2, 3)), torch.ones(3, 1))


def test_several_classes_in_one_call_equal_one_class_at_a_time(resnet18):
    x = torch.randn(2, 3, 96, 96)
    many = camlens.explain(resnet18, x, classes="top3")
    assert many.classes.shape == (2, 3)
    torch.testing.assert_close(many.classes, many.logits.topk(3).indices)
    for k in range(3):
        one = camlens.explain(resnet18, x, classes=many.classes[:, k])
        torch.testing.assert_close(one.raw[:, 0], many.raw[:, k], rtol=1e-5, atol=1e-7)


def test_classes_argument_forms(gapnet):
    x = torch.randn(3, 3, 16, 16)
    logits = gapnet(x)
    assert camlens.explain(gapnet, x).classes.tolist() == logits.argmax(1, keepdim=True).tolist()
    assert camlens.explain(gapnet, x, classes=2).classes.tolist() == [[2]] * 3
    assert camlens.explain(gapnet, x, classes=[0, 4]).classes.tolist() == [[0, 4]] * 3
    assert camlens.explain(gapnet, x, classes=torch.tensor([[1, 2], [3, 4], [0, 1]])).classes.tolist() == [[1, 2], [3, 4], [0, 1]]
    with pytest.raises(camlens.InputError, match=r"out of range.*0\.\.4"):
        camlens.explain(gapnet, x, classes=5)
    with pytest.raises(camlens.InputError, match="top5"):
        camlens.explain(gapnet, x, classes="best")
    with pytest.raises(camlens.InputError, match="one class per image"):
        camlens.explain(gapnet, x, classes=torch.tensor([1, 2]))


def test_model_is_left_as_found_and_no_hook_remains(resnet18):
    resnet18.train()
    resnet18.layer2.eval()  # a mixed state must come back as it was
    flags = [m.training for m in resnet18.modules()]
    resnet18.fc.weight.grad = torch.full_like(resnet18.fc.weight, 0.5)
    running_mean = resnet18.bn1.running_mean.clone()
    camlens.explain(resnet18, torch.randn(2, 3, 64, 64), method=["gradcam", "cam"], target_layer="layer4")
    assert [m.training for m in resnet18.modules()] == flags
    assert torch.equal(resnet18.fc.weight.grad, torch.full_like(resnet18.fc.weight, 0.5))
    assert all(p.grad is None for n, p in resnet18.named_parameters() if n != "fc.weight")
    assert torch.equal(resnet18.bn1.running_mean, running_mean)  # evaluated in eval mode
    assert hook_count(resnet18) == 0
    assert torch.is_grad_enabled()


def test_hooks_are_removed_after_an_exception(resnet18):
    class Broken(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            self.inner(x)
            raise RuntimeError("boom")

    model = Broken(resnet18)
    with pytest.raises(RuntimeError, match="boom"):
        camlens.explain(model, torch.randn(1, 3, 64, 64), target_layer="inner.layer4")
    assert hook_count(model) == 0 and torch.is_grad_enabled()


def test_target_layer_that_never_runs_is_explained():
    class Net(MnistNet):
        def __init__(self):
            super().__init__()
            self.spare = nn.Conv2d(20, 20, 1)  # defined but never called

    with pytest.raises(camlens.LayerNotExecutedError, match="never ran.*Modules that did run.*conv2"):
        camlens.explain(Net(), torch.randn(1, 1, 28, 28), target_layer="spare")


def test_reused_module_needs_a_call_index(lite0):
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(camlens.MultipleCallsError, match="_swish:0, _swish:1"):
        camlens.explain(lite0.model, x, target_layer="_swish")
    assert camlens.explain(lite0.model, x, target_layer="_swish:-1").raw.shape == (1, 1, 2, 2)


def test_cam_refuses_a_head_that_is_not_gap_linear():
    model = torchvision.models.vgg11()
    with pytest.raises(camlens.HeadError, match="4096 features"):
        camlens.explain(model, torch.randn(1, 3, 64, 64), method="cam")


def test_works_with_frozen_parameters_and_under_no_grad(gapnet):
    for p in gapnet.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 3, 16, 16)
    expected = camlens.explain(gapnet, x, method="cam").raw / 64
    with torch.no_grad():
        got = camlens.explain(gapnet, x, method="gradcam").raw
    torch.testing.assert_close(got, expected)
    with torch.inference_mode(), pytest.raises(camlens.InputError, match="inference_mode"):
        camlens.explain(gapnet, x)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_module_object_as_target_and_bad_inputs(gapnet):
    x = torch.randn(1, 3, 16, 16)
    assert camlens.explain(gapnet, x, target_layer=gapnet.features[3]).target_layer == "features.3"
    with pytest.raises(camlens.InputError, match="unsqueeze"):
        camlens.explain(gapnet, x[0])
    with pytest.raises(camlens.InputError, match="floating point"):
        camlens.explain(gapnet, x.to(torch.uint8))
    with pytest.raises(camlens.InputError, match="Did you mean gradcam"):
        camlens.explain(gapnet, x, method="gradcm")
    with pytest.raises(camlens.LayerNotFoundError, match="features"):
        camlens.explain(gapnet, x, target_layer="feature.3")
    with pytest.raises(camlens.InputError, match="TorchScript"):
        camlens.explain(torch.jit.script(gapnet), x)


def test_default_target_follows_a_changed_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(1, 3, 16, 16)
    assert camlens.explain(model, x).target_layer == "1"
    model[1] = nn.Identity()  # the cached choice would now be wrong: "0" gives the last map
    assert camlens.explain(model, x).target_layer == "0"
