"""``camlens explain``: explain image files, folders, globs or lists into a run folder.

``camlens explain val/ --model efficientnet_lite0 --method gradcam,cam --out run/`` streams the
images through :func:`camlens.explain_dataset`: a progress bar, then ``run/`` with the manifest,
the maps, run.json and the overlays (README, "Explain a whole dataset"). Segmentation and
detection models (``--task``, detected for torchvision models) are explained image by image into
overlays that carry their boxes and labels.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from ..core.errors import InputError
from ._common import add_model_options, slug, split_methods

SHOW_TOP_UP_TO = 20  # runs with at most this many images print each image's top classes


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="explain images, folders, globs or lists into a run folder")
    p.add_argument("images", nargs="+", help="image files, folders (recursive), glob patterns ('photos/**/*.jpg') "
                                             "or .txt files listing paths")
    add_model_options(p, required=True)
    p.add_argument("--method", default="gradcam", help="method name(s), comma separated (see `camlens methods`)")
    p.add_argument("--layer", help="target layer (default: found automatically; see `camlens layers`)")
    p.add_argument("--class", dest="klass", help="class index, comma list, class name, or topK (default: top-1)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option passed to camlens.explain, e.g. --option top_k=64 (repeatable)")
    p.add_argument("--out", default="camlens-out", help="the run folder (default: camlens-out)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader processes that decode images (default: cores - 1, at most 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or mps (default cpu)")
    p.add_argument("--amp", action="store_true", help="float16 autocast (CUDA)")
    p.add_argument("--max-images", type=int, default=None, help="explain only the first N images")
    p.add_argument("--labels-from-folders", action="store_true",
                   help="ImageFolder layout: each image's parent folder names its true class")
    p.add_argument("--no-overlays", dest="overlays", action="store_false", help="write no overlay PNGs (maps and manifest only)")
    p.add_argument("--overlay-size", type=int, default=None, metavar="PIXELS",
                   help="a dataset run's overlays: at most this many pixels on the longer side (default: each image's own size)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity (default 0.5)")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--strict", action="store_true", help="stop at the first image that cannot be decoded")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    p.add_argument("--report", action="store_true", help="then write the HTML report (as `camlens report OUT`)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray (pip install 'camlens[ray]')")
    p.add_argument("--address", default=None, help="--engine ray: the cluster to join (auto, or ray://host:10001); default: a local Ray")
    p.add_argument("--num-workers", type=int, default=None, help="--engine ray: actors in the pool (default: 2)")
    p.add_argument("--gpus-per-worker", type=float, default=0, help="--engine ray: GPUs per actor (default 0)")
    p.add_argument("--task", choices=["classification", "segmentation", "detection"],
                   help="what the model does (default: detected for torchvision models, else classification)")
    p.add_argument("--target-class", type=int,
                   help="segmentation: the class whose pixels are explained (default: the class that wins most "
                        "pixels); detection: explain only detections of this label")
    p.add_argument("--box", help="detection: explain the detection best matching x0,y0,x1,y1 (image pixels)")
    p.add_argument("--score", type=float, default=0.5, help="detection: explain every detection scoring at least this")
    p.set_defaults(func=run)


def _classes(text: str | None):
    """``--class``: ``top3``, an index, a comma list of indices and/or class names."""
    if text is None:
        return None
    text = text.strip()
    if text.lower().startswith("top"):
        return text
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return [int(p) if p.lstrip("-").isdigit() else p for p in parts]


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option {pair!r}: expected KEY=VALUE, e.g. --option top_k=64")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return options


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
    import sys

    from ..io.models import _torchvision_dense_tasks

    task = args.task or _torchvision_dense_tasks().get(args.arch or args.model, "classification")
    if task != "classification":
        from ..core.hooks import get_module
        from ..io.images import load_image
        from ..io.models import load_model
        from ..methods import get_method

        loaded = load_model(args.model, weights=args.weights, arch=args.arch, trust=args.trust)
        methods = split_methods(args.method)
        for name in methods:
            get_method(name)
        if args.layer:
            get_module(loaded.model, args.layer)
        args.task = task
        paths = [Path(p) for p in args.images]
        return _run_dense(args, loaded, methods, paths, [load_image(p) for p in paths])
    from ..engine.dataset import explain_dataset
    result = explain_dataset(
        args.model, args.images, method=split_methods(args.method), out=args.out, classes=_classes(args.klass),
        target_layer=args.layer or None, batch_size=args.batch_size, workers=args.workers, device=args.device,
        amp=args.amp, max_images=args.max_images, labels_from_folders=args.labels_from_folders,
        overlays=args.overlays, overlay_size=args.overlay_size, alpha=args.alpha, cmap=args.cmap, resume=args.resume, overwrite=args.overwrite,
        strict=args.strict, quiet=args.quiet, engine=args.engine, address=args.address, num_workers=args.num_workers,
        gpus_per_worker=args.gpus_per_worker, weights=args.weights, arch=args.arch, trust=args.trust,
        show_top=SHOW_TOP_UP_TO, command="camlens " + " ".join(sys.argv[1:]), **_options(args.option),
    )
    if not args.quiet:
        summary = result.summary()
        print(f"wrote {summary['rows']} manifest row(s) for {summary['done']} image(s) to {result.path}/ "
              f"(manifest.parquet, maps.zarr, run.json{', overlays/' if args.overlays else ''})")
    if args.report:
        from ..viz.report import write_report

        stats = write_report(result.path, None, progress=False if args.quiet else None)
        if not args.quiet:
            print(f"{stats}\nopen {stats.index.resolve().as_uri()}")
    return 0
