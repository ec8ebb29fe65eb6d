"""``camlens evaluate``: faithfulness and localization metrics per method, as a table.

Three sources of data:

- your images (``camlens evaluate a.jpg b.jpg --model resnet50 --weights DEFAULT``),
  optionally with ``--boxes boxes.csv`` (rows ``image,x0,y0,x1,y1`` in the image's own
  pixels, max exclusive; several rows for one image: the target is their union);
- ``--dataset photos``: scikit-image photos pasted at known places (embedded model);
- ``--dataset digits``: the cluttered-digits set and a small GAP CNN trained here on
  image-level labels only (about a minute or two on a laptop CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import torch

from ..core.errors import InputError
from ..io.files import atomic_write
from ._common import add_model_options, parse_classes
from ._contract import check_output_file

DIGITS_TOLERANCE = 4  # the pointing game's 15 pixels at 224, scaled to a 64-pixel canvas


def add_parser(sub: Any) -> None:
    """Register the ``evaluate`` subcommand on ``sub`` (the CLI's subparsers)."""
    p = sub.add_parser(
        "evaluate", help="score the methods: deletion/insertion AUC, average drop, pointing game, box IoU",
        description="Explain images with each method and print faithfulness and localization metrics. "
                    "Data: image files (with --boxes for localization), or --dataset photos|digits.",
    )
    p.add_argument("images", nargs="*", help="image files (or use --dataset)")
    p.add_argument("--dataset", choices=["photos", "digits"],
                   help="built-in data: photos pasted on a canvas (embedded model) or cluttered digits (GAP CNN trained here)")
    add_model_options(p, False)
    p.add_argument("--boxes", help="CSV of image,x0,y0,x1,y1 (pixels of the image file, max exclusive)")
    p.add_argument("--method", default="all", help="method name(s), comma separated, or 'all' (default)")
    p.add_argument("--layer", help="target layer (default: found automatically)")
    p.add_argument("--class", dest="klass", help="class index, comma list, class name, or topK (default: top-1)")
    p.add_argument("--n", type=int, default=None, help="images of the built-in dataset (photos: 4, digits: 96)")
    p.add_argument("--step", type=float, default=0.05,
                   help="deletion/insertion step: a fraction of the pixels (< 1) or a pixel count (>= 1); default 0.05")
    p.add_argument("--deletion-baseline", default="zeros", choices=["zeros", "blur", "mean"])
    p.add_argument("--insertion-baseline", default="blur", choices=["zeros", "blur", "mean"])
    p.add_argument("--tolerance", type=float, default=None, help="pointing-game tolerance in pixels (default 15; digits 4)")
    p.add_argument("--threshold", type=float, default=0.2, help="CAM box threshold, fraction of the map's max (default 0.2)")
    p.add_argument("--batch-size", type=int, default=32, help="perturbed images per forward pass")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="explaining-time budget per method: slow methods use fewer images (reported)")
    p.add_argument("--top-k", type=int, default=None,
                   help="Score-CAM family fast mode: score only the top K channels (explain's top_k)")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in datasets and training")
    p.add_argument("--plot", help="write the deletion/insertion curves to this PNG")
    p.add_argument("--json", dest="json_path", help="write the per-method means to this JSON file")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse image files above this many pixels (default 89478485, PIL's limit; 0: no limit)")
    p.set_defaults(func=run)


def _format_for_figure(path: Path) -> None:
    """A --plot suffix matplotlib cannot write is refused before the work."""
    if path.suffix.lower() not in ("", ".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp"):
        raise InputError(f"--plot {path.name!r}: use .png, .pdf, .svg or .jpg")


def _step(value: float) -> int | float:
    if value <= 0:
        raise InputError(f"--step must be positive, got {value}")
    return int(value) if value >= 1 else float(value)


def read_boxes(path: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """``image,x0,y0,x1,y1`` rows -> image name -> boxes; a header row is allowed."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or row[0].startswith("#"):
                    continue
                try:
                    values = tuple(float(v) for v in row[1:5])
                except ValueError:
                    if number == 1:
                        continue  # header
                    raise InputError(f"{path}:{number}: expected image,x0,y0,x1,y1 with numbers, got {row}") from None
                if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
                    raise InputError(f"{path}:{number}: a box is x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {row}")
                boxes.setdefault(Path(row[0].strip()).name, []).append(values)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise InputError(f"cannot read boxes {str(path)!r}: no such file") from None
    return boxes


def _masks_for(paths: list[Path], images: list[Any], boxes: dict, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) union of each image's boxes, scaled from the image's pixels to the input size."""
    from ..metrics import boxes_to_masks

    height, width = size
    masks = torch.zeros(len(paths), height, width, dtype=torch.bool)
    missing = [p.name for p in paths if p.name not in boxes]
    if missing:
        raise InputError(f"--boxes has no row for {', '.join(missing[:5])}; add one per image, or leave out --boxes")
    for i, (path, image) in enumerate(zip(paths, images)):
        sx, sy = width / image.width, height / image.height
        for x0, y0, x1, y1 in boxes[path.name]:
            box = torch.tensor([math.floor(x0 * sx), math.floor(y0 * sy), math.ceil(x1 * sx), math.ceil(y1 * sy)])
            masks[i] |= boxes_to_masks(box, size)
    return masks


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Model, inputs, classes and targets for the chosen data source."""
    from ..io.models import load_model

    if args.dataset and args.images:
        raise InputError("give image files or --dataset, not both")
    if not args.dataset and not args.images:
        raise InputError("nothing to evaluate: give image files, or --dataset photos / --dataset digits")
    if args.dataset == "digits":
        from ..metrics.data import accuracy, digits_localization_set, train_gap_cnn

        n = args.n or 96
        train = digits_localization_set(4000, "train", seed=args.seed)
        model = train_gap_cnn(train, epochs=4, seed=args.seed)
        test = digits_localization_set(n, "test", seed=args.seed)
        print(f"GAP CNN trained on image-level labels: test accuracy {accuracy(model, test.images, test.classes[:, 0]):.1%}")
        return dict(model=model, inputs=test.images, classes=test.classes, targets=test.boxes,
                    layer=args.layer or "features", tolerance=DIGITS_TOLERANCE)
    loaded = load_model(args.model or "efficientnet_lite0", weights=args.weights, arch=args.arch, trust=args.trust)
    if args.dataset == "photos":
        from ..metrics.data import pasted_photos_set

        data = pasted_photos_set(args.n or 4, model=loaded, seed=args.seed)
        return dict(model=loaded.model, inputs=loaded.preprocess(list(data.images)), classes=data.classes,
                    targets=data.boxes, layer=args.layer, tolerance=15)

    from ..io.images import load_image

    paths = [Path(p) for p in args.images]
    limit = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    images = [load_image(p, **limit) for p in paths]
    inputs = loaded.preprocess(images)
    targets = _masks_for(paths, images, read_boxes(args.boxes), tuple(inputs.shape[-2:])) if args.boxes else None
    return dict(model=loaded.model, inputs=inputs, classes=parse_classes(args.klass, loaded), targets=targets,
                layer=args.layer, tolerance=15)


def run(args: argparse.Namespace) -> int:
    from ..methods import get_method
    from ..metrics import evaluate, plot_curves
    from ..viz.overlay import save_figure

    methods = None if args.method.strip().lower() == "all" else [m.strip() for m in args.method.split(",") if m.strip()]
    for name in methods or []:
        get_method(name)
    if not 0 <= args.threshold < 1:
        raise InputError(f"--threshold is a fraction of the map's max in [0, 1), got {args.threshold}")
    step = _step(args.step)
    plot_path = check_output_file(args.plot, "--plot")  # before any model work: fail now, not after it
    json_path = check_output_file(args.json_path, "--json")
    if plot_path is not None:
        _format_for_figure(plot_path)
    setup = _prepare(args)
    tolerance = setup["tolerance"] if args.tolerance is None else args.tolerance
    result = evaluate(
        setup["model"], setup["inputs"], methods, setup["classes"], setup["targets"], target_layer=setup["layer"],
        step=step, deletion_baseline=args.deletion_baseline, insertion_baseline=args.insertion_baseline,
        tolerance=tolerance, threshold=args.threshold, batch_size=args.batch_size,
        max_seconds_per_method=args.max_seconds,
        explain_options={"top_k": args.top_k} if args.top_k else None,
    )
    print(result.table())
    print(f"\n{setup['inputs'].shape[0]} images; step {step}, deletion baseline {args.deletion_baseline}, "
          f"insertion baseline {args.insertion_baseline}, pointing tolerance {tolerance:g} px, "
          f"CAM box threshold {args.threshold:g}; scores are softmax probabilities")
    if plot_path is not None:
        print(f"wrote {save_figure(plot_curves(result), plot_path)}")
    if json_path is not None:
        summary = {name: {k: (None if math.isnan(v) else v) for k, v in values.items()}
                   for name, values in result.summary().items()}
        text = json.dumps(summary, indent=2) + "\n"
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        print(f"wrote {json_path}")
    return 0
