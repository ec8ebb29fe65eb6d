"""``camlens methods``: the registered CAM methods with their papers."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("methods", help="list the CAM methods")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..methods import get_method, list_methods

    for name in list_methods():
        method = get_method(name)
        print(f"{name:16s} {method.summary}  [{method.paper}]")
    return 0
