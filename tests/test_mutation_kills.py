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
