"""Any differentiable target, model outputs that are not one tensor, precisions, wrappers, signals, volumes.

Segmentation and detection maps equal pytorch-grad-cam's SemanticSegmentationTarget and
FasterRCNNBoxScoreTarget at the same layer (torchvision models, random weights); the other
targets equal the same objective written as a callable, or a hand-computed formula.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlens
from conftest import pearson
from camlens.core.errors import InputError
from camlens.targets import BoxScore, ClassScore, Regression, SegmentationMask, Similarity

torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")


# -- segmentation -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                     num_classes=5).eval()


def test_segmentation_equals_pytorch_grad_cam(segmenter):
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    torch.manual_seed(2)
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        out = segmenter(x)["out"]
    cls = int(out.argmax(1).flatten().mode().values)
    e = camlens.explain(segmenter, x, target=SegmentationMask(cls))
    assert e.target_layer == "backbone.16" and e.classes.tolist() == [[cls], [cls]]

    class Out(nn.Module):  # pytorch-grad-cam's documented wrapper for {"out": ...} models
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)["out"]

    masks = [(out[i].argmax(0) == cls).float().numpy() for i in range(2)]
    cam = pgc.GradCAM(model=Out(segmenter), target_layers=[segmenter.backbone["16"]])
    theirs = cam(input_tensor=x, targets=[SemanticSegmentationTarget(cls, m) for m in masks])
    for i in range(2):
        assert pearson(e.maps[i, 0], theirs[i]) >= 0.999
    # the score is the sum of the class logits over the pixels where it wins
    assert torch.allclose(e.scores[:, 0], (out[:, cls] * torch.from_numpy(np.stack(masks))).sum((1, 2)), rtol=1e-4)
    # an explicit mask; and the error when the class wins nowhere
    box = torch.zeros(96, 96)
    box[20:60, 30:70] = 1
    given = camlens.explain(segmenter, x[:1], target=SegmentationMask(cls, mask=box))
    assert torch.allclose(given.scores[0, 0], (out[0, cls] * box).sum(), rtol=1e-4)
    never = next(c for c in range(5) if not (out[0].argmax(0) == c).any())
    with pytest.raises(InputError, match=f"class {never} wins no pixel"):
        camlens.explain(segmenter, x[:1], target=SegmentationMask(never))
    with pytest.raises(InputError, match="SegmentationMask"):
        camlens.explain(segmenter, x[:1])


# -- detection ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.05).eval()
    # a seeded init whose features do not vanish through the 16 random backbone stages
    # (torchvision's fan-out init leaves gradients of 1e-11 and 100 equal scores), and
    # class scores spread out (13 detections from 0.31 to 0.96 for the test image)
    for module in model.backbone.body.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    nn.init.normal_(model.roi_heads.box_predictor.cls_score.weight, std=0.01)
    return model


def test_box_score_equals_pytorch_grad_cam(detector):
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    torch.manual_seed(3)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        det = detector(x)[0]
    assert len(det["boxes"]) >= 3
    box, label = det["boxes"][0], int(det["labels"][0])
    e = camlens.explain(detector, x, target=BoxScore(box, label=label, with_iou=True))
    assert e.target_layer == "backbone.body.16" and e.classes.tolist() == [[label]]
    assert torch.allclose(e.scores[0, 0], det["scores"][0] + 1.0, atol=1e-4)  # score + IoU 1
    assert torch.allclose(e.boxes[0, 0], box)
    cam = pgc.GradCAM(model=detector, target_layers=[detector.backbone.body["16"]])
    theirs = cam(input_tensor=x, targets=[FasterRCNNBoxScoreTarget([label], box[None].numpy())])
    r = pearson(e.maps[0, 0], theirs[0])
    assert r >= 0.999, r


def test_explain_detections_one_map_per_detection(detector):
    torch.manual_seed(3)
    image = torch.rand(3, 128, 128)
    with torch.no_grad():
        det = detector(image[None])[0]
    threshold = float(det["scores"][2])
    e = camlens.explain_detections(detector, image, score=threshold)
    keep = det["scores"] >= threshold
    assert e.maps.shape == (1, int(keep.sum()), 128, 128) and torch.allclose(e.boxes[0], det["boxes"][keep])
    assert e.classes[0].tolist() == det["labels"][keep].tolist()
    assert torch.allclose(e.scores[0], det["scores"][keep])
    # each map is that detection's BoxScore map
    one = camlens.explain(detector, image[None], target=BoxScore(det["boxes"][1], label=int(det["labels"][1])))
    assert torch.allclose(one.maps[0, 0], e.maps[0, 1], atol=1e-4)
    with pytest.raises(InputError, match="BoxScore.*explain_detections"):
        camlens.explain(detector, image[None])
    with pytest.raises(InputError, match="no detection scores >= 0.99"):
        camlens.explain_detections(detector, image, score=0.99)
    with pytest.raises(InputError, match="no detection .* overlaps box"):
        camlens.explain(detector, image[None], target=BoxScore([0, 0, 2, 2]))


# -- embeddings, regression, callables, several outputs ------------------------------------------
class TwoHeads(nn.Module):
    """Returns (embedding, logits), the case that was explained as if the embedding were scores."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.embed = nn.Linear(16, 6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        emb = self.embed(self.features(x).mean((2, 3)))
        return emb, self.fc(emb)


