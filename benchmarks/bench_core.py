"""Core benchmark: the cost of CAM and Grad-CAM relative to a plain no-grad forward.

Run:  python benchmarks/bench_core.py            (resnet50, batch 8, 224×224, CPU)
      python benchmarks/bench_core.py --quick    (fewer repeats)
      python benchmarks/bench_core.py --readme   (also the table into README.md, <!-- bench_core --> markers)

Targets (issue 2): cam ≤ 1.02× and gradcam ≤ 1.05× the plain forward at the last layer.
Runs are interleaved (forward, cam, gradcam, forward, ...) so background load hits all
three alike; the figures are medians. Peer libraries are measured in bench_methods.py.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torchvision

import _readme
import camlens


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(model_name: str = "resnet50", batch: int = 8, size: int = 224, repeats: int = 7, layer: str = "layer4") -> dict:
    torch.manual_seed(0)
    model = torchvision.models.get_model(model_name).eval()
    x = torch.randn(batch, 3, size, size)

    def forward():
        with torch.no_grad():
            model(x)

    cases = {
        "forward (no_grad)": forward,
        "cam": lambda: camlens.explain(model, x, method="cam", target_layer=layer),
        "gradcam": lambda: camlens.explain(model, x, method="gradcam", target_layer=layer),
        "gradcam, target found automatically": lambda: camlens.explain(model, x, method="gradcam"),
    }
    for fn in cases.values():  # warm-up (and the target-layer cache)
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(_time(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md (<!-- bench_core -->)")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    medians = run(args.model, args.batch, repeats=repeats)
    base = medians["forward (no_grad)"]
    print(f"{args.model}, batch {args.batch}, 224×224, CPU ({torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}), median of {repeats}")
    print(f"{'case':40s} {'seconds':>8s} {'× forward':>10s}")
    for name, seconds in medians.items():
        print(f"{name:40s} {seconds:8.3f} {seconds / base:10.3f}")
    print("targets: cam ≤ 1.02×, gradcam ≤ 1.05×")
    targets = {"cam": "≤ 1.02×", "gradcam": "≤ 1.05×", "gradcam, target found automatically": "≤ 1.05×"}
    table = "\n".join(
        [f"{args.model} (random weights), batch {args.batch}, 224×224, median of {repeats} interleaved runs; {_readme.machine()}",
         "", "| case | seconds | × plain no-grad forward | target |", "|---|---:|---:|---|"]
        + [f"| {name} | {seconds:.3f} | {seconds / base:.3f} | {targets.get(name, '')} |" for name, seconds in medians.items()])
    if args.readme:
        if args.quick:
            raise SystemExit("--readme takes the full run's figures: drop --quick")
        _readme.write_block("bench_core", table)


if __name__ == "__main__":
    main()
