"""Benchmark of the CAM method family: speed against a plain forward and against the peers,
and agreement (Pearson r) with the peers' implementations of the same methods.

One command, CPU::

    pip install -e ".[bench]"          # pytorch-grad-cam 1.5.x and torchcam 0.5.x (bench extra only)
    python benchmarks/bench_methods.py            # full run, about 30 minutes on 2 cores
    python benchmarks/bench_methods.py --quick    # smaller sizes, about 5 minutes

Sections:

1. resnet50 (random weights), batch 8 at ``layer4``: each gradient method alone, all six in
   one call, and top-5 vs top-1 classes, as ratios of a plain ``torch.no_grad`` forward.
2. Score-CAM, resnet18 (random weights) batch 1 at ``layer4`` and the pretrained
   EfficientNet-Lite0 on a real photo at its head activation: camlens exact and fast
   (``top_k=64``) against pytorch-grad-cam and torchcam, with Pearson r of the maps; then
   Ablation-CAM on the same two against pytorch-grad-cam (torchcam has none).
3. The rest of the family (Shapley-CAM, Finer-CAM, FullGrad, guided maps, DFF, ...): each alone
   as a ratio of a forward, and its extra cost when it shares one call with Grad-CAM
   (``--only family``); which of them share the one pass is printed with it.
4. Agreement: Pearson r of every camlens method with the peer implementation of the same
   method on the pretrained EfficientNet-Lite0 and the sample photos, at the head activation
   (camlens's default target ``_swish:1``; the peers hook the same tensor, see
   ``lite0_with_head_activation``).

Timings are the best of a few repeats (the machine may be shared; Score-CAM's implementations
run in interleaved rounds); peers run in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import torch
import torch.nn.functional as F

import _readme
import camlens
from camlens.methods import GRADIENT_METHODS

warnings.filterwarnings("ignore")


def best_time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def paired_ratio(fn, reference, repeats: int) -> tuple[float, float]:
    """Median of ``time(fn) / time(reference)`` over repeats run back to back, and fn's best time.

    Pairs resist a machine shared with other jobs better than two separate minima.
    """
    fn(), reference()
    ratios, best = [], float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        reference()
        t_ref = time.perf_counter() - start
        start = time.perf_counter()
        fn()
        t = time.perf_counter() - start
        ratios.append(t / t_ref)
        best = min(best, t)
    ratios.sort()
    return ratios[len(ratios) // 2], best


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of the Pearson r between two (N, H, W) map stacks."""
    rs = []
    for x, y in zip(a.flatten(1).double(), b.flatten(1).double()):
        x, y = x - x.mean(), y - y.mean()
        denominator = x.norm() * y.norm()
        rs.append(float((x * y).sum() / denominator) if denominator > 0 else float("nan"))
    return sum(rs) / len(rs)


def as_maps(cam, size) -> torch.Tensor:
    """A peer's maps (numpy or tensor, (N, h, w)) -> (N, H, W) ReLU'd, upsampled, normalised."""
    t = torch.as_tensor(cam).float()
    return camlens.finalize_maps(t.unsqueeze(1), size)[:, 0]


def quiet(fn):
    with contextlib.redirect_stderr(io.StringIO()):
        return fn()


# ---------------------------------------------------------------- peers
def pgc_cam(name, model, layer_module, x, classes, **kwargs):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {
        "gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
        "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM, "eigengradcam": pgc.EigenGradCAM,
        "eigencam": pgc.EigenCAM, "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM,
        "gradcam_elementwise": pgc.GradCAMElementWise, "fem": pgc.FEM, "shapleycam": pgc.ShapleyCAM,
        "fullgrad": pgc.FullGrad, "kpcacam": pgc.KPCA_CAM,
    }[name]
    layers = [] if name == "fullgrad" else [layer_module]  # FullGrad takes every bias layer
    with contextlib.redirect_stdout(io.StringIO()), cls(model=model, target_layers=layers, **kwargs) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])


