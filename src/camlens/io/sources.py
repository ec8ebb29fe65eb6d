"""Where a dataset's images come from: files, folders, globs, list files, or a torch ``Dataset``.

:func:`resolve_sources` turns what a user typed into an ordered list of :class:`ImageItem`
(one per image, with a ``relpath`` unique within the run), :func:`folder_labels` reads an
ImageFolder tree's true classes, and :class:`ImageDecoder` decodes and preprocesses one item
(in DataLoader workers or Ray actors). Nothing here runs a model.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a/cat.jpg", "b/cat.jpg"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     Image.new("RGB", (8, 8)).save(root / name)
    >>> [item.relpath for item in resolve_sources([root])]
    ['a/cat.jpg', 'b/cat.jpg']
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

import torch

from ..core.errors import CamlensError, InputError
from .images import load_image, preprocess, to_tensor_image

__all__ = [
    "IMAGE_SUFFIXES", "LIST_SUFFIXES", "ImageItem", "resolve_sources", "dataset_items", "folder_labels",
    "match_class", "ImageDecoder", "fingerprint",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ImageItem:
    """One image of a run.

    Attributes:
        path: where it was found, posix (as typed, as globbed, or ``"dataset[17]"``).
        relpath: unique within the run: the path relative to the images' common folder
            (``a/cat.jpg``, ``b/cat.jpg``); the overlays mirror it.
        index: position in a torch ``Dataset`` (``None`` for files).
        folder: the name of the parent folder (the true class with ``labels_from_folders``).
    """

    path: str
    relpath: str
    index: int | None = None
    folder: str | None = None


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _folder_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, in sorted order of their relative paths (hidden ones skipped)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / f for f in files if not f.startswith(".") and _is_image_file(Path(f)))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _list_file(path: Path) -> list[Path]:
    """Paths listed one per line (relative to the list file's folder); blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read list file {str(path)!r}: {error.__class__.__name__}") from None
    entries = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        entries.append(entry if entry.is_absolute() else path.parent / entry)
    return entries


def _expand(source: str | os.PathLike) -> list[Path]:
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_images(path)
    if path.is_file():
        return _list_file(path) if path.suffix.lower() in LIST_SUFFIXES else [path]
    if _GLOB_CHARS.search(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        files = []
        for match in matches:
            match_path = Path(match)
            if match_path.is_dir():
                files.extend(_folder_images(match_path))
            elif match_path.is_file() and not match_path.name.startswith("."):
                files.append(match_path)
        return files
    raise InputError(f"no such file or folder: {text!r} (pass image files, folders, glob patterns or .txt lists)")


def _common_folder(paths: Sequence[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path(".")


def resolve_sources(sources: Iterable[str | os.PathLike], max_images: int | None = None) -> list[ImageItem]:
    """Every image that ``sources`` name, in order, each once.

    Each source is an image file, a folder (searched recursively for image files, in sorted
    order), a glob pattern (``**`` recurses), or a text file (``.txt``/``.lst``) listing paths
    one per line, relative to the list file. A file named twice is kept once. ``relpath`` is
    the path relative to the folder common to all images, so ``a/cat.jpg`` and ``b/cat.jpg``
    stay apart.

    Raises:
        InputError: a source that does not exist, or no image at all.
    """
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not sources:
        raise InputError("no images given: pass image files, folders, glob patterns or .txt lists")
    found: list[Path] = []
    seen: set[str] = set()
    for source in sources:
        for path in _expand(source):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.append(path)
    if not found:
        shown = ", ".join(repr(os.fspath(s)) for s in sources[:3])
        raise InputError(f"no image found in {shown}; image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    if max_images is not None:
        found = found[:max_images]
    root = _common_folder(found)
    items = []
    for path in found:
        relative = os.path.relpath(path.resolve(), root)
        items.append(ImageItem(path=path.as_posix(), relpath=PurePosixPath(*Path(relative).parts).as_posix(),
                               folder=path.resolve().parent.name))
    return items


def dataset_items(dataset: Any, max_images: int | None = None) -> list[ImageItem]:
    """Items for a map-style torch ``Dataset``: ``path`` ``"dataset[i]"``, ``relpath`` ``"dataset/000017"``."""
    try:
        n = len(dataset)
    except TypeError:
        raise InputError("a dataset source must be a map-style torch Dataset (with __len__ and __getitem__)") from None
    if n == 0:
        raise InputError("the dataset is empty: no image found")
    if max_images is not None:
        n = min(n, max_images)
    width = max(6, len(str(n - 1)))
    return [ImageItem(path=f"dataset[{i}]", relpath=f"dataset/{i:0{width}d}", index=i) for i in range(n)]


def _normalized(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def match_class(name: str, class_names: Sequence[str] | None, num_classes: int | None) -> int | None:
    """A folder or label name -> class index: a class name (ignoring case and separators) or an index."""
    if class_names:
        wanted = _normalized(name)
        for index, candidate in enumerate(class_names):
            if _normalized(candidate) == wanted:
                return index
    text = name.strip()
    if text.isdigit() and (num_classes is None or int(text) < num_classes):
        return int(text)
    return None


def folder_labels(items: Sequence[ImageItem], class_names: Sequence[str] | None, num_classes: int | None) -> dict[str, int]:
    """ImageFolder layout: each parent folder's class index; a folder that matches no class raises.

    Raises:
        InputError: naming the folders that match no class name or index, with close names.
    """
    folders = sorted({item.folder for item in items if item.folder is not None})
    mapping, unmatched = {}, []
    for folder in folders:
        index = match_class(folder, class_names, num_classes)
        if index is None:
            unmatched.append(folder)
        else:
            mapping[folder] = index
    if unmatched:
        import difflib

        hints = []
        for folder in unmatched[:3]:
            close = difflib.get_close_matches(folder.lower(), [c.lower() for c in class_names or []], n=2, cutoff=0.6)
            hints.append(f"{folder!r}" + (f" (close: {', '.join(close)})" if close else ""))
        what = "names or indices" if class_names else f"indices 0..{(num_classes or 1) - 1} (the model has no class names)"
        raise InputError(
            f"--labels-from-folders: {len(unmatched)} folder(s) match no class of the model: {', '.join(hints)}"
            f"{' ...' if len(unmatched) > 3 else ''}; name each folder after a class ({what}, case and "
            "separators ignored)"
        )
    return mapping


def fingerprint(items: Sequence[ImageItem]) -> str:
    """A short hash of the image list (paths and relpaths, in order): a resumed run must match it."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.path}\0{item.relpath}\0{item.index}\n".encode())
    return digest.hexdigest()[:16]


class ImageDecoder:
    """Decode and preprocess one item; a picklable callable for DataLoader workers and Ray actors.

    Args:
        input_size: (H, W) the model takes.
        mean, std: normalisation.
        keep_pixels: also return the decoded image as a uint8 (H, W, 3) tensor (for overlays).
        dataset: the torch ``Dataset`` for items with an ``index``.
        pixels_max_side: shrink the kept pixels (not ``x``, not ``width``/``height``) so that their
            longer side is at most this many pixels, keeping the aspect ratio; ``None``: as decoded.

    ``__call__(item)`` returns a dict: ``x`` (3, H, W) float or ``None``, ``width``, ``height``,
    ``pixels`` (uint8 (H, W, 3) or ``None``), ``label`` (the dataset's label, if any) and
    ``error`` (``None``, or why the image was skipped).
    """

    def __init__(self, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 keep_pixels: bool = True, dataset: Any = None, pixels_max_side: int | None = None) -> None:
        self.input_size = tuple(int(v) for v in input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.keep_pixels, self.dataset, self.pixels_max_side = keep_pixels, dataset, pixels_max_side

    def _read(self, item: ImageItem) -> tuple[Any, Any]:
        if item.index is None:
            return load_image(item.path), None
        sample = self.dataset[item.index]
        label = None
        if isinstance(sample, (tuple, list)):
            if not sample:
                raise InputError(f"dataset item {item.index} is empty")
            sample, label = sample[0], (sample[1] if len(sample) > 1 else None)
        if isinstance(label, torch.Tensor):
            label = label.item() if label.numel() == 1 else None
        return sample, label

    def __call__(self, item: ImageItem) -> dict[str, Any]:
        result: dict[str, Any] = {"x": None, "width": None, "height": None, "pixels": None, "label": None, "error": None}
        try:
            image, result["label"] = self._read(item)
            pixels = to_tensor_image(image)  # (3, H, W) float in [0, 1]
            floating = isinstance(image, torch.Tensor) and image.is_floating_point() or (
                hasattr(image, "dtype") and getattr(image.dtype, "kind", "") == "f")
            if floating and not torch.isfinite(pixels).all():
                raise InputError("the image has NaN or infinite values")
            result["height"], result["width"] = int(pixels.shape[1]), int(pixels.shape[2])
            result["x"] = preprocess([pixels], self.input_size, self.mean, self.std)[0]
            if self.keep_pixels:
                kept = pixels
                longest = max(kept.shape[1:])
                if self.pixels_max_side is not None and longest > self.pixels_max_side:
                    scale = self.pixels_max_side / longest
                    size = (max(1, round(kept.shape[1] * scale)), max(1, round(kept.shape[2] * scale)))
                    kept = torch.nn.functional.interpolate(kept[None], size=size, mode="bilinear", antialias=True,
                                                           align_corners=False)[0]
                result["pixels"] = (kept.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
        except CamlensError as error:
            result["x"] = result["pixels"] = None
            result["error"] = str(error)
        except Exception as error:  # a Dataset's own failure is this image's problem, not the run's
            if item.index is None:
                raise
            result["x"] = result["pixels"] = None
            result["error"] = f"dataset[{item.index}] raised {error.__class__.__name__}: {error}"
        return result

