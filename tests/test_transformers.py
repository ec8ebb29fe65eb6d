"""Transformers and channels-last models: layouts found, target layers picked, maps equal pytorch-grad-cam.

Every family of the issue (timm ViT, DeiT distilled, a DINOv2-style ViT with register tokens,
Swin, ConvNeXt; torchvision ViT and Swin), with random weights and small sizes: camlens
finds the layout and the layer itself; pytorch-grad-cam runs at the same layer with its
documented ``reshape_transform`` (drop the prefix tokens, reshape to the grid; permute a
channels-last map). Grad-CAM, Grad-CAM++, LayerCAM and Score-CAM must agree to r >= 0.999.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camlens
from conftest import pearson
from camlens.core.errors import InputError

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def _timm(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10, **kw).eval()


def _family(name):
    """(model, input size, expected target, expected layout kind, prefix, grid)."""
    if name == "vit":
        return _timm("vit_small_patch16_224", img_size=64, depth=2), (3, 64, 64), "blocks.1.norm1", "tokens", 1, (4, 4)
    if name == "deit":
        return (_timm("deit_small_distilled_patch16_224", img_size=64, depth=2), (3, 64, 64), "blocks.1.norm1",
                "tokens", 2, (4, 4))
    if name == "dinov2_reg":
        return (_timm("vit_small_patch14_reg4_dinov2", img_size=56, depth=2), (3, 56, 56), "blocks.1.norm1",
                "tokens", 5, (4, 4))
    if name == "swin":
        model = _timm("swin_tiny_patch4_window7_224", img_size=128, window_size=4, embed_dim=24,
                      depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
        return model, (3, 128, 128), "layers", "nhwc", 0, (4, 4)
    if name == "convnext":
        model = _timm("convnext_tiny", depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))
        return model, (3, 128, 128), "stages", "nchw", 0, (4, 4)  # 2x2 maps are too ill-conditioned for Score-CAM
    torch.manual_seed(0)
    if name == "tv_vit":  # vit_b_16's class, smaller: torchvision fixes vit_b_16's depth and width
        model = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2,
                                                     hidden_dim=32, mlp_dim=64, num_classes=10).eval()
        torch.nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
        return model, (3, 64, 64), "encoder.layers.encoder_layer_1.ln_1", "tokens", 1, (4, 4)
    if name == "tv_swin":  # swin_t's class, smaller
        model = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=24, depths=[1, 1, 1, 1],
                                                   num_heads=[1, 2, 4, 8], window_size=[4, 4], num_classes=10).eval()
        return model, (3, 128, 128), "features", "nhwc", 0, (4, 4)
    raise KeyError(name)


FAMILIES = ["vit", "deit", "dinov2_reg", "swin", "convnext", "tv_vit", "tv_swin"]
PEERS = {"gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "layercam": "LayerCAM", "scorecam": "ScoreCAM"}


def _peer_reshape(kind: str, prefix: int, grid):
    if kind == "tokens":  # pytorch-grad-cam's documented ViT reshape_transform, prefix tokens dropped
        h, w = grid

        def reshape_transform(tensor):
            result = tensor[:, prefix:, :].reshape(tensor.size(0), h, w, tensor.size(2))
            return result.transpose(2, 3).transpose(1, 2)

        return reshape_transform
    if kind == "nhwc":
        return lambda tensor: tensor.permute(0, 3, 1, 2)
    return None


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param, *_family(request.param)


def test_layout_and_target_found(family):
    name, model, size, layer, kind, prefix, grid = family
    d = camlens.describe(model, size)
    assert d.target == layer
    assert d.layout.kind == kind and d.layout.grid == grid and d.layout.prefix == prefix
    assert "layout" in str(d).splitlines()[3] and str(d.layout) in str(d)
    assert d.layouts[layer] == str(d.layout)


class _HalfPixelUpsample(torch.nn.Upsample):
    """pytorch-grad-cam's Score-CAM masks with align_corners=False, as camlens upsamples every map."""

    def __init__(self, size):
        super().__init__(size=size, mode="bilinear", align_corners=False)


