"""The CLI's error contract, shared by every sub-command.

- Every failure the user can fix prints one line ``camlens: error: ...`` on stderr and
  exits 2 (bad arguments, bad files, an output location that cannot be written).
- An unexpected internal error prints one line, exits 1 and points to ``--debug``,
  which shows the traceback.
- Names are printed with terminal control characters escaped (``\\x1b``), so a file
  name cannot move the cursor or recolour the terminal.
- Output locations are checked before any model work (:func:`check_output_file`,
  :func:`check_output_dir`); files are written under a temporary name and renamed
  (:func:`camlens.io.files.atomic_write`), so a failure never leaves half a result.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any, TextIO

from ..core.errors import InputError

__all__ = ["printable", "EscapingStream", "check_output_file", "check_output_dir"]

_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")  # text-direction overrides


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters (C0, DEL, C1, bidi overrides) escaped; ``keep`` lists ones to leave."""
    return "".join(
        char if char in keep or not (unicodedata.category(char) == "Cc" or char in _BIDI) else _escape(char)
        for char in str(text)
    )


class EscapingStream:
    """A text stream wrapper that escapes control characters other than newline and tab."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text, keep="\n\t"))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, buffer, ...
        return getattr(self._stream, name)


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_folder_writable(folder: Path, flag: str, target: Path) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise InputError(f"{flag} {printable(str(target))!r}: {printable(str(existing))!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {printable(str(target))!r}: cannot write in {printable(str(existing))!r} (permission denied)")


def check_output_file(path: str | os.PathLike | None, flag: str) -> Path | None:
    """Check, before any work, that a file can be written at ``path`` (``None``: no file asked for)."""
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{flag} {printable(str(target))!r} is a folder; give a file name")
    if target.exists() and not os.access(target, os.W_OK):
        raise InputError(f"{flag} {printable(str(target))!r} exists and is not writable")
    _check_folder_writable(target.parent, flag, target)
    return target


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Check, before any work, that ``path`` is (or can become) a writable folder."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InputError(f"{flag} {printable(str(target))!r} is a file; give a folder (or remove the file)")
    _check_folder_writable(target, flag, target)
    return target
