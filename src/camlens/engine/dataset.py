"""``camlens.explain_dataset``: explain every image of a folder, a list or a torch Dataset, streaming.

Three parts, shared by the local engine and Ray (``engine/_ray.py``):

- the **loader**: :class:`camlens.io.sources.ImageDecoder` decodes and preprocesses one image
  (in DataLoader workers here, inside the actors with Ray);
- the **batch function**: :class:`BatchExplainer` explains a batch with
  :func:`camlens.explain` (one forward/backward for all methods and classes), writes each
  image's map chunks and overlays, and returns the batch's manifest rows;
- the **writer**: :class:`camlens.io.run.RunWriter` (the driver commits each batch's rows as a
  manifest part once its maps and overlays are on disk).

Memory is bounded by the batch size and the loader's prefetch queue, never by the dataset.
Batches sit on a fixed grid of image ids (``image_id // batch_size``), so a resumed run
explains exactly the batches an uninterrupted run would have, with identical results.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ..core.errors import InputError
from ..io.models import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, load_model
from ..io.run import FORMAT, Run, RunWriter, prepare_out
from ..io.sources import ImageDecoder, ImageItem, dataset_items, fingerprint, folder_labels, match_class, resolve_sources
from ..methods import get_method
from ._batch import BatchExplainer, DatasetConfig, ModelSpec
from .explain import explain

__all__ = ["explain_dataset", "BatchExplainer", "DatasetConfig", "ModelSpec"]

_EXPLAIN_KEYWORDS = {"fuse", "augment", "score", "fcmap_scale", "batch_size"}  # explain()'s own keyword options


# --- checks before any work ---------------------------------------------------------------------

def _check_device(device: str | torch.device, amp: bool) -> str:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {device!r} is not a device; use cpu, cuda, cuda:1 or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif parsed.type != "cpu":
        raise InputError(f"--device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    if amp and parsed.type != "cuda":
        raise InputError("--amp (float16 autocast) runs on CUDA only; drop it on the CPU")
    return str(parsed)


def _as_loaded(model: Any, weights, arch, trust, input_size, mean, std, class_names) -> tuple[LoadedModel, ModelSpec]:
    if isinstance(model, (str, os.PathLike)):
        loaded = load_model(model, weights=weights, arch=arch, trust=trust)
        spec = ModelSpec(spec=os.fspath(model), weights=weights, arch=arch, trust=trust)
    elif isinstance(model, LoadedModel):
        loaded, spec = model, None
    elif isinstance(model, nn.Module):
        size = (3, input_size, input_size) if isinstance(input_size, int) else (3, *tuple(input_size or (224, 224))[-2:])
        loaded, spec = LoadedModel(model, type(model).__name__, tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD),
                                   size, list(class_names) if class_names is not None else None), None
    elif not isinstance(model, nn.Module) and hasattr(model, "dls"):
        raise InputError("explain_dataset takes the Learner's model: pass learn.model (and its input_size, mean, std)")
    else:
        raise InputError(f"model must be a name, a model file, a LoadedModel or an nn.Module, not {type(model).__name__}")
    if isinstance(model, LoadedModel) or isinstance(model, nn.Module):
        if input_size is not None:
            size = (3, input_size, input_size) if isinstance(input_size, int) else (3, *tuple(input_size)[-2:])
            loaded.input_size = size
        if mean is not None:
            loaded.mean = tuple(mean)
        if std is not None:
            loaded.std = tuple(std)
        if class_names is not None:
            loaded.class_names = list(class_names)
    return loaded, spec or ModelSpec(loaded=loaded)


def _resolve_class_request(classes: Any, loaded: LoadedModel) -> Any:
    """Class names (``"espresso"`` or a list with names) -> indices; the rest goes to explain as is."""
    if isinstance(classes, str) and not classes.lower().replace("-", "").replace("_", "").startswith("top"):
        classes = [classes]
    if isinstance(classes, (list, tuple)):
        resolved = []
        for c in classes:
            if isinstance(c, str):
                index = match_class(c, loaded.class_names, None) if loaded.class_names else None
                if index is None:
                    import difflib

                    names = loaded.class_names or []
                    close = difflib.get_close_matches(c.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
                    hint = f"; did you mean {', '.join(close)}?" if close else ""
                    raise InputError(f"class {c!r} is neither an index nor a class name of {loaded.name}{hint}")
                resolved.append(index)
            else:
                resolved.append(c)
        return resolved
    if isinstance(classes, torch.Tensor):
        raise InputError("explain_dataset takes classes as None, an int, a list or 'topK' (the same for every image)")
    return classes


def _probe(loaded: LoadedModel, methods: list[str], target_layer, classes, options: dict, device: str) -> dict:
    """One forward on a blank image: checks layer, classes, head and options; gives map shapes and layers."""
    specs = [get_method(name) for name in methods]
    direct = [m.name for m in specs if "scorer" not in m.needs]
    stand_in = "gradcam" if len(direct) < len(specs) else None
    probe_methods = direct + ([stand_in] if stand_in and stand_in not in direct else [])
    accepted = {o for name in probe_methods for o in get_method(name).options} | _EXPLAIN_KEYWORDS
    probe_options = {k: v for k, v in options.items() if k in accepted}
    all_accepted = {o for m in specs for o in m.options} | _EXPLAIN_KEYWORDS
    unknown = sorted(set(options) - all_accepted)
    if unknown:
        raise InputError(f"option(s) {unknown} are not taken by {methods}")
    x = torch.zeros(1, *loaded.input_size, device=device)
    results = explain(loaded.model, x, method=probe_methods, target_layer=target_layer, classes=classes, progress=False,
                      **probe_options)
    first = results[probe_methods[0]]
    shapes, layers = {}, {}
    for name in methods:
        e = results[name] if name in results else results[stand_in]
        shapes[name] = tuple(int(s) for s in e.raw.shape[1:])
        layers[name] = e.target_layer
    return {"shapes": shapes, "layers": layers, "num_classes": int(first.logits.shape[1]),
            "score_source": first.score_source}


def _versions() -> dict:
    from importlib import metadata

    found = {"python": sys.version.split()[0], "torch": torch.__version__}
    for package in ("camlens", "pyarrow", "zarr", "numpy", "Pillow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


_RESUME_KEYS = ("n_images", "images_fingerprint", "model_name", "methods", "classes", "k", "target_layers",
                "map_shapes", "input", "overlays", "overlay_size", "options")


def _check_resume(previous: dict, info: dict) -> None:
    if previous.get("format") != FORMAT:
        raise InputError(f"cannot resume: the run folder has format {previous.get('format')!r}, not {FORMAT!r}")
    different = [key for key in _RESUME_KEYS if previous.get(key) != info.get(key)]
    if different:
        key = different[0]
        raise InputError(f"cannot resume: the run was started with {key} = {previous.get(key)!r}, now {info.get(key)!r}; "
                         "resume with the same images, model and options, or use --overwrite")


# --- the local driver ---------------------------------------------------------------------------------

class _Items(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[ImageItem], decoder: ImageDecoder) -> None:
        self.items, self.decoder = items, decoder

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, image_id: int) -> tuple[int, dict]:
        return image_id, self.decoder(self.items[image_id])


def _collate(samples: list) -> list:
    return samples


def grid_batches(todo: Sequence[int], batch_size: int) -> list[list[int]]:
    """Image ids grouped by ``image_id // batch_size`` (the batches an uninterrupted run has)."""
    batches: dict[int, list[int]] = {}
    for image_id in todo:
        batches.setdefault(image_id // batch_size, []).append(image_id)
    return [batches[key] for key in sorted(batches)]


@dataclass
class _Progress:
    """The progress bar and the counts for the end summary."""

    total: int
    initial: int
    quiet: bool
    images: int = 0
    skipped: dict = field(default_factory=dict)
    bar: Any = None

    def __post_init__(self) -> None:
        if not self.quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, unit="img", desc="camlens explain",
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, rows: Sequence[dict], images: int) -> None:
        self.images += images
        for row in rows:
            if row.get("error") is not None:
                self.skipped[row["relpath"]] = row["error"]
        if self.bar is not None:
            self.bar.update(images)
            if self.skipped:
                self.bar.set_postfix(skipped=len(self.skipped), refresh=False)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        elif not self.quiet:
            print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _top_line(item: ImageItem, logits: torch.Tensor, config: DatasetConfig, layers: dict, k: int = 3) -> str:
    probs = logits.softmax(-1)
    values, indices = probs.topk(min(k, probs.numel()))
    top = ", ".join(f"{config.label(int(i))} {float(v):.2f}" for v, i in zip(values, indices))
    return f"{item.relpath}: {top}  [layer {', '.join(sorted(set(layers.values())))}]"


