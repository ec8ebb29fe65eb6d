"""The ``camlens`` command line: ``explain``, ``demo``, ``layers``, ``methods``, ``evaluate``, ``report``.

One module per sub-command, each with ``add_parser(sub)`` and ``run(args)``; add a
sub-command by writing such a module and listing it in ``SUBCOMMANDS``. Thin on purpose: it parses arguments, loads inputs, calls the library, writes files.

The error contract (:mod:`camlens.cli._contract`): bad input gives one line
``camlens: error: ...`` on stderr and exit code 2, never a traceback; an unexpected
internal error gives one line and exit code 1 (``--debug`` shows the traceback); a
closed pipe (``camlens methods | head -3``) ends quietly; names are printed with control
characters escaped; nothing is written unless every image was explained.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import NoReturn, Sequence

from ..core.errors import CamlensError
from . import demo, evaluate, explain, layers, methods, report
from ._contract import EscapingStream, printable

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a Unix tool killed by a closed pipe returns
SUBCOMMANDS = (explain, demo, layers, methods, evaluate, report)

__all__ = ["main", "build_parser", "EXIT_BAD_INPUT", "EXIT_INTERNAL"]


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one ``camlens: error:`` line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"camlens: error: {printable(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="camlens", description="Class activation maps: why did the CNN say that?")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a bad argument (2, already printed)
        return int(stop.code or 0)
    if getattr(args, "batch_size", 1) < 1:
        print("camlens: error: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    previous, stdout = warnings.showwarning, sys.stdout
    warnings.showwarning = _show_warning
    sys.stdout = EscapingStream(stdout)  # type: ignore[assignment]
    try:
        return args.func(args)
    except CamlensError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as error:  # the environment: a full disk, a read-only folder, a vanished file
        where = f" {error.filename!r}" if error.filename else ""
        _error(f"cannot write or read{where}: {error.strerror or error}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("camlens: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the contract: one line, exit 1, --debug for the rest
        if args.debug:
            traceback.print_exc()
        else:
            first = (str(error).splitlines() or [""])[0][:200]
            _error(f"internal error ({type(error).__name__}: {first}); this is a bug in camlens: run again "
                   "with --debug for the traceback and report it")
        return EXIT_INTERNAL
    finally:
        warnings.showwarning = previous
        sys.stdout = stdout
        try:
            stdout.flush()
        except (BrokenPipeError, ValueError):
            _silence_stdout()


def _error(message: str) -> None:
    """One ``camlens: error:`` line on stderr, control characters escaped."""
    print(f"camlens: error: {printable(' '.join(str(message).splitlines()))}", file=sys.stderr)


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one plain line (no source path) on stderr."""
    print(f"camlens: warning: {printable(' '.join(str(message).splitlines()))}", file=sys.stderr)
