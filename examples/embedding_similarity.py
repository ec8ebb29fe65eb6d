"""Retrieval: why are two images similar? Explain the cosine similarity of their embeddings.

    python examples/embedding_similarity.py [--out out-embedding] [--timm NAME [--pretrained]]

An embedding model outputs a vector per image, not class scores. The target
``Similarity(reference)`` explains the cosine similarity of each image's embedding to a
reference embedding (a query image's, or a text embedding for CLIP-style models): the map
shows which part of the image makes it similar.

The default model is the embedded ImageNet-pretrained EfficientNet-Lite0 (real weights,
nothing is downloaded) with its classifier replaced by ``nn.Identity``: its 1280-d pooled
features are the embedding. The reference is the cat photo's embedding; the explained image
is the cat and the coffee cup side by side. The script prints the target layer, its layout,
the similarities and how much of the map lies on the cat's half, and writes into ``--out``
``similar_to_cat.png`` (why the pair is similar to the cat photo) and ``similar_to_coffee.png``
(the same image, explained against the coffee photo's embedding).

Other embedding models: ``--timm NAME`` builds ``timm.create_model(NAME, num_classes=0)`` (the
pooled features; random weights), ``--pretrained`` adds ``pretrained=True``, which downloads
the weights from the Hugging Face hub (needs internet). About 5 s on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import camlens
from camlens.targets import Similarity


def build(timm_name: str | None = None, pretrained: bool = False):
    """(embedding model in eval mode, preprocess: list of PIL images -> (N, 3, 224, 224), what it is)."""
    if timm_name is None:
        loaded = camlens.load_model("efficientnet_lite0")
        model = loaded.model
        model._fc = nn.Identity()  # the pooled 1280 features, not the 1000 ImageNet logits
        return model.eval(), loaded.preprocess, "efficientnet_lite0 without its classifier (pretrained, embedded)"
    import timm

    torch.manual_seed(0)
    model = timm.create_model(timm_name, pretrained=pretrained, num_classes=0).eval()
    config = model.pretrained_cfg

    def preprocess(images):
        return camlens.preprocess(images, (224, 224), config["mean"], config["std"])

    return model, preprocess, f"timm {timm_name}, num_classes=0 ({'pretrained' if pretrained else 'random weights'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out-embedding"), help="folder for the overlays")
    parser.add_argument("--timm", default=None, help="a timm model name instead of EfficientNet-Lite0")
    parser.add_argument("--pretrained", action="store_true", help="with --timm: pretrained=True, downloads (internet)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model, preprocess, what = build(args.timm, args.pretrained)
    photos = camlens.sample_images()
    pair = photos["cat_and_coffee"]  # chelsea (451 px wide) | coffee, 901 × 300
    with torch.no_grad():
        references = model(preprocess([photos["chelsea"], photos["coffee"]]))  # (2, D)
    x = preprocess([pair])
    e = camlens.explain(model, x, "gradcam", target=Similarity(references))  # one map per reference
    print(f"model: {what}; embeddings {tuple(references.shape)}")
    print(f"  target layer: {e.target_layer}")
    print(f"  layout: {e.layout}")
    with torch.no_grad():
        check = F.cosine_similarity(model(x), references, dim=1)
    assert torch.allclose(e.scores[0], check, atol=1e-5)  # the explained scores are the similarities
    cat_columns = round(x.shape[-1] * 451 / 901)
    for k, name in enumerate(["cat", "coffee"]):
        share = float(e.maps[0, k, :, :cat_columns].sum() / e.maps[0, k].sum())
        path = camlens.save_image(camlens.overlay(pair, e.maps[0, k]), args.out / f"similar_to_{name}.png")
        print(f"  similarity to the {name} photo: {float(e.scores[0, k]):.3f}; "
              f"{share:.0%} of the map on the cat's half; wrote {path}")


if __name__ == "__main__":
    main()
