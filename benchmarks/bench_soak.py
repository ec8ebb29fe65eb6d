"""Soak benchmark: many explain calls and ActivationStats batches with flat memory and no hook left behind.

Run:  python benchmarks/bench_soak.py              (1,000 explain calls, 100,000 ActivationStats batches)
      python benchmarks/bench_soak.py --quick      (100 and 10,000)
      python benchmarks/bench_soak.py --json soak.json
      python benchmarks/bench_soak.py --readme     (the full run's table into README.md, <!-- bench_soak --> markers)

What it checks (issue 18): the process's resident memory (RSS, from /proc/self/statm or
``resource``) measured after a warm-up and then every tenth of the run stays flat (the
growth from the first checkpoint to the last is printed, in MiB and per call); no
forward/backward hook remains on any module afterwards; and the per-model state that
explain keeps (:data:`camlens.core.locks.MODEL_STATES`) holds one entry per live model.

explain: a resnet18 (random weights) at batch 2, 64×64, cycling Grad-CAM, Grad-CAM++,
Layer-CAM and CAM with the target found automatically, classes top-1 and top-2, plus a
call that fails on purpose (a NaN input) every 50 calls, so error paths are soaked too.
ActivationStats: a small MLP trained with SGD, 100,000 batches of 8, ``max_records=512``
(memory bounded by design), histograms on.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import time

import torch
import torchvision
from torch import nn

import _readme
import camlens
from camlens.core.locks import MODEL_STATES


def rss_mib() -> float:
    """Resident set size now, in MiB (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
               for m in model.modules())


def soak_explain(calls: int) -> dict:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 64, 64)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    methods = ["gradcam", "gradcampp", "layercam", "cam"]
    errors = 0

    def one(i: int) -> None:
        nonlocal errors
        if i % 50 == 49:
            try:
                camlens.explain(model, bad)
            except camlens.InputError:
                errors += 1
            return
        camlens.explain(model, x, method=methods[i % len(methods)], classes="top2" if i % 2 else None)

    for i in range(20):  # warm-up: allocator pools, the target-layer memo
        one(i)
    gc.collect()
    checkpoints = [rss_mib()]
    start = time.perf_counter()
    step = max(1, calls // 10)
    for i in range(calls):
        one(i)
        if (i + 1) % step == 0:
            gc.collect()
            checkpoints.append(rss_mib())
    seconds = time.perf_counter() - start
    return {
        "calls": calls, "seconds": round(seconds, 2), "ms_per_call": round(1000 * seconds / calls, 2),
        "rss_mib": [round(v, 1) for v in checkpoints], "growth_mib": round(checkpoints[-1] - checkpoints[0], 2),
        "growth_kib_per_call": round(1024 * (checkpoints[-1] - checkpoints[0]) / calls, 3),
        "hooks_left": hooks_left(model), "errors_raised": errors, "model_states": len(MODEL_STATES),
        "training_flag_restored": not model.training,
    }


def soak_activation_stats(batches: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    loss_fn = nn.CrossEntropyLoss()
    stats = camlens.ActivationStats(model, max_records=512)

    def train(n: int) -> None:
        for _ in range(n):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    with stats:
        train(min(2000, batches // 10))  # warm-up: fills the record buffers up to max_records
        gc.collect()
        checkpoints = [rss_mib()]
        start = time.perf_counter()
        step = max(1, batches // 10)
        for _ in range(10):
            train(step)
            gc.collect()
            checkpoints.append(rss_mib())
        seconds = time.perf_counter() - start
        records = len(stats.layer_stats(0).batch)
        nbytes = stats.nbytes
    return {
        "batches": step * 10, "seconds": round(seconds, 2), "us_per_batch": round(1e6 * seconds / (step * 10), 1),
        "rss_mib": [round(v, 1) for v in checkpoints], "growth_mib": round(checkpoints[-1] - checkpoints[0], 2),
        "records_kept_per_tensor": records, "stats_nbytes": nbytes, "hooks_left": hooks_left(model),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 explain calls and 10,000 batches")
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--batches", type=int, default=None)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md (<!-- bench_soak -->)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    calls = args.calls or (100 if args.quick else 1000)
    batches = args.batches or (10_000 if args.quick else 100_000)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    explain = soak_explain(calls)
    print(f"explain x{explain['calls']}: {explain['ms_per_call']} ms/call; RSS {explain['rss_mib'][0]} -> "
          f"{explain['rss_mib'][-1]} MiB (growth {explain['growth_mib']} MiB, {explain['growth_kib_per_call']} KiB/call); "
          f"hooks left {explain['hooks_left']}; {explain['errors_raised']} NaN inputs refused; "
          f"model states kept {explain['model_states']}")
    stats = soak_activation_stats(batches)
    print(f"ActivationStats x{stats['batches']}: {stats['us_per_batch']} us/batch; RSS {stats['rss_mib'][0]} -> "
          f"{stats['rss_mib'][-1]} MiB (growth {stats['growth_mib']} MiB); {stats['records_kept_per_tensor']} records "
          f"kept per tensor ({stats['stats_nbytes']} bytes); hooks left {stats['hooks_left']}")
    flat = explain["growth_mib"] < 20 and stats["growth_mib"] < 20 and not explain["hooks_left"] and not stats["hooks_left"]
    print("verdict:", "flat memory, no hook left" if flat else "MEMORY GROWS OR HOOKS LEFT")
    table = "\n".join([
        f"{_readme.machine()}; RSS measured after a warm-up, then every tenth of the run", "",
        "| soak | calls or batches | time per call | RSS first → last checkpoint | growth | hooks left |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `explain` (resnet18, batch 2, 64×64, 4 methods, top-1/top-2, a NaN input refused every 50 calls) | "
        f"{explain['calls']:,} | {explain['ms_per_call']:.1f} ms | {explain['rss_mib'][0]:.1f} → {explain['rss_mib'][-1]:.1f} MiB | "
        f"{explain['growth_mib']:+.2f} MiB ({explain['growth_kib_per_call']:+.3f} KiB/call) | {explain['hooks_left']} |",
        f"| `ActivationStats` (MLP trained with SGD, batch 8, histograms, `max_records=512`) | {stats['batches']:,} | "
        f"{stats['us_per_batch']:.0f} µs | {stats['rss_mib'][0]:.1f} → {stats['rss_mib'][-1]:.1f} MiB | "
        f"{stats['growth_mib']:+.2f} MiB | {stats['hooks_left']} |",
    ])
    print(table)
    if args.readme:
        if args.quick or args.calls or args.batches:
            raise SystemExit("--readme takes the full run's figures: drop --quick/--calls/--batches")
        _readme.write_block("bench_soak", table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"explain": explain, "activation_stats": stats, "flat": flat}, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
