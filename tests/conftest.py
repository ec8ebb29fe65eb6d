"""Shared models for the tests: small, seeded, CPU-only; the pretrained one loads once."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from camlens.io.zoo import AdaptiveConcatPool2d, MnistNet, fastai_style_resnet  # noqa: F401  (used by the tests)


def pearson(a, b) -> float:
    """Pearson r of two maps (arrays or tensors of any shape, flattened), in float64."""
    a = torch.as_tensor(a).detach().flatten().double()
    b = torch.as_tensor(b).detach().flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / torch.sqrt((a @ a) * (b @ b) + 1e-30))


def mask_of_box(box, height, width) -> np.ndarray:
    """A box (x0, y0, x1, y1), max exclusive, as a boolean (H, W) array, pixel by pixel."""
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.zeros((height, width), dtype=bool)
    for y in range(height):
        for x in range(width):
            mask[y, x] = x0 <= x < x1 and y0 <= y < y1
    return mask


def largest_component_reference(mask: np.ndarray) -> np.ndarray:
    """largest_component by scipy: 8-connected labels; of equal-sized components the one holding the raster-last pixel."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros_like(mask)
    flat = labels.flatten()
    best = max(range(1, count + 1), key=lambda i: ((flat == i).sum(), np.nonzero(flat == i)[0].max()))
    return labels == best


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
    from camlens.io.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def photos():
    from camlens.io.images import sample_images

    return sample_images()


def hook_count(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks still registered anywhere in ``model``."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def pytest_sessionfinish(session, exitstatus):
    """Under CI (``CAMLENS_CI=1``, set by .ci/run) a test skipped for a missing package fails the run:
    the dev extra installs every optional library the tests use (fastai, Lightning, timm, ...)."""
    if not os.environ.get("CAMLENS_CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    missing = [r for r in (reporter.stats.get("skipped", []) if reporter else []) if "could not import" in str(r.longrepr)]
    if missing:
        for report in missing:
            print(f"\nCI: skipped for a missing package: {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
