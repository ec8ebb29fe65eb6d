"""``write_report``: a run folder -> ``run/report/`` (index.html, data.js, assets, thumbnails, maps).

The report is a static page: ``index.html`` and its script and style sheet (shipped in
``camlens/viz/report/assets``), ``data.js`` (the manifest as compact columns, the colormaps,
the per-class summary), ``thumbs/`` (one JPEG per image) and ``maps/`` (the raw maps as bytes,
in chunk files). It opens from the file system with no server and no network. Nothing here runs
the model: the maps come from ``maps.zarr``, the photos from the paths in the manifest.

The folder is built under a temporary name beside its destination and renamed into place, so a
reader sees the old report or the new one, never half of one. Thumbnails of a previous report
are reused (hard links) when the photo has not changed since.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import InputError
from ..overlay import colormap_lut
from .pictures import chunk_size, map_bytes, thumbnail_path, write_map_chunk, write_thumbnail
from .runfolder import RunFolder, read_run_folder

__all__ = ["write_report", "ReportStats", "COLORMAPS", "report_data"]

COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "gray")
ASSETS = ("index.html", "report.js", "report.css")
DATA_FORMAT = 1


@dataclass
class ReportStats:
    """What :func:`write_report` did.

    Attributes:
        index: path of ``index.html``.
        images: images in the run (skipped ones included).
        rows: cards (manifest rows with a map: image x method x class).
        skipped: images the run could not read (listed in the report).
        thumbnails: photos decoded into thumbnails now; ``linked``: images whose photo is one
            of those (a hard link or symlink to the same file: they share its thumbnail); ``reused``: thumbnails kept from
            the previous report; ``missing``: photos that could not be found or decoded.
        seconds: wall time; ``thumbnail_seconds``: until the last thumbnail (the maps are
            written meanwhile).
    """

    index: Path
    images: int
    rows: int
    skipped: int
    thumbnails: int
    linked: int
    reused: int
    missing: int
    seconds: float
    thumbnail_seconds: float

    @property
    def images_per_second(self) -> float:
        """Images of the run turned into report pictures per second (thumbnails + maps)."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        return (
            f"wrote {self.index} ({self.images} images, {self.rows} maps, {self.skipped} skipped; "
            f"{self.thumbnails} thumbnails written, {self.linked} linked, {self.reused} reused, {self.missing} photos missing) "
            f"in {self.seconds:.1f} s, {self.images_per_second:.0f} images/s"
        )


def _url(path: str | os.PathLike, start: Path) -> str:
    """A relative URL from folder ``start`` to ``path`` (every character percent-encoded but /)."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    return urllib.parse.quote(Path(relative).as_posix(), safe="/")


def _slug(name: str, taken: set[str]) -> str:
    """A folder name for a method: letters, digits, - and _ only, unique."""
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "method"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}_{n}"
    taken.add(slug)
    return slug


def _round(value: Any, digits: int) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def _model_name(info: dict) -> str | None:
    """The model's name from run.json (``model_name``, or ``model`` as a name or a dict with one)."""
    for value in (info.get("model_name"), info.get("model")):
        if isinstance(value, dict):
            value = value.get("name") or value.get("spec")
        if isinstance(value, str) and value:
            return value
    return None


def _run_info(info: dict) -> dict[str, str]:
    """run.json as short strings for the page's "Run" panel."""
    shown = {}
    for key, value in info.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        shown[str(key)[:80]] = text if len(text) <= 400 else text[:397] + "..."
    return shown


class _Tables:
    """The manifest split into images (one entry each) and cards (rows with a method)."""

    def __init__(self, run: RunFolder) -> None:
        m = run.manifest
        n = run.num_rows
        images: dict[int, int] = {}
        self.cards: list[int] = []
        self.skipped: list[int] = []
        for i in range(n):
            image_id = int(m["image_id"][i])
            if image_id not in images:
                images[image_id] = i
            if m["error"][i] is not None:
                self.skipped.append(i)
            elif m["method"][i] is not None:
                self.cards.append(i)
        self.image_ids = sorted(images)
        self.first_row = [images[i] for i in self.image_ids]
        self.position = {image_id: p for p, image_id in enumerate(self.image_ids)}
        present = []
        for i in self.cards:
            if m["method"][i] not in present:
                present.append(m["method"][i])
        listed = run.info.get("methods") if isinstance(run.info.get("methods"), list) else []
        self.methods = [x for x in listed if x in present] + sorted(x for x in present if x not in listed)
        self.labels = any(m["true_index"][i] is not None for i in self.first_row)