def test_maps_equal_pytorch_grad_cam(family, record_property, monkeypatch):
    """Same layer, same class, pytorch-grad-cam with its reshape_transform: r >= 0.999 per image.

    Grad-CAM++ explains 10^4 x the class logit in both: pytorch-grad-cam's Grad-CAM++ adds
    1e-6 to alpha's denominator ``2 g^2 + sum(A) g^3``, and the gradients of random-weight
    transformers at a LayerNorm are ~1e-3, so that eps changes its maps (r = 0.97 for the ViT
    on the plain logit); scaled, the eps is negligible and both compute the paper's formula. (Score-CAM
    takes the plain logit: a scaled one makes its softmax over channels pick one channel.)
    Score-CAM: pytorch-grad-cam upsamples the masks with ``UpsamplingBilinear2d``
    (align_corners=True), camlens as it upsamples every map (align_corners=False, like
    cv2.resize). On these 2x2-4x4 grids that alone gives r = 0.39-0.9998; the peer runs with
    half-pixel upsampling here, and then the weights and maps agree.
    """
    monkeypatch.setattr(pgc.score_cam.torch.nn, "UpsamplingBilinear2d", _HalfPixelUpsample)
    name, model, size, layer, kind, prefix, grid = family
    torch.manual_seed(1)
    x = torch.randn(2, *size)
    ours = camlens.explain(model, x, [m for m in PEERS if m != "gradcampp"], classes=[3], progress=False)
    ours["gradcampp"] = camlens.explain(model, x, "gradcampp", target=lambda out: 1e4 * out[:, 3])
    module = camlens.get_module(model, layer)
    for method, peer_name in PEERS.items():
        e = ours[method]
        scale = 1e4 if method == "gradcampp" else 1.0
        assert e.target_layer == layer and tuple(e.raw.shape[2:]) == grid
        assert e.maps.amax() == 1  # not a constant (all-zero) map
        cam = getattr(pgc, peer_name)(model=model, target_layers=[module], reshape_transform=_peer_reshape(kind, prefix, grid))
        theirs = cam(input_tensor=x, targets=[lambda out: scale * out[3]] * 2)
        r = min(pearson(e.maps[i, 0].numpy(), theirs[i]) for i in range(2))
        record_property(f"{name}-{method}", round(r, 5))
        print(f"{name} {method}: r = {r:.5f}")
        assert r >= 0.999, f"{name} {method}: r = {r:.4f}"


def test_wrong_reading_is_an_error_or_right():
    """A token output read as (N, C, H, W), the old silent failure, is caught; the overrides work."""
    model, size = _family("vit")[:2]
    x = torch.randn(1, *size)
    with pytest.raises(InputError, match="layout='nchw' needs a 4-D output"):
        camlens.explain(model, x, target_layer="blocks.1.norm1", layout="nchw")
    forced = camlens.explain(model, x, target_layer="blocks.1.norm1", layout="tokens")
    found = camlens.explain(model, x, target_layer="blocks.1.norm1")
    custom = camlens.explain(model, x, target_layer="blocks.1.norm1",
                             reshape=lambda t: t[:, 1:].reshape(t.shape[0], 4, 4, -1).permute(0, 3, 1, 2))
    assert torch.allclose(forced.maps, found.maps) and torch.allclose(custom.maps, found.maps)
    # an attention-internal 4-D tensor (N, heads, tokens, dims) is no feature map
    with pytest.raises(InputError, match="no spatial layout"):
        camlens.explain(model, x, target_layer="blocks.1.attn.k_norm")


def test_ambiguous_layout_says_which_override():
    class Cube(torch.nn.Module):  # a channels-last (N, 8, 8, 8) map: the shape alone cannot tell
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)
            self.norm = torch.nn.LayerNorm(8)
            self.act = torch.nn.GELU()
            self.fc = torch.nn.Linear(8, 5)

        def forward(self, x):
            y = self.act(self.norm(self.conv(x).permute(0, 2, 3, 1)))
            return self.fc(y.mean((1, 2)))

    torch.manual_seed(0)
    model, x = Cube().eval(), torch.randn(1, 3, 32, 32)
    with pytest.raises(InputError, match="ambiguous.*pass layout='nchw' or layout='nhwc'"):
        camlens.explain(model, x, target_layer="act")
    forced = camlens.explain(model, x, target_layer="act", layout="nhwc")
    # the LayerNorm over the last dim says channels-last: found without an override
    assert torch.allclose(camlens.explain(model, x, target_layer="norm").maps,
                          camlens.explain(model, x, target_layer="norm", layout="nhwc").maps)
    assert forced.layout.startswith("nhwc")


def test_non_square_and_dynamic_sizes():
    model = _timm("vit_small_patch16_224", img_size=64, depth=2, dynamic_img_size=True)
    for size in [(3, 64, 96), (3, 48, 80)]:
        e = camlens.explain(model, torch.randn(1, *size), ["gradcam", "scorecam"])
        h, w = size[1] // 16, size[2] // 16
        assert tuple(e["gradcam"].raw.shape) == (1, 1, h, w) and tuple(e["gradcam"].maps.shape[2:]) == size[1:]
        assert e["scorecam"].maps.shape == e["gradcam"].maps.shape


def test_every_method_on_tokens_and_channels_last():
    """Every registered method runs on a token layout and a channels-last one, maps at the input."""
    for name in ("vit", "swin"):
        model, size = _family(name)[:2]
        if name == "swin":
            model = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1, 1, 1],
                                                       num_heads=[1, 1, 1, 1], window_size=[4, 4], num_classes=4).eval()
            size = (3, 64, 64)
        x = torch.randn(1, *size)
        methods = [m for m in camlens.list_methods() if m not in ("cam", "fcmap", "dff")]
        if name == "vit":  # fused attention has no second derivative: Shapley-CAM says so
            methods.remove("shapleycam")
            with pytest.raises(camlens.InputError, match="second derivatives"):
                camlens.explain(model, x, "shapleycam")
        results = camlens.explain(model, x, methods, samples=2) if name == "swin" else camlens.explain(
            model, x, methods, samples=2, top_k=16)
        for method, e in results.items():
            assert tuple(e.maps.shape[2:]) == size[1:], method
            assert torch.isfinite(e.maps).all(), method