def torchcam_cam(name, model, layer, x, classes, **kwargs):
    from torchcam import methods as tc

    cls = {
        "gradcam": tc.GradCAM, "gradcampp": tc.GradCAMpp, "xgradcam": tc.XGradCAM, "layercam": tc.LayerCAM,
        "smoothgradcampp": tc.SmoothGradCAMpp, "scorecam": tc.ScoreCAM, "sscam": tc.SSCAM, "iscam": tc.ISCAM,
    }[name]
    model.eval()
    with cls(model, layer, input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
        grad = name in ("gradcam", "gradcampp", "xgradcam", "layercam", "smoothgradcampp")
        with torch.set_grad_enabled(grad):
            out = model(x)
        cams = extractor([int(c) for c in classes], out)
    return cams[0].detach()


PGC = {"gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigengradcam", "eigencam", "scorecam", "ablationcam",
       "gradcam_elementwise", "fem", "shapleycam", "fullgrad", "kpcacam"}
TORCHCAM = {"gradcam", "gradcampp", "xgradcam", "layercam", "smoothgradcampp", "scorecam", "sscam", "iscam"}


def lite0_with_head_activation():
    """The pretrained EfficientNet-Lite0 and a copy whose head activation is its own module.

    camlens's default target is ``_swish:1``, the second call of the ReLU6 module the model
    reuses for the stem and the head; the peers hook modules, not calls. The copy runs the
    head through a new ``ReLU6`` module ``_head_act`` (same weights, same function, checked),
    so the peers' ``_head_act`` is exactly camlens's ``_swish:1``, gradients included.
    """
    import copy
    import types

    from torch import nn

    def extract_features(self, inputs):  # efficientnet_lite_pytorch's, with the head's ReLU6 renamed
        x = self._swish(self._bn0(self._conv_stem(inputs)))
        for idx, block in enumerate(self._blocks):
            rate = self._global_params.drop_connect_rate
            x = block(x, drop_connect_rate=rate * float(idx) / len(self._blocks) if rate else rate)
        return self._head_act(self._bn1(self._conv_head(x)))

    loaded = camlens.io.models.load_model("efficientnet_lite0")
    wrapped = copy.deepcopy(loaded.model)
    wrapped._head_act = nn.ReLU6()
    wrapped.extract_features = types.MethodType(extract_features, wrapped)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), wrapped(x)), "the wrapped copy must compute the same function"
    return loaded, wrapped


def have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ---------------------------------------------------------------- sections
# Each section returns its markdown (a caption line, then a table); main() prints it and, with
# --readme, writes it into README.md between <!-- bench_methods:SECTION --> markers.
def bench_gradient(args) -> str:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)

    def forward():
        with torch.no_grad():
            model(x)

    base = best_time(forward, args.repeats)
    rows = [("plain `torch.no_grad()` forward", base, 1.0, "")]
    for name in GRADIENT_METHODS:
        ratio, t = paired_ratio(lambda: camlens.explain(model, x, name, "layer4"), forward, args.repeats)
        rows.append((f"`{name}`", t, ratio, "≤ 1.05× forward"))
        print(f"  {name:<14} {t:.3f} s  {ratio:.3f}x forward", flush=True)
    ratio, t = paired_ratio(lambda: camlens.explain(model, x, list(GRADIENT_METHODS), "layer4"), forward, args.repeats)
    rows.append(("all six gradient methods in one call", t, ratio, "≤ 1.15× forward"))
    top1 = lambda: camlens.explain(model, x, "gradcam", "layer4", classes="top1")  # noqa: E731
    ratio5, t5 = paired_ratio(lambda: camlens.explain(model, x, "gradcam", "layer4", classes="top5"), top1, args.repeats)
    if have("pytorch_grad_cam"):
        ratio, t = paired_ratio(lambda: pgc_cam("gradcam", model, model.layer4, x, [0] * args.batch), forward, args.repeats)
        rows.append(("peer: pytorch-grad-cam `GradCAM`", t, ratio, ""))
    if have("torchcam"):
        ratio, t = paired_ratio(lambda: torchcam_cam("gradcam", model, "layer4", x, [0] * args.batch), forward, args.repeats)
        rows.append(("peer: torchcam `GradCAM`", t, ratio, ""))
    lines = [f"resnet50 (random weights), batch {args.batch}, {args.size}×{args.size}, `layer4`; median of "
             f"{args.repeats} paired ratios (each run timed right after a plain forward); {_readme.machine()}",
             "", "| case | seconds (best) | × plain forward | target |", "|---|---:|---:|---|"]
    lines += [f"| {label} | {t:.3f} | {ratio:.2f}× | {target} |" for label, t, ratio, target in rows]
    lines.append(f"| `gradcam`, top-5 classes (one batched backward) | {t5:.3f} | {ratio5:.2f}× top-1 | ≤ 1.4× top-1 |")
    return "\n".join(lines)


