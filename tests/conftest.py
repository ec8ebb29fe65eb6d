"""Shared models for the tests: small, seeded, CPU-only; the pretrained one loads once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class MnistNet(nn.Module):
    """The seed-004 tutorial network: F.relu and functional max-pooling between modules."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


class GapNet(nn.Module):
    """Conv body + global average pooling + one linear layer: CAM is exact here."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class AdaptiveConcatPool2d(nn.Module):
    """fastai's pooling: average and max side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.ap, self.mp = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)

    def forward(self, x):
        return torch.cat([self.mp(x), self.ap(x)], 1)


def fastai_style_resnet(classes: int = 4) -> nn.Sequential:
    """Seed 000's ConvLearner: Sequential(body, head) with concat pooling and a LogSoftmax."""
    import torchvision

    resnet = torchvision.models.resnet18()
    body = nn.Sequential(*list(resnet.children())[:-2])
    head = nn.Sequential(
        AdaptiveConcatPool2d(), nn.Flatten(), nn.BatchNorm1d(1024), nn.Dropout(0.25),
        nn.Linear(1024, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, classes),
        nn.LogSoftmax(dim=-1),
    )
    return nn.Sequential(body, head)


@pytest.fixture
def resnet18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@pytest.fixture
def gapnet():
    torch.manual_seed(0)
    return GapNet().eval()


@pytest.fixture(scope="session")
def lite0():
    from camlens.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def photos():
    from camlens.images import sample_images

    return sample_images()


def hook_count(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks still registered anywhere in ``model``."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )
