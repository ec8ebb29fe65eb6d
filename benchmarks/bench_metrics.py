"""Which map to trust? Faithfulness and localization of every method, on real data.

Two tables, one row per method in ``camlens.list_methods()`` (new methods join by
themselves) plus reference rows in parentheses:

1. Cluttered digits: scikit-learn's real handwritten digits, one target digit per
   64x64 canvas among clutter, box known. A small GAP CNN is trained here on the
   image-level labels only (seeded, CPU), so its maps were never taught where digits are.
2. Pasted photos: scikit-image photos pasted two per 224x224 grey canvas at known
   places; the pretrained EfficientNet-Lite0 explains each photo's class (K=2 per image).

Reference rows: ``(box)`` is the ground-truth box itself as a map (perfect localization),
``(center)`` a centred Gaussian, ``(random)`` smooth random noise.

Run:
    python benchmarks/bench_metrics.py            # about 6 minutes on 2 CPU cores
    python benchmarks/bench_metrics.py --quick    # a smoke run, well under a minute of compute
    python benchmarks/bench_metrics.py --readme   # also write both tables into README.md (between markers)
    python benchmarks/bench_metrics.py --discrimination-only --readme   # map mass on the right photo, ~2 min
Writes ``docs/images/metrics_digits_curves.png``, ``metrics_photos_curves.png`` and
``metrics_examples.png`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

import _readme
from camlens import list_methods
from camlens.core.errors import CamlensError
from camlens.metrics.data import (
    LocalizationSet,
    accuracy,
    digits_localization_set,
    pasted_photos_set,
    train_gap_cnn,
)
from camlens.metrics import Evaluation, MethodScores, boxes_to_masks, evaluate, evaluate_maps, plot_curves
from camlens.viz.overlay import save_figure

ROOT = Path(__file__).resolve().parents[1]
ROAD_FRACTIONS = (0.2, 0.5, 0.8)  # ROAD on the digits (64x64: a sparse solve each); the photos would take ~1 s per imputation


def write_readme_table(readme: Path, name: str, table: str) -> None:
    """Replace the text between ``<!-- bench_metrics:NAME -->`` and ``<!-- /bench_metrics:NAME -->``."""
    _readme.write_block(f"bench_metrics:{name}", table, readme)


def reference_maps(data: LocalizationSet, size: tuple[int, int], seed: int) -> dict[str, torch.Tensor]:
    """(N, K, H, W) maps that need no model: the true box, a centred Gaussian, smooth noise."""
    n, k = data.classes.shape
    height, width = size
    ys = torch.linspace(-1, 1, height).view(height, 1)
    xs = torch.linspace(-1, 1, width).view(1, width)
    center = torch.exp(-(ys**2 + xs**2) / (2 * 0.5**2)).expand(n, k, height, width)
    noise = torch.rand(n, k, 7, 7, generator=torch.Generator().manual_seed(seed))
    noise = F.interpolate(noise, size=size, mode="bilinear", align_corners=False)
    return {"(box)": boxes_to_masks(data.boxes, size).float(), "(center)": center.contiguous(), "(random)": noise}


def run_set(title, model, inputs, data, *, layer, tolerance, step, budget, batch_size, methods, seed, options=None,
            road_fractions=None):
    """Evaluate every method (each guarded on its own) and the reference maps on one set."""
    evaluation = Evaluation()
    if layer is None:  # found once here, not once per method
        from camlens import find_target_layer

        layer = find_target_layer(model, tuple(inputs.shape[1:]))
    settings = dict(step=step, tolerance=tolerance, batch_size=batch_size, progress=sys.stderr.isatty())
    if road_fractions:
        settings.update(road=True, road_fractions=road_fractions)
    started = time.perf_counter()
    for name in methods:
        t0 = time.perf_counter()
        try:
            result = evaluate(model, inputs, [name], data.classes, data.boxes, target_layer=layer,
                              max_seconds_per_method=budget, explain_options=options, **settings)
            evaluation.scores[name] = result.scores[name]
        except CamlensError as error:
            evaluation.scores[name] = MethodScores(name, error=str(error))
        except Exception as error:  # a bug in one method must not hide the others' numbers
            evaluation.scores[name] = MethodScores(name, error=f"crashed: {type(error).__name__}: {error}")
            traceback.print_exc()
        note = evaluation.scores[name].error or f"{evaluation.scores[name].images} images"
        print(f"  [{title}] {name:16s} {time.perf_counter() - t0:6.1f} s  ({note[:90]})", flush=True)
    for name, maps in reference_maps(data, tuple(inputs.shape[-2:]), seed).items():
        evaluation.scores[name] = evaluate_maps(model, inputs, maps, data.classes, data.boxes, name=name, **settings)
    print(f"  [{title}] done in {time.perf_counter() - started:.0f} s", flush=True)
    return evaluation


def discrimination_table(model, inputs, data, methods) -> str:
    """Share of each method's map mass on the explained photo and on the other photo of the canvas.

    The pasted-photos canvases hold two photos, one class each (K=2): a class-discriminative
    method puts the mass of class k's map on photo k (energy pointing game, Wang et al. 2020),
    not on the other one. Class-agnostic methods (no gradient, no class weights) give both
    classes the same map, so the two columns are equal for them.
    """
    from camlens import explain
    from camlens.metrics import energy_pointing_game, pointing_game

    other = data.boxes.flip(1)  # each class's box swapped for the other photo's
    lines = ["| method | mass on the right photo ↑ | mass on the other photo ↓ | pointing game ↑ |",
             "|---|---:|---:|---:|"]
    for name in methods:
        try:
            maps = explain(model, inputs, name, classes=data.classes, progress=False,
                           **({"top_k": 64} if name in ("scorecam", "sscam", "iscam") else {})).maps
        except CamlensError as error:
            lines.append(f"| {name} | skipped ({str(error)[:60]}) | | |")
            continue
        right, wrong = energy_pointing_game(maps, data.boxes), energy_pointing_game(maps, other)
        hit = pointing_game(maps, data.boxes, 15).float()
        lines.append(f"| {name} | {float(right.mean()):.3f} | {float(wrong.mean()):.3f} | {float(hit.mean()):.0%} |")
        print(f"  [discrimination] {name}", flush=True)
    return "\n".join(lines)


def example_figure(sets, path: Path, methods=("cam", "gradcam", "gradcampp", "layercam", "eigencam")):
    """A few samples per set: the image with its true box, then maps with CAM's box."""
    import matplotlib.pyplot as plt

    from camlens import explain
    from camlens.metrics import boxes_from_maps

    rows = []
    for model, inputs, data, layer, show in sets:
        available = [m for m in methods if m in list_methods()]
        for i in range(2):
            maps = {}
            for m in available:
                try:
                    maps[m] = explain(model, inputs[i : i + 1], m, target_layer=layer, classes=data.classes[i : i + 1, :1]).maps[0, 0]
                except Exception:  # noqa: BLE001 - a figure, not a test
                    continue
            rows.append((show[i], data.boxes[i, 0], maps))
    columns = 1 + max(len(r[2]) for r in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 1.9 * len(rows)), squeeze=False)

    def draw_box(ax, box, color):
        x0, y0, x1, y1 = box.tolist()
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color=color, lw=1.5))

    for r, (image, box, maps) in enumerate(rows):
        axes[r, 0].imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        draw_box(axes[r, 0], box, "lime")
        axes[r, 0].set_title("input + true box" if r == 0 else "", fontsize=8)
        for c, (m, heat) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].imshow(heat.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            draw_box(axes[r, c], box, "lime")
            draw_box(axes[r, c], boxes_from_maps(heat[None])[0], "white")
            if r == 0 or rows[r - 1][2].keys() != maps.keys():
                axes[r, c].set_title(m, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    figure.suptitle("green: true box; white: CAM box (20% threshold, largest component)", fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path, dpi=80)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sets and short training: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for the PNG plots")
    parser.add_argument("--methods", help="comma-separated subset of methods (default: all registered)")
    parser.add_argument("--skip", choices=["digits", "photos"], help="leave one set out")
    parser.add_argument("--discrimination-only", action="store_true",
                        help="only the share of map mass on the right photo of the two-photo canvases")
    parser.add_argument("--readme", action="store_true",
                        help="write the tables into README.md between the <!-- bench_metrics:SET --> markers")
    args = parser.parse_args(argv)

    quick = args.quick
    methods = args.methods.split(",") if args.methods else list_methods()
    out = Path(args.out)
    torch.manual_seed(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; methods: {', '.join(methods)}")
    tables, figure_sets, started = {}, [], time.perf_counter()

    if args.discrimination_only:
        from camlens.io.models import load_model

        loaded = load_model("efficientnet_lite0")
        photos = pasted_photos_set(2 if quick else 4, model=loaded, seed=args.seed)
        names = [m for m in methods if m not in ("fcmap", "sscam", "iscam")]
        table = discrimination_table(loaded.model, loaded.preprocess(list(photos.images)), photos, names)
        print(f"\n### discrimination: {len(photos)} canvases x 2 pasted photos, EfficientNet-Lite0\n\n{table}")
        if args.readme:
            write_readme_table(ROOT / "README.md", "discrimination",
                               f"{len(photos)} canvases × 2 pasted photos, EfficientNet-Lite0; {_readme.machine()}\n\n{table}")
            print("wrote the discrimination table into README.md")
        return 0
    if args.skip != "digits":
        t0 = time.perf_counter()
        train = digits_localization_set(1500 if quick else 4000, "train", seed=args.seed)
        test = digits_localization_set(24 if quick else 96, "test", seed=args.seed)
        model = train_gap_cnn(train, epochs=2 if quick else 4, seed=args.seed, progress=sys.stderr.isatty())
        acc = accuracy(model, test.images, test.classes[:, 0])
        train_s = time.perf_counter() - t0
        print(f"digits: GAP CNN trained on {len(train)} image-level labels in {train_s:.0f} s; test accuracy {acc:.1%}")
        result = run_set("digits", model, test.images, test, layer="features", tolerance=4, step=1 / 12,
                         budget=10 if quick else 30, batch_size=256, methods=methods, seed=args.seed,
                         road_fractions=ROAD_FRACTIONS)
        tables["digits"] = (result, f"{len(test)} test canvases (64x64), GAP CNN test accuracy {acc:.1%}, "
                                    f"trained in {train_s:.0f} s; pointing tolerance 4 px, 13-point curves; ROAD "
                                    f"at {', '.join(f'{f:.0%}' for f in ROAD_FRACTIONS)} of the pixels removed")
        save_figure(plot_curves(result, "cluttered digits, GAP CNN"), out / "metrics_digits_curves.png", dpi=80)
        figure_sets.append((model, test.images, test, "features", test.images))

    if args.skip != "photos":
        from camlens.io.models import load_model

        loaded = load_model("efficientnet_lite0")
        photos = pasted_photos_set(2 if quick else 4, model=loaded, seed=args.seed)
        inputs = loaded.preprocess(list(photos.images))
        probs = loaded.model.eval()(inputs).softmax(-1).gather(1, photos.classes).detach()
        print("photos: " + "; ".join(
            f"{'+'.join(note)} -> " + ", ".join(f"{loaded.label(int(c))} {float(p):.2f}" for c, p in zip(cls, prob))
            for note, cls, prob in zip(photos.notes, photos.classes, probs)))
        result = run_set("photos", loaded.model, inputs, photos, layer=None, tolerance=15, step=1 / 8 if not quick else 1 / 4,
                         budget=5 if quick else 20, batch_size=32, methods=methods, seed=args.seed,
                         options={"top_k": 64})
        tables["photos"] = (result, f"{len(photos)} canvases (224x224) x 2 pasted photos, EfficientNet-Lite0; "
                                    f"pointing tolerance 15 px, {9 if not quick else 5}-point curves; Score-CAM family in "
                                    f"fast mode (top_k=64 of 1280 channels)")
        save_figure(plot_curves(result, "pasted photos, EfficientNet-Lite0"), out / "metrics_photos_curves.png", dpi=80)
        figure_sets.append((loaded.model, inputs, photos, None, photos.images))

    for name, (result, caption) in tables.items():
        print(f"\n### {name}: {caption}\n")
        print(result.table())
    if args.readme:
        for name, (result, caption) in tables.items():
            write_readme_table(ROOT / "README.md", name, f"{caption}; {_readme.machine()}\n\n{result.table()}")
            print(f"wrote the {name} table into README.md")
    print(f"\nscores are softmax probabilities; deletion baseline zeros, insertion baseline blur, CAM box threshold 0.2; "
          f"ms/image is camlens.explain alone on this machine ({torch.get_num_threads()} threads). "
          f"Total {time.perf_counter() - started:.0f} s.", flush=True)
    if figure_sets:
        print(f"wrote {example_figure(figure_sets, out / 'metrics_examples.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
