"""``explain_dataset(..., engine="ray")``: the same loader, batch function and writer, driven by Ray Data.

The image list becomes a Ray dataset (``ray.data.from_items``); ``map_batches`` runs an actor
pool of :class:`RayBatchExplainer`, each of which loads the model once, decodes its batch with
:class:`~camlens.io.sources.ImageDecoder`, explains it with :class:`~camlens.engine.dataset.BatchExplainer`
and writes the map chunks and overlays itself. The driver only collects the manifest rows and
commits them (an image once all its rows arrived) and writes run.json, as the local driver does.

The run folder must be on a filesystem every node sees at the same path (a local run: any folder).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..core.errors import InputError
from ..io.run import RunWriter, manifest_schema
from ..io.sources import ImageDecoder, ImageItem
from ._batch import BatchExplainer, DatasetConfig, ModelSpec

__all__ = ["run_ray", "RayBatchExplainer"]


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--engine ray needs Ray Data: pip install 'camlens[ray]'") from None
    return ray


class RayBatchExplainer:
    """The callable class of the actor pool: the model is loaded once per actor."""

    def __init__(self, spec: ModelSpec | None, model_ref: Any, config: DatasetConfig, run_path: str,
                 decoder: ImageDecoder) -> None:
        import ray

        if model_ref is not None:
            loaded = ray.get(model_ref) if isinstance(model_ref, ray.ObjectRef) else model_ref
            spec = ModelSpec(loaded=loaded)
        self.config = config
        self.decoder = decoder
        self.explainer = BatchExplainer(spec.load(config.device), config, RunWriter(run_path))

    def __call__(self, batch: dict) -> Any:
        import pyarrow as pa

        ids = [int(i) for i in batch["image_id"]]
        items = [
            ImageItem(path=str(path), relpath=str(relpath), index=None if int(index) < 0 else int(index),
                      folder=None if folder is None else str(folder))
            for path, relpath, index, folder in zip(batch["path"], batch["relpath"], batch["index"], batch["folder"])
        ]
        decoded = [self.decoder(item) for item in items]
        rows = self.explainer(ids, items, decoded)
        schema = manifest_schema()
        return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def run_ray(items: Sequence[ImageItem], todo: Sequence[int], config: DatasetConfig, spec: ModelSpec, writer: RunWriter,
            decoder: ImageDecoder, batch_size: int, progress, address: str | None, num_workers: int | None,
            gpus_per_worker: float) -> None:
    """Explain ``todo`` on Ray; commits manifest parts as the actors' rows come back."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    _quiet_ray_data(ray)
    try:
        if not todo:
            return
        model_ref = ray.put(spec.loaded) if spec.loaded is not None else None
        actor_spec = None if spec.loaded is not None else spec
        rows_in = [{"image_id": i, "path": items[i].path, "relpath": items[i].relpath,
                    "index": -1 if items[i].index is None else items[i].index, "folder": items[i].folder}
                   for i in todo]
        dataset = ray.data.from_items(rows_in)
        remote_args = {"num_gpus": gpus_per_worker} if gpus_per_worker else {}
        explained = dataset.map_batches(
            RayBatchExplainer,
            fn_constructor_kwargs={"spec": actor_spec, "model_ref": model_ref, "config": config,
                                   "run_path": str(writer.path), "decoder": decoder},
            batch_size=batch_size, batch_format="numpy", concurrency=num_workers or 2, **remote_args,
        )
        expected = len(config.methods) * config.k  # rows of an explained image
        pending: dict[int, list[dict]] = {}
        for block in explained.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in block.to_pylist():
                pending.setdefault(row["image_id"], []).append(row)
            complete = []
            for image_id, rows in list(pending.items()):
                if rows[0]["error"] is not None or len(rows) == expected:
                    complete.append(image_id)
            if complete:
                batch_rows = [row for image_id in sorted(complete) for row in pending.pop(image_id)]
                writer.commit(batch_rows)
                progress.update(batch_rows, len(complete))
        if pending:  # rows that never completed an image: not committed, redone by --resume
            raise InputError(f"Ray returned incomplete results for {len(pending)} image(s); rerun with --resume")
    finally:
        if started_here:
            ray.shutdown()



def _quiet_ray_data(ray) -> None:
    """camlens's own bar shows the progress: turn off Ray Data's bars and per-dataset log lines."""
    import logging

    context = ray.data.DataContext.get_current()
    for flag in ("enable_progress_bars", "print_on_execution_start", "enable_operator_progress_bars"):
        if hasattr(context, flag):
            setattr(context, flag, False)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