@pytest.fixture(scope="module")
def two_heads():
    torch.manual_seed(0)
    return TwoHeads().eval()


def test_tuple_and_dict_outputs(two_heads):
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(InputError, match=r"\[0\]: \[2, 6\], \[1\]: \[2, 4\].*output=index"):
        camlens.explain(two_heads, x)
    picked = camlens.explain(two_heads, x, output=1, classes=2)
    by_hand = camlens.explain(two_heads, x, target=lambda out: out[1][:, 2])
    assert torch.allclose(picked.maps, by_hand.maps) and picked.logits.shape == (2, 4)

    class Named(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            emb, logits = self.inner(x)
            return {"embedding": emb, "scores": logits}

    with pytest.raises(InputError, match="'embedding': \\[2, 6\\], 'scores': \\[2, 4\\]"):
        camlens.explain(Named(two_heads), x)
    named = camlens.explain(Named(two_heads), x, output="scores", classes=2, target_layer="inner.features")
    assert torch.allclose(named.maps, picked.maps)
    with pytest.raises(InputError, match="output='nope' is not one of"):
        camlens.explain(Named(two_heads), x, output="nope")


def test_similarity_and_regression(two_heads):
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        emb = two_heads(x)[0]
    reference = torch.randn(2, 6)
    e = camlens.explain(two_heads, x, ["gradcam", "scorecam"], output=0, target=Similarity(reference))
    want = F.cosine_similarity(emb[:, None], reference[None], dim=-1)
    assert torch.allclose(e["gradcam"].scores, want, atol=1e-5) and e["gradcam"].maps.shape == (2, 2, 16, 16)
    manual = camlens.explain(two_heads, x, target=lambda out: F.cosine_similarity(out[0], reference[1][None], dim=1))
    assert torch.allclose(e["gradcam"].maps[:, 1], manual.maps[:, 0], atol=1e-5)
    # Score-CAM on a similarity: the softmax of the masked inputs' cosine similarities
    assert torch.isfinite(e["scorecam"].maps).all() and e["scorecam"].maps.amax() == 1
    down = camlens.explain(two_heads, x, output=0, target=Regression(index=[1, 3], direction=-1))
    assert torch.allclose(down.scores, -emb[:, [1, 3]], atol=1e-5)
    manual = camlens.explain(two_heads, x, target=lambda out: -out[0][:, 3])
    assert torch.allclose(down.maps[:, 1], manual.maps[:, 0], atol=1e-5)
    with pytest.raises(InputError, match="pass index="):
        camlens.explain(two_heads, x, output=0, target=Regression())
    with pytest.raises(InputError, match="either classes= .* or target="):
        camlens.explain(two_heads, x, output=1, classes=1, target=ClassScore(1))


# -- precision and wrappers ---------------------------------------------------------------------
def _small_cnn():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=7).eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models(dtype):
    model = _small_cnn()
    x = torch.randn(2, 3, 64, 64)
    full = camlens.explain(model, x, ["gradcam", "layercam"], classes=[1, 2])
    half = camlens.explain(model.to(dtype), x, ["gradcam", "layercam"], classes=[1, 2])
    for name in full:
        assert half[name].maps.dtype == torch.float32 and half[name].raw.dtype == torch.float32
        r = pearson(half[name].maps, full[name].maps)
        assert r >= 0.99, (dtype, name, r)
    assert camlens.find_target_layer(model, (3, 64, 64)) == "layer4"


def test_compiled_and_data_parallel_models():
    model = _small_cnn()
    x = torch.randn(1, 3, 64, 64)
    plain = camlens.explain(model, x)
    compiled = torch.compile(model)  # never run compiled: camlens hooks the module it wraps
    assert torch.equal(camlens.explain(compiled, x).maps, plain.maps)
    parallel = nn.DataParallel(model)
    e = camlens.explain(parallel, x, target_layer="module.layer4")
    assert e.target_layer == "layer4" and torch.equal(e.maps, plain.maps)


