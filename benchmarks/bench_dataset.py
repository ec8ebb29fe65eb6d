"""Dataset benchmark: images/s of ``explain_dataset`` over a folder, against plain loops, and its peak memory.

Run:  python benchmarks/bench_dataset.py            (500 images for throughput; RSS at 500 and 4,000)
      python benchmarks/bench_dataset.py --quick    (96 images; RSS at 100 and 400)

The folder is built once from scikit-image's photos (random crops, 256-512 px on the long
side, JPEG) under ``--cache``. Model: the embedded pretrained EfficientNet-Lite0, Grad-CAM at
its head activation (camlens's ``_swish:1``; the plain loop and pytorch-grad-cam hook an
identical copy whose head activation is its own module, see bench_methods.py). Every loop
uses the same DataLoader settings (``--batch-size``, ``--workers``) and the same decode and
preprocessing (camlens.io.images: PIL decode, whole-image resize to 224, normalise).

Cases, timed from the first batch request to the last file written (model already loaded):

- plain PyTorch loop: decode, preprocess, forward, backward to the target layer, Grad-CAM
  weights and map (nothing written);
- camlens ``explain_dataset(..., overlays=False)`` (manifest + maps.zarr written) — target
  >= 0.8x the plain loop; with overlays (a PNG per image at the photo's size) — target >= 0.5x;
  and with overlays of at most 224 px on the longer side (``overlay_size=224``), the size
  pytorch-grad-cam's loop writes;
- pytorch-grad-cam's usual loop over the same batches: ``GradCAM(model, [layer])`` then
  ``show_cam_on_image`` per image and the picture saved — camlens with overlays, target >= 2.5x;
- peak RSS of a whole ``camlens explain`` run (fresh process, overlays on) at two sizes:
  the target is a difference under 100 MB;
- the PNG encoders on overlays of these photos: camlens's own (``camlens.io.png``), Pillow's
  and torchvision's (libpng).

The figures of a full run go into README.md between ``<!-- bench_dataset -->`` markers
(``--no-readme`` to skip; ``--quick``, ``--images`` and ``--rss`` never write them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def build_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs cut from scikit-image's photos, one sub-folder per photo (kept between runs)."""
    from PIL import Image
    from skimage import data

    folder = root / f"photos-{n}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    rng = np.random.default_rng(seed)
    photos = {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS}
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        photo = photos[name]
        scale = rng.uniform(0.5, 1.0)
        cw, ch = int(photo.width * scale), int(photo.height * scale)
        x0, y0 = int(rng.integers(0, photo.width - cw + 1)), int(rng.integers(0, photo.height - ch + 1))
        crop = photo.crop((x0, y0, x0 + cw, y0 + ch))
        side = int(rng.integers(256, 513)) / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * side)), max(1, round(crop.height * side))), Image.BILINEAR)
        (folder / name).mkdir(parents=True, exist_ok=True)
        crop.save(folder / name / f"{i:05d}.jpg", quality=90)
    marker.write_text("ok")
    return folder


class _Files(torch.utils.data.Dataset):
    """The plain loops' dataset: the same decode and preprocessing as camlens's loader."""

    def __init__(self, paths, size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3, keep_rgb=False) -> None:
        self.paths, self.size, self.mean, self.std, self.keep_rgb = paths, size, mean, std, keep_rgb

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        from camlens.io.images import load_image, preprocess, to_tensor_image

        image = load_image(self.paths[i])
        x = preprocess([image], self.size, self.mean, self.std)[0]
        if not self.keep_rgb:
            return x
        rgb = torch.nn.functional.interpolate(to_tensor_image(image)[None], size=self.size, mode="bilinear",
                                              antialias=True, align_corners=False)[0].clamp(0, 1)
        return x, rgb.permute(1, 2, 0)


def _loader(dataset, batch_size: int, workers: int):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       prefetch_factor=2 if workers else None)


def plain_loop(model, layer_module, paths, loaded, batch_size, workers) -> float:
    """Decode, preprocess, forward, backward to the target layer, Grad-CAM map; nothing written."""
    stored = {}
    handle = layer_module.register_forward_hook(lambda m, i, o: stored.__setitem__("a", o))
    start = time.perf_counter()
    try:
        for x in _loader(_Files(paths, loaded.input_size[1:], loaded.mean, loaded.std), batch_size, workers):
            logits = model(x)
            score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
            (grad,) = torch.autograd.grad(score, stored["a"])
            cam = torch.relu((grad.mean((2, 3), keepdim=True) * stored["a"]).sum(1)).detach()
            del cam, logits, grad, stored["a"]
    finally:
        handle.remove()
    return time.perf_counter() - start


