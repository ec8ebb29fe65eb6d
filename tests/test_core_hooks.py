"""Hooks: what they store, that they always go away, and that they never fail silently."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens
from camlens import Hook, Hooks, capture
from conftest import MnistNet, hook_count


def test_hook_stores_output_input_and_detaches():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 8, 8)
    with Hook(conv) as out_hook, Hook(conv, store="input") as in_hook:
        y = conv(x)
    assert torch.equal(out_hook.stored, y.detach())
    assert not out_hook.stored.requires_grad
    assert torch.equal(in_hook.stored, x)
    assert out_hook.calls == 1
    assert hook_count(conv) == 0


def test_backward_hook_gives_the_autograd_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    x = torch.randn(5, 4)
    with Hook(net[1], backward=True) as grad_hook, Hook(net[1]) as out_hook:
        y = net(x)
        y[:, 1].sum().backward()
    # d y1 / d tanh_out = W2[1] for every row
    expected = net[2].weight[1].detach().expand(5, 3)
    torch.testing.assert_close(grad_hook.stored, expected)
    assert out_hook.stored.shape == (5, 3)
    assert hook_count(net) == 0


def test_hook_that_never_ran_explains_why():
    net = MnistNet()
    with Hook(net.conv1) as hook:
        pass
    with pytest.raises(camlens.LayerNotExecutedError, match="never ran"):
        hook.stored


def test_backward_hook_without_backward_says_so():
    lin = nn.Linear(3, 2)
    with Hook(lin, backward=True) as hook, torch.no_grad():
        lin(torch.randn(1, 3))
    with pytest.raises(camlens.NoGradientError, match="no_grad"):
        hook.stored


def test_in_place_change_after_storing_is_detected_and_clone_keeps_the_value():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    net = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 6, 6)
    with torch.no_grad():
        pre_relu = conv(x)
    with Hook(conv) as plain, Hook(conv, clone=True) as copied, torch.no_grad():
        net(x)
    with pytest.raises(camlens.InPlaceModifiedError, match="in place"):
        plain.stored
    torch.testing.assert_close(copied.stored, pre_relu)
    assert (pre_relu < 0).any()  # the check above is meaningful


def test_hooks_are_removed_when_an_exception_flies():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(ZeroDivisionError):
        with Hooks(net) as hooks:
            assert len(hooks) == 2 and hook_count(net) == 2
            1 / 0
    assert hook_count(net) == 0


def test_capture_gradient_is_right_where_the_next_op_is_in_place(resnet18):
    """ResNet's BasicBlock does `out = bn2(out); out += identity; relu(out)`."""
    x = torch.randn(2, 3, 64, 64)
    with capture(resnet18, ["layer4.1.bn2", "layer4.1"], grads=True, clone=True) as cap:
        resnet18(x)[:, 7].sum().backward()
    block = cap["layer4.1"]
    bn2 = cap["layer4.1.bn2"]
    # d/d(bn2 out) = d/d(block out) * 1[block out > 0]  (the add passes gradients through)
    torch.testing.assert_close(bn2.grad, block.grad * (block.output > 0))
    assert hook_count(resnet18) == 0
    resnet18.zero_grad(set_to_none=True)


def test_capture_reports_reused_modules_and_takes_call_indices(lite0):
    model = lite0.model
    x = torch.randn(1, 3, 224, 224)
    with capture(model, ["_swish"]) as cap, torch.no_grad():
        logits = model(x)
    with pytest.raises(camlens.MultipleCallsError, match="_swish:1"):
        cap["_swish"]
    assert len(cap.calls("_swish")) == 2
    assert cap["_swish:1"].output.shape == (1, 1280, 7, 7)
    assert cap["_swish:-1"].output is cap["_swish:1"].output
    assert list(cap) == ["_swish:0", "_swish:1"]
    # the last call feeds global pooling + the linear layer
    pooled = cap["_swish:1"].output.mean((2, 3))
    torch.testing.assert_close(model._fc(pooled), logits, rtol=1e-4, atol=1e-4)


def test_capture_unexecuted_module_lists_what_ran():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    net = Net()
    with capture(net, ["unused"]) as cap:
        net(torch.randn(1, 2))
    with pytest.raises(camlens.LayerNotExecutedError, match="Modules that did run.*used"):
        cap["unused"]


def test_wrong_layer_name_lists_close_matches(resnet18):
    with pytest.raises(camlens.LayerNotFoundError, match="layer4"):
        with capture(resnet18, ["layer_4"]):
            pass
    assert hook_count(resnet18) == 0
