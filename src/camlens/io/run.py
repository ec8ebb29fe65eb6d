"""The run folder: what :func:`camlens.explain_dataset` writes and :func:`open_run` reads.

The contract (README, "Explain a whole dataset"; the report reads it)::

    run/
      run.json                 model, methods, classes, layers, preprocessing, versions, counts, times
      manifest.parquet/        a directory of Parquet parts, one per committed batch
        part-000000000-000000015.parquet     (pyarrow.parquet.read_table("run/manifest.parquet") reads all)
      maps.zarr/               a Zarr 3 group: one float16 array per method, (n_images, K, h, w),
                               one image per chunk, Explanation.raw; NaN where nothing was written
      overlays/<relpath without suffix>/<method>_<rank>_<class index>-<class name>.png

Crash safety: every file is written under a temporary name and renamed (Zarr's local store
does the same for each chunk); a batch's maps and overlays are written before its manifest
part, so an image is *done* exactly when a part lists it. Resuming redoes every image that no
part lists; a reader never sees a half-written file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..core.errors import InputError
from .files import atomic_write
from .png import encode_png

__all__ = [
    "FORMAT", "MANIFEST", "MAPS", "RUN_JSON", "OVERLAYS", "manifest_schema", "class_slug", "overlay_path",
    "prepare_out", "RunWriter", "Run", "open_run",
]

FORMAT = "camlens-run/1"
MANIFEST, MAPS, RUN_JSON, OVERLAYS = "manifest.parquet", "maps.zarr", "run.json", "overlays"
RUN_ENTRIES = (MANIFEST, MAPS, RUN_JSON, OVERLAYS)

# (column, pyarrow type name, meaning): the manifest's columns in order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("image_id", "int64", "0..n-1 in source order"),
    ("path", "string", "where the image was found (posix), or dataset[i]"),
    ("relpath", "string", "unique within the run; the overlays mirror it"),
    ("width", "int32", "of the decoded image"),
    ("height", "int32", "of the decoded image"),
    ("method", "string", "method name (the maps.zarr array)"),
    ("target_layer", "string", "layer the map comes from"),
    ("rank", "int32", "0 = the first class explained for that image"),
    ("class_index", "int64", "class explained"),
    ("class_name", "string", "its name (\"class 17\" when the model has none)"),
    ("score", "float32", "the explained score (the logit)"),
    ("probability", "float32", "softmax of the logits; null where the output is not logits"),
    ("predicted_index", "int64", "argmax of the output"),
    ("predicted_name", "string", "its name"),
    ("true_index", "int64", "true class (null without labels)"),
    ("true_name", "string", "its name (null without labels)"),
    ("correct", "bool", "predicted_index == true_index (null without labels)"),
    ("overlay", "string", "PNG path relative to the run folder (null with --no-overlays)"),
    ("error", "string", "null, or why the image was skipped (then one row, only image columns set)"),
)


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("run folders need pyarrow and zarr: pip install 'camlens[dataset]'") from None
    return pyarrow


def _zarr():
    try:
        import zarr
    except ImportError:
        raise InputError("run folders need pyarrow and zarr>=3: pip install 'camlens[dataset]'") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise InputError(f"run folders need zarr>=3 (found {zarr.__version__}): pip install -U 'zarr>=3'")
    return zarr


def manifest_schema():
    """The manifest's pyarrow schema (:data:`COLUMNS`)."""
    pa = _pyarrow()
    return pa.schema([(name, getattr(pa, kind)() if kind != "bool" else pa.bool_()) for name, kind, _ in COLUMNS])


