"""The users' models from the seeds, built with plain torch, to try camlens on.

- :class:`MnistNet`: the tutorial MNIST CNN (seed 004), with ``F.relu`` and ``F.max_pool2d``
  between its modules — the case where a hook cannot see a functional op's output.
- :func:`fastai_style_resnet`: a fastai ConvLearner as seed 000 prints it: a ResNet body, then
  ``AdaptiveConcatPool2d``, Flatten, BatchNorm1d, Dropout, Linear, ReLU, BatchNorm1d, Dropout,
  Linear, LogSoftmax — the head on which CAM is not defined.

Example:
    >>> import torch
    >>> MnistNet()(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MnistNet", "AdaptiveConcatPool2d", "fastai_style_resnet"]


class MnistNet(nn.Module):
    """The seed-004 MNIST network: (N, 1, 28, 28) -> (N, 10) scores (log-probabilities if asked)."""

    def __init__(self, log_softmax: bool = False) -> None:
        super().__init__()
        self.log_softmax = log_softmax
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1) if self.log_softmax else x


class AdaptiveConcatPool2d(nn.Module):
    """fastai's pooling: global max and global average side by side, (N, C, h, w) -> (N, 2C, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.ap, self.mp = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


def fastai_style_resnet(classes: int = 4) -> nn.Sequential:
    """Seed 000's ConvLearner: ``Sequential(body, head)``, ResNet-18 body (random weights)."""
    import torchvision

    resnet = torchvision.models.resnet18()
    body = nn.Sequential(*list(resnet.children())[:-2])
    head = nn.Sequential(
        AdaptiveConcatPool2d(), nn.Flatten(), nn.BatchNorm1d(1024), nn.Dropout(0.25),
        nn.Linear(1024, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, classes),
        nn.LogSoftmax(dim=-1),
    )
    return nn.Sequential(body, head)