def test_inference_mode():
    """Gradient methods: a clear error; methods without gradients: the same maps as outside."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5)).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode(), pytest.raises(InputError, match="inference_mode"):
        camlens.explain(model, x, "gradcam")
    outside = camlens.explain(model, x, ["scorecam", "eigencam", "ablationcam"])
    with torch.inference_mode():
        inside = camlens.explain(model, x, ["scorecam", "eigencam", "ablationcam"])
    for name in outside:
        assert torch.allclose(inside[name].maps, outside[name].maps, atol=1e-6), name


# -- 1-D signals and volumes --------------------------------------------------------------------
class Signal(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(2, 6, 5, padding=2), nn.ReLU(), nn.Conv1d(6, 8, 5, stride=4, padding=2), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.body(x).mean(-1))


class Volume(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 5, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3, 4)))


def test_signals_maps_and_figure():
    torch.manual_seed(0)
    model, x = Signal().eval(), torch.randn(2, 2, 64)
    e = camlens.explain(model, x, ["gradcam", "scorecam", "ablationcam"], classes=[0, 2])
    assert e["gradcam"].layout == "ncl 16" and e["gradcam"].target_layer == "body"
    assert e["gradcam"].maps.shape == (2, 2, 64) and e["gradcam"].raw.shape == (2, 2, 16)
    # Grad-CAM by hand: weights = mean over steps of the gradient
    acts = model.body(x).detach().requires_grad_(True)
    score = model.fc(acts.mean(-1))[:, 2].sum()
    (grad,) = torch.autograd.grad(score, acts)
    want = (grad.mean(-1, keepdim=True) * acts).sum(1)
    assert torch.allclose(e["gradcam"].raw[:, 1], want, atol=1e-5)
    # Score-CAM by hand: masks upsampled linearly to the signal's 64 steps
    a = acts.detach()[0]
    up = F.interpolate(a[None], size=64, mode="linear", align_corners=False)[0]
    masks = (up - up.amin(1, keepdim=True)) / (up.amax(1, keepdim=True) - up.amin(1, keepdim=True))
    with torch.no_grad():
        scores = model(x[0][None] * masks[:, None])[:, 0]
    want = (torch.softmax(scores, 0)[:, None] * a).sum(0)
    assert torch.allclose(e["scorecam"].raw[0, 0], want, atol=1e-5)
    assert torch.isfinite(e["ablationcam"].maps).all()
    fig = camlens.plot_signal(x[0], e["gradcam"].maps[0, 0], title="class 0")
    assert len(fig.axes[0].collections) == 2  # one coloured line per channel
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_volumes_maps():
    torch.manual_seed(0)
    model, x = Volume().eval(), torch.randn(1, 1, 8, 12, 12)
    e = camlens.explain(model, x, ["gradcam", "gradcampp", "scorecam"])
    g = e["gradcam"]
    assert g.layout == "ncthw 4×6×6" and g.maps.shape == (1, 1, 8, 12, 12) and g.raw.shape == (1, 1, 4, 6, 6)
    acts = model.body(x).detach().requires_grad_(True)
    logits = model.fc(acts.mean((2, 3, 4)))
    (grad,) = torch.autograd.grad(logits[0, int(logits.argmax())], acts)
    want = (grad.mean((2, 3, 4), keepdim=True) * acts).sum(1)
    assert torch.allclose(g.raw[:, 0], want, atol=1e-5)
    # Score-CAM masks are trilinear in (t, h, w), not bilinear in a flattened view
    a = acts.detach()[0]
    up = F.interpolate(a[:, None], size=(8, 12, 12), mode="trilinear", align_corners=False)[:, 0]
    flat = up.flatten(1)
    masks = ((flat - flat.amin(1, keepdim=True)) / (flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True))).view_as(up)
    with torch.no_grad():
        scores = model(x * masks[:, None])[:, int(logits.argmax())]
    want = (torch.softmax(scores, 0)[:, None, None, None] * a).sum(0)
    assert torch.allclose(e["scorecam"].raw[0, 0], want, atol=1e-5)
    assert e["gradcampp"].maps.shape == (1, 1, 8, 12, 12)


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_detection_and_segmentation(tmp_path, detector, capsys):
    from PIL import Image

    from camlens.cli import main

    image = tmp_path / "cat.png"
    camlens.sample_images()["chelsea"].resize((160, 120)).save(image)
    weights = tmp_path / "detector.pt"
    torch.save(detector.state_dict(), weights)
    out = tmp_path / "det"
    arch = ["--model", str(weights), "--arch", "fasterrcnn_mobilenet_v3_large_320_fpn"]
    assert main(["explain", str(image), *arch, "--score", "0.6", "--out", str(out)]) == 0  # --task detected
    printed = capsys.readouterr().out
    assert "Detections(score=0.6)" in printed and "backbone.body.16" in printed
    files = sorted(out.glob("cat_gradcam_det*.png"))
    assert files and Image.open(files[0]).size == (160, 120)
    # the box is drawn: the overlay differs from a plain overlay along its edges
    assert main(["explain", str(image), *arch, "--box", "0,0,159,119", "--out", str(tmp_path / "box")]) in (0, 2)
    assert main(["explain", str(image), *arch, "--task", "detection", "--score", "0.999", "--out", str(out)]) == 2
    assert "no detection scores >= 0.999" in capsys.readouterr().err
    seg = tmp_path / "seg"
    assert main(["explain", str(image), "--model", "lraspp_mobilenet_v3_large", "--target-class", "3", "--out", str(seg)]) in (0, 2)
    assert main(["explain", str(image), "--model", "lraspp_mobilenet_v3_large", "--out", str(seg)]) == 0
    assert "SegmentationMask(" in capsys.readouterr().out and list(seg.glob("cat_gradcam_*.png"))