def _class_names(m: dict[str, list], rows: list[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for index_col, name_col in (("class_index", "class_name"), ("predicted_index", "predicted_name"), ("true_index", "true_name")):
        for i in rows:
            index = m[index_col][i]
            if index is not None and int(index) not in names:
                name = m[name_col][i]
                names[int(index)] = str(name) if name is not None else f"class {int(index)}"
    return names


def report_data(run: RunFolder, out: Path, tables: _Tables, method_dirs: list[str], chunks: dict[str, int],
                has_map: list[bool], photos: dict[int, Path | None], thumbs: dict[int, int],
                class_maps: dict[str, dict[int, tuple[int, int, str]]]) -> dict[str, Any]:
    """The page's data: compact columns (one list per field) so 20,000 images parse in milliseconds."""
    m = run.manifest
    first = tables.first_row
    method_index = {name: j for j, name in enumerate(tables.methods)}
    pred_prob: dict[int, float] = {}
    for i in tables.cards:
        if m["class_index"][i] is not None and m["class_index"][i] == m["predicted_index"][i] and m["probability"][i] is not None:
            pred_prob.setdefault(int(m["image_id"][i]), float(m["probability"][i]))
    paths = [str(m["path"][i]) for i in first]
    order = sorted(range(len(paths)), key=lambda p: (str(m["relpath"][first[p]] or paths[p]), p))
    path_rank = [0] * len(paths)
    for rank, p in enumerate(order):
        path_rank[p] = rank
    layers: dict[str, str] = {}
    for i in tables.cards:
        layers.setdefault(m["method"][i], str(m["target_layer"][i] or ""))
    image_ids = tables.image_ids
    overlays = []
    for i in tables.cards:
        overlay = m["overlay"][i]
        overlays.append(_url(run.path / overlay, out) if overlay else None)

    names = _class_names(m, tables.cards + first)
    groups = _class_summary(m, tables, names)
    for group in groups:
        group["maps"] = {}
        for name in tables.methods:
            entry = class_maps.get(name, {}).get(group["index"])
            if entry is not None:
                group["maps"][str(method_index[name])] = {"h": entry[0], "w": entry[1], "data": entry[2]}

    return {
        "format": DATA_FORMAT,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "title": f"camlens report: {run.path.resolve().name}",
        "runUrl": _url(run.path, out),
        "model": _model_name(run.info),
        "run": _run_info(run.info),
        "labels": tables.labels,
        "methods": [
            {"name": name, "dir": method_dirs[j], "layer": layers.get(name, ""), "chunk": chunks.get(name, 0)}
            for j, name in enumerate(tables.methods)
        ],
        "classNames": {str(k): v for k, v in sorted(names.items())},
        "images": {
            "id": image_ids,
            "path": paths,
            "relpath": [str(m["relpath"][i] or m["path"][i]) for i in first],
            "width": [m["width"][i] for i in first],
            "height": [m["height"][i] for i in first],
            "pred": [m["predicted_index"][i] for i in first],
            "predProb": [_round(pred_prob.get(image_id), 4) for image_id in image_ids],
            "true": [m["true_index"][i] for i in first],
            "correct": [None if m["correct"][i] is None else bool(m["correct"][i]) for i in first],
            "photo": [_url(photos[image_id], out) if photos.get(image_id) else None for image_id in image_ids],
            "thumb": [thumbs.get(image_id) for image_id in image_ids],
            "pathRank": path_rank,
        },
        "rows": {
            "image": [tables.position[int(m["image_id"][i])] for i in tables.cards],
            "method": [method_index[m["method"][i]] for i in tables.cards],
            "rank": [int(m["rank"][i] or 0) for i in tables.cards],
            "cls": [m["class_index"][i] for i in tables.cards],
            "score": [_round(m["score"][i], 4) for i in tables.cards],
            "prob": [_round(m["probability"][i], 4) for i in tables.cards],
            "map": [1 if flag else 0 for flag in has_map],
            "overlay": overlays,
        },
        "skipped": [{"path": str(m["path"][i]), "error": str(m["error"][i])} for i in tables.skipped],
        "classes": groups,
        "groupBy": "true" if tables.labels else "predicted",
        "colormaps": {name: (colormap_lut(name).numpy() * 255).round().astype(int).flatten().tolist() for name in COLORMAPS},
    }


def _class_summary(m: dict[str, list], tables: _Tables, names: dict[int, str]) -> list[dict[str, Any]]:
    """Per class (the true class when labels exist, else the predicted one): images, accuracy, confusions."""
    key = "true_index" if tables.labels else "predicted_index"
    groups: dict[int, dict[str, Any]] = {}
    for i in tables.first_row:
        if m["error"][i] is not None or m[key][i] is None:
            continue
        index = int(m[key][i])
        group = groups.setdefault(index, {"index": index, "images": 0, "correct": 0, "predicted": {}})
        group["images"] += 1
        if m["correct"][i]:
            group["correct"] += 1
        if tables.labels and m["predicted_index"][i] is not None and not m["correct"][i]:
            wrong = int(m["predicted_index"][i])
            group["predicted"][wrong] = group["predicted"].get(wrong, 0) + 1
    result = []
    for group in sorted(groups.values(), key=lambda g: (-g["images"], names.get(g["index"], ""))):
        confusions = sorted(group.pop("predicted").items(), key=lambda kv: -kv[1])[:3]
        group["confusedWith"] = [[index, count] for index, count in confusions]
        group["accuracy"] = round(group["correct"] / group["images"], 4) if tables.labels and group["images"] else None
        result.append(group)
    return result


def _write_maps(run: RunFolder, tables: _Tables, folder: Path, method_dirs: list[str]):
    """maps/<method>/<chunk>.js for every method; the per-class mean maps; which rows have a map."""
    m = run.manifest
    key = "true_index" if tables.labels else "predicted_index"
    rows_of: dict[str, list[int]] = {name: [] for name in tables.methods}
    for position, i in enumerate(tables.cards):
        rows_of[m["method"][i]].append(position)
    has_map = [False] * len(tables.cards)
    chunks: dict[str, int] = {}
    class_maps: dict[str, dict[int, tuple[int, int, str]]] = {}
    for j, name in enumerate(tables.methods):
        array = run.maps(name)
        if array is None or array.ndim != 4:
            continue
        n, k, h, w = array.shape
        size = chunk_size(k, h, w)
        chunks[name] = size
        wanted: dict[int, list[int]] = {}
        for position in rows_of[name]:
            i = tables.cards[position]
            wanted.setdefault(int(m["image_id"][i]) // size, []).append(position)
        sums: dict[int, np.ndarray] = {}
        counts: dict[int, int] = {}
        for chunk in sorted(wanted):
            first = chunk * size
            if first >= n:
                continue
            pictures, finite = map_bytes(array[first : min(n, first + size)])
            write_map_chunk(folder / "maps" / method_dirs[j] / f"{chunk}.js", j, chunk, first, pictures)
            for position in wanted[chunk]:
                i = tables.cards[position]
                local, rank = int(m["image_id"][i]) - first, int(m["rank"][i] or 0)
                if local >= len(finite) or rank >= k or not finite[local, rank]:
                    continue
                has_map[position] = True
                group = m[key][i]
                if rank == 0 and group is not None:
                    group = int(group)
                    sums[group] = sums.get(group, 0) + pictures[local, 0].astype(np.float64)
                    counts[group] = counts.get(group, 0) + 1
        class_maps[name] = {
            group: (h, w, base64.b64encode((sums[group] / counts[group] + 0.5).astype(np.uint8).tobytes()).decode("ascii"))
            for group in sums
        }
    return has_map, chunks, class_maps


def _previous_thumbnails(out: Path) -> dict[str, list]:
    try:
        return json.loads((out / "thumbs" / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class _Thumbnails:
    """Thumbnails written by a thread pool while the caller does other work (the maps).

    A photo reached by several paths (hard links, symlinks: an ImageFolder tree made of links)
    is decoded and stored once, and its images share that file; a thumbnail of the previous
    report is kept (hard-linked) when its photo has not changed since.

    After :meth:`finish`, ``thumb_of[image_id]`` is the id whose thumbnail file shows that image.
    """

    def __init__(self, jobs: list[tuple[int, Path]], folder: Path, out: Path, size: int, workers: int,
                 progress: bool) -> None:
        from tqdm import tqdm

        self.folder, self.size = folder, size
        self.thumb_of: dict[int, int] = {}
        self.index: dict[str, list] = {}
        self.reused = self.linked = 0
        previous = _previous_thumbnails(out)
        first_of: dict[tuple, int] = {}
        self.copies: list[tuple[int, int]] = []  # (image_id, image_id of the same photo)
        todo = []
        for image_id, photo in jobs:
            try:
                stat = photo.stat()
            except OSError:
                continue
            same = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if same in first_of:
                self.copies.append((image_id, first_of[same]))
                continue
            first_of[same] = image_id
            key = [str(photo), stat.st_mtime_ns, stat.st_size, size]
            if previous.get(str(image_id)) == key and thumbnail_path(out, image_id).is_file():
                _link(thumbnail_path(out, image_id), thumbnail_path(folder, image_id))
                self.thumb_of[image_id] = image_id
                self.index[str(image_id)] = key
                self.reused += 1
            else:
                todo.append((image_id, photo, key))
        self.written = len(todo)
        self.bar = tqdm(total=len(todo), desc="thumbnails", unit="img", disable=not progress or not todo)
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.futures = [self.pool.submit(self._one, job) for job in todo]

    def _one(self, job):
        image_id, photo, key = job
        written = write_thumbnail(photo, thumbnail_path(self.folder, image_id), self.size)
        self.bar.update()
        return image_id, key, written

    def finish(self) -> None:
        """Wait for the pool; images of the same photo share its thumbnail."""
        try:
            for future in self.futures:
                image_id, key, written = future.result()
                if written is not None:
                    self.thumb_of[image_id] = image_id
                    self.index[str(image_id)] = key
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.bar.close()
        for image_id, source_id in self.copies:
            if source_id in self.thumb_of:
                self.thumb_of[image_id] = source_id
                self.linked += 1
        (self.folder / "thumbs").mkdir(exist_ok=True)
        (self.folder / "thumbs" / "index.json").write_text(json.dumps(self.index), encoding="utf-8")


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _prepare_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"report folder {str(out)!r} is a file; pass another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise InputError(
            f"{str(out)!r} exists and does not hold a camlens report, so it is left alone; pass another --out"
        )


def _swap_into_place(folder: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; the previous report (if any) is removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{os.getpid()}-{time.time_ns()}")
        os.replace(out, old)
    os.replace(folder, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_report(run: str | os.PathLike | RunFolder, out: str | os.PathLike | None = None, *,
                 thumb_size: int = 240, workers: int | None = None, progress: bool | None = None) -> ReportStats:
    """Write the HTML report of a run folder (``run/report/index.html`` by default).

    Args:
        run: the run folder (the ``--out`` of ``camlens explain``), or a :class:`RunFolder`.
        out: where to write the report (default ``run/report``). An existing report there is
            replaced; any other non-empty folder is an error.
        thumb_size: longest side of the photo thumbnails, in pixels. 240 covers the default
            220-pixel cards and lets a 500x375 JPEG (ImageNet's usual size) decode at half
            scale.
        workers: threads writing thumbnails (default: the CPU count, at most 8).
        progress: a progress bar for the thumbnails (default: when stderr is a terminal).

    Returns:
        :class:`ReportStats` (``str()`` of it is a one-line summary).

    The run may still be in progress: the report shows what has been written so far.
    """
    started = time.perf_counter()
    if not isinstance(thumb_size, int) or not 16 <= thumb_size <= 2048:
        raise InputError(f"thumb_size must be an int between 16 and 2048, got {thumb_size!r}")
    run = run if isinstance(run, RunFolder) else read_run_folder(run)
    out = Path(out) if out is not None else run.path / "report"
    _prepare_destination(out)
    workers = workers or min(8, os.cpu_count() or 1)
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    tables = _Tables(run)
    taken: set[str] = set()
    method_dirs = [_slug(name, taken) for name in tables.methods]

    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.with_name(f".{out.name}-tmp-{os.getpid()}-{time.time_ns()}")
    folder.mkdir()
    try:
        photos: dict[int, Path | None] = {}
        jobs = []
        for image_id, i in zip(tables.image_ids, tables.first_row):
            photo = run.photo_path(str(run.manifest["path"][i]))
            photos[image_id] = photo
            if photo is not None and run.manifest["error"][i] is None:
                jobs.append((image_id, photo))
        thumb_started = time.perf_counter()
        thumbnails = _Thumbnails(jobs, folder, out, thumb_size, workers, progress)
        try:
            has_map, chunks, class_maps = _write_maps(run, tables, folder, method_dirs)  # while the pool works
        finally:
            thumbnails.finish()
        thumb_seconds = time.perf_counter() - thumb_started
        thumbs = thumbnails.thumb_of
        data = report_data(run, out, tables, method_dirs, chunks, has_map, photos, thumbs, class_maps)
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        (folder / "data.js").write_text(f"window.CAMLENS_REPORT = {text};\n", encoding="ascii")
        assets = resources.files("camlens.viz.report").joinpath("assets")
        (folder / "assets").mkdir()
        for name in ASSETS:
            content = assets.joinpath(name).read_bytes()
            (folder / (name if name == "index.html" else f"assets/{name}")).write_bytes(content)
        _swap_into_place(folder, out)
    finally:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
    missing = sum(1 for image_id, i in zip(tables.image_ids, tables.first_row)
                  if run.manifest["error"][i] is None and image_id not in thumbs)
    return ReportStats(
        index=out / "index.html", images=len(tables.image_ids), rows=len(tables.cards), skipped=len(tables.skipped),
        thumbnails=thumbnails.written, linked=thumbnails.linked, reused=thumbnails.reused, missing=missing, seconds=time.perf_counter() - started,
        thumbnail_seconds=thumb_seconds,
    )
