"""Seed 003, option 1: give a CNN a global-average-pool + linear head, train it, get exact CAM.

    python examples/heads_replace_head.py [OUT_DIR]     (default: docs/images)

Data: scikit-learn's 8×8 handwritten digits (1797 images, shipped with the package),
upsampled and made RGB. Two bodies, both kept frozen:

- torchvision VGG16 — with RANDOM weights: no pretrained VGG16 can be downloaded here, so
  this part shows the mechanics (the head trains, CAM is exact and equals Grad-CAM), not
  what a trained VGG looks at;
- the embedded ImageNet-pretrained EfficientNet-Lite0 (``camlens.io.models``), whose maps
  mean something.

Writes ``heads_replace_head_lite0.png`` and ``heads_replace_head_vgg16.png`` and prints the
numbers: held-out accuracy, and how far CAM is from h·w × Grad-CAM.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

import camlens


def shrink(path: Path) -> Path:
    """Keep the committed PNGs small: a 64-colour palette."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
    return path
from camlens.io.models import load_model


def digits(size: int, mean: float, std: float):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return (x - mean) / std, torch.tensor(data.target), x


def batches(x, y, indices, batch=64):
    return [(x[indices[i : i + batch]], y[indices[i : i + batch]]) for i in range(0, len(indices), batch)]


def run(name, body, size, mean, std, out_dir: Path, epochs: int, n_train: int, n_test: int):
    x, y, pictures = digits(size, mean, std)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:n_train], order[n_train : n_train + n_test]
    model = camlens.replace_head(body, num_classes=10, input_size=(3, size, size))
    print(f"\n{name}: body cut at {model.target!r}; head: {model.pool} + {model.fc}")
    print(camlens.analyze_head(model, (3, size, size)).reason)
    start = time.perf_counter()
    history = camlens.finetune_head(
        model, batches(x, y, train), epochs=epochs, lr=1e-2, val_loader=batches(x, y, test), cache_features=True
    )
    print(f"fine-tuned {epochs} epochs on {n_train} digits in {time.perf_counter() - start:.0f} s: "
          f"train accuracy {history.accuracy[-1]:.3f}, held-out accuracy {history.val_accuracy[-1]:.3f} "
          f"({n_test} digits)")

    shown = test[:64]
    both = camlens.explain(model, x[shown], ["cam", "gradcam"])
    cam, grad = both["cam"], both["gradcam"]
    hw = cam.raw.shape[-2] * cam.raw.shape[-1]
    raw_diff = (cam.raw - hw * grad.raw).abs().max().item()
    map_diff = (cam.maps - grad.maps).abs().max().item()
    decomposition = (cam.raw.mean((2, 3)) + model.fc.bias[cam.classes].detach() - cam.scores).abs().max().item()
    print(f"CAM vs Grad-CAM on {len(shown)} held-out digits ({cam.raw.shape[-2]}×{cam.raw.shape[-1]} maps): "
          f"max |CAM - {hw}·Grad-CAM| = {raw_diff:.2e} (max |CAM| {cam.raw.abs().max():.3g}), "
          f"max |difference of the [0, 1] maps| = {map_diff:.2e}; "
          f"max |mean(CAM) + bias - score| = {decomposition:.2e}")
    images = [pictures[i] for i in shown[:6]]
    six = {k: _first(v, 6) for k, v in both.items()}
    figure = camlens.plot_explanation(images, six, class_names=[str(d) for d in range(10)])
    path = shrink(camlens.save_figure(figure, out_dir / f"heads_replace_head_{name.split()[0].lower()}.png", dpi=60))
    print(f"wrote {path}")
    return history


def _first(explanation, n):
    from dataclasses import replace

    return replace(explanation, maps=explanation.maps[:n], raw=explanation.raw[:n], classes=explanation.classes[:n],
                   scores=explanation.scores[:n], logits=explanation.logits[:n])


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    lite0 = load_model("efficientnet_lite0")
    run("EfficientNet-Lite0 (pretrained)", lite0.model, 96, lite0.mean[0], lite0.std[0], out_dir,
        epochs=30, n_train=1000, n_test=400)
    torch.manual_seed(0)
    vgg16 = torchvision.models.vgg16()  # random weights: see the module docstring
    run("VGG16 (random weights)", vgg16, 64, 0.5, 0.25, out_dir, epochs=30, n_train=500, n_test=200)


if __name__ == "__main__":
    main()