def class_slug(text: str) -> str:
    """A file-name-safe lower-case version of a class name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def overlay_path(relpath: str, method: str, rank: int, class_index: int, class_name: str) -> str:
    """``overlays/<relpath without suffix>/<method>_<rank>_<index>-<name>.png`` (relative to the run)."""
    stem = relpath.rsplit(".", 1)[0] if "." in relpath.rsplit("/", 1)[-1] else relpath
    return f"{OVERLAYS}/{stem}/{method}_{rank}_{class_index}-{class_slug(class_name)}.png"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def read_run_json(path: str | os.PathLike) -> dict | None:
    target = Path(path) / RUN_JSON
    try:
        return json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {target}: {error.__class__.__name__}: {error}") from None


def prepare_out(out: str | os.PathLike, resume: bool, overwrite: bool) -> tuple[Path, dict | None]:
    """Check the output folder before any work; returns it and the run.json to resume (if any).

    An existing file, a folder that cannot be written, or a non-empty folder without
    ``resume``/``overwrite`` is an error. ``overwrite`` removes only a run's own entries
    (run.json, manifest.parquet, maps.zarr, overlays).
    """
    path = Path(out).expanduser()
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: resume keeps the run, overwrite starts it again")
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {str(path)!r} is a file; name a folder for the run")
    existing = read_run_json(path) if path.is_dir() else None
    if path.is_dir() and any(path.iterdir()):
        if resume:
            if existing is None:
                raise InputError(f"cannot resume: {str(path)!r} holds no {RUN_JSON}, so it is not a camlens run; "
                                 "use another --out or --overwrite")
        elif not overwrite:
            hint = "--resume to finish it or --overwrite to start again" if existing else "--overwrite, or another --out"
            raise InputError(f"--out {str(path)!r} is not empty; pass {hint}")
    probe_dir = path if path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
    try:
        probe_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=".camlens-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as error:
        raise InputError(f"--out {str(path)!r} cannot be written ({error.strerror or error}); pick a writable folder") from None
    return path, (existing if resume else None)


class RunWriter:
    """Writes one run folder: the arrays and run.json at the start, then per batch maps, overlays, a manifest part.

    Several writers (Ray actors) may write the same run: each image's chunk and overlays are
    its own files; only the driver commits manifest parts and run.json.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._arrays: dict[str, Any] = {}

    # --- the run as a whole (driver) -------------------------------------------------------
    @classmethod
    def create(cls, path: Path, info: dict, map_shapes: dict[str, Sequence[int]], overwrite: bool = False) -> "RunWriter":
        """A new run: remove a previous one (``overwrite``), create the arrays (all NaN) and run.json."""
        zarr = _zarr()
        if overwrite:
            for entry in RUN_ENTRIES:
                target = path / entry
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        path.mkdir(parents=True, exist_ok=True)
        (path / MANIFEST).mkdir(exist_ok=True)
        group = zarr.open_group(str(path / MAPS), mode="w", zarr_format=3)
        group.attrs.update({"format": FORMAT, "description": "Explanation.raw per image: (n_images, K, h, w)"})
        for method, shape in map_shapes.items():
            group.create_array(method, shape=tuple(int(s) for s in shape), chunks=(1, *[int(s) for s in shape[1:]]),
                               dtype="float16", fill_value=np.nan, dimension_names=("image_id", "rank", "y", "x"))
        writer = cls(path)
        writer.write_info(info)
        return writer

    def write_info(self, info: dict) -> None:
        _write_json(self.path / RUN_JSON, info)

    def done_ids(self) -> set[int]:
        """Image ids that a committed manifest part lists."""
        return committed_ids(self.path)

    def commit(self, rows: Sequence[dict]) -> Path | None:
        """Write one batch's manifest rows as a Parquet part (temporary name, then rename)."""
        if not rows:
            return None
        pa = _pyarrow()
        import pyarrow.parquet as pq

        schema = manifest_schema()
        table = pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
        ids = [row["image_id"] for row in rows]
        target = self.path / MANIFEST / f"part-{min(ids):09d}-{max(ids):09d}.parquet"
        return atomic_write(target, lambda tmp: pq.write_table(table, tmp))

    # --- per image (driver or actor) ----------------------------------------------------------
    def _array(self, method: str):
        if method not in self._arrays:
            zarr = _zarr()
            self._arrays[method] = zarr.open_array(str(self.path / MAPS / method), mode="r+")
        return self._arrays[method]

    def write_maps(self, method: str, image_id: int, raw: np.ndarray) -> None:
        """``raw`` (K, h, w) as the image's chunk of ``maps.zarr/<method>``."""
        array = self._array(method)
        if tuple(raw.shape) != tuple(array.shape[1:]):
            raise InputError(f"{method}: map of shape {tuple(raw.shape)} for an array of {tuple(array.shape[1:])} "
                             "(the model gave a different map size for this image)")
        array[int(image_id)] = raw.astype(np.float16)

    def write_overlay(self, relative: str, rgb) -> str:
        """Save an (H, W, 3) uint8 image (tensor or array) as PNG at ``relative`` (from :func:`overlay_path`), atomically.

        Encoded by :func:`camlens.io.png.encode_png` (one fixed row filter, Huffman-only zlib):
        about twice as fast as Pillow's PNG writer on overlays (``benchmarks/bench_dataset.py``).
        """
        data = encode_png(rgb)
        atomic_write(self.path / relative, lambda tmp: Path(tmp).write_bytes(data))
        return relative


def committed_ids(path: str | os.PathLike) -> set[int]:
    """Image ids listed by the manifest parts of the run at ``path``."""
    folder = Path(path) / MANIFEST
    if not folder.is_dir():
        return set()
    import pyarrow.parquet as pq

    done: set[int] = set()
    for part in sorted(folder.glob("part-*.parquet")):
        done.update(pq.read_table(part, columns=["image_id"]).column("image_id").to_pylist())
    return done


