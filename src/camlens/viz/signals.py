"""Pictures of explanations that are not one image's heatmap: 1-D signals, detections.

:func:`plot_signal`: a 1-D signal (audio, ECG, a time series) drawn as a line coloured by
its (N, K, L) map. :func:`draw_detections`: boxes and labels drawn over an image (PIL).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..core.errors import InputError
from ..io.images import to_tensor_image

__all__ = ["plot_signal", "draw_detections"]


def plot_signal(signal: Any, map: Any, *, title: str | None = None, cmap: str = "jet", ax=None):
    """The signal as a line whose colour is the map's value at each step.

    Args:
        signal: (L,) or (C, L) values (channels are drawn one above the other).
        map: (L,) values in [0, 1] (``Explanation.maps[i, k]`` of an (N, C, L) input).
        title: the figure's title.
        cmap: matplotlib colormap name.
        ax: a matplotlib axes to draw on (else a new figure).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    values = torch.as_tensor(signal).detach().float().cpu()
    heat = torch.as_tensor(map).detach().float().cpu().flatten()
    if values.dim() == 1:
        values = values.unsqueeze(0)
    if values.dim() != 2:
        raise InputError(f"plot_signal: signal must be (L,) or (C, L), got {list(values.shape)}")
    if heat.numel() != values.shape[1]:
        raise InputError(f"plot_signal: the map has {heat.numel()} steps, the signal {values.shape[1]}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.8 * values.shape[0]))
    else:
        fig = ax.figure
    steps = np.arange(values.shape[1])
    span = float(values.max() - values.min()) or 1.0
    colours = plt.get_cmap(cmap)(heat.clamp(0, 1).numpy()[:-1])
    for c, row in enumerate(values.numpy()):
        offset = -c * 1.2 * span
        points = np.stack([steps, row + offset], axis=1)
        segments = np.stack([points[:-1], points[1:]], axis=1)
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=1.5))
    ax.set_xlim(0, max(1, values.shape[1] - 1))
    ax.set_ylim(float(values.min()) - (values.shape[0] - 1) * 1.2 * span - 0.05 * span, float(values.max()) + 0.05 * span)
    ax.set_xlabel("step")
    ax.set_yticks([])
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(mappable, ax=ax, fraction=0.03, pad=0.01, label="map")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def draw_detections(image: Any, boxes: Any, labels: Sequence[str] | None = None, scores: Any = None,
                    colour: tuple[int, int, int] = (255, 255, 0), width: int = 2) -> Image.Image:
    """Boxes (K, 4) ``x0, y0, x1, y1`` in pixels, with their labels and scores, over an image.

    ``image``: a PIL image, (H, W, 3) array or (3, H, W) tensor in [0, 1] (an overlay).
    """
    if not isinstance(image, Image.Image):
        tensor = to_tensor_image(image)
        image = Image.fromarray((tensor.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy())
    image = image.convert("RGB").copy()
    draw = ImageDraw.Draw(image)
    rows = torch.as_tensor(boxes).detach().float().cpu().reshape(-1, 4)
    score_list = None if scores is None else torch.as_tensor(scores).detach().float().cpu().flatten().tolist()
    for k, (x0, y0, x1, y1) in enumerate(rows.tolist()):
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        text = labels[k] if labels is not None else ""
        if score_list is not None:
            text = f"{text} {score_list[k]:.2f}".strip()
        if text:
            left, top, right, bottom = draw.textbbox((x0, y0), text)
            draw.rectangle([left, top, right + 2, bottom], fill=colour)
            draw.text((x0 + 1, y0), text, fill=(0, 0, 0))
    return image
