"""Head analysis: folded affine heads reproduce the logits; concat, max, non-linear and
flatten-FC heads are named; LogSoftmax outputs are explained before the softmax; the
fastai-style model of seed 000 gets Grad-CAM and a reasoned refusal of CAM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import AdaptiveConcatPool2d, GapNet, fastai_style_resnet
from torch import nn

import camlens
from camlens.core.heads import fold_affine


def _randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator))
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=generator))
                m.bias.copy_(torch.randn(n, generator=generator))
    return model.eval()


class Body(nn.Sequential):
    def __init__(self, channels: int = 16):
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, channels, 3, padding=1), nn.ReLU())


def affine_head_model() -> nn.Sequential:
    """GAP + BatchNorm1d + Dropout + Linear + BatchNorm1d + Linear + LogSoftmax: affine, so CAM is exact."""
    torch.manual_seed(0)
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 12),
        nn.BatchNorm1d(12), nn.Linear(12, 5), nn.LogSoftmax(dim=1),
    )
    return _randomize_batchnorm(nn.Sequential(Body(), head))


def test_fold_affine_is_the_chain_in_closed_form():
    torch.manual_seed(0)
    chain = [nn.BatchNorm1d(6), nn.Dropout(0.3), nn.Linear(6, 4), nn.Flatten(), nn.BatchNorm1d(4), nn.Linear(4, 3)]
    _randomize_batchnorm(nn.Sequential(*chain))
    W, b = fold_affine(chain, 6)
    x = torch.randn(7, 6)
    with torch.no_grad():
        expected = nn.Sequential(*chain).eval()(x)
    torch.testing.assert_close((x.double() @ W.T + b).float(), expected, rtol=1e-5, atol=1e-5)
    # closed form of one BatchNorm1d: scale = gamma / sqrt(var + eps), shift = beta - mean * scale
    bn = chain[0]
    W1, b1 = fold_affine([bn], 6)
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    torch.testing.assert_close(W1.diagonal().float(), scale.detach())
    torch.testing.assert_close(b1.float(), (bn.bias - bn.running_mean * scale).detach())
    with pytest.raises(ValueError, match="not an affine"):
        fold_affine([nn.Linear(6, 4), nn.ReLU()], 6)


def test_folded_gap_affine_head_reproduces_the_logits_and_cam_is_exact():
    model = affine_head_model()
    verdict = camlens.analyze_head(model, input_size=(3, 16, 16))
    assert verdict.exact and verdict.kind == "gap_affine" and verdict.pooling == "avg"
    assert verdict.output == "log-probabilities" and verdict.score_layer == "1.7"
    assert verdict.classifier == "1.6" and "folded" in verdict.reason and "pre-softmax" in verdict.reason
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        features = model[0](x)
        logits = model[1][:-1](features)  # everything but the LogSoftmax
    folded = features.mean((2, 3)) @ verdict.weight.T + verdict.bias
    torch.testing.assert_close(folded, logits, rtol=1e-5, atol=1e-5)

    out = camlens.explain(model, x, method=["cam", "gradcam"], classes=[0, 3])
    cam, grad = out["cam"], out["gradcam"]
    assert cam.target_layer == "0" and "pre-softmax" in cam.score_source and "LogSoftmax" in cam.score_source
    torch.testing.assert_close(cam.scores, logits[:, [0, 3]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cam.logits, logits, rtol=1e-5, atol=1e-5)
    # CAM decomposes the pre-softmax score exactly, and equals h*w times Grad-CAM
    torch.testing.assert_close(cam.raw.mean((2, 3)) + verdict.bias[[0, 3]], cam.scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.raw * 64, cam.raw, rtol=1e-4, atol=1e-5)


def test_score_option_explains_the_log_probability_on_request():
    model = affine_head_model()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        log_probs = model(x)
    out = camlens.explain(model, x, "gradcam", classes=[1], score="output")
    torch.testing.assert_close(out.scores, log_probs[:, [1]])
    assert out.score_source.startswith("model output (log-probabilities")
    # d log p_c / dA = d z_c / dA - sum_j p_j d z_j / dA: check Grad-CAM's weights by hand
    logit = camlens.explain(model, x, "gradcam", classes=list(range(5)))
    probs = log_probs.exp()
    expected = logit.raw[:, 1] - (probs[:, :, None, None] * logit.raw).sum(1)
    torch.testing.assert_close(out.raw[:, 0], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(camlens.HeadError, match="pre-softmax"):
        camlens.explain(model, x, "cam", score="output")
    with pytest.raises(camlens.InputError, match="score="):
        camlens.explain(model, x, "gradcam", score="probs")


def test_concat_pooling_head_is_split_into_an_average_and_a_max_part():
    torch.manual_seed(0)
    model = _randomize_batchnorm(nn.Sequential(
        Body(), AdaptiveConcatPool2d(), nn.Flatten(), nn.BatchNorm1d(32), nn.Dropout(), nn.Linear(32, 4)))
    verdict = camlens.analyze_head(model, input_size=(3, 16, 16))
    assert not verdict.exact and verdict.kind == "concat_pool" and verdict.pooling == "concat(max, avg)"
    assert "only part of the score" in verdict.reason and "gradcam" in verdict.reason
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        a, logits = model[0](x), model(x)
    split = a.mean((2, 3)) @ verdict.weight.T + a.amax((2, 3)) @ verdict.max_weight.T + verdict.bias
    torch.testing.assert_close(split, logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(camlens.HeadError, match="concat pooling"):
        camlens.explain(model, x, method="cam")


def test_max_pooling_and_pooling_straight_to_scores():
    torch.manual_seed(0)
    maxed = nn.Sequential(Body(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 3)).eval()
    verdict = camlens.analyze_head(maxed, input_size=(3, 16, 16))
    assert not verdict.exact and verdict.kind == "max_pool" and "peak" in verdict.reason
    # SqueezeNet-style: the last conv has one channel per class, then GAP: identity weights
    squeeze = nn.Sequential(Body(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    verdict = camlens.analyze_head(squeeze, input_size=(3, 16, 16))
    assert verdict.exact and verdict.kind == "gap"
    x = torch.randn(2, 3, 16, 16)
    cam = camlens.explain(squeeze, x, "cam", classes=[2])
    with torch.no_grad():
        torch.testing.assert_close(cam.raw[:, 0], squeeze[0](x)[:, 2])


def test_an_invisible_in_place_op_in_the_head_is_caught():
    class Sneaky(GapNet):
        def forward(self, x):
            out = self.fc(self.pool(self.features(x)).flatten(1))
            return out.mul_(2)  # a functional in-place op after the last module

    torch.manual_seed(0)
    verdict = camlens.analyze_head(Sneaky().eval(), input_size=(3, 16, 16))
    assert not verdict.exact and verdict.kind == "hidden_ops" and "hooks cannot see" in verdict.reason
    with pytest.raises(camlens.HeadError, match="does not reproduce"):
        camlens.explain(Sneaky().eval(), torch.randn(1, 3, 16, 16), "cam")


@pytest.mark.slow
def test_fastai_style_model_gradcam_works_and_cam_refuses_with_the_reason():
    torch.manual_seed(0)
    model = _randomize_batchnorm(fastai_style_resnet(classes=4))
    assert camlens.find_target_layer(model, (3, 64, 64)) == "0"
    verdict = camlens.analyze_head(model, input_size=(3, 64, 64))
    assert verdict.kind == "nonlinear" and verdict.pooling == "concat(max, avg)" and not verdict.exact
    assert verdict.output == "log-probabilities" and verdict.classifier == "1.8"
    assert "1.5 (ReLU)" in verdict.reason and "AdaptiveConcatPool2d" in verdict.reason
    text = str(camlens.describe(model, (3, 64, 64)))
    assert "non-linear head" in text and "LogSoftmax" in text

    x = torch.randn(2, 3, 64, 64)
    e = camlens.explain(model, x, "gradcam", classes=[2])
    with torch.no_grad():
        logits = model[1][:-1](model[0](x))
    torch.testing.assert_close(e.scores, logits[:, [2]], rtol=1e-5, atol=1e-5)
    assert e.raw.shape == (2, 1, 2, 2) and e.maps.shape == (2, 1, 64, 64) and e.raw.abs().sum() > 0
    with pytest.raises(camlens.HeadError) as error:
        camlens.explain(model, x, method="cam")
    message = str(error.value)
    for needed in ("ReLU", "gradcam", "replace_head", "CAM is not defined"):
        assert needed in message


def test_vgg_head_is_flatten_fc_and_names_the_rewrite():
    verdict = camlens.analyze_head(torchvision.models.vgg11(), input_size=(3, 64, 64))
    assert verdict.kind == "flatten_fc" and verdict.pooling == "flatten" and not verdict.exact
    assert "512×7×7" in verdict.reason and "fully_convolutional" in verdict.reason and "fcmap" in verdict.reason


def test_fully_convolutional_small_model_shares_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(64, 10), nn.ReLU(), nn.BatchNorm1d(10), nn.Dropout(), nn.Linear(10, 3), nn.Softmax(dim=1),
    )
    _randomize_batchnorm(net)
    fc = camlens.fully_convolutional(net, (3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(fc(x).flatten(1), expected, rtol=1e-5, atol=1e-6)
        assert fc(torch.randn(1, 3, 16, 16)).shape == (1, 3, 5, 5)
        torch.testing.assert_close(fc(torch.randn(1, 3, 16, 16)).sum(1), torch.ones(1, 5, 5))  # softmax over classes
    ours = {t.data_ptr() for t in list(fc.parameters()) + list(fc.buffers())}
    theirs = {t.data_ptr() for t in list(net.parameters()) + list(net.buffers())}
    assert not ours & theirs
    with torch.no_grad():
        for p in fc.parameters():
            p.add_(1.0)
        torch.testing.assert_close(net(x), expected)
    with pytest.raises(camlens.InputError, match="input_size"):
        camlens.fully_convolutional(net, (3, 16, 16))  # the adaptive pool is not the identity there
    with pytest.raises(camlens.HeadError, match="already usable"):
        camlens.fully_convolutional(GapNet().eval(), (3, 16, 16))


def test_replace_head_on_a_small_model_gives_exact_cam():
    torch.manual_seed(0)
    vgg_like = nn.Sequential(Body(), nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    new = camlens.replace_head(vgg_like, 7, (3, 16, 16))
    assert camlens.analyze_head(new, (3, 16, 16)).kind == "gap_linear"
    x = torch.randn(2, 3, 16, 16)
    out = camlens.explain(new, x, ["cam", "gradcam"], classes="top2")
    assert out["cam"].target_layer == "body.0"
    torch.testing.assert_close(out["gradcam"].raw * 64, out["cam"].raw, rtol=1e-4, atol=1e-5)
    before = {k: v.clone() for k, v in new.body.state_dict().items()}
    loader = [(x, torch.tensor([1, 4]))] * 3
    history = camlens.finetune_head(new, loader, epochs=30, lr=0.05, progress=False, cache_features=True)
    assert history.loss[-1] < history.loss[0] and history.accuracy[-1] == 1.0
    assert all(torch.equal(before[k], v) for k, v in new.body.state_dict().items())
    assert all(p.grad is None for p in new.parameters())
    with pytest.raises(camlens.InputError, match="replace_head"):
        camlens.finetune_head(vgg_like, loader)


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return torchvision.models.vgg16().eval()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg16", "alexnet"])
def test_fully_convolutional_reproduces_torchvision_logits(arch, vgg16):
    torch.manual_seed(0)
    model = vgg16 if arch == "vgg16" else torchvision.models.alexnet().eval()
    fc = camlens.fully_convolutional(model, (3, 224, 224))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (fc(x).flatten(1) - model(x)).abs().max().item()
        big = fc(torch.randn(1, 3, 448, 448))
    assert diff <= 1e-4
    assert big.shape == ((1, 1000, 8, 8) if arch == "vgg16" else (1, 1000, 8, 8))
    assert isinstance(fc.head[0 if arch == "vgg16" else 1], nn.Conv2d)
    assert fc.head[0 if arch == "vgg16" else 1].kernel_size == ((7, 7) if arch == "vgg16" else (6, 6))


@pytest.mark.slow
def test_fcmap_through_explain_is_the_dense_score_map(vgg16):
    x = torch.randn(1, 3, 224, 224)
    e = camlens.explain(vgg16, x, method="fcmap", target_layer="features.29", classes=[7, 300], fcmap_scale=2)
    assert e.raw.shape == (1, 2, 8, 8) and e.maps.shape == (1, 2, 224, 224) and e.method == "fcmap"
    fc = camlens.fully_convolutional(vgg16)
    with torch.no_grad():
        dense = fc.score_map(F.interpolate(x, size=(448, 448), mode="bilinear", align_corners=False))
    torch.testing.assert_close(e.raw, dense[:, [7, 300]], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_vgg16_replace_head_cam_equals_gradcam_times_hw(vgg16):
    new = camlens.replace_head(vgg16, 10, (3, 112, 112))
    assert new.target == "features.29" and new.fc.in_features == 512
    assert sum(p.numel() for p in new.parameters()) < 15_000_000  # the 120M-weight classifier is left out
    x = torch.randn(2, 3, 112, 112)
    out = camlens.explain(new, x, ["cam", "gradcam"], classes=[0, 9])
    assert out["cam"].raw.shape == (2, 2, 7, 7)
    torch.testing.assert_close(out["gradcam"].raw * 49, out["cam"].raw, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["gradcam"].maps, out["cam"].maps, rtol=1e-4, atol=1e-4)