class Run:
    """A run folder, read-only; works while another process is still writing it.

    Attributes:
        path: the folder. ``info``: run.json as a dict (re-read on each access).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if read_run_json(self.path) is None:
            raise InputError(f"{str(self.path)!r} is not a camlens run folder (no {RUN_JSON}); "
                             "make one with camlens.explain_dataset or `camlens explain ... --out`")

    @property
    def info(self) -> dict:
        return read_run_json(self.path) or {}

    @property
    def manifest(self):
        """The manifest rows committed so far, as a pyarrow Table in image order (then method, rank as written)."""
        pa = _pyarrow()
        import pyarrow.parquet as pq

        folder = self.path / MANIFEST
        parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
        if not parts:
            return manifest_schema().empty_table()
        table = pa.concat_tables([pq.read_table(p, schema=manifest_schema()) for p in parts])
        return table.sort_by([("image_id", "ascending")])  # stable: methods and ranks keep their order

    @property
    def methods(self) -> list[str]:
        return list(self.info.get("methods", []))

    def maps(self, method: str):
        """The zarr array ``(n_images, K, h, w)`` float16 of ``method`` (NaN for images not written)."""
        zarr = _zarr()
        if method not in self.methods:
            raise InputError(f"this run has no maps for {method!r}; it has {', '.join(self.methods)}")
        return zarr.open_array(str(self.path / MAPS / method), mode="r")

    def image(self, image_id: int):
        """The decoded image ``image_id`` (a PIL image), read again from its path."""
        from .images import load_image

        table = self.manifest
        import pyarrow.compute as pc

        rows = table.filter(pc.equal(table["image_id"], int(image_id)))
        if rows.num_rows == 0:
            raise InputError(f"image_id {image_id} is not in the manifest (yet); it has {self.info.get('n_images')} images")
        path = rows["path"][0].as_py()
        if path.startswith("dataset["):
            raise InputError(f"image {image_id} came from a torch Dataset ({path}); read it from the dataset")
        return load_image(path)

    def summary(self) -> dict:
        """Counts, skipped images with their reasons, accuracy (with labels), time and throughput."""
        info = self.info
        table = self.manifest
        columns = table.select(["image_id", "error", "correct", "rank", "method"]).to_pylist()
        done = {row["image_id"] for row in columns}
        errors = {row["image_id"]: row["error"] for row in columns if row["error"] is not None}
        first = [row for row in columns if row["rank"] == 0 and row["error"] is None
                 and row["method"] == (self.methods[0] if self.methods else row["method"])]
        labelled = [row["correct"] for row in first if row["correct"] is not None]
        seconds = sum(s.get("seconds", 0.0) for s in info.get("sessions", []))
        if info.get("status") == "running" and info.get("sessions"):  # being written, or killed: up to the last commit
            last = max((p.stat().st_mtime for p in iter_parts(self.path)), default=None)
            started = info["sessions"][-1].get("started_unix")
            if last is not None and started is not None:
                seconds += max(0.0, last - started)
        reasons = Counter(_reason(e) for e in errors.values())
        return {
            "status": info.get("status"),
            "images": info.get("n_images"),
            "done": len(done),
            "explained": len(done) - len(errors),
            "skipped": len(errors),
            "skipped_reasons": dict(reasons.most_common()),
            "rows": table.num_rows,
            "methods": self.methods,
            "accuracy": (sum(labelled) / len(labelled)) if labelled else None,
            "seconds": round(seconds, 2),
            "images_per_second": round(len(done) / seconds, 2) if seconds > 0 else None,
        }

    def __repr__(self) -> str:
        s = self.summary()
        return f"Run({str(self.path)!r}, status={s['status']!r}, images={s['done']}/{s['images']}, skipped={s['skipped']})"

    def _repr_html_(self, cards: int = 8) -> str:
        s = self.summary()
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in s.items())
        table = self.manifest.select(["relpath", "method", "rank", "class_name", "score", "predicted_name", "true_name",
                                      "overlay", "error"]).to_pylist()
        first_method = self.methods[0] if self.methods else None
        shown = []
        for row in table:  # one card per image: the first method's first class
            if len(shown) >= cards:
                break
            if row["overlay"] and row["rank"] == 0 and row["method"] == first_method and (self.path / row["overlay"]).exists():
                lines = [row["relpath"], f"{row['method']}: {row['class_name']} ({row['score']:.3g})"]
                if row["true_name"] is not None:
                    lines.append(f"true: {row['true_name']}")
                caption = "<br>".join(html.escape(line) for line in lines)
                shown.append(f"<figure style='display:inline-block;margin:4px;width:180px;font-size:11px'>"
                             f"<img src='data:image/jpeg;base64,{_thumbnail(self.path / row['overlay'])}' "
                             f"style='width:180px'><figcaption>{caption}</figcaption></figure>")
        return (f"<div><b>camlens run</b> <code>{html.escape(str(self.path))}</code>"
                f"<table>{rows}</table><div>{''.join(shown)}</div></div>")


def _reason(error: str) -> str:
    """The kind of an error message, for counting (``cannot read image '...': not an image`` -> ``not an image``)."""
    tail = error.split(": ", 1)[-1] if error.startswith("cannot read image") else error
    return re.sub(r"\s*\([^)]*\)\s*$", "", tail)[:80]


def _thumbnail(path: Path, size: int = 180) -> str:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def open_run(path: str | os.PathLike) -> Run:
    """Open a run folder written by :func:`camlens.explain_dataset` (also while it is being written)."""
    return Run(path)


def iter_parts(path: str | os.PathLike) -> Iterable[Path]:
    folder = Path(path) / MANIFEST
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
