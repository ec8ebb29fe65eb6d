"""Real data with known object places, to check where the maps point.

- :func:`digits_localization_set`: weakly-supervised localization from scikit-learn's
  handwritten digits (real 8x8 scans, Alpaydin & Kaynak 1998): each sample is a canvas
  with one target digit at a random place and size, among clutter cut from other digits
  (as in cluttered MNIST, Mnih et al. 2014), and the target's box as ground truth.
  :class:`GapCNN` and :func:`train_gap_cnn` train a small global-average-pool CNN on the
  image-level labels only, so any localization it shows was never taught.
- :func:`pasted_photos_set`: scikit-image photos pasted two at a time at known places
  on a neutral grey canvas, for the pretrained EfficientNet-Lite0: explaining one
  photo's class should point at that photo, not at the other one.

numpy appears only where scikit-learn/scikit-image hand data over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..core.errors import InputError

__all__ = [
    "LocalizationSet", "digits_localization_set", "GapCNN", "train_gap_cnn", "accuracy",
    "pasted_photos_set", "PHOTOS",
]


@dataclass
class LocalizationSet:
    """Images with one or more target classes each, and each target's box.

    Attributes:
        images: (N, C, H, W) float in [0, 1] (not normalised).
        classes: (N, K) class index of each target.
        boxes: (N, K, 4) each target's box (x0, y0, x1, y1), max exclusive, in pixels.
        class_names: names of the class indices.
        notes: what each target is (e.g. the source photo's name), per image.
    """

    images: torch.Tensor
    classes: torch.Tensor
    boxes: torch.Tensor
    class_names: list[str]
    notes: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: Any) -> "LocalizationSet":
        rows = torch.arange(len(self))[index].reshape(-1).tolist()
        return LocalizationSet(self.images[rows], self.classes[rows], self.boxes[rows], self.class_names,
                               [self.notes[i] for i in rows] if self.notes else [])

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"LocalizationSet(images=({n}, {c}, {h}, {w}), targets per image={self.classes.shape[1]})"


# --- digits ------------------------------------------------------------------------------------

def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError("the digits set comes from scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    return torch.as_tensor(data.images, dtype=torch.float32) / 16.0, torch.as_tensor(data.target, dtype=torch.long)


def _split(count: int, split: str) -> torch.Tensor:
    """A fixed 80/20 split of the 1797 source digits, so train and test never share a scan."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(1797))
    cut = int(0.8 * count)
    if split == "train":
        return order[:cut]
    if split == "test":
        return order[cut:]
    raise InputError(f"split must be 'train' or 'test', got {split!r}")


def _ink_box(digit: torch.Tensor) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1) of an 8x8 digit's non-zero pixels."""
    ys, xs = torch.nonzero(digit > 0, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _resize(patch: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(patch[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)


def digits_localization_set(
    n: int,
    split: str = "test",
    canvas: int = 64,
    sizes: tuple[int, int] = (16, 32),
    clutter: int = 8,
    seed: int = 0,
) -> LocalizationSet:
    """A weakly-supervised localization set from scikit-learn's real handwritten digits.

    Each (1, canvas, canvas) image holds one target digit, scaled to a random size in
    ``sizes`` and put at a random place, and ``clutter`` fragments (random quarters of
    other digits, scaled alike) that never overlap the target's box. The label is the
    target's digit; the box is the tight box of its ink. ``split`` picks disjoint source
    scans (80 % train, 20 % test).

    Example:
        >>> data = digits_localization_set(4, seed=1)
        >>> data.images.shape, data.classes.shape, data.boxes.shape
        (torch.Size([4, 1, 64, 64]), torch.Size([4, 1]), torch.Size([4, 1, 4]))
        >>> bool(((data.boxes[..., 2:] > data.boxes[..., :2]) & (data.boxes[..., 2:] <= 64)).all())
        True
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    low, high = sizes
    if not 8 <= low <= high <= canvas:
        raise InputError(f"sizes must satisfy 8 <= low <= high <= canvas ({canvas}), got {sizes}")
    digits, labels = _digits()
    pool = _split(len(digits), split)
    generator = torch.Generator().manual_seed(seed * 2 + (split == "test"))

    def randint(lo: int, hi: int) -> int:  # inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    images = torch.zeros(n, 1, canvas, canvas)
    boxes = torch.zeros(n, 1, 4, dtype=torch.long)
    classes = torch.zeros(n, 1, dtype=torch.long)
    for i in range(n):
        index = int(pool[randint(0, len(pool) - 1)])
        size = randint(low, high)
        top, left = randint(0, canvas - size), randint(0, canvas - size)
        images[i, 0, top : top + size, left : left + size] = _resize(digits[index], size, size)
        x0, y0, x1, y1 = _ink_box(digits[index])
        scale = size / 8
        box = (left + int(x0 * scale), top + int(y0 * scale), left + round(x1 * scale), top + round(y1 * scale))
        boxes[i, 0] = torch.tensor(box)
        classes[i, 0] = labels[index]
        for _ in range(clutter):
            other = digits[int(pool[randint(0, len(pool) - 1)])]
            r, c = randint(0, 4), randint(0, 4)
            piece_size = max(4, round(4 * randint(low, high) / 8))
            piece = _resize(other[r : r + 4, c : c + 4], piece_size, piece_size)
            for _attempt in range(20):  # keep the target's box clean
                py, px = randint(0, canvas - piece_size), randint(0, canvas - piece_size)
                if px + piece_size <= box[0] or px >= box[2] or py + piece_size <= box[1] or py >= box[3]:
                    region = images[i, 0, py : py + piece_size, px : px + piece_size]
                    torch.maximum(region, piece, out=region)
                    break
    names = [str(d) for d in range(10)]
    return LocalizationSet(images, classes, boxes, names, [[names[int(c)]] for c in classes[:, 0]])


class GapCNN(nn.Module):
    """A small CNN whose head is global average pooling + linear, so CAM applies exactly.

    Four 3x3 conv blocks (conv, batch norm, ReLU; two max-pools; receptive field 26
    pixels): a (1, 64, 64) input gives ``2 * width`` maps of 16x16 in ``features`` (the
    natural target layer), then ``pool`` and ``fc``.
    """

    def __init__(self, classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width // 2), nn.MaxPool2d(2),
            *block(width // 2, width), nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on (N, C, H, W) images and (N,) labels (eval mode, no grad)."""
    from ._common import logits_in_batches

    return float((logits_in_batches(model, images, batch_size).argmax(1) == labels).float().mean())


def train_gap_cnn(
    data: LocalizationSet,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 3e-3,
    width: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> GapCNN:
    """Train a :class:`GapCNN` on image-level labels only (``data.classes[:, 0]``), seeded.

    Adam with a one-cycle learning rate; the boxes are never seen. Returns the model in eval mode.
    """
    torch.manual_seed(seed)
    model = GapCNN(len(data.class_names), data.images.shape[1], width)
    labels = data.classes[:, 0]
    steps_per_epoch = -(-len(data) // batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    started = time.perf_counter()
    bar = tqdm(range(epochs), desc="training GAP CNN", unit="epoch", disable=not progress)
    for _ in bar:
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(data), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(model(data.images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        bar.set_postfix(loss=f"{total / len(data):.3f}", seconds=f"{time.perf_counter() - started:.0f}")
    return model.eval()


# --- photos ------------------------------------------------------------------------------------

PHOTOS = {"chelsea": (0.0, 0.0, 0.85, 1.0), "coffee": (0.12, 0.0, 0.82, 1.0), "camera": (0.0, 0.1, 0.8, 1.0),
          "rocket": (0.0, 0.0, 1.0, 1.0)}
"""scikit-image photos the pretrained EfficientNet-Lite0 recognises alone, each with the
crop (x0, y0, x1, y1 as fractions) that keeps its object: Egyptian cat, espresso, tripod
(the cameraman's), drilling platform (the rocket's launch towers)."""


def _photo(name: str) -> torch.Tensor:
    """A scikit-image photo as (3, H, W) in [0, 1], cropped to its object when :data:`PHOTOS` says how."""
    try:
        from skimage import data
    except ImportError:
        raise InputError("the photos come from scikit-image: pip install 'camlens[demo]'") from None
    from ..io.images import to_tensor_image

    picture = to_tensor_image(getattr(data, name)())
    x0, y0, x1, y1 = PHOTOS.get(name, (0.0, 0.0, 1.0, 1.0))
    height, width = picture.shape[-2:]
    return picture[:, round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)]


def pasted_photos_set(
    n: int = 8,
    model: Any = None,
    canvas: int = 224,
    sizes: tuple[int, int] = (100, 140),
    photos: tuple[str, ...] = tuple(PHOTOS),
    seed: int = 0,
) -> LocalizationSet:
    """Two different photos per (3, canvas, canvas) grey canvas, at random, non-overlapping places.

    Each image has K=2 targets: the class the model gives each photo on its own (its
    top-1 on the whole photo), with that photo's box. Needs scikit-image.

    Args:
        n: number of canvases; the photo pairs cycle through every pair of ``photos``.
        model: a :class:`camlens.models.LoadedModel` (``.model``, ``.preprocess``,
            ``.class_names``); default: the embedded EfficientNet-Lite0.
        sizes: range of each photo's longer side, in pixels.
    """
    from itertools import combinations

    from ._common import logits_in_batches
    from ..io.models import load_model

    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    if len(photos) < 2:
        raise InputError("pasted_photos_set needs at least two photos")
    loaded = model if model is not None else load_model("efficientnet_lite0")
    pictures = {name: _photo(name) for name in photos}
    alone = logits_in_batches(loaded.model, loaded.preprocess([pictures[p] for p in photos]), 8).argmax(1)
    photo_class = dict(zip(photos, alone.tolist()))
    pairs = list(combinations(photos, 2))
    generator = torch.Generator().manual_seed(seed)

    def randint(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    grey = 127 / 255
    images = torch.full((n, 3, canvas, canvas), grey)
    boxes = torch.zeros(n, 2, 4, dtype=torch.long)
    classes = torch.zeros(n, 2, dtype=torch.long)
    notes = []
    for i in range(n):
        pair = pairs[i % len(pairs)]
        if (i // len(pairs)) % 2:
            pair = pair[::-1]
        for _attempt in range(10000):
            placed = []
            for name in pair:
                picture = pictures[name]
                longer = randint(*sizes)
                h, w = picture.shape[-2:]
                height, width = (longer, round(w * longer / h)) if h >= w else (round(h * longer / w), longer)
                top, left = randint(0, canvas - height), randint(0, canvas - width)
                placed.append((name, top, left, height, width))
            (_, t0, l0, h0, w0), (_, t1, l1, h1, w1) = placed
            if l0 + w0 + 4 <= l1 or l1 + w1 + 4 <= l0 or t0 + h0 + 4 <= t1 or t1 + h1 + 4 <= t0:
                break
        else:  # pragma: no cover - sizes far too big for the canvas
            raise InputError(f"cannot place two photos of sizes {sizes} apart on a {canvas}px canvas; use smaller sizes")
        for k, (name, top, left, height, width) in enumerate(placed):
            resized = F.interpolate(pictures[name][None], size=(height, width), mode="bilinear",
                                    align_corners=False, antialias=True)[0].clamp(0, 1)
            images[i, :, top : top + height, left : left + width] = resized
            boxes[i, k] = torch.tensor([left, top, left + width, top + height])
            classes[i, k] = photo_class[name]
        notes.append(list(pair))
    names = list(loaded.class_names) if loaded.class_names else [f"class {c}" for c in range(int(alone.max()) + 1)]
    return LocalizationSet(images, classes, boxes, names, notes)
