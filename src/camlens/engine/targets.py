"""What to explain: any differentiable function of the model's output (``explain(..., target=)``).

A target turns the model's output into the (N, K) scores whose gradients (or masked-input
changes) the methods read:

- :class:`ClassScore`: class logits, the default (``classes=`` is its short form);
- :class:`SegmentationMask`: the sum of a class's logits over a mask (segmentation);
- :class:`BoxScore`: the score of the detection that best matches a box (torchvision
  detectors), :class:`Detections`: every detection above a score (``explain_detections``);
- :class:`Similarity`: cosine similarity of an embedding to reference vectors (retrieval, CLIP);
- :class:`Regression`: one or more regression outputs, signed;
- any callable ``outputs -> (N,)`` or ``(N, K)``.

``target.bind(output, recorder, score)`` reads the unmodified forward once (the top-1
class, the pixels where a class wins, the detection matching a box) and returns a
:class:`Bound` target: its ``scores`` for that forward and ``rows(output, i)`` for re-runs
of image ``i`` (Score-CAM's masked inputs). The user's target object is never changed, so
one target can serve many calls and threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..core.errors import InputError
from . import _validate
from ._outputs import is_detection_output, logits_of

__all__ = [
    "Target", "Bound", "ClassScore", "SegmentationMask", "BoxScore", "Detections", "Similarity",
    "Regression", "FunctionTarget", "as_target", "resolve_classes",
]


def resolve_classes(classes: Any, logits: torch.Tensor) -> torch.Tensor:
    """Turn a ``classes`` argument into an (N, K) long tensor of class indices.

    ``None``: top-1 per image. ``int``: that class for every image. ``list``/``tuple`` of
    ints: those K classes for every image. ``"top5"`` (any k): the k best per image.
    Tensor: 0-d like an int, 1-d of length N one class per image, 2-d (N, K) as given.
    """
    n, num_classes = logits.shape
    if hasattr(classes, "__array__") and not isinstance(classes, torch.Tensor):  # numpy arrays and scalars
        classes = torch.as_tensor(classes)
    if classes is None:
        result = logits.argmax(dim=1, keepdim=True)
    elif isinstance(classes, str):
        text = classes.lower().replace("-", "").replace("_", "")
        if not text.startswith("top") or not text[3:].isdigit() or int(text[3:]) < 1:
            raise InputError(f"classes={classes!r} is not understood; use e.g. 'top1' or 'top5', an int or a list")
        k = int(text[3:])
        if k > num_classes:
            raise InputError(f"classes={classes!r} asks for {k} classes but the model outputs {num_classes}")
        result = logits.topk(k, dim=1).indices
    elif isinstance(classes, torch.Tensor):
        _validate.check_class_tensor(classes)
        result = classes.to(logits.device).long()
        if result.dim() == 0:
            result = result.expand(n).unsqueeze(1)
        elif result.dim() == 1:
            if result.shape[0] != n:
                raise InputError(
                    f"a 1-d classes tensor gives one class per image: expected {n} entries, got "
                    f"{result.shape[0]}; for several classes per image pass an (N, K) tensor or a list"
                )
            result = result.unsqueeze(1)
        elif result.dim() != 2 or result.shape[0] != n:
            raise InputError(f"classes tensor must be (N, K) with N={n}, got {tuple(result.shape)}")
    elif isinstance(classes, (float, bool)):
        raise _validate.ArgumentTypeError(f"classes={classes!r} is not a class index; pass an int, a list of ints, 'top5' or None")
    elif isinstance(classes, (int, list, tuple)):
        values = [classes] if isinstance(classes, int) else [_validate.class_index(v) for v in classes]
        if not values:
            raise InputError("classes is an empty list; give at least one class index (or None for the top-1)")
        result = torch.tensor(values, device=logits.device).expand(n, len(values))
    else:
        raise InputError(f"classes of type {type(classes).__name__} is not understood; use None, an int, a list, 'top5' or a tensor")
    bad = (result < 0) | (result >= num_classes)
    if bad.any():
        raise InputError(
            f"class {int(result[bad][0])} is out of range: the model outputs {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    return result


@dataclass
class Bound:
    """A target read against one forward.

    Attributes:
        scores: (N, K) the explained scores of that forward (in its autograd graph).
        labels: (N, K) long: the class (or detection label, output index) of each score.
        source: what the scores are, for people (``Explanation.score_source``).
        logits: (N, classes) the class scores when there are any (top-k lists), else ``None``.
        boxes: (N, K, 4) detection targets: the matched detections' boxes, else ``None``.
        rows: ``rows(output, index, recorder)`` -> (M, K): the scores of a re-run whose M
            rows are all copies of image ``index`` (masked inputs, ablations).
        batch: ``batch(output, recorder)`` -> (N, K): the scores of a re-run of all N images.
        graph_logits: ``logits`` still in the forward's autograd graph (class targets), for the
            methods that backpropagate through the head more than once (Shapley-CAM, Finer-CAM).
    """

    scores: torch.Tensor
    labels: torch.Tensor
    source: str
    rows: Callable[..., torch.Tensor]
    batch: Callable[..., torch.Tensor]
    logits: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    graph_logits: torch.Tensor | None = None


class Target:
    """Base of the targets: ``bind(output, recorder=None, score="logits") -> Bound``."""

    dense_ok = False  # accepts dense (N, K, H, W) outputs
    detection = False  # reads a detector's list of dicts

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:  # pragma: no cover
        raise NotImplementedError

    def _check(self, output: Any) -> None:
        if is_detection_output(output) and not self.detection:
            raise InputError(
                f"{type(self).__name__} cannot read a detection model's output (boxes, scores and labels per "
                "image); use target=camlens.targets.BoxScore(box) or camlens.explain_detections(model, image)"
            )


class ClassScore(Target):
    """Class scores: ``logits[:, c]`` for each class ``c`` of ``classes`` (the default target).

    ``classes`` as in :func:`resolve_classes` (``None`` top-1, an int, a list, ``"top5"``,
    a tensor). Models ending in ``LogSoftmax``/``Softmax``/``Sigmoid`` are explained before
    it unless ``score="output"``.
    """

    def __init__(self, classes: Any = None) -> None:
        self.classes = classes

    def __repr__(self) -> str:
        return f"ClassScore({self.classes!r})"

    def _logits(self, output, recorder, score):
        logits = logits_of(output)
        if recorder is None:
            return logits, "model output"
        return recorder.scores(logits, score)

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:
        logits, source = self._logits(output, recorder, score)
        index = resolve_classes(self.classes, logits.detach())
        with torch.enable_grad():
            scores = logits.gather(1, index)

        def rows(out, i, rec=None):
            return self._logits(out, rec, score)[0][:, index[i]]

        def batch(out, rec=None):
            return self._logits(out, rec, score)[0].gather(1, index)

        return Bound(scores, index, source, rows, batch, logits=logits.detach(), graph_logits=logits)


def _mask_tensor(mask: Any, shape: tuple[int, ...]) -> torch.Tensor:
    n, _, h, w = shape
    mask = torch.as_tensor(mask).float()
    if mask.shape == (h, w):
        mask = mask.expand(n, h, w)
    if mask.shape != (n, h, w):
        raise InputError(f"SegmentationMask: mask must be ({h}, {w}) or ({n}, {h}, {w}) for outputs {list(shape)}, got {list(mask.shape)}")
    return mask


class SegmentationMask(Target):
    """The sum of class ``class_index``'s logits over a mask: ``sum_ij out[:, c, i, j] * mask[i, j]``.

    Args:
        class_index: a class (or a list of classes, one map each).
        mask: (H, W) or (N, H, W) at the output's resolution; default: the pixels where that
            class wins (``out.argmax(1) == c``) in the explained forward.

    For ``{"out": ...}`` dicts (torchvision segmentation) and plain (N, K, H, W) outputs; the
    same objective as pytorch-grad-cam's ``SemanticSegmentationTarget``.
    """

    dense_ok = True

    def __init__(self, class_index: int | Sequence[int], mask: Any = None) -> None:
        self.classes = [class_index] if isinstance(class_index, int) else list(class_index)
        if not self.classes or not all(isinstance(c, int) and not isinstance(c, bool) for c in self.classes):
            raise InputError(f"SegmentationMask: class_index must be an int or a list of ints, got {class_index!r}")
        self.mask = mask

    def __repr__(self) -> str:
        return f"SegmentationMask({self.classes if len(self.classes) > 1 else self.classes[0]!r})"

    def _dense(self, output) -> torch.Tensor:
        self._check(output)
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise InputError(
                f"SegmentationMask needs dense (N, classes, H, W) scores; the output is "
                f"{list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__}"
            )
        bad = [c for c in self.classes if not 0 <= c < output.shape[1]]
        if bad:
            raise InputError(f"SegmentationMask: class {bad[0]} is out of range: the model outputs {output.shape[1]} classes")
        return output

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:
        dense = self._dense(output)
        n = dense.shape[0]
        if self.mask is None:
            winner = dense.detach().argmax(dim=1)
            masks = torch.stack([(winner == c).float() for c in self.classes], dim=1)  # (N, K, H, W)
            empty = (masks.flatten(2).sum(-1) == 0).nonzero()
            if len(empty):
                i, k = empty[0].tolist()
                raise InputError(
                    f"SegmentationMask: class {self.classes[k]} wins no pixel of image {i}; pass mask= "
                    "(the region to explain) or pick a class the model predicts"
                )
        else:
            one = _mask_tensor(self.mask, tuple(dense.shape)).to(dense.device)
            masks = one.unsqueeze(1).expand(-1, len(self.classes), -1, -1)
        index = torch.tensor(self.classes, device=dense.device)

        def batch(out, rec=None):
            d = self._dense(out)
            return (d[:, index] * masks.to(d.dtype)).sum(dim=(-2, -1))

        def rows(out, i, rec=None):
            d = self._dense(out)
            return (d[:, index] * masks[i : i + 1].to(d.dtype)).sum(dim=(-2, -1))

        with torch.enable_grad():
            scores = batch(dense)
        labels = index.expand(n, -1)
        where = "the pixels where it wins" if self.mask is None else "the given mask"
        return Bound(scores, labels, f"sum of class logits over {where}", rows, batch)


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    try:
        from torchvision.ops import box_iou
    except ImportError:
        raise InputError("detection targets need torchvision: pip install 'camlens[demo]'") from None
    return box_iou(a.float(), b.float())


def _detections(output: Any) -> list:
    if not is_detection_output(output):
        got = type(output).__name__ if not isinstance(output, torch.Tensor) else str(list(output.shape))
        raise InputError(f"detection targets need a detector's output (a list of dicts with boxes, scores, labels), got {got}")
    return list(output)


class BoxScore(Target):
    """The score of the detection that best matches ``box`` (torchvision detectors).

    Args:
        box: ``(x0, y0, x1, y1)`` in input pixels, or several (K, 4): one map each.
        label: the class the detection must have (an int, or one per box); ``None``: any.
        iou: the least IoU between ``box`` and the detection.
        with_iou: add the IoU to the score (``score + IoU``, pytorch-grad-cam's
            ``FasterRCNNBoxScoreTarget``), so the box's position is explained too.

    Faster R-CNN, RetinaNet, FCOS, SSD: input a batch (or list) of images, output a list of
    dicts. The explained forward must have such a detection (else an error giving the best
    IoU); re-runs (Score-CAM) score 0 where none matches.
    """

    detection = True

    def __init__(self, box: Any, label: int | Sequence[int] | None = None, iou: float = 0.5, with_iou: bool = False) -> None:
        boxes = torch.as_tensor(box, dtype=torch.float32)
        if boxes.dim() == 1:
            boxes = boxes.unsqueeze(0)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise InputError(f"BoxScore: box must be (x0, y0, x1, y1) or (K, 4), got shape {list(boxes.shape)}")
        if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            raise InputError(f"BoxScore: box {boxes.tolist()} must have x1 > x0 and y1 > y0")
        labels = [label] * len(boxes) if label is None or isinstance(label, int) else list(label)
        if len(labels) != len(boxes):
            raise InputError(f"BoxScore: {len(labels)} labels for {len(boxes)} boxes")
        if not 0 <= float(iou) <= 1:
            raise InputError(f"BoxScore: iou={iou} must be in [0, 1]")
        self.boxes, self.labels, self.iou, self.with_iou = boxes, labels, float(iou), bool(with_iou)

    def __repr__(self) -> str:
        return f"BoxScore({self.boxes.tolist()}, label={self.labels}, iou={self.iou})"

    def _match(self, det: dict, k: int) -> tuple[int, float]:
        """Index of the detection best matching box k (label filter, IoU), and its IoU; -1 if none."""
        if len(det["boxes"]) == 0:
            return -1, 0.0
        ious = _box_iou(self.boxes[k : k + 1].to(det["boxes"].device), det["boxes"].detach())[0]
        if self.labels[k] is not None:
            ious = torch.where(det["labels"] == self.labels[k], ious, torch.full_like(ious, -1.0))
        best = int(ious.argmax())
        return (best, float(ious[best])) if float(ious[best]) >= self.iou else (-1, max(float(ious[best]), 0.0))

    def _score(self, det: dict, k: int) -> torch.Tensor:
        best, _ = self._match(det, k)
        if best < 0:
            return det["scores"].sum() * 0
        score = det["scores"][best]
        if self.with_iou:
            score = score + _box_iou(self.boxes[k : k + 1].to(det["boxes"].device), det["boxes"][best : best + 1])[0, 0]
        return score

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:
        dets = _detections(output)
        labels, boxes = [], []
        for i, det in enumerate(dets):
            row_l, row_b = [], []
            for k in range(len(self.boxes)):
                best, iou = self._match(det, k)
                if best < 0:
                    want = "" if self.labels[k] is None else f" of label {self.labels[k]}"
                    raise InputError(
                        f"BoxScore: no detection{want} in image {i} overlaps box {self.boxes[k].tolist()} with "
                        f"IoU >= {self.iou} (best {iou:.2f} of {len(det['boxes'])} detections); lower iou=, "
                        "or list the detections with camlens.explain_detections(model, image, score=0)"
                    )
                row_l.append(int(det["labels"][best]))
                row_b.append(det["boxes"][best].detach())
            labels.append(row_l)
            boxes.append(torch.stack(row_b))

        def batch(out, rec=None):  # row r: the detections of that row's own forward
            return torch.stack([torch.stack([self._score(d, k) for k in range(len(self.boxes))]) for d in _detections(out)])

        with torch.enable_grad():
            scores = batch(dets)
        what = "score + IoU" if self.with_iou else "score"
        return Bound(scores, torch.tensor(labels), f"detection {what} of the best match of each box",
                     lambda out, i, rec=None: batch(out), batch, boxes=torch.stack(boxes))


class Detections(Target):
    """Every detection with score >= ``score`` in the explained forward, one map each.

    What :func:`camlens.explain_detections` explains; re-runs match each detection by IoU
    >= ``iou`` and the same label (see :class:`BoxScore`). One image at a time.
    """

    detection = True

    def __init__(self, score: float = 0.5, iou: float = 0.5) -> None:
        self.score, self.iou = float(score), float(iou)

    def __repr__(self) -> str:
        return f"Detections(score={self.score})"

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:
        dets = _detections(output)
        if len(dets) != 1:
            raise InputError(f"Detections explains one image at a time; got {len(dets)} (loop over the images)")
        det = dets[0]
        keep = (det["scores"].detach() >= self.score).nonzero().flatten()
        if len(keep) == 0:
            best = float(det["scores"].detach().max()) if len(det["scores"]) else None
            have = f"the best scores {best:.3f}" if best is not None else "the model found no detection at all"
            raise InputError(f"no detection scores >= {self.score} ({have}); lower score= (CLI: --score)")
        boxes, labels = det["boxes"][keep].detach(), det["labels"][keep]
        matcher = BoxScore(boxes.cpu(), label=labels.tolist(), iou=self.iou)

        def rows(out, i, rec=None):
            return torch.stack([torch.stack([matcher._score(d, k) for k in range(len(keep))]) for d in _detections(out)])

        with torch.enable_grad():
            scores = det["scores"][keep].unsqueeze(0)
        return Bound(scores, labels.unsqueeze(0), f"detection scores >= {self.score}", rows,
                     lambda out, rec=None: rows(out, 0), boxes=boxes.unsqueeze(0))


def _vectors(output: Any, what: str) -> torch.Tensor:
    if is_detection_output(output):
        Target._check(Target(), output)
    if not isinstance(output, torch.Tensor):
        raise InputError(f"{what} needs a tensor output, got {type(output).__name__}")
    if output.dim() == 4 and output.shape[2] * output.shape[3] == 1:
        output = output.flatten(1)
    if output.dim() == 1:
        output = output.unsqueeze(1)
    if output.dim() != 2:
        raise InputError(f"{what} needs (N, D) outputs, got {list(output.shape)}; pick one with output=")
    return output


class Similarity(Target):
    """Cosine similarity of the output embedding to ``reference`` (D,) or to each of K (K, D).

    Image retrieval (why are these images similar?) and CLIP-style image-text matching
    (``reference`` = the text embedding).
    """

    def __init__(self, reference: Any) -> None:
        ref = torch.as_tensor(reference).float()
        if ref.dim() == 1:
            ref = ref.unsqueeze(0)
        if ref.dim() != 2:
            raise InputError(f"Similarity: reference must be (D,) or (K, D), got {list(ref.shape)}")
        self.reference = ref

    def __repr__(self) -> str:
        return f"Similarity(reference of shape {list(self.reference.shape)})"

    def _cosine(self, out) -> torch.Tensor:
        emb = _vectors(out, "Similarity")
        if emb.shape[1] != self.reference.shape[1]:
            raise InputError(f"Similarity: the embedding has {emb.shape[1]} dims, the reference {self.reference.shape[1]}")
        ref = F.normalize(self.reference.to(emb.device, torch.float32), dim=1)
        return F.normalize(emb.float(), dim=1) @ ref.T

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:
        with torch.enable_grad():
            scores = self._cosine(output)
        n, k = scores.shape
        labels = torch.arange(k, device=scores.device).expand(n, k)
        return Bound(scores, labels, "cosine similarity to the reference", lambda out, i, rec=None: self._cosine(out),
                     lambda out, rec=None: self._cosine(out))


class Regression(Target):
    """Regression outputs: ``direction * output[:, index]`` (``index=None``: the only output).

    ``index`` an int or a list (one map each); ``direction=-1`` explains what lowers it.
    """

    def __init__(self, index: int | Sequence[int] | None = None, direction: float = +1) -> None:
        if direction not in (1, -1, 1.0, -1.0):
            raise InputError(f"Regression: direction must be +1 or -1, got {direction!r}")
        self.index = None if index is None else ([index] if isinstance(index, int) else list(index))
        self.direction = float(direction)

    def __repr__(self) -> str:
        return f"Regression(index={self.index}, direction={self.direction:+g})"

    def _values(self, out) -> torch.Tensor:
        values = _vectors(out, "Regression")
        if self.index is None:
            if values.shape[1] != 1:
                raise InputError(f"Regression: the model outputs {values.shape[1]} values per image; pass index=")
            index = [0]
        else:
            index = self.index
        bad = [i for i in index if not -values.shape[1] <= i < values.shape[1]]
        if bad:
            raise InputError(f"Regression: index {bad[0]} is out of range for {values.shape[1]} outputs")
        return self.direction * values[:, index]

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:
        with torch.enable_grad():
            scores = self._values(output)
        n, k = scores.shape
        labels = torch.tensor(self.index or [0], device=scores.device).expand(n, k)
        sign = "" if self.direction > 0 else "minus "
        return Bound(scores, labels, f"{sign}regression output", lambda out, i, rec=None: self._values(out),
                     lambda out, rec=None: self._values(out))


class FunctionTarget(Target):
    """Any differentiable ``fn(outputs) -> (N,)`` or ``(N, K)``."""

    dense_ok = True
    detection = True

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __repr__(self) -> str:
        return f"target {getattr(self.fn, '__name__', type(self.fn).__name__)}"

    def _call(self, out, n: int | None = None) -> torch.Tensor:
        value = self.fn(out)
        if not isinstance(value, torch.Tensor):
            raise InputError(f"the target callable must return a tensor (N,) or (N, K), got {type(value).__name__}")
        if value.dim() == 1:
            value = value.unsqueeze(1)
        if value.dim() != 2 or (n is not None and value.shape[0] != n):
            raise InputError(f"the target callable must return (N,) or (N, K) with N={n}, got {list(value.shape)}")
        return value

    def bind(self, output: Any, recorder: Any = None, score: str = "logits") -> Bound:
        n = output.shape[0] if isinstance(output, torch.Tensor) else len(output) if isinstance(output, (list, tuple)) else None
        with torch.enable_grad():
            scores = self._call(output, n)
        n, k = scores.shape
        labels = torch.arange(k, device=scores.device).expand(n, k)
        return Bound(scores, labels, repr(self), lambda out, i, rec=None: self._call(out),
                     lambda out, rec=None: self._call(out))


def as_target(target: Any, classes: Any) -> Target:
    """The :class:`Target` for ``explain``'s ``target=`` and ``classes=`` arguments."""
    if target is None:
        return ClassScore(classes)
    if classes is not None:
        raise InputError("pass either classes= (class scores) or target=, not both; ClassScore(classes) is the target form")
    if isinstance(target, Target):
        return target
    if callable(target):
        return FunctionTarget(target)
    raise InputError(
        f"target={target!r} is not understood; use a camlens.targets object (ClassScore, SegmentationMask, "
        "BoxScore, Similarity, Regression) or a callable outputs -> (N,) or (N, K)"
    )
