"""Which layer? The locator on a zoo of real architectures, and describe()'s table and verdict."""

from __future__ import annotations

import pytest
import torch
import torchvision

import camlens
from conftest import MnistNet, fastai_style_resnet

TORCHVISION_TARGETS = {
    "resnet18": "layer4",
    "resnet50": "layer4",
    "vgg16": "features.29",  # the ReLU after the last conv, not the max-pool after it
    "densenet121": "features",
    "mobilenet_v2": "features",
    "mobilenet_v3_small": "features",
    "efficientnet_b0": "features",
    "convnext_tiny": "features",
    "regnet_y_400mf": "trunk_output",
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_TARGETS))
def test_torchvision_zoo(name):
    if name in ("vgg16", "densenet121", "resnet50"):
        pytest.importorskip("torchvision")
    model = torchvision.models.get_model(name)
    target = camlens.find_target_layer(model)
    assert target == TORCHVISION_TARGETS[name]
    assert "pool" not in type(camlens.get_module(model, target)).__name__.lower()


@pytest.mark.parametrize("name, expected", [("resnet18", "layer4"), ("efficientnet_b0", "bn2"), ("mobilenetv3_small_100", "blocks")])
def test_timm_zoo(name, expected):
    timm = pytest.importorskip("timm")
    assert camlens.find_target_layer(timm.create_model(name)) == expected


def test_fastai_style_sequential_picks_the_body():
    assert camlens.find_target_layer(fastai_style_resnet()) == "0"


def test_efficientnet_lite_picks_the_second_call_of_the_shared_activation(lite0):
    assert camlens.find_target_layer(lite0.model) == "_swish:1"


def test_mnist_net_with_functional_ops_names_them():
    description = camlens.describe(MnistNet(), input_size=(1, 28, 28))
    assert description.target == "conv2"
    assert "functional ops" in description.reason and "'fc1'" in description.reason
    assert not description.head.exact


def test_describe_explains_the_shape_and_stride(resnet18):
    description = camlens.describe(resnet18)
    layer4 = next(c for c in description.calls if c.name == "layer4")
    assert layer4.shape == (1, 512, 7, 7) and layer4.stride == 32
    assert layer4.params == sum(p.numel() for p in resnet18.layer4.parameters())
    text = str(description)
    assert "<- target" in text and "stride" in text.lower()
    assert description.head.exact and description.head.classifier == "fc"
    assert "CAM is exact" in text


def test_vgg_head_verdict_names_the_mismatch():
    description = camlens.describe(torchvision.models.vgg11())
    assert not description.head.exact
    assert "4096" in description.head.reason and "512" in description.head.reason
    assert "gradcam" in description.head.reason


def test_dead_branch_is_never_the_target():
    class TwoBranch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.unused = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            features = self.body(x)
            self.unused(features)  # computed, but the output does not depend on it
            return self.fc(features.mean((2, 3)))

    assert camlens.find_target_layer(TwoBranch(), (3, 16, 16)) == "body"


def test_model_without_a_spatial_map_gets_a_clear_error():
    with pytest.raises(camlens.InputError, match="spatial feature map"):
        camlens.find_target_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)), (3, 2, 2))