def _run_local(items, todo, config: DatasetConfig, loaded: LoadedModel, writer: RunWriter, decoder: ImageDecoder,
               batch_size: int, workers: int, progress: _Progress, show_top: bool, layers: dict) -> None:
    batches = grid_batches(todo, batch_size)
    loader = torch.utils.data.DataLoader(
        _Items(items, decoder), batch_sampler=batches, num_workers=workers, collate_fn=_collate,
        pin_memory=config.device.startswith("cuda"), prefetch_factor=2 if workers > 0 else None,
    )
    # Overlays are drawn and saved by one thread while the next batch runs through the model
    # (PIL's PNG encoder releases the GIL); a batch's rows are committed once its overlays are
    # on disk, so a crash never leaves a manifest row whose overlay is missing.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camlens-overlays") if config.overlays else None
    explainer = BatchExplainer(loaded, config, writer, overlay_executor=executor)
    waiting: tuple[list, list, int] | None = None  # the previous batch: rows, overlay writes, images

    def commit(rows: list, writes: list, images: int) -> None:
        for write in writes:
            write.result()  # an overlay that failed to write raises here, before its rows are committed
        writer.commit(rows)
        progress.update(rows, images)

    try:
        for batch in loader:
            image_ids = [image_id for image_id, _ in batch]
            batch_items = [items[i] for i in image_ids]
            rows = explainer(image_ids, batch_items, [d for _, d in batch])
            if waiting is not None:
                commit(*waiting)
            waiting = (rows, explainer.take_overlay_writes(), len(batch))
            if show_top and explainer.last_logits is not None:
                good = [item for item, (_, d) in zip(batch_items, batch) if d["error"] is None]
                for item, logits in zip(good, explainer.last_logits):
                    progress.write(_top_line(item, logits, config, layers))
        if waiting is not None:
            commit(*waiting)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def explain_dataset(
    model: Any,
    source: Any,
    method: str | Sequence[str] = "gradcam",
    out: str | os.PathLike = "camlens-run",
    *,
    classes: Any = None,
    target_layer: Any = None,
    batch_size: int = 16,
    workers: int | None = None,
    device: str = "cpu",
    amp: bool = False,
    max_images: int | None = None,
    labels_from_folders: bool = False,
    overlays: bool = True,
    overlay_size: int | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    resume: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    quiet: bool = False,
    engine: str = "local",
    address: str | None = None,
    num_workers: int | None = None,
    gpus_per_worker: float = 0,
    weights: str | None = None,
    arch: str | None = None,
    trust: bool = False,
    input_size: int | Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    show_top: bool | int = False,
    command: str | None = None,
    **options: Any,
) -> Run:
    """Explain every image of ``source`` and write a run folder at ``out``; returns the :class:`~camlens.io.run.Run`.

    Args:
        model: a name or model file (as :func:`camlens.load_model` takes, with ``weights``,
            ``arch``, ``trust``), a :class:`~camlens.LoadedModel`, or an ``nn.Module`` (then
            ``input_size``, ``mean``, ``std``, ``class_names`` describe it; ImageNet's by default).
        source: image files, folders (recursive, sorted), glob patterns (``**`` recurses), text
            files listing paths (relative to the list file) — one or a list of them — or a
            map-style torch ``Dataset`` yielding images (PIL, arrays, (3, H, W) tensors) or
            ``(image, label)`` pairs (a label: a class index or name).
        method: a method name or a list (one forward/backward for all gradient methods).
        out: the run folder; must be new or empty unless ``resume`` or ``overwrite``.
        classes: ``None`` (top-1), an int, a class name, a list, or ``"top3"``: the same for every image.
        target_layer: as in :func:`camlens.explain` (default: found automatically).
        batch_size: images per batch (also the unit of commit and of resume).
        workers: DataLoader worker processes that decode and preprocess (default: cores - 1, at most 4).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``. ``amp``: float16 autocast on CUDA.
        max_images: explain only the first N images.
        labels_from_folders: each image's parent folder names its true class (ImageFolder).
        overlays: write overlay PNGs (at the image's own size); ``alpha``, ``cmap`` as in :func:`camlens.overlay`.
        overlay_size: the longest side of an overlay in pixels (smaller images keep their size);
            ``None``: every overlay at its image's own size. A cap keeps big photos' PNGs small and fast.
        resume: finish an interrupted run (the same images, model and options).
        overwrite: remove a previous run in ``out`` first.
        strict: stop at the first image that cannot be decoded (default: one ``error`` row, go on).
        quiet: no progress bar and no summary.
        engine: ``"local"`` or ``"ray"`` (Ray Data; ``address``, ``num_workers``, ``gpus_per_worker``).
        show_top: print each image's top-3 classes (``True``, or an int N: when the run has at most N images).
        command: recorded in run.json (default: ``sys.argv``).
        **options: passed to :func:`camlens.explain` unchanged (``top_k=``, ``augment=``, ...).

    Raises:
        InputError: before any model work, for: no image found, an output folder that is a file,
            not writable or not empty, an unknown method, a bad class or layer, an unmatched folder.
    """
    methods = [method] if isinstance(method, str) else list(method)
    if not methods:
        raise InputError("method is an empty list; name at least one method")
    methods = [get_method(name).name for name in methods]
    if len(set(methods)) != len(methods):
        raise InputError(f"method {methods} names a method twice")
    if engine not in ("local", "ray"):
        raise InputError(f"engine={engine!r} is not known; use 'local' or 'ray'")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if max_images is not None and max_images < 1:
        raise InputError(f"max_images must be at least 1, got {max_images}")
    if overlay_size is not None and (isinstance(overlay_size, bool) or not isinstance(overlay_size, int)
                                     or overlay_size < 16):
        raise InputError(f"overlay_size must be a whole number of pixels, at least 16, got {overlay_size!r}; "
                         "or None for overlays at each image's own size")
    if engine == "ray":  # the actors run on the cluster's devices; the driver only plans (on its CPU)
        device = "cuda" if gpus_per_worker and str(device) == "cpu" else str(device)
        if amp and not device.startswith("cuda"):
            raise InputError("--amp (float16 autocast) runs on CUDA only: give --gpus-per-worker or drop --amp")
        driver_device = "cpu"
    else:
        device = driver_device = _check_device(device, amp)
    is_dataset = isinstance(source, torch.utils.data.Dataset)
    items = dataset_items(source, max_images) if is_dataset else resolve_sources(source, max_images)
    if is_dataset and labels_from_folders:
        raise InputError("labels_from_folders reads folder names; a torch Dataset gives its labels itself")
    path, previous = prepare_out(out, resume, overwrite)

    loaded, spec = _as_loaded(model, weights, arch, trust, input_size, mean, std, class_names)
    recorded = spec
    if engine == "ray" and spec.spec is not None and not loaded.pretrained:
        spec = ModelSpec(loaded=loaded)  # random weights: every actor must get these same ones, not its own draw
    loaded.model.to(driver_device)
    request = _resolve_class_request(classes, loaded)
    probe = _probe(loaded, methods, target_layer, request, options, driver_device)
    num_classes = probe["num_classes"]
    class_list = loaded.class_names if loaded.class_names and len(loaded.class_names) == num_classes else None
    folder_classes = folder_labels(items, class_list, num_classes) if labels_from_folders else None
    max_batch = loaded.max_batch or batch_size
    batch_size = min(batch_size, max_batch)
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1))
    k = next(iter(probe["shapes"].values()))[0]

    config = DatasetConfig(
        methods=methods, target_layer=target_layer, classes=request, options=dict(options),
        input_size=tuple(loaded.input_size[1:]), mean=tuple(loaded.mean), std=tuple(loaded.std),
        class_names=class_list, num_classes=num_classes, overlays=overlays, alpha=alpha, cmap=cmap, device=device,
        amp=amp, strict=strict, progress=False if quiet else None, folder_classes=folder_classes,
        dataset_labels=is_dataset, k=k,
    )
    sources = [type(source).__name__] if is_dataset else [os.fspath(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source)]
    info = {
        "format": FORMAT, "status": "running", "command": command or " ".join(sys.argv),
        "model_name": loaded.name,
        "model": {"name": loaded.name, "spec": recorded.spec, "weights": recorded.weights, "arch": recorded.arch,
                  "pretrained": loaded.pretrained, "num_classes": num_classes, "has_class_names": class_list is not None},
        "methods": methods, "classes": repr(classes), "k": k, "target_layers": probe["layers"],
        "map_shapes": {m: [len(items), *s] for m, s in probe["shapes"].items()},
        "score_source": probe["score_source"], "options": {key: repr(v) for key, v in sorted(options.items())},
        "input": {"size": list(loaded.input_size[1:]), "mean": list(loaded.mean), "std": list(loaded.std),
                  "resize": "whole image to size, bilinear with antialias, no crop"},
        "overlays": overlays, "overlay_size": overlay_size, "alpha": alpha, "cmap": cmap,
        "labels": "folders" if labels_from_folders else ("dataset" if is_dataset else None),
        "sources": sources, "n_images": len(items), "images_fingerprint": fingerprint(items),
        "batch_size": batch_size, "engine": engine, "device": device, "amp": amp, "versions": _versions(),
        "started": None, "finished": None, "sessions": [], "counts": {},
    }
    if previous is not None:
        _check_resume(previous, info)
        info["started"], info["sessions"] = previous.get("started"), list(previous.get("sessions", []))
        writer = RunWriter(path)
        if previous.get("status") == "complete" and len(writer.done_ids()) == len(items):
            if not quiet:
                print(f"camlens: {path} is already complete ({len(items)} images); nothing to do", file=sys.stderr)
            return Run(path)
    else:
        info["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        writer = RunWriter.create(path, info, info["map_shapes"], overwrite=overwrite)
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "started_unix": time.time(),
               "engine": engine, "images": 0}
    info["sessions"].append(session)
    info["status"] = "running"
    writer.write_info(info)

    done = writer.done_ids()
    todo = [i for i in range(len(items)) if i not in done]
    decoder = ImageDecoder(config.input_size, config.mean, config.std, keep_pixels=overlays,
                           dataset=source if is_dataset else None, pixels_max_side=overlay_size)
    progress = _Progress(total=len(items), initial=len(done), quiet=quiet)
    status = "interrupted"
    start = time.perf_counter()
    try:
        if engine == "ray":
            from ._ray import run_ray

            run_ray(items, todo, config, spec, writer, decoder, batch_size, progress, address, num_workers,
                    gpus_per_worker)
        else:
            _run_local(items, todo, config, loaded, writer, decoder, batch_size, workers, progress,
                       _show_top(show_top, len(items)) and not quiet, probe["layers"])
        status = "complete"
    finally:
        progress.close()
        seconds = time.perf_counter() - start
        session.update(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seconds=round(seconds, 3),
                       images=progress.images)
        run = Run(path)
        summary = run.summary()
        info.update(status=status, finished=session["finished"] if status == "complete" else None,
                    counts={key: summary[key] for key in ("done", "explained", "skipped", "rows")})
        writer.write_info(info)
    if not quiet:
        _print_summary(path, progress, seconds, summary)
    return run


def _show_top(show_top: bool | int, n_images: int) -> bool:
    if isinstance(show_top, bool):
        return show_top
    return n_images <= int(show_top)


def _print_summary(path, progress: _Progress, seconds: float, summary: dict) -> None:
    rate = progress.images / seconds if seconds > 0 else 0.0
    lines = [f"camlens: {summary['done']} of {summary['images']} images in {path}/ ({summary['explained']} explained, "
             f"{summary['skipped']} skipped); this session {progress.images} images in {seconds:.1f} s, {rate:.1f} images/s"]
    if summary["accuracy"] is not None:
        lines.append(f"camlens: accuracy against the true classes: {summary['accuracy']:.3f}")
    for relpath, reason in list(progress.skipped.items())[:10]:
        lines.append(f"camlens: skipped {relpath}: {reason}")
    if len(progress.skipped) > 10:
        lines.append(f"camlens: ... and {len(progress.skipped) - 10} more skipped (the manifest's error column)")
    print("\n".join(lines), file=sys.stderr)
