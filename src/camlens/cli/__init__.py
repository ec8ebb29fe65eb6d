"""The ``camlens`` command line: ``explain``, ``demo``, ``layers``, ``methods``, ``evaluate``, ``report``.

One module per sub-command, each with ``add_parser(sub)`` and ``run(args)``; add a
sub-command by writing such a module and listing it in ``SUBCOMMANDS``. Thin on purpose: it parses arguments, loads inputs, calls the library, writes files.
Bad input gives one line on stderr and exit code 2, never a traceback, and nothing
is written unless every image was explained.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from ..core.errors import CamlensError
from . import demo, evaluate, explain, layers, methods, report

EXIT_BAD_INPUT = 2
SUBCOMMANDS = (explain, demo, layers, methods, evaluate, report)

__all__ = ["main", "build_parser", "EXIT_BAD_INPUT"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camlens", description="Class activation maps: why did the CNN say that?")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("camlens: error: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except CamlensError as error:
        print(f"camlens: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("camlens: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one plain line (no source path) on stderr."""
    print(f"camlens: warning: {message}", file=sys.stderr)


