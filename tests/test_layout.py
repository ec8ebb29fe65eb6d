"""The package layout: folders import one way, no import cycle, private modules stay in their folder.

The rules live in pyproject.toml (import-linter contracts) and in the README's
"How the code is laid out". Each check is also run on a copy of the package with one
rule broken on purpose, so a check that can no longer fail would be noticed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "camlens"
FOLDERS = ["core", "methods", "io", "viz", "engine", "metrics", "stats", "cli", "integrations"]


def _lint(src: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the project's contracts, importing camlens from ``src``."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from importlinter.cli import lint_imports_command; "
        "sys.argv = ['lint-imports', '--config', sys.argv[2], '--no-cache']; lint_imports_command()"
    )
    return subprocess.run([sys.executable, "-c", code, str(src), str(ROOT / "pyproject.toml")],
                          capture_output=True, text=True, cwd=src)


class _Graph:
    """The package's direct imports, as grimp (import-linter's graph builder) sees them."""

    def __init__(self, edges: dict[str, list[str]]) -> None:
        self.modules = set(edges)
        self._edges = edges

    def find_modules_directly_imported_by(self, module: str) -> set[str]:
        return set(self._edges[module])


def _graph(src: Path) -> _Graph:
    """Built in a fresh interpreter: this one has already imported the installed camlens."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import grimp; "
        "g = grimp.build_graph('camlens', cache_dir=None); "
        "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, text=True, check=True, cwd=src)
    return _Graph(json.loads(result.stdout))


def _cycles(graph: _Graph) -> list[list[str]]:
    """Strongly connected groups of more than one module, and modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in graph.find_modules_directly_imported_by(module):
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def _private_violations(graph: _Graph) -> list[str]:
    """Imports of ``pkg._private`` from outside ``pkg`` (the package root re-exports nothing private)."""
    bad = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            parts = imported.split(".")
            if not parts[-1].startswith("_") or parts[-1].startswith("__"):
                continue
            folder = ".".join(parts[:-1])
            if not (module == folder or module.startswith(folder + ".")):
                bad.append(f"{module} imports {imported}")
    return bad


@pytest.fixture
def broken_copy(tmp_path):
    """A copy of the package to break on purpose."""
    shutil.copytree(PACKAGE, tmp_path / "camlens", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_folders_exist_and_each_says_its_job():
    for folder in FOLDERS:
        init = PACKAGE / folder / "__init__.py"
        assert init.exists(), folder
        assert '"""' in init.read_text(encoding="utf-8"), f"{folder}/__init__.py has no docstring"
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "localization_data.py", "targets.py", "zoo.py"], loose  # the three are import aliases


def test_import_contracts_are_kept():
    result = _lint(PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_breaking_a_layer_on_purpose_fails(broken_copy):
    hooks = broken_copy / "camlens" / "core" / "hooks.py"
    hooks.write_text(hooks.read_text(encoding="utf-8") + "\nfrom camlens.cli import main  # noqa\n", encoding="utf-8")
    result = _lint(broken_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "camlens.core.hooks -> camlens.cli" in result.stdout


def test_importing_an_integration_from_inside_fails(broken_copy):
    engine = broken_copy / "camlens" / "engine" / "explain.py"
    engine.write_text(engine.read_text(encoding="utf-8") + "\nimport camlens.integrations.fastai  # noqa\n",
                      encoding="utf-8")
    result = _lint(broken_copy)
    assert result.returncode != 0 and "Integrations sit on top" in result.stdout


def test_no_import_cycle_anywhere():
    assert _cycles(_graph(PACKAGE.parent)) == []


def test_a_two_file_cycle_is_found(broken_copy):
    stats = broken_copy / "camlens" / "stats" / "plots.py"
    stats.write_text(stats.read_text(encoding="utf-8") + "\nfrom .activation_stats import ActivationStats  # noqa\n",
                     encoding="utf-8")
    assert _cycles(_graph(broken_copy)) == [["camlens.stats.activation_stats", "camlens.stats.plots"]]


def test_private_modules_are_imported_only_from_their_folder(broken_copy):
    assert _private_violations(_graph(PACKAGE.parent)) == []
    cli = broken_copy / "camlens" / "cli" / "layers.py"
    cli.write_text(cli.read_text(encoding="utf-8") + "\nfrom ..engine._scoring import Scorer  # noqa\n",
                   encoding="utf-8")
    assert _private_violations(_graph(broken_copy)) == ["camlens.cli.layers imports camlens.engine._scoring"]


def test_the_root_package_imports_no_integration():
    graph = _graph(PACKAGE.parent)
    imported = graph.find_modules_directly_imported_by("camlens")
    assert not [m for m in imported if m.startswith("camlens.integrations")]
    result = subprocess.run([sys.executable, "-c", "import sys, camlens; "
                             "print(sorted(m for m in sys.modules if m.startswith(('fastai', 'lightning', 'camlens.integrations'))))"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
