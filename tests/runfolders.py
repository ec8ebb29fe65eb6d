"""Run folders for the report tests, written to the contract of the dataset issue (#15).

``make_run`` writes what ``camlens explain IMAGES --out run/`` writes: ``manifest.parquet``
(pyarrow; optionally as a folder of parts), ``maps.zarr`` (zarr 3, one ``(n, K, h, w)`` float16
array per method, NaN for skipped images) and ``run.json``, with synthetic JPEG photos whose
predictions and labels are drawn from a seeded generator. Nothing here runs a model, so a
20,000-image run takes seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

CLASS_NAMES = ["tabby cat", "espresso", "rocket", "golden retriever", "tench", "church", "parachute", "cassette player"]


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A colour gradient with a bright blob: cheap, and not one flat colour."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    blob = np.exp(-(((y - cy) / (0.25 * height)) ** 2 + ((x - cx) / (0.25 * width)) ** 2))
    pixels = base * (0.4 + 0.6 * x[..., None] / max(1, width - 1)) * 0.7 + 180 * blob[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_run(
    folder: Path,
    n: int = 12,
    *,
    methods: Sequence[str] = ("gradcam", "cam"),
    k: int = 1,
    labels: bool = True,
    class_names: Sequence[str] = CLASS_NAMES,
    names: Sequence[str] | None = None,
    errors: Sequence[int] = (),
    photo_size: tuple[int, int] = (64, 48),
    distinct_photos: int | None = None,
    map_size: tuple[int, int] = (7, 7),
    parts: int = 1,
    images_per_chunk: int = 1,
    overlays: bool = False,
    accuracy: float = 0.7,
    seed: int = 0,
    photos: Sequence[Path] | None = None,
) -> Path:
    """Write a contract-conforming run folder at ``folder``; photos go to ``folder.parent/photos``.

    Args:
        n: images. ``names``: their file names (default ``img_00000.jpg``...), under a folder
            per true class. ``errors``: image ids recorded as skipped (one row, ``error`` set).
        distinct_photos: write only this many photo files and hard-link the rest to them
            (fast 20,000-image runs; every image still has its own path).
        parts: manifest rows in this many Parquet files under ``manifest.parquet/``
            (1: a single file).
        images_per_chunk: zarr chunking along the images (the contract writes 1; the report
            reads any chunking).
        overlays: also write overlay PNGs under ``overlays/`` (else the column is null).
        photos: existing photo files to use as the ``n`` images (their real sizes are recorded)
            instead of writing synthetic ones.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zarr

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    photo_root = folder.parent / "photos"
    classes = len(class_names)
    truth = rng.integers(0, classes, size=n)
    right = rng.random(n) < accuracy
    predicted = np.where(right, truth, (truth + rng.integers(1, classes, size=n)) % classes)
    logits = rng.normal(0, 1, size=(n, classes)).astype(np.float32)
    logits[np.arange(n), predicted] += rng.uniform(0.5, 6, size=n)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    order = np.argsort(-logits, axis=1)[:, :k]
    raw = {m: rng.normal(0, 1, size=(n, k, *map_size)).astype(np.float16) for m in methods}
    errors = set(errors)

    rows: dict[str, list] = {c: [] for c in (
        "image_id", "path", "relpath", "width", "height", "method", "target_layer", "rank", "class_index",
        "class_name", "score", "probability", "predicted_index", "predicted_name", "true_index", "true_name",
        "correct", "overlay", "error")}
    width, height = photo_size
    written: list[Path] = []
    for i in range(n):
        name = names[i] if names is not None else f"img_{i:05d}.jpg"
        relpath = f"{class_names[truth[i]].replace(' ', '_')}/{name}"
        path = photo_root / relpath
        if photos is not None:
            path = Path(photos[i])
            relpath = f"{class_names[truth[i]].replace(' ', '_')}/{path.name}"
            with Image.open(path) as photo:
                width, height = photo.size
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if i in errors:
                path.write_bytes(b"not an image")
            elif distinct_photos is not None and len(written) >= distinct_photos:
                if path.exists():
                    path.unlink()
                os.link(written[i % distinct_photos], path)
            else:
                synthetic_photo(rng, width, height).save(path, quality=85)
                written.append(path)
        image_columns = dict(image_id=i, path=path.as_posix(), relpath=relpath, width=width, height=height)
        if i in errors:
            for c in rows:
                rows[c].append(image_columns.get(c))
            rows["error"][-1] = "cannot read image: not an image file PIL can decode (UnidentifiedImageError)"
            for m in methods:
                raw[m][i] = np.nan
            continue
        for m in methods:
            for rank in range(k):
                cls = int(order[i, rank])
                overlay = None
                if overlays:
                    overlay = f"overlays/{Path(relpath).with_suffix('').as_posix()}/{m}_{rank}_{class_names[cls].replace(' ', '-')}.png"
                    target = folder / overlay
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (width, height), (200, 40, 40)).save(target)
                values = dict(
                    image_columns, method=m, target_layer="layer4", rank=rank, class_index=cls,
                    class_name=class_names[cls], score=float(logits[i, cls]), probability=float(probabilities[i, cls]),
                    predicted_index=int(predicted[i]), predicted_name=class_names[predicted[i]],
                    true_index=int(truth[i]) if labels else None, true_name=class_names[truth[i]] if labels else None,
                    correct=bool(right[i]) if labels else None, overlay=overlay, error=None,
                )
                for c in rows:
                    rows[c].append(values[c])

    schema = pa.schema([
        ("image_id", pa.int64()), ("path", pa.string()), ("relpath", pa.string()), ("width", pa.int32()),
        ("height", pa.int32()), ("method", pa.string()), ("target_layer", pa.string()), ("rank", pa.int32()),
        ("class_index", pa.int64()), ("class_name", pa.string()), ("score", pa.float32()),
        ("probability", pa.float32()), ("predicted_index", pa.int64()), ("predicted_name", pa.string()),
        ("true_index", pa.int64()), ("true_name", pa.string()), ("correct", pa.bool_()), ("overlay", pa.string()),
        ("error", pa.string()),
    ])
    table = pa.table(rows, schema=schema)
    if parts == 1:
        pq.write_table(table, folder / "manifest.parquet")
    else:
        (folder / "manifest.parquet").mkdir()
        bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
        for p in range(parts):
            pq.write_table(table.slice(bounds[p], bounds[p + 1] - bounds[p]), folder / "manifest.parquet" / f"part-{p:05d}.parquet")

    group = zarr.open_group(str(folder / "maps.zarr"), mode="w")
    for m in methods:
        array = group.create_array(m, shape=(n, k, *map_size), chunks=(images_per_chunk, k, *map_size),
                                   dtype="float16", fill_value=np.nan)
        array[:] = raw[m]
    (folder / "run.json").write_text(json.dumps({
        "model": "synthetic", "weights": None, "methods": list(methods), "classes": f"top{k}",
        "target_layers": {m: "layer4" for m in methods}, "input_size": [3, 224, 224],
        "counts": {"images": n, "skipped": len(errors)}, "command": "tests/runfolders.py",
    }), encoding="utf-8")
    return folder
