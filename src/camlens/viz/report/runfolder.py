"""Read a run folder (the contract of ``camlens explain ... --out run/``) for the report.

Only what the report needs, with pyarrow and zarr 3 (the ``camlens[report]`` extra, in
``camlens[dev]``): ``manifest.parquet`` (a file, or a folder of parts that
``pyarrow.parquet.read_table`` reads whole), ``maps.zarr`` (one ``(n_images, K, h, w)`` array
per method) and ``run.json``. Nothing here runs a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import InputError

__all__ = ["RunFolder", "read_run_folder", "MANIFEST_COLUMNS", "require"]

MANIFEST_COLUMNS = (
    "image_id", "path", "relpath", "width", "height", "method", "target_layer", "rank", "class_index",
    "class_name", "score", "probability", "predicted_index", "predicted_name", "true_index", "true_name",
    "correct", "overlay", "error",
)


def require(module: str, what: str):
    """Import an optional dependency or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{what} needs {module.split('.')[0]}: pip install 'camlens[report]'") from None


@dataclass
class RunFolder:
    """A run folder as the report reads it.

    Attributes:
        path: the run folder.
        manifest: the manifest as a dict of column name -> Python list (one entry per row).
        info: the parsed ``run.json`` (empty when the file is missing).
        maps_path: ``run/maps.zarr``.
    """

    path: Path
    manifest: dict[str, list]
    info: dict[str, Any] = field(default_factory=dict)
    maps_path: Path | None = None

    @property
    def num_rows(self) -> int:
        return len(self.manifest["image_id"])

    def maps(self, method: str):
        """The zarr array ``(n_images, K, h, w)`` of ``method`` (None when the run has none)."""
        if self.maps_path is None:
            return None
        zarr = require("zarr", "reading maps.zarr")
        group = zarr.open_group(str(self.maps_path), mode="r")
        return group[method] if method in group else None

    def photo_path(self, path: str) -> Path | None:
        """Where the photo of a manifest ``path`` is now (None when it cannot be found).

        An absolute path is used as is; a relative one is tried against the run's working folder
        (``run.json`` ``cwd``, when recorded), the current folder, the run folder's parent and
        the run folder.
        """
        candidate = Path(path)
        if candidate.is_absolute():
            return candidate if candidate.is_file() else None
        bases = [self.info.get("cwd"), os.getcwd(), self.path.parent, self.path]
        for base in bases:
            if base and (Path(base) / candidate).is_file():
                return Path(base) / candidate
        return None


def read_run_folder(path: str | os.PathLike) -> RunFolder:
    """Read ``manifest.parquet``, ``run.json`` and locate ``maps.zarr``; clear errors when absent."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"run folder {str(folder)!r} does not exist; write one with `camlens explain IMAGES --out {folder}`")
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is a file, not a run folder (the --out folder of `camlens explain`)")
    manifest_path = folder / "manifest.parquet"
    if not manifest_path.exists():
        raise InputError(
            f"{str(folder)!r} has no manifest.parquet, so it is not a run folder (or the run has not written "
            f"its first batch yet); write one with `camlens explain IMAGES --out {folder}`"
        )
    pq = require("pyarrow.parquet", "reading manifest.parquet")
    try:
        table = pq.read_table(str(manifest_path))
    except Exception as error:  # pyarrow raises ArrowInvalid / OSError for broken files
        raise InputError(f"cannot read {manifest_path}: {error}") from None
    missing = [name for name in MANIFEST_COLUMNS if name not in table.column_names]
    if missing:
        raise InputError(f"{manifest_path} lacks the column(s) {missing}; was it written by `camlens explain`?")
    table = table.sort_by([("image_id", "ascending"), ("method", "ascending"), ("rank", "ascending")])
    manifest = {name: table.column(name).to_pylist() for name in table.column_names}
    info: dict[str, Any] = {}
    info_path = folder / "run.json"
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read {info_path}: {error}") from None
        if not isinstance(info, dict):
            info = {}
    maps_path = folder / "maps.zarr"
    return RunFolder(folder, manifest, info, maps_path if maps_path.exists() else None)
