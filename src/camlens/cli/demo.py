"""``camlens demo``: the embedded pretrained EfficientNet-Lite0 on real photos, no download."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.explain import explain
from ..io.images import sample_images
from ..io.models import load_model
from ..viz.overlay import overlay, plot_explanation, save_figure, save_image

EGYPTIAN_CAT, ESPRESSO = 285, 967


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="explain the embedded pretrained model on sample photos")
    p.add_argument("--out", default="camlens-demo", help="output folder (default: camlens-demo)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_demo(Path(args.out))
    return 0


def run_demo(out_dir: Path, verbose: bool = True) -> dict[str, Path]:
    """Explain the embedded model's top class on scikit-image photos with CAM and Grad-CAM.

    The cat-beside-coffee photo is explained twice, for "Egyptian cat" and for
    "espresso": the two maps light up different halves of the picture. Returns the
    written files by name.
    """
    loaded = load_model("efficientnet_lite0")
    photos = sample_images()
    names = list(photos)
    images = [photos[n] for n in names]
    x = loaded.preprocess(images)
    methods = ["cam", "gradcam"]
    top1 = explain(loaded.model, x, method=methods)
    pair = explain(loaded.model, x[names.index("cat_and_coffee")][None], method=methods,
                   classes=[EGYPTIAN_CAT, ESPRESSO])

    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    say = print if verbose else (lambda *a, **k: None)
    say(f"model: {loaded.name} (ImageNet-pretrained, embedded); target layer {top1['gradcam'].target_layer}")
    for row, name in enumerate(names):
        cls = int(top1["gradcam"].classes[row, 0])
        prob = float(top1["gradcam"].logits[row].softmax(-1)[cls])
        say(f"  {name:15s} -> {loaded.label(cls)} ({prob:.2f})")
        for method, result in top1.items():
            key = f"{name}_{method}"
            written[key] = save_image(overlay(images[row], result.maps[row, 0]), out_dir / f"{key}.png")
    photo = photos["cat_and_coffee"]
    for method, result in pair.items():
        for j, cls in enumerate((EGYPTIAN_CAT, ESPRESSO)):
            key = f"cat_and_coffee_{method}_{loaded.label(cls).replace(' ', '-').lower()}"
            written[key] = save_image(overlay(photo, result.maps[0, j]), out_dir / f"{key}.png")
    written["figure"] = save_figure(plot_explanation(images, top1, loaded.class_names), out_dir / "demo_figure.png")
    written["figure_two_classes"] = save_figure(
        plot_explanation([photo], pair, loaded.class_names), out_dir / "demo_cat_and_coffee.png"
    )
    say(f"wrote {len(written)} files to {out_dir.resolve()}/ — open demo_figure.png and demo_cat_and_coffee.png")
    return written
