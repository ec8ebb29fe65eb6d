"""The README's screenshots of the report: a real run on scikit-image photos, shown in Chromium.

Run:  python docs/make_report_screenshots.py     (writes docs/images/report_grid.png,
                                                  report_detail.png, report_classes.png)

1. An ImageFolder tree of real photos: four scikit-image photos (the cat, the coffee, the
   cameraman's tripod, the rocket), each as the whole photo, four corner crops and a mirrored
   copy, in a folder named after its ImageNet class. Crops that lose the object are the
   misclassified images the report is for.
2. The run: EfficientNet-Lite0 (the model shipped with camlens), Grad-CAM and CAM, with
   `camlens.explain_dataset(..., labels_from_folders=True)` when this camlens has it, else
   `camlens.explain` per batch written to the same run-folder contract.
3. `camlens.viz.report.write_report`, then Playwright drives /usr/bin/chromium for the shots.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import camlens
from camlens.viz.report import write_report

IMAGES = Path(__file__).resolve().parent / "images"
PHOTOS = {"chelsea": "Egyptian cat", "coffee": "espresso", "camera": "tripod", "rocket": "missile"}
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def photo_tree(root: Path) -> Path:
    from skimage import data

    for name, label in PHOTOS.items():
        array = getattr(data, name)()
        photo = Image.fromarray(array).convert("RGB")
        w, h = photo.size
        cw, ch = int(w * 0.62), int(h * 0.62)
        variants = {
            "whole": photo,
            "top-left": photo.crop((0, 0, cw, ch)),
            "top-right": photo.crop((w - cw, 0, w, ch)),
            "bottom-left": photo.crop((0, h - ch, cw, h)),
            "bottom-right": photo.crop((w - cw, h - ch, w, h)),
            "mirrored": ImageOps.mirror(photo),
        }
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for variant, image in variants.items():
            image.save(folder / f"{name}_{variant}.jpg", quality=92)
    return root


def run_with_explain(loaded, photos: Path, run: Path, methods: list[str]) -> None:
    """The run-folder contract (README, "Explain a whole dataset") from camlens.explain, one batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zarr

    names = loaded.class_names
    paths = sorted(photos.rglob("*.jpg"))
    images = [camlens.load_image(p) for p in paths]
    results = camlens.explain(loaded.model, loaded.preprocess(images), method=methods)
    lowered = [n.lower() for n in names]
    rows = []
    for i, (path, image) in enumerate(zip(paths, images)):
        true = lowered.index(path.parent.name.lower())
        for method, e in results.items():
            logits = e.logits[i]
            probabilities = logits.softmax(-1)
            predicted = int(logits.argmax())
            cls = int(e.classes[i, 0])
            relpath = path.relative_to(photos).as_posix()
            rows.append(dict(
                image_id=i, path=path.as_posix(), relpath=relpath, width=image.width, height=image.height,
                method=method, target_layer=e.target_layer, rank=0, class_index=cls, class_name=names[cls],
                score=float(e.scores[i, 0]), probability=float(probabilities[cls]), predicted_index=predicted,
                predicted_name=names[predicted], true_index=true, true_name=names[true], correct=predicted == true,
                overlay=None, error=None,
            ))
    run.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), run / "manifest.parquet")
    group = zarr.open_group(str(run / "maps.zarr"), mode="w")
    for method, e in results.items():
        raw = e.raw.detach().numpy().astype(np.float16)
        array = group.create_array(method, shape=raw.shape, chunks=(1, *raw.shape[1:]), dtype="float16")
        array[:] = raw
    (run / "run.json").write_text(json.dumps({"model_name": loaded.name, "methods": methods,
                                              "command": "docs/make_report_screenshots.py"}))


def make_run(root: Path) -> Path:
    photos = photo_tree(root / "photos")
    run = root / "run"
    methods = ["gradcam", "cam"]
    if hasattr(camlens, "explain_dataset"):
        camlens.explain_dataset("efficientnet_lite0", photos, method=methods, out=run, labels_from_folders=True,
                                quiet=True)
    else:
        run_with_explain(camlens.load_model("efficientnet_lite0"), photos, run, methods)
    return run


def shoot(run: Path) -> None:
    from playwright.sync_api import sync_playwright

    url = (run / "report" / "index.html").resolve().as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 820}, device_scale_factor=1)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.wait_for_selector("body[data-ready]")
        page.wait_for_timeout(800)
        page.select_option('[name="sort"]', "prob-asc")  # the least sure first: the misclassified ones
        page.wait_for_timeout(500)
        page.screenshot(path=str(IMAGES / "report_grid.png"))
        page.select_option('[name="correct"]', "wrong")
        page.wait_for_timeout(500)
        page.click("[data-image-id] >> nth=0")
        page.wait_for_timeout(900)
        page.screenshot(path=str(IMAGES / "report_detail.png"))
        page.keyboard.press("Escape")
        page.click("#clear")
        page.click('#tabs button[data-view="classes"]')
        page.wait_for_timeout(300)
        page.screenshot(path=str(IMAGES / "report_classes.png"))
        browser.close()
    if errors:
        raise SystemExit(f"the page logged errors: {errors}")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="camlens-report-shots-"))
    try:
        run = make_run(root)
        print(write_report(run, progress=False))
        shoot(run)
        print(f"wrote {IMAGES / 'report_grid.png'}, report_detail.png, report_classes.png")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
