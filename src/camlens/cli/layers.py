"""``camlens layers``: every module with its output shape and stride, the target layer, the head verdict."""

from __future__ import annotations

import argparse
import warnings

from ._common import add_model_options


def add_parser(sub) -> None:
    p = sub.add_parser("layers", help="table of layers, shapes, strides, the target layer and the head verdict")
    add_model_options(p, required=False)
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.layers import describe
    from ..io.models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(args.model, weights=args.weights, arch=args.arch, trust=args.trust)
    size = tuple(args.input_size) if args.input_size else loaded.input_size
    print(describe(loaded.model, size))
    return 0
