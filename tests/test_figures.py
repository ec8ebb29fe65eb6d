"""Nothing in the README is pasted: each picture and each marked table has the script that writes it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


figures = _load(ROOT / "docs" / "make_figures.py", "camlens_make_figures")
sys.path.insert(0, str(ROOT / "benchmarks"))
readme_blocks = _load(ROOT / "benchmarks" / "_readme.py", "_readme")


def _blocks(text: str) -> list[str]:
    return re.findall(r"<!-- ([\w:.-]+) -->\n", text)


def test_every_readme_picture_has_its_script():
    shown = set(re.findall(r"docs/images/([\w.-]+\.png)", README))
    shown |= {f"activation_stats_{run}_overview.png" for run in ("sane", "bad")}  # named as {sane,bad} in the text
    written = {name for source in figures.SOURCES for name in source.images}
    assert shown - written == set(), "README pictures no script writes: add them to docs/make_figures.py"
    assert all((ROOT / "docs" / "images" / name).exists() for name in written)


def test_every_marked_table_has_its_benchmark():
    marked = set(_blocks(README)) - {"not run"}
    written = {block for source in figures.SOURCES for block in source.blocks}
    assert marked - written == set(), "README tables no script writes: add them to docs/make_figures.py"
    assert written - marked == set(), "docs/make_figures.py names README blocks that do not exist"
    for name in marked:  # each block closes, once
        assert README.count(f"<!-- {name} -->") == 1 and README.count(f"<!-- /{name} -->") == 1, name


def test_every_marked_table_is_filled():
    for name in set(_blocks(README)) - {"not run"}:
        body = README.split(f"<!-- {name} -->\n", 1)[1].split(f"<!-- /{name} -->", 1)[0]
        assert body.strip(), f"README table {name} is empty: run the command docs/make_figures.py --list names"


def test_readme_lists_what_writes_each_figure():
    body = README.split("<!-- figures -->\n", 1)[1].split("<!-- /figures -->", 1)[0]
    assert body.strip() == figures.readme_list()
    for source in figures.SOURCES:
        script = next(part for part in source.command if part.endswith(".py") or part.startswith("camlens"))
        assert script.startswith("camlens") or (ROOT / script).exists(), script


def test_write_block_replaces_between_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- t -->\nold\n<!-- /t -->\nb <!-- t2 -->\n", encoding="utf-8")
    readme_blocks.write_block("t", "| new |\n", readme)
    assert readme.read_text(encoding="utf-8") == "a\n<!-- t -->\n| new |\n<!-- /t -->\nb <!-- t2 -->\n"
    readme_blocks.write_block("t", "again", readme)  # idempotent shape: the markers stay
    assert readme.read_text(encoding="utf-8").count("<!-- t -->") == 1
    assert list(tmp_path.iterdir()) == [readme]  # the temporary file was renamed, not left behind
    with pytest.raises(SystemExit, match="no <!-- missing -->"):
        readme_blocks.write_block("missing", "x", readme)
