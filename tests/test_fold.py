"""Folding BatchNorm and zero padding into convolutions for the gradient-free methods' copies."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camlens.core.fold import fold_for_inference


class SamePadConv(nn.Conv2d):
    """EfficientNet-port style: pads in its own forward and calls F.conv2d (traced through by fx)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, pad=(1, 1, 1, 1)):
        super().__init__(cin, cout, k, stride=stride, groups=groups, bias=False)
        self.static_padding = nn.ZeroPad2d(pad)

    def forward(self, x):
        return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class BNAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d: calls F.batch_norm in its own forward, then an activation."""

    def __init__(self, channels):
        super().__init__(channels)
        self.act = nn.ReLU()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return self.act(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = SamePadConv(3, 8, 3, stride=2, pad=(0, 1, 0, 1))  # asymmetric: left as a pad
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = SamePadConv(8, 8, 3, groups=8)  # symmetric: becomes padding=(1, 1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 1)
        self.bn2 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.bnact = BNAct(16)
        self.shared = nn.Conv2d(16, 16, 3, padding=1)  # called twice: never folded into
        self.bn3 = nn.BatchNorm2d(16)
        self.side = nn.Conv2d(16, 16, 1)
        self.bn4 = nn.BatchNorm2d(16)
        self.act = nn.ReLU6()
        self.fc = nn.Linear(16, 4)
        for bn in (self.bn0, self.bn1, self.bn2, self.bn3, self.bn4, self.bnact):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)

    def forward(self, x):
        x = self.act(self.bn0(self.stem(x)))
        x = self.act(self.bn1(self.dw(x)))
        x = self.act(self.bn2(self.conv(x)))
        x = self.bnact(self.pw(x))
        x = self.bn3(self.shared(x)) + self.shared(x)
        y = self.side(x)
        x = self.bn4(y) + y  # the convolution's output has a second user: not folded
        return self.fc(x.mean((2, 3)))


def call_types(graph_module):
    modules = dict(graph_module.named_modules())
    return [type(modules[n.target]) for n in graph_module.graph.nodes if n.op == "call_module"]


def test_fold_same_function_fewer_modules():
    model = Net().train()  # the copy is put in eval mode; the model keeps its flags
    x = torch.randn(2, 3, 17, 17)
    folded, count = fold_for_inference(model)
    assert model.training and all(m.training for m in model.modules())
    types = call_types(folded)
    assert count == 5  # bn0, bn1, bn2, bnact's F.batch_norm and the symmetric pad of `dw`
    assert not any(n.target is F.batch_norm for n in folded.graph.nodes)
    assert types.count(nn.BatchNorm2d) == 2  # bn3 (after a reused conv) and bn4 (conv output reused)
    assert types.count(nn.ZeroPad2d) == 1  # the stem's asymmetric pad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6  # the model is untouched


def test_fold_pretrained_efficientnet_lite0():
    import camlens

    model = camlens.load_model("efficientnet_lite0").model
    folded, count = fold_for_inference(model)
    types = call_types(folded)
    assert nn.BatchNorm2d not in types and count == 49 + 12  # every BN, every symmetric pad
    x = camlens.load_model("efficientnet_lite0").preprocess([camlens.sample_images()["chelsea"]])
    with torch.no_grad():
        want = model(x)
        got = folded(x.contiguous(memory_format=torch.channels_last))
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert got.argmax() == want.argmax()


def test_fold_refuses_untraceable_model():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(torch.fx.proxy.TraceError):
        fold_for_inference(Branchy())
