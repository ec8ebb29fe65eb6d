"""Report benchmark: how fast `camlens report` writes, and how the page behaves at 20,000 images.

Run:  python benchmarks/bench_report.py              (2,000 photos of 500x375 + a 20,000-image page)
      python benchmarks/bench_report.py --quick      (500 photos, the same page)
      python benchmarks/bench_report.py --readme     (the full run's two tables into README.md, between
                                                      <!-- bench_report:page --> and <!-- bench_report:writing --> markers)

Targets (issue 16): report generation >= 200 images/s of thumbnails, without running the model;
a 20,000-image report interactive in < 2 s after load, fetching only the images on screen.

Part 1 writes real JPEG photos (crops of the scikit-image photos, resized to 500x375 like an
ImageNet validation image) and a run folder to the contract (maps.zarr with one image per chunk,
two methods), then times, in one run, interleaved:
  - a plain PIL loop: open, convert, thumbnail, save (what one writes by hand);
  - `write_report` with one thread and with the default thread pool (thumbnails + maps + data).
Part 2 builds a 20,000-image run (photos hard-linked to 200 files, so it takes seconds), writes
its report and opens it in Chromium (Playwright, /usr/bin/chromium): time to ready after
navigation, the time of three filter/sort changes, and which thumbnails were requested.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runfolders import make_run  # noqa: E402  (the contract writer the tests use)

import _readme  # noqa: E402
from camlens.viz.report import write_report  # noqa: E402


def real_photos(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    from skimage import data

    sources = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        photo = sources[i % len(sources)]
        h, w = photo.shape[:2]
        y, x = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
        crop = Image.fromarray(photo[y : y + 3 * h // 4, x : x + 3 * w // 4]).resize(size, Image.BILINEAR)
        path = folder / f"photo_{i:05d}.jpg"
        crop.save(path, quality=90)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], out: Path, size: int = 240) -> float:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        rgb.thumbnail((size, size))
        rgb.save(out / f"{i}.jpg", quality=82)
    return len(paths) / (time.perf_counter() - start)


def part_generation(root: Path, n: int) -> str:
    photos = real_photos(root / "photos", n, (500, 375))
    run = make_run(root / "run", n, photos=photos, images_per_chunk=1)
    results: dict[str, list[float]] = {"plain PIL loop (thumbnails only)": [], "write_report, 1 thread": [],
                                       f"write_report, {min(8, os.cpu_count() or 1)} threads (default)": []}
    thumbs: dict[str, list[float]] = {key: [] for key in results}
    for repeat in range(2):
        rate = plain_loop(photos, root / f"plain{repeat}")
        results["plain PIL loop (thumbnails only)"].append(rate)
        thumbs["plain PIL loop (thumbnails only)"].append(rate)
        for workers, key in ((1, "write_report, 1 thread"), (None, list(results)[2])):
            shutil.rmtree(run / "report", ignore_errors=True)  # no reuse: every thumbnail written
            stats = write_report(run, workers=workers, progress=False)
            results[key].append(stats.images_per_second)
            thumbs[key].append(stats.thumbnails / stats.thumbnail_seconds)
    base = max(results["plain PIL loop (thumbnails only)"])
    size = sum(p.stat().st_size for p in (run / "report").rglob("*") if p.is_file())
    lines = [f"writing the report of {n:,} photos (500×375 JPEG), 2 methods, maps.zarr one image per chunk; best of 2; "
             f"{_readme.machine()}", "",
             "| | images/s (thumbnails + maps + data) | thumbnails/s | vs the plain PIL loop |", "|---|---:|---:|---:|"]
    for key in results:
        best, best_thumbs = max(results[key]), max(thumbs[key])
        lines.append(f"| {key} | {best:.0f} | {best_thumbs:.0f} | {best / base:.2f}× |")
    lines.append(f"| report folder | {size / 1e6:.1f} MB | {size / n / 1e3:.1f} kB per image | |")
    table = "\n".join(lines)
    print(table)
    return table


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no Chromium: apt-get install -y chromium")


def part_browser(root: Path, n: int = 20_000) -> str:
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    run = make_run(root / "big" / "run", n, distinct_photos=200, images_per_chunk=1000, photo_size=(64, 48))
    made = time.perf_counter() - started
    stats = write_report(run, progress=False)
    print(f"\n## The page at {n:,} images x 2 methods ({2 * n:,} cards), Chromium {platform.machine()}")
    print(f"run folder written in {made:.1f} s; report in {stats.seconds:.1f} s; data.js "
          f"{(run / 'report' / 'data.js').stat().st_size / 1e6:.1f} MB")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=args)
        rows = []
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto((run / "report" / "index.html").resolve().as_uri())
            page.wait_for_selector("body[data-ready]", timeout=60_000)
            ready = page.evaluate("window.camlensReadyAt")
            change = page.evaluate("""() => {
                const t0 = performance.now();
                const p = document.querySelector('[name="predicted"]');
                p.value = p.options[2].value; p.dispatchEvent(new Event('change'));
                const s = document.querySelector('[name="sort"]');
                s.value = 'path'; s.dispatchEvent(new Event('change'));
                const q = document.querySelector('[name="q"]');
                q.value = '1'; q.dispatchEvent(new Event('input'));
                return performance.now() - t0; }""")
            page.wait_for_timeout(300)
            cards = page.locator("[data-image-id]").count()
            thumbs = len({u for u in requests if "/thumbs/" in u})
            chunks = len({u for u in requests if "/maps/" in u})
            rows.append((ready, change, cards, thumbs, chunks))
            page.close()
        browser.close()
    ready, change, cards, thumbs, chunks = min(rows)
    lines = [f"{n:,} images × 2 methods ({2 * n:,} cards) in Chromium, best of 3 page loads; data.js "
             f"{(run / 'report' / 'data.js').stat().st_size / 1e6:.1f} MB; {_readme.machine()}", "",
             "| ready after navigation | 3 filter/sort changes | cards in the page | thumbnails requested | map chunk files requested |",
             "|---:|---:|---:|---:|---:|",
             f"| {ready:.0f} ms | {change:.0f} ms | {cards} | {thumbs} (of {n:,}) | {chunks} |"]
    table = "\n".join(lines)
    print(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 photos instead of 2,000")
    parser.add_argument("--images", type=int, help="photos for part 1")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--readme", action="store_true", help="write the tables into README.md (full run only)")
    args = parser.parse_args()
    if args.readme and (args.quick or args.images or args.skip_browser):
        parser.error("--readme takes the full run's figures: drop --quick/--images/--skip-browser")
    n = args.images or (500 if args.quick else 2000)
    print(f"# bench_report: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} (other work on the machine)")
    root = Path(tempfile.mkdtemp(prefix="camlens-bench-report-"))
    try:
        writing = part_generation(root, n)
        page = None if args.skip_browser else part_browser(root)
        if args.readme:
            _readme.write_block("bench_report:writing", writing)
            _readme.write_block("bench_report:page", page)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
