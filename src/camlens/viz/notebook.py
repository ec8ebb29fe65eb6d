"""HTML for Jupyter: a small grid of overlays (``Explanation._repr_html_``) and a run's summary.

Pictures are PNG data URIs, so the HTML stands alone (a saved notebook shows them too). Every
string from the data goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .overlay import apply_colormap

__all__ = ["overlay_grid_html", "png_data_uri", "display_images", "run_html"]

_BOX = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:13px;color:#1f2328"


def png_data_uri(picture: torch.Tensor) -> str:
    """(3, H, W) in [0, 1] -> ``data:image/png;base64,...``."""
    array = (picture.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def display_images(inputs: torch.Tensor) -> torch.Tensor:
    """A model's normalised (N, C, H, W) inputs -> (N, 3, H, W) in [0, 1] for display.

    Inputs already in [0, 1] are kept; otherwise each image's channels are min-max stretched,
    which undoes any per-channel ``(x - mean) / std`` up to the photo's own contrast. Grey
    inputs (C = 1) are repeated to RGB.
    """
    x = inputs.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3]
    if x.numel() and (x.min() < 0 or x.max() > 1):
        low = x.amin(dim=(2, 3), keepdim=True)
        span = (x.amax(dim=(2, 3), keepdim=True) - low).clamp_min(1e-12)
        x = (x - low) / span
    return x


def _thumbnail(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    if scale >= 1:
        return image
    return F.interpolate(image[None], size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                         align_corners=False, antialias=True)[0]


def overlay_grid_html(
    maps: torch.Tensor,
    classes: torch.Tensor,
    scores: torch.Tensor,
    title: str,
    images: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    probabilities: torch.Tensor | None = None,
    max_images: int = 8,
    size: int = 160,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> str:
    """A grid of overlays: one row per image, one picture per explained class.

    Args:
        maps: (N, K, H, W) in [0, 1]. classes, scores: (N, K). probabilities: (N, K) or None.
        images: (N, 3, H', W') in [0, 1] (resized to the maps) or None (the maps alone).
        class_names: names for class indices; ``"class i"`` when missing.
        max_images: rows shown (a note says how many more there are).
    """
    n, k = classes.shape
    shown = min(n, max_images)
    rows = []
    for i in range(shown):
        figures = []
        for j in range(k):
            heat = maps[i, j].detach().float().cpu()
            if images is not None:
                photo = _thumbnail(images[i].float().cpu(), size)
                heat = F.interpolate(heat[None, None], size=photo.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                picture = (1 - alpha) * photo + alpha * apply_colormap(heat.clamp(0, 1), cmap)
            else:
                picture = apply_colormap(_thumbnail(heat[None], size)[0].clamp(0, 1), cmap)
            index = int(classes[i, j])
            name = class_names[index] if class_names is not None and 0 <= index < len(class_names) else f"class {index}"
            detail = f"score {float(scores[i, j]):.3g}"
            if probabilities is not None:
                detail += f" · p {float(probabilities[i, j]):.2f}"
            figures.append(
                f'<figure style="margin:0;width:{picture.shape[-1]}px">'
                f'<img src="{png_data_uri(picture)}" alt="{html.escape(name)}" '
                f'style="display:block;border-radius:6px;width:{picture.shape[-1]}px;height:{picture.shape[-2]}px">'
                f'<figcaption style="margin-top:3px;line-height:1.3"><b>{html.escape(name)}</b>'
                f'<br><span style="color:#6b7280">{html.escape(detail)}</span></figcaption></figure>'
            )
        label = f'<div style="writing-mode:vertical-rl;transform:rotate(180deg);color:#6b7280;font-size:11px">image {i}</div>'
        rows.append('<div style="display:flex;gap:10px;flex-wrap:wrap;align-items:flex-start">' + label + "".join(figures) + "</div>")
    more = f'<div style="color:#6b7280">… {n - shown} more image(s) not shown</div>' if n > shown else ""
    return (
        f'<div class="camlens-explanation" style="{_BOX};display:grid;gap:10px">'
        f'<div style="font-weight:600">{html.escape(title)}</div>' + "".join(rows) + more + "</div>"
    )


def run_html(run: Any, cards: int = 8, size: int = 150) -> str:
    """A run folder's summary and its first cards (photo + predicted class + probability).

    ``run``: a run folder path or a :class:`camlens.viz.report.RunFolder`. Reads the photos
    named in the manifest and the maps in ``maps.zarr``; runs no model.
    """
    from .report.pictures import map_bytes
    from .report.runfolder import RunFolder, read_run_folder

    folder = run if isinstance(run, RunFolder) else read_run_folder(run)
    m = folder.manifest
    rows = [i for i in range(folder.num_rows) if m["error"][i] is None and m["method"][i] is not None]
    images = sorted({int(m["image_id"][i]) for i in range(folder.num_rows)})
    skipped = sorted({int(m["image_id"][i]) for i in range(folder.num_rows) if m["error"][i] is not None})
    methods = sorted({m["method"][i] for i in rows})
    first_rows: dict[int, int] = {}
    for i in rows:
        first_rows.setdefault(int(m["image_id"][i]), i)
    labelled = [i for i in first_rows.values() if m["correct"][i] is not None]
    facts = [f"{len(images)} images", f"{len(skipped)} skipped", f"methods: {', '.join(methods) or 'none'}"]
    if labelled:
        right = sum(1 for i in labelled if m["correct"][i])
        facts.append(f"accuracy {100 * right / len(labelled):.1f}% ({right}/{len(labelled)})")
    model = folder.info.get("model")
    if model:
        facts.insert(0, f"model {model}")
    figures = []
    for image_id, i in list(first_rows.items())[:cards]:
        photo = folder.photo_path(str(m["path"][i]))
        picture = None
        if photo is not None:
            try:
                with Image.open(photo) as opened:
                    opened.draft("RGB", (size, size))
                    rgb = opened.convert("RGB")
                rgb.thumbnail((size, size))
                picture = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255
            except OSError:
                picture = None
        array = folder.maps(m["method"][i])
        if picture is not None and array is not None and image_id < array.shape[0]:
            values, finite = map_bytes(array[image_id : image_id + 1, int(m["rank"][i] or 0)])
            if finite[0]:
                heat = torch.from_numpy(values[0]).float()[None, None] / 255
                heat = F.interpolate(heat, size=picture.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                picture = 0.5 * picture + 0.5 * apply_colormap(heat, "jet")
        image_tag = (
            f'<img src="{png_data_uri(picture)}" alt="" style="display:block;border-radius:6px;max-width:{size}px">'
            if picture is not None else f'<div style="width:{size}px;height:{size * 3 // 4}px;background:#2a2d33;color:#9ca3af;'
            f'display:flex;align-items:center;justify-content:center;border-radius:6px">photo not found</div>'
        )
        probability = m["probability"][i]
        label = html.escape(str(m["predicted_name"][i]))
        mark = ""
        if m["correct"][i] is False:
            mark = f' <span style="color:#dc2626">✗ true {html.escape(str(m["true_name"][i]))}</span>'
        figures.append(
            f'<figure style="margin:0;width:{size}px">{image_tag}<figcaption style="margin-top:3px;line-height:1.3">'
            f'<b>{label}</b>{f" {float(probability):.2f}" if probability is not None else ""}{mark}<br>'
            f'<span style="color:#6b7280;word-break:break-all">{html.escape(str(m["relpath"][i] or m["path"][i]))}</span>'
            f"</figcaption></figure>"
        )
    more = len(first_rows) - len(figures)
    tail = f'<div style="color:#6b7280">… and {more} more: <code>camlens report {html.escape(str(folder.path))}</code></div>' if more > 0 else ""
    return (
        f'<div class="camlens-run" style="{_BOX};display:grid;gap:10px">'
        f'<div><b>Run {html.escape(str(folder.path))}</b><br><span style="color:#6b7280">{html.escape(" · ".join(facts))}</span></div>'
        f'<div style="display:flex;gap:10px;flex-wrap:wrap">{"".join(figures)}</div>{tail}</div>'
    )
