"""The parts the local and the Ray driver share: the model spec, the run's settings, the batch function.

:class:`BatchExplainer` explains a batch of decoded images with :func:`camlens.explain`, writes
each image's map chunks and overlays through the run's writer and returns the manifest rows.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..core.errors import InputError
from ..io.models import LoadedModel, load_model
from ..io.run import RunWriter, overlay_path
from ..io.sources import ImageItem, match_class
from ..viz.overlay import overlay_rgb8
from .explain import explain

__all__ = ["ModelSpec", "DatasetConfig", "BatchExplainer"]


@dataclass
class ModelSpec:
    """How to get the model in another process: by name/file (loaded there) or the object itself (pickled)."""

    spec: str | None = None
    weights: str | None = None
    arch: str | None = None
    trust: bool = False
    loaded: LoadedModel | None = None

    def load(self, device: str = "cpu") -> LoadedModel:
        if self.loaded is not None:
            self.loaded.model.to(device)
            return self.loaded
        import warnings

        with warnings.catch_warnings():  # the driver already warned about random weights
            warnings.simplefilter("ignore")
            return load_model(self.spec, weights=self.weights, arch=self.arch, trust=self.trust, device=device)


@dataclass
class DatasetConfig:
    """Everything a batch function needs besides the model: picklable, the same in every actor."""

    methods: list[str]
    target_layer: Any
    classes: Any
    options: dict
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] | None
    num_classes: int
    overlays: bool = True
    alpha: float = 0.5
    cmap: str = "jet"
    device: str = "cpu"
    amp: bool = False
    strict: bool = False
    progress: bool | None = None
    folder_classes: dict[str, int] | None = None
    dataset_labels: bool = False
    k: int = 1  # classes explained per image

    def label(self, index: int | None) -> str | None:
        if index is None:
            return None
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


def _image_row(image_id: int, item: ImageItem, decoded: dict) -> dict:
    return {"image_id": int(image_id), "path": item.path, "relpath": item.relpath,
            "width": decoded.get("width"), "height": decoded.get("height")}


class BatchExplainer:
    """The batch function: explain decoded images, write their maps and overlays, return manifest rows.

    Args:
        loaded: the model with its preprocessing and class names.
        config: :class:`DatasetConfig`.
        writer: the run's :class:`~camlens.io.run.RunWriter` (maps and overlays only).
        overlay_executor: where overlays are drawn and saved; ``None`` draws them in the call.
            With an executor the call returns before its overlays are on disk: the driver
            takes them with :meth:`take_overlay_writes` and waits for them before it commits
            the batch's rows (PNG encoding then overlaps the next batch's forward and backward).
    """

    def __init__(self, loaded: LoadedModel, config: DatasetConfig, writer: RunWriter,
                 overlay_executor: Executor | None = None) -> None:
        self.loaded, self.config, self.writer = loaded, config, writer
        self.last_logits: torch.Tensor | None = None
        self._executor = overlay_executor
        self._writes: list[Future] = []

    def take_overlay_writes(self) -> list[Future]:
        """The overlay writes submitted since the last call (empty without an executor)."""
        writes, self._writes = self._writes, []
        return writes

    def _write_overlay(self, relative: str, pixels: torch.Tensor, heat: torch.Tensor) -> None:
        blended = overlay_rgb8(pixels, heat, alpha=self.config.alpha, cmap=self.config.cmap)
        self.writer.write_overlay(relative, blended)

    def _true_index(self, item: ImageItem, decoded: dict) -> int | None:
        config = self.config
        if config.folder_classes is not None:
            return config.folder_classes.get(item.folder)
        label = decoded.get("label")
        if not config.dataset_labels or label is None:
            return None
        if isinstance(label, str):
            index = match_class(label, config.class_names, config.num_classes)
            if index is None:
                raise InputError(f"dataset label {label!r} of {item.path} matches no class of the model")
            return index
        return int(label)

    def __call__(self, image_ids: Sequence[int], items: Sequence[ImageItem], decoded: Sequence[dict]) -> list[dict]:
        """Explain one batch; returns its manifest rows (skipped images: one row with ``error``)."""
        config = self.config
        rows: list[dict] = []
        good = []
        for image_id, item, d in zip(image_ids, items, decoded):
            if d["error"] is not None:
                if config.strict:
                    raise InputError(f"{item.path}: {d['error']} (--strict stops at the first image that cannot be read)")
                rows.append({**_image_row(image_id, item, d), "error": d["error"]})
            else:
                good.append((image_id, item, d))
        if not good:
            self.last_logits = None
            return rows
        device = torch.device(config.device)
        x = torch.stack([d["x"] for _, _, d in good]).to(device, non_blocking=True)
        if config.amp:
            with torch.autocast(device_type=device.type, dtype=torch.float16):
                results = explain(self.loaded.model, x, method=config.methods, target_layer=config.target_layer,
                                  classes=config.classes, progress=config.progress, **config.options)
        else:
            results = explain(self.loaded.model, x, method=config.methods, target_layer=config.target_layer,
                              classes=config.classes, progress=config.progress, **config.options)
        first = results[config.methods[0]]
        logits = first.logits.float().cpu()
        self.last_logits = logits
        probabilities = None if "Sigmoid" in first.score_source else logits.softmax(dim=1)
        predicted = logits.argmax(dim=1).tolist()
        per_method = {}
        for name, e in results.items():
            per_method[name] = (e.raw.float().cpu().numpy(), e.classes.cpu().tolist(), e.scores.float().cpu().tolist(),
                                e.maps.float().cpu() if config.overlays else None, e.target_layer)
        for row_index, (image_id, item, d) in enumerate(good):
            true_index = self._true_index(item, d)
            pixels = d["pixels"] if config.overlays else None  # (H, W, 3) uint8
            base = _image_row(image_id, item, d)
            base.update(predicted_index=predicted[row_index], predicted_name=config.label(predicted[row_index]),
                        true_index=true_index, true_name=config.label(true_index),
                        correct=None if true_index is None else predicted[row_index] == true_index)
            for name in config.methods:
                raw, classes, scores, maps, layer = per_method[name]
                self.writer.write_maps(name, image_id, raw[row_index])
                for rank, class_index in enumerate(classes[row_index]):
                    class_name = config.label(class_index)
                    relative = None
                    if pixels is not None:
                        relative = overlay_path(item.relpath, name, rank, class_index, class_name)
                        if self._executor is None:
                            self._write_overlay(relative, pixels, maps[row_index, rank])
                        else:
                            self._writes.append(self._executor.submit(self._write_overlay, relative, pixels,
                                                                      maps[row_index, rank]))
                    rows.append({
                        **base, "method": name, "target_layer": layer, "rank": rank, "class_index": class_index,
                        "class_name": class_name, "score": scores[row_index][rank],
                        "probability": None if probabilities is None else float(probabilities[row_index, class_index]),
                        "overlay": relative, "error": None,
                    })
        return rows