def pgc_loop(model, layer_module, paths, loaded, batch_size, workers, out: Path) -> float:
    """pytorch-grad-cam's README loop: GradCAM(model, [layer]), then show_cam_on_image per image, saved."""
    import cv2
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cam = GradCAM(model=model, target_layers=[layer_module])
    index = 0
    for x, rgb in _loader(_Files(paths, loaded.input_size[1:], loaded.mean, loaded.std, keep_rgb=True), batch_size, workers):
        grayscale = cam(input_tensor=x, targets=None)
        for i in range(grayscale.shape[0]):
            picture = show_cam_on_image(rgb[i].numpy(), grayscale[i], use_rgb=True)
            cv2.imwrite(str(out / f"{index:05d}.png"), picture[:, :, ::-1])
            index += 1
    return time.perf_counter() - start


def camlens_run(loaded, folder, n, out, batch_size, workers, overlays, overlay_size=None) -> float:
    import camlens

    start = time.perf_counter()
    camlens.explain_dataset(loaded, folder, "gradcam", out, batch_size=batch_size, workers=workers,
                            max_images=n, overlays=overlays, overlay_size=overlay_size, overwrite=True, quiet=True)
    return time.perf_counter() - start


def png_encoders(paths, n: int = 60) -> tuple[list[tuple[str, float, float]], float]:
    """ms per overlay and KB per file of PNG encoders, on overlays of the benchmark's first ``n`` photos at
    their own size; and the overlays' mean size in kilopixels."""
    import io
    import zlib

    from PIL import Image

    from camlens.io.images import load_image
    from camlens.io.png import encode_png
    from camlens.viz.overlay import overlay_rgb8

    generator = torch.Generator().manual_seed(0)
    pictures = [overlay_rgb8(torch.from_numpy(np.array(load_image(p).convert("RGB"))),
                             torch.rand(7, 7, generator=generator)) for p in paths[:n]]

    def pillow(options):
        def encode(rgb):
            buffer = io.BytesIO()
            Image.fromarray(rgb.numpy()).save(buffer, format="PNG", **options)
            return buffer.getvalue()
        return encode

    encoders = [("camlens `encode_png` (Average filter, Huffman-only zlib)", encode_png),
                ("Pillow, `compress_level=1`, Huffman-only (camlens before)", pillow({"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY})),
                ("Pillow, `compress_level=1`", pillow({"compress_level": 1})),
                ("Pillow, default level (6)", pillow({}))]
    try:
        from torchvision.io import encode_png as tv_encode

        encoders.append(("torchvision `encode_png`, level 1 (libpng)",
                         lambda rgb: tv_encode(rgb.permute(2, 0, 1).contiguous(), compression_level=1).numpy().tobytes()))
    except ImportError:
        pass
    rows = []
    for label, encode in encoders:
        encode(pictures[0])
        start = time.perf_counter()
        sizes = [len(encode(rgb)) for rgb in pictures]
        rows.append((label, 1000 * (time.perf_counter() - start) / len(pictures), sum(sizes) / len(sizes) / 1024))
    return rows, float(np.mean([rgb.shape[0] * rgb.shape[1] for rgb in pictures])) / 1e3


def _status_mb(pid: int | str, key: str) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(rf"{key}:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def rss_child(folder: str, n: int, out: str, batch_size: int, workers: int) -> None:
    """In a fresh process: a whole CLI-style run; prints the peak RSS of this process and of its loader workers.

    The main process's peak is its VmHWM (reset by exec, unlike ru_maxrss, which keeps the
    forking parent's size); the workers' is sampled every 50 ms (their VmRSS summed).
    """
    import threading

    import camlens

    peak_workers, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_workers[0] = max(peak_workers[0], sum(_status_mb(c, "VmRSS") for c in _children(os.getpid())))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    camlens.explain_dataset("efficientnet_lite0", folder, "gradcam", out, batch_size=batch_size, workers=workers,
                            max_images=n, overwrite=True, quiet=True)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    print(json.dumps({"images": n, "seconds": seconds, "rss_mb": _status_mb("self", "VmHWM"),
                      "worker_rss_mb": peak_workers[0]}))


def measure_rss(folder: Path, n: int, batch_size: int, workers: int, scratch: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, __file__, "--rss-child", str(folder), str(n), str(scratch / f"rss-{n}"),
                             str(batch_size), str(workers)], capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="96 images; RSS at 100 and 400")
    parser.add_argument("--images", type=int, default=None, help="images for the throughput cases (default 500)")
    parser.add_argument("--rss", default=None, help="two run sizes for peak RSS (default 500,4000)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: cores - 1, at most 4)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "camlens-bench-dataset"))
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--rss-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        folder, n, out, batch_size, workers = args.rss_child
        rss_child(folder, int(n), out, int(batch_size), int(workers))
        return

    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _readme
    from bench_methods import lite0_with_head_activation

    from camlens.io.sources import resolve_sources

    n = args.images or (96 if args.quick else 500)
    sizes = [int(s) for s in (args.rss or ("100,400" if args.quick else "500,4000")).split(",")]
    workers = args.workers if args.workers is not None else min(4, max(0, (os.cpu_count() or 1) - 1))
    cache = Path(args.cache)
    folder = build_folder(cache, max([n] + sizes))
    paths = [item.path for item in resolve_sources([folder], max_images=n)]  # camlens's order
    loaded, wrapped = lite0_with_head_activation()
    scratch = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    print(f"{n} images from {folder}, batch {args.batch_size}, {workers} workers, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}")

    # warm-up: the first forward of a model pays for allocations and kernel selection
    camlens_run(loaded, folder, args.batch_size, scratch / "warm", args.batch_size, 0, False)
    plain_loop(wrapped, wrapped._head_act, paths[: args.batch_size], loaded, args.batch_size, 0)
    plain = plain_loop(wrapped, wrapped._head_act, paths, loaded, args.batch_size, workers)
    bare = camlens_run(loaded, folder, n, scratch / "bare", args.batch_size, workers, overlays=False)
    full = camlens_run(loaded, folder, n, scratch / "full", args.batch_size, workers, overlays=True)
    small = camlens_run(loaded, folder, n, scratch / "small", args.batch_size, workers, overlays=True, overlay_size=224)
    try:
        pgc = pgc_loop(wrapped, wrapped._head_act, paths, loaded, args.batch_size, workers, scratch / "pgc")
    except ImportError:
        pgc = None
        print("pytorch-grad-cam is not installed (pip install -e '.[bench]'): its row is skipped")
    rss = [measure_rss(folder, size, args.batch_size, workers, scratch) for size in sizes]
    encoders, kilopixels = png_encoders(paths)

    rows = [
        ("plain PyTorch loop (decode, preprocess, forward, backward to the layer, map)", plain, "1.00×", ""),
        ("camlens `explain_dataset(..., overlays=False)` (manifest + maps.zarr)", bare, f"{plain / bare:.2f}×", "≥ 0.8×"),
        ("camlens `explain_dataset(...)` with overlays (a PNG per image, photo size)", full, f"{plain / full:.2f}×", "≥ 0.5×"),
        ("camlens with overlays of at most 224 px (`overlay_size=224`, as pytorch-grad-cam writes)", small,
         f"{plain / small:.2f}×", ""),
    ]
    if pgc is not None:
        rows.append(("pytorch-grad-cam 1.5.7 loop (`GradCAM` + `show_cam_on_image` + PNG, 224×224)", pgc,
                     f"{plain / pgc:.2f}×", ""))
    lines = [f"| {n} photos, Lite0 Grad-CAM, batch {args.batch_size}, {workers} worker(s) | seconds | images/s | "
             "× plain loop | target |", "|---|---:|---:|---:|---|"]
    lines += [f"| {label} | {seconds:.1f} | {n / seconds:.1f} | {ratio} | {target} |" for label, seconds, ratio, target in rows]
    if pgc is not None:
        lines.append(f"| camlens with overlays vs pytorch-grad-cam's loop: photo-size overlays / 224 px overlays | | | "
                     f"**{pgc / full:.2f}× / {pgc / small:.2f}×** faster | ≥ 2.5× |")
    lines += ["", "| whole run (`efficientnet_lite0`, overlays on, fresh process) | images | seconds | peak RSS, main process | "
              "peak RSS, loader workers (sum) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['images']} images | {r['images']} | {r['seconds']:.1f} | {r['rss_mb']:.0f} MB | {r['worker_rss_mb']:.0f} MB |"
              for r in rss]
    growth = rss[-1]["rss_mb"] - rss[0]["rss_mb"]
    lines.append(f"| difference, {sizes[-1]} − {sizes[0]} images | | | {growth:+.0f} MB (target < 100 MB) | "
                 f"{rss[-1]['worker_rss_mb'] - rss[0]['worker_rss_mb']:+.0f} MB |")
    lines += ["", f"| PNG encoder, on {min(60, len(paths))} of these overlays at the photo's size "
              f"(mean {kilopixels:.0f} kpixels), one thread | ms per overlay | KB per file |", "|---|---:|---:|"]
    lines += [f"| {label} | {ms:.1f} | {kb:.0f} |" for label, ms, kb in encoders]
    table = "\n".join(lines)
    print(table)
    print(f"ratios: no overlays {plain / bare:.2f}× plain (≥ 0.8), overlays {plain / full:.2f}× plain (≥ 0.5)"
          + (f", {pgc / full:.2f}× pytorch-grad-cam at photo size, {pgc / small:.2f}× at 224 px (≥ 2.5)"
             if pgc is not None else "")
          + f"; RSS {sizes[0]} -> {sizes[-1]} images: {growth:+.0f} MB (< 100)")
    if not (args.no_readme or args.quick or args.images or args.rss):
        _readme.write_block("bench_dataset", f"{_readme.machine()}\n\n{table}")


if __name__ == "__main__":
    main()
