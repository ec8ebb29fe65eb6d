"""The ``camlens`` command line: ``explain``, ``demo``, ``layers``, ``methods``, ``evaluate``.

Thin on purpose: it parses arguments, loads inputs, calls the library, writes files.
Bad input gives one line on stderr and exit code 2, never a traceback, and nothing
is written unless every image was explained.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .errors import CamlensError, InputError

EXIT_BAD_INPUT = 2


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _parse_classes(text: str | None, loaded) -> object:
    """``--class``: an index, a comma list, ``top3``, or a class name (``"Egyptian cat"``)."""
    if text is None:
        return None
    text = text.strip()
    if text.lower().startswith("top"):
        return text
    parts = [p.strip() for p in text.split(",") if p.strip()]
    classes = []
    for part in parts:
        if part.lstrip("-").isdigit():
            classes.append(int(part))
            continue
        names = loaded.class_names or []
        lowered = [n.lower() for n in names]
        if part.lower() in lowered:
            classes.append(lowered.index(part.lower()))
            continue
        import difflib

        close = difflib.get_close_matches(part.lower(), lowered, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(names[lowered.index(c)] for c in close)}?" if close else ""
        raise InputError(f"--class {part!r} is neither an index nor a class name of {loaded.name}{hint}")
    return classes


def _top(logits_row, loaded, k: int = 3) -> str:
    probs = logits_row.float().softmax(-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return ", ".join(f"{loaded.label(int(i))} {float(v):.2f}" for v, i in zip(values, indices))


def _methods(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def cmd_explain(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .explain import explain
    from .hooks import get_module
    from .images import load_image
    from .methods import get_method
    from .models import load_model
    from .visualize import overlay, save_image

    loaded = load_model(args.model, weights=args.weights, arch=args.arch, trust=args.trust)
    methods = _methods(args.method)
    for name in methods:
        get_method(name)
    if args.layer:
        get_module(loaded.model, args.layer)
    classes = _parse_classes(args.klass, loaded)
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
            print(f"{path.name}: {_top(first.logits[row], loaded)}  [layer {first.target_layer}]")
            for name, result in out.items():
                for j, cls in enumerate(result.classes[row].tolist()):
                    blended = overlay(image, result.maps[row, j].cpu(), alpha=args.alpha, cmap=args.cmap)
                    target = out_dir / f"{path.stem}_{name}_{cls}-{_slug(loaded.label(cls))}.png"
                    written.append(save_image(blended, target))
    print(f"wrote {len(written)} overlay(s) to {out_dir}/")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from .layers import describe
    from .models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(args.model, weights=args.weights, arch=args.arch, trust=args.trust)
    size = tuple(args.input_size) if args.input_size else loaded.input_size
    print(describe(loaded.model, size))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import get_method, list_methods

    for name in list_methods():
        method = get_method(name)
        print(f"{name:16s} {method.summary}  [{method.paper}]")
    return 0


def _add_model_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--model", required=required, default=None if required else "efficientnet_lite0",
                        help="efficientnet_lite0 (embedded, pretrained), a torchvision name, timm:NAME, or a model file")
    parser.add_argument("--weights", help="torchvision/timm pretrained weights, e.g. DEFAULT (downloads; needs the network)")
    parser.add_argument("--arch", help="architecture of a state-dict model file (torchvision name, timm:NAME)")
    parser.add_argument("--trust", action="store_true",
                        help="allow a fully pickled model file (unpickling runs code from the file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camlens", description="Class activation maps: why did the CNN say that?")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("explain", help="write heatmap overlays for images")
    p.add_argument("images", nargs="+", help="image files")
    _add_model_options(p, required=True)
    p.add_argument("--method", default="gradcam", help="method name(s), comma separated (see `camlens methods`)")
    p.add_argument("--layer", help="target layer (default: found automatically; see `camlens layers`)")
    p.add_argument("--class", dest="klass", help="class index, comma list, class name, or topK (default: top-1)")
    p.add_argument("--out", default="camlens-out", help="output folder (default: camlens-out)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity (default 0.5)")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("demo", help="explain the embedded pretrained model on sample photos")
    p.add_argument("--out", default="camlens-demo", help="output folder (default: camlens-demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("layers", help="table of layers, shapes, strides, the target layer and the head verdict")
    _add_model_options(p, required=False)
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"))
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("methods", help="list the CAM methods")
    p.set_defaults(func=cmd_methods)

    from .cli_evaluate import add_evaluate_parser

    add_evaluate_parser(sub, _add_model_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("camlens: error: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except CamlensError as error:
        print(f"camlens: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("camlens: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one plain line (no source path) on stderr."""
    print(f"camlens: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