FAMILY = ("gradcam_elementwise", "shapleycam", "finercam", "fem", "kpcacam", "randomcam", "fullgrad",
          "guided_backprop", "guided_gradcam", "dff")
# what each takes beyond the one forward + head backward that Grad-CAM and its kin share
FAMILY_PASS = {
    "gradcam_elementwise": "shares it", "fem": "shares the forward (no backward)",
    "kpcacam": "shares the forward (no backward)", "randomcam": "shares the forward (no backward)",
    "dff": "shares the forward (+ NMF)", "shapleycam": "shares it + a double backward through the head per class",
    "finercam": "shares it + a backward through the head per class",
    "fullgrad": "its own forward + full backward (input and every bias gradient)",
    "guided_backprop": "its own forward + full backward (guided ReLUs)",
    "guided_gradcam": "shares it + its own guided forward and backward",
}


def bench_family(args) -> str:
    """The newer methods: each alone, and its extra cost when requested together with Grad-CAM."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)

    def forward():
        with torch.no_grad():
            model(x)

    def gradcam_alone():
        camlens.explain(model, x, "gradcam", "layer4")

    lines = [f"resnet50 (random weights), batch {args.batch}, {args.size}×{args.size}, `layer4`; median of "
             f"{args.repeats} paired ratios; 'with Grad-CAM' is one call for both, against Grad-CAM alone; "
             f"{_readme.machine()}", "",
             "| method | what it adds to the one pass | alone: × forward | `[\"gradcam\", method]` in one call: × Grad-CAM alone |",
             "|---|---|---:|---:|"]
    for name in FAMILY:
        alone, _ = paired_ratio(lambda: camlens.explain(model, x, name, "layer4"), forward, args.repeats)
        shared, _ = paired_ratio(lambda: camlens.explain(model, x, ["gradcam", name], "layer4"), gradcam_alone,
                                 args.repeats)
        lines.append(f"| `{name}` | {FAMILY_PASS[name]} | {alone:.2f}× | {shared:.2f}× |")
        print(lines[-1], flush=True)
    if have("pytorch_grad_cam"):
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(0)] * args.batch
        for label, cls, layers in (("FullGrad", pgc.FullGrad, []), ("ShapleyCAM", pgc.ShapleyCAM, [model.layer4])):
            def run(cls=cls, layers=layers):
                with contextlib.redirect_stdout(io.StringIO()), cls(model=model, target_layers=layers) as cam:
                    cam(input_tensor=x, targets=targets)

            ratio, _ = paired_ratio(lambda: quiet(run), forward, args.repeats)
            lines.append(f"| peer: pytorch-grad-cam `{label}` | | {ratio:.2f}× | |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def compare_row(method, label, model, layer, x, top_k, peers, rounds, peer_model=None, peer_layer=None) -> str:
    """One speed table for ``method``: each implementation once per round, rounds interleaved, best kept.

    Interleaving spreads the shared machine's slow spells over every implementation alike, and
    no implementation pays for being first (each round runs all of them in the same order).
    ``top_k``: also time camlens's fast mode (Score-CAM family).
    """
    size = tuple(x.shape[-2:])
    cls = camlens.explain(model, x, "gradcam", layer).classes
    peer_model, peer_layer = peer_model or model, peer_layer or layer
    module = camlens.get_module(peer_model, peer_layer)
    runs = {"exact": lambda: camlens.explain(model, x, method, layer, classes=cls, progress=False).maps[:, 0]}
    if top_k:
        runs["fast"] = lambda: camlens.explain(model, x, method, layer, classes=cls, top_k=top_k,
                                               progress=False).maps[:, 0]
    if "pytorch-grad-cam" in peers and method in PGC:
        runs["pytorch-grad-cam"] = lambda: as_maps(
            quiet(lambda: pgc_cam(method, peer_model, module, x, cls[:, 0])), size)
    if "torchcam" in peers and method in TORCHCAM:
        runs["torchcam"] = lambda: as_maps(torchcam_cam(method, peer_model, peer_layer, x, cls[:, 0].tolist()), size)
    times, maps = {name: float("inf") for name in runs}, {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            maps[name] = run()
            times[name] = min(times[name], time.perf_counter() - start)
    peer_times = [times[p] for p in ("pytorch-grad-cam", "torchcam") if p in times]
    fastest = min(peer_times) if peer_times else None
    lines = [f"**{method}**, {label}; best of {rounds} interleaved round(s)", "",
             "| implementation | seconds | speed-up vs the faster peer | r vs camlens exact | r vs pytorch-grad-cam | r vs torchcam |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in ("exact", "fast", "pytorch-grad-cam", "torchcam"):
        if name not in times:
            continue
        label_name = {"exact": "camlens" + (" exact" if top_k else ""), "fast": f"camlens fast (`top_k={top_k}`)"}.get(name, name)
        speed = f"{fastest / times[name]:.2f}×" if fastest else "-"
        r = [f"{pearson(maps[name], maps[o]):.4f}" if o in maps and o != name else "-"
             for o in ("exact", "pytorch-grad-cam", "torchcam")]
        lines.append(f"| {label_name} | {times[name]:.2f} | {speed} | {' | '.join(r)} |")
    print("\n".join(lines), flush=True)
    return "\n".join(lines)


def bench_rerun_methods(args) -> str:
    """Score-CAM (exact and fast) and Ablation-CAM: the methods that re-run the model per channel."""
    import torchvision

    peers = [p for p, m in (("pytorch-grad-cam", "pytorch_grad_cam"), ("torchcam", "torchcam")) if have(m)]
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    photos = camlens.io.images.sample_images()
    loaded, wrapped = lite0_with_head_activation()
    x = loaded.preprocess([photos["chelsea"]])
    if args.quick:
        x = F.interpolate(x, size=(args.size, args.size), mode="bilinear")
    rounds = 1 if args.quick else 2
    lite0 = "EfficientNet-Lite0 (pretrained), 'chelsea', head activation (camlens `_swish:1`, peers `_head_act`)"
    tables = [_readme.machine()]
    for method, top_k in (("scorecam", args.top_k), ("ablationcam", None)):
        size = "×".join(map(str, x.shape[-2:]))
        tables.append(compare_row(method, f"resnet18 (random weights), 'chelsea', batch 1, {size}, `layer4`", model,
                                  "layer4", x, top_k, peers, rounds))
        tables.append(compare_row(method, lite0, loaded.model, "_swish:1", loaded.preprocess([photos["chelsea"]]),
                                  top_k, peers, rounds, peer_model=wrapped, peer_layer="_head_act"))
    return "\n\n".join(tables)


def bench_agreement(args) -> str:
    loaded, wrapped = lite0_with_head_activation()
    # camlens runs its default target `_swish:1` on the model as shipped; the peers hook the
    # same tensor as `_head_act` of the wrapped copy (see lite0_with_head_activation).
    model, layer, peer_layer = loaded.model, "_swish:1", "_head_act"
    module = camlens.get_module(wrapped, peer_layer)
    photos = camlens.io.images.sample_images()
    names = ["chelsea", "coffee"] if args.quick else list(photos)
    x = loaded.preprocess([photos[n] for n in names])
    size = tuple(x.shape[-2:])
    lines = [f"EfficientNet-Lite0 (pretrained), the photos {', '.join(names)}, head activation (camlens `{layer}`, "
             f"peers `{peer_layer}`); mean Pearson r of the final maps (ReLU, bilinear upsampling, min-max)", "",
             "| method | pytorch-grad-cam | torchcam | camlens, another noise seed |", "|---|---:|---:|---:|"]
    methods = list(GRADIENT_METHODS) + ["eigencam", "smoothgradcampp", "scorecam", "ablationcam", "sscam", "iscam",
                                        "gradcam_elementwise", "fem", "shapleycam", "fullgrad", "kpcacam"]
    slow = {"scorecam", "ablationcam", "sscam", "iscam"}
    for name in methods:
        xs = x[:1] if name in slow else x
        options = {"samples": 2} if name in ("sscam", "iscam") else {"samples": 4} if name == "smoothgradcampp" else {}
        if name in ("sscam", "iscam") and args.quick:
            lines.append(f"| `{name}` | - | (skipped in --quick) | - |")
            continue
        ours = camlens.explain(model, xs, name, layer, progress=False, **options)
        cls = ours.classes[:, 0]
        cells = []
        if name in PGC and have("pytorch_grad_cam"):
            cells.append(f"{pearson(ours.maps[:, 0], as_maps(quiet(lambda: pgc_cam(name, wrapped, module, xs, cls)), size)):.4f}")
        else:
            cells.append("-")
        if name in TORCHCAM and have("torchcam"):
            kwargs = {"num_samples": options["samples"]} if "samples" in options else {}
            cam = quiet(lambda: torchcam_cam(name, wrapped, peer_layer, xs, cls.tolist(), **kwargs))
            cells.append(f"{pearson(ours.maps[:, 0], as_maps(cam, size)):.4f}")
        else:
            cells.append("-")
        if name in ("smoothgradcampp", "sscam"):
            other = camlens.explain(model, xs, name, layer, classes=ours.classes, progress=False, seed=1, **options)
            cells.append(f"{pearson(ours.maps[:, 0], other.maps[:, 0]):.4f}")
        else:
            cells.append("-")
        lines.append(f"| `{name}` | {' | '.join(cells)} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer photos")
    parser.add_argument("--only", choices=["gradient", "family", "scorecam", "agreement"],
                        help="run one section ('scorecam': Score-CAM and Ablation-CAM speed)")
    parser.add_argument("--top-k", type=int, default=64, help="channels scored by Score-CAM's fast mode")
    parser.add_argument("--readme", action="store_true",
                        help="write each section's table into README.md between <!-- bench_methods:SECTION --> markers")
    args = parser.parse_args()
    if args.readme and args.quick:
        parser.error("--readme takes the full run's figures: drop --quick")
    args.batch, args.size, args.repeats = (2, 112, 2) if args.quick else (8, 224, 7)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    sections = {"gradient": bench_gradient, "family": bench_family, "scorecam": bench_rerun_methods,
                "agreement": bench_agreement}
    for key, fn in sections.items():
        if args.only in (None, key):
            print(f"\n## {key}", flush=True)
            table = fn(args)
            print(f"\n{table}", flush=True)
            if args.readme:
                _readme.write_block(f"bench_methods:{key}", table)


if __name__ == "__main__":
    main()
