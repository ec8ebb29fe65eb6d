"""``camlens explain``: heatmap overlays for image files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_model_options, parse_classes, slug, split_methods, top_classes


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="write heatmap overlays for images")
    p.add_argument("images", nargs="+", help="image files")
    add_model_options(p, required=True)
    p.add_argument("--method", default="gradcam", help="method name(s), comma separated (see `camlens methods`)")
    p.add_argument("--layer", help="target layer (default: found automatically; see `camlens layers`)")
    p.add_argument("--class", dest="klass", help="class index, comma list, class name, or topK (default: top-1)")
    p.add_argument("--out", default="camlens-out", help="output folder (default: camlens-out)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity (default 0.5)")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..engine.explain import explain
    from ..core.hooks import get_module
    from ..io.images import load_image
    from ..methods import get_method
    from ..io.models import load_model
    from ..viz.overlay import overlay, save_image

    loaded = load_model(args.model, weights=args.weights, arch=args.arch, trust=args.trust)
    methods = split_methods(args.method)
    for name in methods:
        get_method(name)
    if args.layer:
        get_module(loaded.model, args.layer)
    classes = parse_classes(args.klass, loaded)
    paths = [Path(p) for p in args.images]
    images = [load_image(p) for p in paths]  # every image is read before anything is computed

    batch_size = min(args.batch_size, loaded.max_batch or args.batch_size)
    results = []
    batches = range(0, len(images), batch_size)
    for start in tqdm(batches, desc="explaining", unit="batch", disable=len(images) <= batch_size):
        chunk = images[start : start + batch_size]
        x = loaded.preprocess(chunk)
        out = explain(loaded.model, x, method=methods, target_layer=args.layer or None, classes=classes)
        results.append(out)

    out_dir = Path(args.out)
    written = []
    for batch_index, out in enumerate(results):
        for row in range(next(iter(out.values())).classes.shape[0]):
            index = batch_index * batch_size + row
            path, image = paths[index], images[index]
            first = next(iter(out.values()))
            print(f"{path.name}: {top_classes(first.logits[row], loaded)}  [layer {first.target_layer}]")
            for name, result in out.items():
                for j, cls in enumerate(result.classes[row].tolist()):
                    blended = overlay(image, result.maps[row, j].cpu(), alpha=args.alpha, cmap=args.cmap)
                    target = out_dir / f"{path.stem}_{name}_{cls}-{slug(loaded.label(cls))}.png"
                    written.append(save_image(blended, target))
    print(f"wrote {len(written)} overlay(s) to {out_dir}/")
    return 0
