"""Seed 000: a fastai ConvLearner-style model. Which layer? Why no CAM? Grad-CAM instead.

    python examples/heads_fastai.py [OUT_DIR]     (default: docs/images)

The model is built with plain torch exactly as seed 000 prints it: a ResNet body, then
AdaptiveConcatPool2d, Flatten, BatchNorm1d, Dropout, Linear, ReLU, BatchNorm1d, Dropout,
Linear, LogSoftmax. Its head is random (as a fresh Learner's would be); the body is
torchvision's ResNet-18 with random weights, since none can be downloaded here. With a
real fastai Learner: ``camlens.explain(learn, paths)`` (``pip install camlens[fastai]``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

import camlens
from camlens.io.zoo import fastai_style_resnet


def shrink(path: Path) -> Path:
    """Keep the committed PNGs small: a 64-colour palette."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
    return path
from camlens.io.images import preprocess, sample_images


def conv_learner_model(classes: int = 4) -> nn.Sequential:
    return fastai_style_resnet(classes).eval()


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = conv_learner_model()
    print("target layer:", camlens.find_target_layer(model))
    verdict = camlens.analyze_head(model)
    print(verdict)
    photo = sample_images()["chelsea"]
    x = preprocess([photo], (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    try:
        camlens.explain(model, x, method="cam")
    except camlens.HeadError as error:
        print("\nmethod='cam' refuses:", error)
    e = camlens.explain(model, x, method="gradcam")
    print(f"\nGrad-CAM at {e.target_layer!r}: raw {tuple(e.raw.shape)}; score explained: {e.score_source}")
    figure = camlens.plot_explanation([photo.resize((224, 224))], e)
    print("wrote", shrink(camlens.save_figure(figure, out_dir / "heads_fastai_gradcam.png", dpi=60)))


if __name__ == "__main__":
    main()
