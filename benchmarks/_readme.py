"""The benchmarks' tables go into README.md between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers.

Every table in the README's performance sections is written by the benchmark that measures it
(``--readme``, or by default where the benchmark says so), never pasted: ``write_block`` replaces
the text between one pair of markers and writes the README under a temporary name, then renames.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def machine() -> str:
    """One line naming where the figures were measured: cores, processor, torch and its threads."""
    return (f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {sys.version.split()[0]}")


def write_block(name: str, text: str, readme: Path = README) -> None:
    """Replace what lies between ``<!-- name -->`` and ``<!-- /name -->`` in ``readme`` with ``text``.

    Raises SystemExit when the markers are missing (a table never lands in a random place).
    """
    sys.path.insert(0, str(ROOT / "src"))
    from camlens.io.files import atomic_write

    source = readme.read_text(encoding="utf-8")
    pattern = re.compile(rf"<!-- {re.escape(name)} -->\n.*?<!-- /{re.escape(name)} -->", re.S)
    if not pattern.search(source):
        raise SystemExit(f"{readme.name} has no <!-- {name} --> ... <!-- /{name} --> markers; table not written")
    block = f"<!-- {name} -->\n{text.strip()}\n<!-- /{name} -->"
    updated = pattern.sub(lambda _: block, source, count=1)
    atomic_write(readme, lambda tmp: Path(tmp).write_text(updated, encoding="utf-8"))
    print(f"README.md: <!-- {name} --> updated")
