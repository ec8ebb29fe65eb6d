"""``camlens explain``: heatmap overlays for image files (classifiers, segmenters, detectors)."""

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
    p.add_argument("--task", choices=["classification", "segmentation", "detection"],
                   help="what the model does (default: detected for torchvision models, else classification)")
    p.add_argument("--target-class", type=int,
                   help="segmentation: the class whose pixels are explained (default: the class that wins most "
                        "pixels); detection: explain only detections of this label")
    p.add_argument("--box", help="detection: explain the detection best matching x0,y0,x1,y1 (image pixels)")
    p.add_argument("--score", type=float, default=0.5, help="detection: explain every detection scoring at least this")
    p.set_defaults(func=run)


def _dense_target(args, loaded, image, x):
    """(target, box scale) for --task segmentation/detection on one preprocessed image ``x``."""
    import torch

    from ..core.errors import InputError
    from ..engine.targets import BoxScore, Detections, SegmentationMask

    if args.task == "segmentation":
        if args.target_class is not None:
            return SegmentationMask(args.target_class)
        with torch.no_grad():
            out = loaded.model(x)
        dense = out["out"] if isinstance(out, dict) else out
        return SegmentationMask(int(dense.argmax(1).flatten().mode().values))
    sx, sy = x.shape[-1] / image.width, x.shape[-2] / image.height  # image pixels -> model input pixels
    if args.box:
        try:
            x0, y0, x1, y1 = (float(v) for v in args.box.split(","))
        except ValueError:
            raise InputError(f"--box {args.box!r}: expected x0,y0,x1,y1 in image pixels") from None
        return BoxScore([x0 * sx, y0 * sy, x1 * sx, y1 * sy], label=args.target_class)
    return Detections(args.score)


def _run_dense(args, loaded, methods, paths, images) -> int:
    """Segmentation and detection: one image at a time; detection overlays carry their boxes and labels."""
    import torch

    from ..engine.explain import explain
    from ..viz.overlay import overlay, save_image
    from ..viz.signals import draw_detections

    out_dir = Path(args.out)
    written = []
    for path, image in zip(paths, images):
        x = loaded.preprocess([image])
        target = _dense_target(args, loaded, image, x)
        out = explain(loaded.model, x, method=methods, target_layer=args.layer or None, target=target)
        first = next(iter(out.values()))
        keep = list(range(first.classes.shape[1]))
        if args.task == "detection" and args.target_class is not None and not args.box:
            keep = [k for k in keep if int(first.classes[0, k]) == args.target_class]
        print(f"{path.name}: {first.target} -> {len(keep)} map(s)  [layer {first.target_layer}, {first.layout}]")
        for name, result in out.items():
            for k in keep:
                cls = int(result.classes[0, k])
                blended = overlay(image, result.maps[0, k].cpu(), alpha=args.alpha, cmap=args.cmap)
                if result.boxes is not None:
                    sx, sy = x.shape[-1] / image.width, x.shape[-2] / image.height
                    box = result.boxes[0, k].cpu() / torch.tensor([sx, sy, sx, sy])
                    blended = draw_detections(blended, box[None], [loaded.label(cls)], result.scores[0, k : k + 1])
                    stem = f"{path.stem}_{name}_det{k}_{cls}-{slug(loaded.label(cls))}"
                else:
                    stem = f"{path.stem}_{name}_{cls}-{slug(loaded.label(cls))}"
                written.append(save_image(blended, out_dir / f"{stem}.png"))
    print(f"wrote {len(written)} overlay(s) to {out_dir}/")
    return 0


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
    args.task = args.task or getattr(loaded, "task", "classification")
    if args.task != "classification":
        return _run_dense(args, loaded, methods, paths, images)

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
