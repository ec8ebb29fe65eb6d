"""The README families table's rows that tests/test_targets.py does not check: DeepLabV3, FCN, an embedding.

Segmentation: torchvision ``deeplabv3_mobilenet_v3_large`` and ``fcn_resnet50`` (random weights),
camlens's ``SegmentationMask`` at the layer camlens finds against pytorch-grad-cam's
``SemanticSegmentationTarget`` at that layer: r >= 0.999. Embedding: the embedded EfficientNet-Lite0
without its classifier, ``Similarity(reference)`` against pytorch-grad-cam with its tutorial's
cosine-similarity target (``SimilarityToConceptTarget``, written out here: this pytorch-grad-cam has
no such class) at ``_blocks.15``, and against Grad-CAM computed by hand at the layer camlens finds,
``_swish:1`` (a reused module: pytorch-grad-cam's hooks would see its first call, the stem).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlens
from conftest import pearson
from camlens.targets import SegmentationMask, Similarity

torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")


class _Out(nn.Module):
    """pytorch-grad-cam's documented wrapper for torchvision's ``{"out": ...}`` segmentation models."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


@pytest.mark.slow
@pytest.mark.parametrize("arch, layer", [("deeplabv3_mobilenet_v3_large", "backbone.16"), ("fcn_resnet50", "backbone.layer4")])
def test_segmentation_models_equal_pytorch_grad_cam(arch, layer):
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=5).eval()
    torch.manual_seed(2)
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        out = model(x)["out"]
    cls = int(out.argmax(1).flatten().mode().values)
    e = camlens.explain(model, x, target=SegmentationMask(cls))
    assert e.target_layer == layer and e.layout.startswith("nchw")
    masks = [(out[i].argmax(0) == cls).float().numpy() for i in range(2)]
    assert all(m.sum() > 0 for m in masks)  # the class wins pixels in both images: a real target
    cam = pgc.GradCAM(model=_Out(model), target_layers=[camlens.get_module(model, layer)])
    theirs = cam(input_tensor=x, targets=[SemanticSegmentationTarget(cls, m) for m in masks])
    for i in range(2):
        r = pearson(e.maps[i, 0], theirs[i])
        assert r >= 0.999, (arch, i, r)
    assert torch.allclose(e.scores[:, 0], (out[:, cls] * torch.from_numpy(np.stack(masks))).sum((1, 2)), rtol=1e-4)


@pytest.fixture(scope="module")
def embedding():
    """(model, x, reference): Lite0 embeddings (N, 1280); x = [cat_and_coffee]; reference = chelsea's embedding."""
    loaded = camlens.load_model("efficientnet_lite0")
    model = loaded.model.eval()
    model._fc = nn.Identity()
    photos = camlens.sample_images()
    x = loaded.preprocess([photos["cat_and_coffee"], photos["coffee"]])
    with torch.no_grad():
        reference = model(loaded.preprocess([photos["chelsea"]]))[0]
    return model, x, reference


class CosineTarget:
    """pytorch-grad-cam's tutorial target ``SimilarityToConceptTarget``: cosine similarity to a vector."""

    def __init__(self, features):
        self.features = features

    def __call__(self, model_output):
        return F.cosine_similarity(model_output, self.features, dim=0)


def test_similarity_equals_pytorch_grad_cam(embedding):
    model, x, reference = embedding
    e = camlens.explain(model, x, target=Similarity(reference), target_layer="_blocks.15")
    with torch.no_grad():
        want = F.cosine_similarity(model(x), reference[None], dim=1)
    assert torch.allclose(e.scores[:, 0], want, atol=1e-5)
    cam = pgc.GradCAM(model=model, target_layers=[model._blocks[15]])
    theirs = cam(input_tensor=x, targets=[CosineTarget(reference)] * 2)
    for i in range(2):
        r = pearson(e.maps[i, 0], theirs[i])
        assert r >= 0.999, (i, r)


def test_similarity_at_the_found_layer_is_grad_cam_by_hand(embedding):
    model, x, reference = embedding
    e = camlens.explain(model, x, target=Similarity(reference))
    assert e.target_layer == "_swish:1" and e.layout == "nchw 7×7" and e.score_source == "cosine similarity to the reference"
    acts = model.extract_features(x).detach().requires_grad_(True)  # the output of _swish's 2nd call
    emb = model._avg_pooling(acts).flatten(1)  # then dropout (eval: identity) and _fc (Identity)
    similarity = F.cosine_similarity(emb, reference[None], dim=1)
    (grad,) = torch.autograd.grad(similarity.sum(), acts)
    want = (grad.mean((2, 3), keepdim=True) * acts).sum(1)
    assert torch.allclose(e.raw[:, 0], want, atol=1e-5 * float(want.detach().abs().max()))
    # the cat half of cat_and_coffee is what makes it similar to the cat photo
    cat_columns = round(x.shape[-1] * 451 / 901)  # chelsea is 451 of the 901 pixels' width
    share = e.maps[0, 0, :, :cat_columns].sum() / e.maps[0, 0].sum()
    assert share > 0.6, float(share)


# -- the table itself -------------------------------------------------------------------------
def _table_script():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "make_families_table.py"
    spec = importlib.util.spec_from_file_location("make_families_table", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_readme_table_markers_and_format(tmp_path):
    script = _table_script()
    shown = script.readme_table(script.README.read_text(encoding="utf-8"))
    lines = shown.splitlines()
    assert lines[0] == "| model family | target found | layout | checked against |"
    assert [line.split(" | ")[0].lstrip("| ") for line in lines[2:]] == [f.name for f in script.FAMILIES]
    # write_readme replaces only what is between the markers (on a copy)
    copy = tmp_path / "README.md"
    copy.write_text("before\n<!-- families -->\nold\n<!-- /families -->\nafter\n", encoding="utf-8")
    script.write_readme("| new |", copy)
    assert copy.read_text(encoding="utf-8") == "before\n<!-- families -->\n| new |\n<!-- /families -->\nafter\n"
    with pytest.raises(ValueError, match="no <!-- families -->"):
        script.readme_table("no markers here")


@pytest.mark.slow
def test_readme_table_is_what_camlens_finds():
    """Every row recomputed (random weights, camlens.describe): README.md must show exactly these."""
    script = _table_script()
    computed = script.table(script.rows())
    shown = script.readme_table(script.README.read_text(encoding="utf-8"))
    assert shown == computed, f"README.md's families table is stale; run python docs/make_families_table.py\n{computed}"
