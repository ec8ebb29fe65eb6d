"""``Explanation`` in a notebook and on disk: ``_repr_html_``, ``save`` and ``load``.

``save(folder)`` writes ``raw.npy`` (N, K, h, w), ``maps.npy`` (N, K, H, W), ``logits.npy``
(when known), one overlay PNG per image and class (when the photos are known) and, last,
``explanation.json`` naming them all: every file is written under a temporary name and renamed,
so a folder with a sidecar is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..core.errors import InputError
from ..io.files import atomic_write
from ..io.images import imagenet_classes, to_tensor_image
from ..viz.notebook import display_images, overlay_grid_html
from ..viz.overlay import overlay, save_image

__all__ = ["explanation_html", "save_explanation", "load_explanation", "SIDECAR"]

SIDECAR = "explanation.json"
FORMAT = 1


def _class_names(explanation, class_names: Sequence[str] | None) -> Sequence[str] | None:
    if class_names is not None:
        return class_names
    logits = explanation.logits
    if logits is not None and logits.dim() == 2 and logits.shape[1] == 1000:
        return imagenet_classes()
    return None


def _pictures(explanation, images: Any) -> torch.Tensor | list[torch.Tensor] | None:
    """The photos to draw the maps over: ``images`` (PIL / arrays / tensors), else the inputs."""
    n = explanation.classes.shape[0]
    if images is not None:
        pictures = list(images) if not isinstance(images, torch.Tensor) or images.dim() == 4 else [images]
        if len(pictures) != n:
            raise InputError(f"{len(pictures)} images for an explanation of {n}")
        return [to_tensor_image(p) for p in pictures]
    inputs = getattr(explanation, "inputs", None)
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and inputs.shape[0] == n:
        return display_images(inputs)
    return None


def _probabilities(explanation) -> torch.Tensor | None:
    logits = explanation.logits
    if logits is None:
        return None
    return logits.detach().float().softmax(-1).gather(1, explanation.classes.to(logits.device)).cpu()


def explanation_html(explanation, images: Any = None, class_names: Sequence[str] | None = None,
                     max_images: int = 8, size: int = 160) -> str:
    """A small grid of overlays with class names, scores and probabilities (PNG data URIs)."""
    pictures = _pictures(explanation, images)
    if isinstance(pictures, list):
        pictures = [torch.nn.functional.interpolate(p[None], size=tuple(explanation.maps.shape[-2:]), mode="bilinear",
                                                    align_corners=False, antialias=True)[0] for p in pictures[:max_images]]
        pictures = torch.stack(pictures) if pictures else None
    n, k = explanation.classes.shape
    title = (f"{explanation.method} · layer {explanation.target_layer} · {n} image{'s' if n != 1 else ''} × "
             f"{k} class{'es' if k != 1 else ''}")
    return overlay_grid_html(
        explanation.maps, explanation.classes, explanation.scores, title, pictures,
        _class_names(explanation, class_names), _probabilities(explanation), max_images=max_images, size=size,
    )


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "x"


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    atomic_write(path, write)


def save_explanation(explanation, folder: str | os.PathLike, images: Any = None,
                     class_names: Sequence[str] | None = None, alpha: float = 0.5, cmap: str = "jet") -> Path:
    """Write the explanation to ``folder``; returns the path of ``explanation.json``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot save to {str(folder)!r}: it is a file; pass a folder")
    folder.mkdir(parents=True, exist_ok=True)
    names = _class_names(explanation, class_names)
    n, k = explanation.classes.shape
    files: dict[str, Any] = {"raw": "raw.npy", "maps": "maps.npy"}
    _save_npy(folder / "raw.npy", explanation.raw.detach().float().cpu().numpy())
    _save_npy(folder / "maps.npy", explanation.maps.detach().float().cpu().numpy())
    if explanation.logits is not None:
        files["logits"] = "logits.npy"
        _save_npy(folder / "logits.npy", explanation.logits.detach().float().cpu().numpy())
    pictures = _pictures(explanation, images)
    overlays: list[list[str]] | None = None
    if pictures is not None:
        overlays = []
        for i in range(n):
            row = []
            for j in range(k):
                index = int(explanation.classes[i, j])
                label = names[index] if names is not None and 0 <= index < len(names) else f"class {index}"
                name = f"overlays/{i:04d}_{j}_{index}-{_slug(label)}.png"
                save_image(overlay(pictures[i], explanation.maps[i, j].detach().cpu(), alpha, cmap), folder / name)
                row.append(name)
            overlays.append(row)
        files["overlays"] = overlays
    classes = explanation.classes.tolist()
    sidecar = {
        "format": FORMAT,
        "method": explanation.method,
        "target_layer": explanation.target_layer,
        "score_source": explanation.score_source,
        "classes": classes,
        "class_names": [[names[c] if names is not None and 0 <= c < len(names) else f"class {c}" for c in row] for row in classes],
        "scores": explanation.scores.detach().float().cpu().tolist(),
        "probabilities": None if _probabilities(explanation) is None else _probabilities(explanation).tolist(),
        "maps_shape": list(explanation.maps.shape),
        "raw_shape": list(explanation.raw.shape),
        "files": files,
    }
    path = folder / SIDECAR
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=1), encoding="utf-8"))
    return path


def load_explanation(folder: str | os.PathLike, cls: type):
    """Read a folder written by :func:`save_explanation` back into ``cls`` (an Explanation)."""
    folder = Path(folder)
    path = folder / SIDECAR
    if not path.is_file():
        raise InputError(f"{str(folder)!r} has no {SIDECAR}; it was not written by Explanation.save")
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
        files = sidecar["files"]

        def array(name: str) -> torch.Tensor:
            return torch.from_numpy(np.load(folder / files[name], allow_pickle=False))

        return cls(
            maps=array("maps"), raw=array("raw"), classes=torch.tensor(sidecar["classes"], dtype=torch.long),
            scores=torch.tensor(sidecar["scores"]), target_layer=sidecar["target_layer"], method=sidecar["method"],
            logits=array("logits") if "logits" in files else None, score_source=sidecar["score_source"],
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the explanation in {str(folder)!r}: {error}") from None
