"""Every figure and table in README.md, and the one command that writes each.

    python docs/make_figures.py              # regenerate the figures (a few minutes on 2 cores)
    python docs/make_figures.py --tables     # also rerun the benchmarks that write the README's tables (an hour)
    python docs/make_figures.py --only demo  # one entry (its name from --list)
    python docs/make_figures.py --list       # what writes what, without running anything
    python docs/make_figures.py --readme     # rewrite the README's list of them (<!-- figures --> markers)

Nothing in the README is pasted: a picture under ``docs/images/`` is written by a script below,
and a table between ``<!-- NAME -->`` markers is written by the benchmark that measures it.
tests/test_figures.py checks that every picture and every marked table in the README has its
entry here, and that the README's list equals :func:`readme_list`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


@dataclass(frozen=True)
class Source:
    """One command and what it writes: pictures under docs/images/ and README marker blocks."""

    name: str
    command: tuple[str, ...]  # argv after `python`, relative to the repository root
    images: tuple[str, ...] = ()  # file names under docs/images/
    blocks: tuple[str, ...] = ()  # README marker names (<!-- NAME --> ... <!-- /NAME -->)
    minutes: float = 1.0  # about how long it takes on 2 cores
    table: bool = False  # a benchmark: run only with --tables
    copy_from_out: bool = False  # the command writes into a scratch --out folder; its images are copied

    @property
    def shown(self) -> str:
        return "python " + " ".join(self.command).replace("{out}", "OUT")


SOURCES = (
    Source("demo", ("-m", "camlens.cli", "demo", "--out", "{out}"), images=("demo_cat_and_coffee.png",),
           minutes=0.5, copy_from_out=True),
    Source("activation-stats", ("examples/activation_stats_digits.py", "--out", "docs/images"),
           images=tuple(f"activation_stats_{run}_{part}.png" for run in ("sane", "bad")
                        for part in ("conv2", "overview", "fc1_stats")), minutes=0.5),
    Source("heads-fastai", ("examples/heads_fastai.py", "docs/images"), images=("heads_fastai_gradcam.png",)),
    Source("heads-replace-head", ("examples/heads_replace_head.py", "docs/images"),
           images=("heads_replace_head_efficientnet-lite0.png", "heads_replace_head_vgg16.png")),
    Source("heads-vgg-fcmap", ("examples/heads_vgg_fcmap.py", "docs/images"), images=("heads_vgg16_fcmap.png",)),
    Source("report-screenshots", ("docs/make_report_screenshots.py",),
           images=("report_grid.png", "report_detail.png", "report_classes.png"), minutes=1.5),
    Source("families", ("docs/make_families_table.py",), blocks=("families",), minutes=1.0),
    Source("bench-metrics", ("benchmarks/bench_metrics.py", "--readme"),
           images=("metrics_digits_curves.png", "metrics_photos_curves.png", "metrics_examples.png"),
           blocks=("bench_metrics:digits", "bench_metrics:photos"), minutes=8, table=True),
    Source("bench-metrics-discrimination", ("benchmarks/bench_metrics.py", "--discrimination-only", "--readme"),
           blocks=("bench_metrics:discrimination",), minutes=2, table=True),
    Source("bench-core", ("benchmarks/bench_core.py", "--readme"), blocks=("bench_core",), minutes=2, table=True),
    Source("bench-methods", ("benchmarks/bench_methods.py", "--readme"),
           blocks=("bench_methods:gradient", "bench_methods:family", "bench_methods:scorecam",
                   "bench_methods:agreement"), minutes=30, table=True),
    Source("bench-dataset", ("benchmarks/bench_dataset.py",), blocks=("bench_dataset",), minutes=5, table=True),
    Source("bench-report", ("benchmarks/bench_report.py", "--readme"),
           blocks=("bench_report:page", "bench_report:writing"), minutes=4, table=True),
    Source("bench-soak", ("benchmarks/bench_soak.py", "--readme"), blocks=("bench_soak",), minutes=10, table=True),
    Source("mutation-score", ("tools/mutate.py", "--score", "--readme"), blocks=("mutation-score",), minutes=0,
           table=True),  # reads the results of `python tools/mutate.py -j 2` (about an hour)
    Source("figures-list", ("docs/make_figures.py", "--readme"), blocks=("figures",), minutes=0),
)


def readme_list() -> str:
    """The README's table of what writes each figure and table (between <!-- figures --> markers)."""
    lines = ["| command | writes | minutes on 2 cores |", "|---|---|---:|"]
    for source in SOURCES:
        wrote = [f"`docs/images/{name}`" for name in source.images] + [f"table `{b}`" for b in source.blocks]
        lines.append(f"| `{source.shown}` | {', '.join(wrote)} | {source.minutes:g} |")
    return "\n".join(lines)


def run(source: Source) -> None:
    """Run one source's command from the repository root; copy its pictures in when it writes to a scratch folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    with tempfile.TemporaryDirectory(prefix=f"camlens-figures-{source.name}-") as scratch:
        argv = [sys.executable] + [part.replace("{out}", scratch) for part in source.command]
        print(f"[{source.name}] {source.shown}", flush=True)
        subprocess.run(argv, cwd=ROOT, env=env, check=True)
        if source.copy_from_out:
            for name in source.images:
                shutil.copyfile(Path(scratch) / name, IMAGES / name)
    missing = [name for name in source.images if not (IMAGES / name).exists()]
    if missing:
        raise SystemExit(f"[{source.name}] did not write {', '.join(missing)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", action="store_true", help="also rerun the benchmarks that write the tables")
    parser.add_argument("--only", choices=[s.name for s in SOURCES], action="append", help="one entry (repeatable)")
    parser.add_argument("--list", action="store_true", help="print what writes what and exit")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's list (<!-- figures -->) and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(readme_list())
        return 0
    if args.readme:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import _readme

        _readme.write_block("figures", readme_list())
        return 0
    chosen = [s for s in SOURCES if (s.name in args.only if args.only else (args.tables or not s.table))]
    for source in chosen:
        if source.name == "figures-list":
            main(["--readme"])
            continue
        run(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
