"""What every sub-command shares: model options, ``--class`` parsing, slugs, the top classes line."""

from __future__ import annotations

import argparse
import re

from ..core.errors import InputError

__all__ = ["add_model_options", "parse_classes", "top_classes", "slug", "split_methods"]


def slug(text: str) -> str:
    """A file-name-safe lower-case version of ``text``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def parse_classes(text: str | None, loaded) -> object:
    """``--class``: an index, a comma list, ``top3``, or a class name (``"Egyptian cat"``)."""
    if text is None:
        return None
    text = text.strip()
    if text.lower().startswith("top"):
        return text
    parts = [p.strip() for p in text.split(",") if p.strip()]
    classes = []
    for part in parts:
        if part.lstrip("-").isdigit():
            classes.append(int(part))
            continue
        names = loaded.class_names or []
        lowered = [n.lower() for n in names]
        if part.lower() in lowered:
            classes.append(lowered.index(part.lower()))
            continue
        import difflib

        close = difflib.get_close_matches(part.lower(), lowered, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(names[lowered.index(c)] for c in close)}?" if close else ""
        raise InputError(f"--class {part!r} is neither an index nor a class name of {loaded.name}{hint}")
    return classes


def top_classes(logits_row, loaded, k: int = 3) -> str:
    probs = logits_row.float().softmax(-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return ", ".join(f"{loaded.label(int(i))} {float(v):.2f}" for v, i in zip(values, indices))


def split_methods(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def add_model_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--model", required=required, default=None if required else "efficientnet_lite0",
                        help="efficientnet_lite0 (embedded, pretrained), a torchvision name, timm:NAME, or a model file")
    parser.add_argument("--weights", help="torchvision/timm pretrained weights, e.g. DEFAULT (downloads; needs the network)")
    parser.add_argument("--arch", help="architecture of a state-dict model file (torchvision name, timm:NAME)")
    parser.add_argument("--trust", action="store_true",
                        help="allow a fully pickled model file (unpickling runs code from the file)")
