"""Mutation testing for camlens: change the code one small step at a time, see whether a test fails.

    python tools/mutate.py                      # every target in pyproject [tool.camlens.mutation]
    python tools/mutate.py -j 2 methods/eigen   # only files whose path contains "methods/eigen"
    python tools/mutate.py --list hooks          # the mutants, without running anything
    python tools/mutate.py --show ID            # the diff of one mutant
    python tools/mutate.py --survivors          # rerun only the survivors of the last run
    python tools/mutate.py --score [--readme]   # the score from the recorded results (README: <!-- mutation-score -->)

Each mutant is one change to one module: an operator swapped (``+``/``-``, ``*``/``/``, ``<``/``<=``,
``and``/``or``, ...), a number changed (``n`` -> ``n + 1``), ``True``/``False`` flipped, a test
negated, a unary ``-``/``not`` dropped, a value-preserving call skipped (``x.clamp_min(0)`` -> ``x``,
``torch.relu(a)`` -> ``a``), a reduction swapped (``mean``/``sum``, ``max``/``min``, ...) or a call
statement deleted (``handle.remove()`` -> ``pass``). Strings, docstrings, annotations and
``raise`` statements are left alone.

A mutant is *killed* when the module's test files (the ``tests`` of its target, run with ``-x``)
fail or time out, and *survives* when they pass. Every survivor is a gap in the tests, unless it
is equivalent (it cannot change behaviour); equivalent mutants are listed, each with a one-line
reason, in the file named by ``equivalents`` (``mutation-equivalents.txt``). The score is
killed / (mutants - equivalents).

How it runs: the parent process imports the heavy third-party modules once (``preload``) and then
forks one child per mutant; the child serves the mutated source of the one module from memory (an
import hook), so nothing is written to the source tree and mutants run side by side safely
(``-j``). camlens itself is imported fresh in each child. mutmut 3 is not used because it skips
every decorated function, and each method formula is decorated with ``@register_method``.
Results are appended to ``.mutation/results.jsonl`` (the last record of a mutant counts), so
runs of a few files add up to the score of all of them.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import fnmatch
import importlib
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]

BINOP_SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.MatMult: ast.Mult, ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.BitXor: ast.BitOr,
}
COMPARE_SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
}
# x.name(...) -> x : calls that keep the value's shape and (mostly) its meaning.
SKIPPABLE_METHODS = {
    "clamp", "clamp_min", "clamp_max", "relu", "abs", "clone", "detach", "contiguous", "float",
    "double", "cpu", "sqrt", "exp", "log", "neg", "nan_to_num", "sigmoid", "softmax", "round",
    "floor", "ceil", "sort", "flip",
}
# f(a, ...) -> a, for f = torch.name / F.name / name.
SKIPPABLE_FUNCTIONS = {"relu", "clamp", "abs", "sqrt", "softmax", "sigmoid", "clone", "nan_to_num", "exp", "log"}
METHOD_SWAPS = {
    "mean": "sum", "sum": "mean", "max": "min", "min": "max", "amax": "amin", "amin": "amax",
    "argmax": "argmin", "argmin": "argmax", "maximum": "minimum", "minimum": "maximum",
    "any": "all", "all": "any", "clamp_min": "clamp_max", "clamp_max": "clamp_min",
    "nanmean": "nansum",
}
NO_MUTATION_CALLS = {"warn", "warning", "debug", "info"}  # warnings.warn(...), log calls


def _op_name(op) -> str:
    return type(op).__name__ if not isinstance(op, type) else op.__name__


@dataclass
class Mutant:
    path: str  # relative to the repository root
    module: str  # dotted module name
    index: int  # position in this module's enumeration
    ident: str  # stable id: path::qualname::description::k
    line: int
    description: str
    lines: tuple[int, int] = (0, 0)  # the source lines whose execution runs the mutated code
    in_body: bool = False  # inside a function body (not a default, not module level)


class _Mutator(ast.NodeTransformer):
    """Enumerates the mutation points of a tree (``target=None``) or applies one (``target=i``)."""

    def __init__(self, source: str, target: int | None = None) -> None:
        self.source = source
        self.target = target
        self.count = 0
        self.points: list[tuple[str, int, str]] = []  # (qualname, line, description)
        self.scope: list[str] = []
        self.statements: list[ast.stmt] = []
        self.applied = False

    def visit(self, node):
        if not isinstance(node, ast.stmt):
            return super().visit(node)
        self.statements.append(node)
        try:
            return super().visit(node)
        finally:
            self.statements.pop()

    # -- bookkeeping -------------------------------------------------------------------
    def _point(self, node: ast.AST, description: str) -> bool:
        """Register a mutation point; True when it is the one to apply."""
        snippet = ast.get_source_segment(self.source, node) or ""
        snippet = " ".join(snippet.split())
        if len(snippet) > 48:
            snippet = snippet[:45] + "..."
        qualname = ".".join(self.scope) or "<module>"
        stmt = self.statements[-1] if self.statements else node
        in_body = bool(self.scope) and not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        lines = (getattr(stmt, "lineno", 0), getattr(node, "end_lineno", 0) or getattr(stmt, "end_lineno", 0))
        self.points.append((qualname, getattr(node, "lineno", 0), f"{description} in `{snippet}`", lines, in_body))
        hit = self.target == self.count
        self.count += 1
        if hit:
            self.applied = True
        return hit

    def _scoped(self, node, name: str):
        self.scope.append(name)
        # decorators run at import time; annotations are never evaluated (postponed)
        node.body = [self.visit(s) for s in node.body]
        node.body = [s for s in node.body if s is not None] or [ast.Pass()]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defaults = node.args.defaults
            node.args.defaults = [self.visit(d) for d in defaults]
            node.args.kw_defaults = [self.visit(d) if d is not None else None for d in node.args.kw_defaults]
        self.scope.pop()
        return node

    # -- what is never mutated -----------------------------------------------------------
    def visit_FunctionDef(self, node):
        return self._scoped(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        return self._scoped(node, node.name)

    def visit_Raise(self, node):
        return node

    def visit_JoinedStr(self, node):
        return node

    def visit_AnnAssign(self, node):
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_Assign(self, node):
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return node
        return self.generic_visit(node)

    def visit_Import(self, node):
        return node

    visit_ImportFrom = visit_Import

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant):  # docstring
            return node
        if isinstance(node.value, ast.Call) and not self._is_logging(node.value):
            if self._point(node, "call statement deleted"):
                return ast.copy_location(ast.Pass(), node)
        return self.generic_visit(node)

    @staticmethod
    def _is_logging(call: ast.Call) -> bool:
        func = call.func
        return isinstance(func, ast.Attribute) and func.attr in NO_MUTATION_CALLS

    # -- mutations -------------------------------------------------------------------------
    def visit_BinOp(self, node):
        swap = BINOP_SWAPS.get(type(node.op))
        if swap and self._point(node, f"{_op_name(node.op)} -> {swap.__name__}"):
            node.op = swap()
            return node
        return self.generic_visit(node)

    def visit_AugAssign(self, node):
        swap = BINOP_SWAPS.get(type(node.op))
        if swap and self._point(node, f"{_op_name(node.op)}= -> {swap.__name__}="):
            node.op = swap()
            return node
        return self.generic_visit(node)

    def visit_Compare(self, node):
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAPS.get(type(op))
            if swap and self._point(node, f"{_op_name(op)} -> {swap.__name__}" + (f" (#{i})" if i else "")):
                node.ops[i] = swap()
                return node
        return self.generic_visit(node)

    def visit_BoolOp(self, node):
        swap = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._point(node, f"{_op_name(node.op)} -> {swap.__name__}"):
            node.op = swap()
            return node
        return self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
            if self._point(node, f"{_op_name(node.op)} dropped"):
                return node.operand
        return self.generic_visit(node)

    def _negate_test(self, node, kind: str):
        if not isinstance(node.test, (ast.Compare, ast.BoolOp)) and not (
            isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
        ):
            if self._point(node.test, f"{kind} test negated"):
                node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
                return True
        return False

    def visit_If(self, node):
        if self._negate_test(node, "if"):
            return node
        return self.generic_visit(node)

    def visit_IfExp(self, node):
        if self._negate_test(node, "conditional"):
            return node
        return self.generic_visit(node)

    def visit_While(self, node):
        if self._negate_test(node, "while"):
            return node
        return self.generic_visit(node)

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, bool):
            if self._point(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, (int, float)) and not isinstance(value, complex):
            if self._point(node, f"{value!r} -> {value + 1!r}"):
                return ast.copy_location(ast.Constant(value + 1), node)
        return node

    def visit_Call(self, node):
        if self._is_logging(node):
            return node
        func = node.func
        if isinstance(func, ast.Attribute):
            is_module_function = isinstance(func.value, ast.Name) and func.value.id in ("torch", "F", "math", "np")
            swap = METHOD_SWAPS.get(func.attr)
            if swap and self._point(node, f".{func.attr}( -> .{swap}("):
                func.attr = swap
                return node
            if func.attr in SKIPPABLE_METHODS and not is_module_function and self._point(node, f".{func.attr}(...) skipped"):
                return func.value
            if func.attr in SKIPPABLE_FUNCTIONS and is_module_function and node.args and self._point(node, f"{func.value.id}.{func.attr}(a, ...) -> a"):
                return node.args[0]
        elif isinstance(func, ast.Name) and func.id in SKIPPABLE_FUNCTIONS and node.args:
            if self._point(node, f"{func.id}(a, ...) -> a"):
                return node.args[0]
        return self.generic_visit(node)


def enumerate_mutants(path: Path) -> list[Mutant]:
    source = path.read_text(encoding="utf-8")
    mutator = _Mutator(source)
    mutator.visit(ast.parse(source))
    rel = path.relative_to(ROOT).as_posix()
    module = _module_name(path)
    seen: dict[str, int] = {}
    mutants = []
    for index, (qualname, line, description, lines, in_body) in enumerate(mutator.points):
        key = f"{rel}::{qualname}::{description}"
        k = seen.get(key, 0)
        seen[key] = k + 1
        mutants.append(Mutant(rel, module, index, f"{key}::{k}", line, description, lines, in_body))
    return mutants


def mutated_source(path: Path, index: int) -> str:
    source = path.read_text(encoding="utf-8")
    mutator = _Mutator(source, target=index)
    tree = mutator.visit(ast.parse(source))
    if not mutator.applied:
        raise ValueError(f"{path} has no mutation point {index}")
    return ast.unparse(ast.fix_missing_locations(tree))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# -- configuration -----------------------------------------------------------------------
def load_config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["camlens"]["mutation"]


def targets(config: dict, pattern: str | None) -> list[tuple[Path, list[str]]]:
    """(source file, its test files) for every file in scope, optionally filtered by ``pattern``."""
    found = []
    for target in config["targets"]:
        excluded = set()
        for glob in target.get("exclude", []):
            excluded.update(ROOT.glob(glob))
        for glob in target["paths"]:
            for path in sorted(ROOT.glob(glob)):
                if path in excluded or path.name == "__init__.py":
                    continue
                if pattern and pattern not in path.relative_to(ROOT).as_posix():
                    continue
                found.append((path, target["tests"]))
    return found


def load_equivalents(config: dict) -> dict[str, str]:
    """Mutant id -> reason, from lines ``ID  # reason`` (blank lines and ``#`` lines ignored)."""
    path = ROOT / config.get("equivalents", "mutation-equivalents.txt")
    equivalents = {}
    if path.exists():
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            ident, _, reason = raw.partition("  # ")
            if not reason.strip():
                raise SystemExit(f"{path.name}: no reason given for {ident.strip()!r} (write `ID  # reason`)")
            equivalents[ident.strip()] = reason.strip()
    return equivalents


# -- running -----------------------------------------------------------------------------
class _SourceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``source`` as module ``name`` (the mutant), everything else imports normally."""

    def __init__(self, name: str, path: Path, source: str) -> None:
        self.name, self.path, self.source = name, path, source

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        is_package = self.path.name == "__init__.py"
        return importlib.util.spec_from_file_location(
            fullname, self.path, loader=self,
            submodule_search_locations=[str(self.path.parent)] if is_package else None,
        )

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(self.source, str(self.path), "exec"), module.__dict__)


def _patch_module(module: str, path: Path, source: str) -> None:
    """Run ``source`` in the already imported module ``module`` and point every camlens module's
    references to its old functions and classes at the new ones (``from .x import f`` bindings,
    also inside top-level dicts, lists and tuples)."""
    import inspect

    target = sys.modules[module]
    old = dict(target.__dict__)
    exec(compile(source, str(path), "exec"), target.__dict__)
    target._mutate_old_namespace = old  # keeps the old objects (and their ids) alive
    new = {id(v): target.__dict__[k] for k, v in old.items()
           if (inspect.isfunction(v) or inspect.isclass(v)) and target.__dict__.get(k) is not v and k in target.__dict__}

    def swap(value):
        if id(value) in new:
            return new[id(value)]
        if isinstance(value, dict):
            for key, item in list(value.items()):
                if id(item) in new:
                    value[key] = new[id(item)]
        elif isinstance(value, list):
            value[:] = [new.get(id(item), item) for item in value]
        elif type(value) is tuple and any(id(item) in new for item in value):
            return tuple(new.get(id(item), item) for item in value)
        return value

    for name, other in list(sys.modules.items()):
        if other is None or other is target or not (name == "camlens" or name.startswith("camlens.")):
            continue
        for key, value in list(vars(other).items()):
            replaced = swap(value)
            if replaced is not value:
                setattr(other, key, replaced)


class _LineRecorder:
    """pytest plugin: which test runs which line of the files being mutated, and how long it takes."""

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.lines: dict[str, dict[int, set[str]]] = {}
        self.durations: dict[str, float] = {}
        self.current = ""

    def _global(self, frame, event, arg):
        return self._local if frame.f_code.co_filename in self.files else None

    def _local(self, frame, event, arg):
        if event == "line":
            self.lines.setdefault(frame.f_code.co_filename, {}).setdefault(frame.f_lineno, set()).add(self.current)
        return self._local

    def pytest_runtest_protocol(self, item, nextitem):
        import threading

        self.current = item.nodeid
        start = time.perf_counter()
        sys.settrace(self._global)
        threading.settrace(self._global)
        try:
            yield
        finally:
            sys.settrace(None)
            threading.settrace(None)
            self.durations[item.nodeid] = time.perf_counter() - start

    def dump(self, path: Path) -> None:
        data = {"durations": self.durations,
                "lines": {f: {str(n): sorted(t) for n, t in lines.items()} for f, lines in self.lines.items()}}
        path.write_text(json.dumps(data), encoding="utf-8")


def _pytest_args(tests: list[str]) -> list[str]:
    # no plugin autoloading, no gc.collect() at exit (pytest's unraisable-exception check):
    # together they are most of a short run's time
    return [*tests, "-x", "-q", "-p", "no:cacheprovider", "-p", "no:unraisableexception", "-o", "addopts=", "--tb=line",
            "-W", "ignore::DeprecationWarning", "--rootdir", str(ROOT)]


def _child(module: str | None, path: Path | None, source: str | None, tests: list[str], log: Path, patch: bool) -> None:
    """In the forked child: install the mutant, run the tests, exit with pytest's code."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        if module is not None and patch:
            _patch_module(module, path, source)
        elif module is not None:
            for name in [n for n in sys.modules if n == "camlens" or n.startswith("camlens.")]:
                del sys.modules[name]  # a fresh import (the parent may hold camlens already)
            sys.meta_path.insert(0, _SourceFinder(module, path, source))
        import pytest
        import torch

        torch.set_num_threads(1)
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        plugins = []
        if isinstance(tests, tuple):  # (test files, files to record, where to write the lines)
            tests, files, dump = tests

            class Recorder(_LineRecorder):
                @pytest.hookimpl(hookwrapper=True)
                def pytest_runtest_protocol(self, item, nextitem):
                    yield from _LineRecorder.pytest_runtest_protocol(self, item, nextitem)

            recorder = Recorder(set(files))
            plugins.append(recorder)
        code = pytest.main(_pytest_args(tests), plugins=plugins)
        if plugins:
            recorder.dump(dump)
    except BaseException:  # noqa: BLE001 - anything in the child is a result, not a crash of the runner
        import traceback

        traceback.print_exc()
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


def _start(job, logdir: Path, patch: bool):
    """job: (mutant, path, tests); mutant None: the unmutated code, or its source re-run in
    place when ``path`` is given (the check that patching itself breaks nothing)."""
    mutant, path, tests = job
    if mutant is None:
        module = _module_name(path) if path is not None else None
        source = path.read_text(encoding="utf-8") if path is not None else None
        log = logdir / f"baseline-{module or 'plain'}.log"
    else:
        module, source = mutant.module, mutated_source(path, mutant.index)
        log = logdir / f"{mutant.module}.{mutant.index}.log"
    pid = os.fork()
    if pid == 0:
        _child(module, path, source, tests, log, patch)
    return pid, log


def run_jobs(jobs: list, workers: int, timeout: float, logdir: Path, on_result, patch=lambda job: False) -> None:
    pending = list(jobs)
    running: dict[int, tuple] = {}
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            pid, log = _start(job, logdir, patch(job))
            running[pid] = (job, time.monotonic(), log)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (job, started, log) in list(running.items()):
                if now - started > (timeout(job) if callable(timeout) else timeout):
                    os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    del running[child]
                    on_result(job, "timeout", now - started, log)
            time.sleep(0.05)
            continue
        if pid not in running:
            continue
        job, started, log = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        outcome = {0: "survived", 1: "killed", 2: "killed", 3: "error", 4: "error", 5: "error"}.get(code, "killed")
        on_result(job, outcome, time.monotonic() - started, log)


def print_score(config: dict, jobs: list, equivalents: dict[str, str], results_path: Path, readme: bool) -> int:
    """The score per target and in all, from the last recorded outcome of each current mutant.

    Returns 1 when a current, non-equivalent mutant has no recorded outcome (the score would be
    of part of the code), else 0.
    """
    last: dict[str, dict] = {}
    if results_path.exists():
        for line in results_path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            last[record["id"]] = record
    groups: dict[str, dict[str, int]] = {}
    dates = []
    for mutant, path, _ in jobs:
        group = next(", ".join(t["paths"]) for t in config["targets"]
                     if any(fnmatch.fnmatch(mutant.path, g) for g in t["paths"]))
        counts = groups.setdefault(group, dict.fromkeys(("mutants", "equivalent", "killed", "survived", "error",
                                                         "not run"), 0))
        counts["mutants"] += 1
        record = last.get(mutant.ident)
        if mutant.ident in equivalents:
            counts["equivalent"] += 1
        elif record is None:
            counts["not run"] += 1
        else:
            counts[{"timeout": "killed"}.get(record["outcome"], record["outcome"])] += 1
            dates.append(record.get("at", "?"))
    total = {key: sum(c[key] for c in groups.values()) for key in next(iter(groups.values()), {})}
    lines = ["| target | mutants | equivalent (listed with reasons) | killed | survived | not run | score |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in [*groups.items(), ("**all**", total)]:
        counted = c["killed"] + c["survived"]
        score = f"{100 * c['killed'] / counted:.1f} %" if counted else "-"
        if counted and c["not run"]:
            score += f" of the {counted} run"
        lines.append(f"| {name if name.startswith('*') else '`' + name + '`'} | {c['mutants']} | {c['equivalent']} | "
                     f"{c['killed']} | {c['survived']} | {c['not run']} | {score} |")
    known = [d for d in dates if d != "?"]
    when = f" (runs of {min(known)} to {max(known)})" if known else ""
    caption = f"Score = killed / (mutants − equivalent), from `python tools/mutate.py -j 2`{when}"
    if total.get("not run"):
        caption += f"; {total['not run']} mutants have no recorded run yet, so this is the score of part of the code"
    table = "\n".join([caption + ":", "", *lines])
    print(table)
    if readme:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import _readme

        _readme.write_block("mutation-score", table)
    return 1 if total.get("not run") or total.get("error") else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", help="only source files whose path contains this")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run side by side (default 1)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--show", metavar="ID", help="print the diff of one mutant and exit")
    parser.add_argument("--survivors", action="store_true", help="rerun only the last run's survivors")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per mutant (default: 4x the baseline + 20)")
    parser.add_argument("--fresh", action="store_true", help="import camlens afresh for every mutant (slower)")
    parser.add_argument("--results", default=str(ROOT / ".mutation" / "results.jsonl"))
    parser.add_argument("--score", action="store_true", help="print the score from the recorded results and exit")
    parser.add_argument("--readme", action="store_true", help="with --score: write it into README.md (<!-- mutation-score -->)")
    args = parser.parse_args(argv)

    config = load_config()
    equivalents = load_equivalents(config)
    files = targets(config, args.pattern)
    jobs = []
    for path, tests in files:
        for mutant in enumerate_mutants(path):
            jobs.append((mutant, path, tests))
    known = {mutant.ident for mutant, _, _ in jobs}
    stale = sorted(set(equivalents) - known) if not args.pattern else []

    if args.show:
        for mutant, path, _ in jobs:
            if mutant.ident == args.show:
                before = ast.unparse(ast.parse(path.read_text(encoding="utf-8"))).splitlines()
                after = mutated_source(path, mutant.index).splitlines()
                print("\n".join(difflib.unified_diff(before, after, mutant.path, "mutant", lineterm="", n=2)))
                return 0
        print(f"no mutant {args.show!r}", file=sys.stderr)
        return 2
    if args.list:
        for mutant, _, _ in jobs:
            flag = "  [equivalent]" if mutant.ident in equivalents else ""
            print(f"{mutant.path}:{mutant.line}  {mutant.ident}{flag}")
        print(f"{len(jobs)} mutants in {len(files)} files")
        return 0

    results_path = Path(args.results)
    if args.score:
        return print_score(config, jobs, equivalents, results_path, args.readme)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    if args.survivors:
        last = {}
        if results_path.exists():
            for line in results_path.read_text().splitlines():
                record = json.loads(line)
                last[record["id"]] = record["outcome"]
        jobs = [job for job in jobs if last.get(job[0].ident) == "survived"]
    jobs = [job for job in jobs if job[0].ident not in equivalents]

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    for module in config.get("preload", []):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    sys.path.insert(0, str(ROOT / "src"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    logdir = results_path.parent / "logs"
    logdir.mkdir(exist_ok=True)

    def run_one(job, patch: bool, timeout: float = 3600) -> dict:
        outcome = {}
        run_jobs([job], 1, timeout, logdir, lambda job, result, seconds, log: outcome.update(
            result=result, seconds=seconds, log=log), lambda job: patch)
        return outcome

    # the unmutated code must pass its tests (or every mutant would look killed); this run also
    # records which test runs which line, so that a mutant runs only the tests that reach it
    all_tests = sorted({t for _, _, tests in jobs for t in tests})
    coverage_path = results_path.parent / "lines.json"
    files = sorted({str(job[1]) for job in jobs})
    outcome = run_one((None, None, (all_tests, files, coverage_path)), patch=False)
    if outcome.get("result") != "survived":
        print(f"the unmutated code fails {' '.join(all_tests)}; see {outcome['log']}", file=sys.stderr)
        return 2
    print(f"baseline (and which test runs which line) {' '.join(all_tests)}: {outcome['seconds']:.1f} s", flush=True)
    recorded = json.loads(coverage_path.read_text(encoding="utf-8"))
    durations = recorded["durations"]

    def selected(mutant, path, tests):
        """The target's tests that run the mutated lines, fastest first; None when no test runs
        them (code that runs at import time: a default value, a decorator, a constant)."""
        lines = recorded["lines"].get(str(path), {})
        first, last = mutant.lines
        nodes = set().union(*(lines.get(str(n), ()) for n in range(first, last + 1)))
        nodes = {n for n in nodes if n.split("::")[0] in tests}
        return sorted(nodes, key=lambda n: durations.get(n, 0.0)) or None

    # a mutant no test reaches runs every test of its target, in a fresh import
    fresh_ids = set()
    runnable = []
    for mutant, path, tests in jobs:
        nodes = selected(mutant, path, tests)
        if nodes is None:
            fresh_ids.add(mutant.ident)
            nodes = sorted((n for n in durations if n.split("::")[0] in tests), key=lambda n: durations[n])
        runnable.append((mutant, path, nodes))
    jobs = runnable
    uncovered = []

    def timeout_of(job):
        return args.timeout or 20 + 5 * sum(durations.get(n, 1.0) for n in job[2])

    timeout = max((timeout_of(job) for job in jobs), default=60)
    baseline_times = {}

    # fast mode: camlens imported once in this process; a child re-runs the mutated module in
    # place. A module whose own unmutated source does not survive that is run fresh instead.
    patched_paths: set[Path] = set()
    if not args.fresh:
        import camlens  # noqa: F401

        for path in sorted({job[1] for job in jobs}):
            importlib.import_module(_module_name(path))
        for path in sorted({job[1] for job in jobs}):
            tests = sorted({n for job in jobs if job[1] == path for n in job[2]}, key=lambda n: durations.get(n, 0.0))
            if run_one((None, path, tests), patch=True, timeout=timeout).get("result") == "survived":
                patched_paths.add(path)
            else:
                print(f"{path.relative_to(ROOT)}: re-running it in place breaks its tests; mutants run fresh", flush=True)

    counts = {"killed": 0, "timeout": 0, "survived": 0, "error": 0}
    started = time.monotonic()
    mode = "a"  # the last record of a mutant counts (print_score)
    recheck = []
    with open(results_path, mode, encoding="utf-8") as out:
        def on_result(job, outcome, seconds, log):
            mutant = job[0]
            if outcome == "survived" and job[1] in patched_paths and job[0].ident not in fresh_ids and job not in recheck:
                recheck.append(job)  # confirmed by a fresh run below
                log.unlink(missing_ok=True)
                return
            counts[outcome] += 1
            out.write(json.dumps({"id": mutant.ident, "path": mutant.path, "line": mutant.line,
                                  "outcome": outcome, "seconds": round(seconds, 2),
                                  "at": time.strftime("%Y-%m-%d %H:%M")}) + "\n")
            out.flush()
            if outcome in ("survived", "error"):
                print(f"{outcome.upper():8s} {mutant.path}:{mutant.line}  {mutant.ident}", flush=True)
            else:
                log.unlink(missing_ok=True)
            done = sum(counts.values())
            if done % 25 == 0:
                print(f"... {done}/{len(jobs) + len(uncovered)} mutants, {time.monotonic() - started:.0f} s", flush=True)

        run_jobs(jobs, args.jobs, timeout_of, logdir, on_result,
                 lambda job: job[1] in patched_paths and job[0].ident not in fresh_ids)
        if recheck:
            print(f"{len(recheck)} survivors: checking each in a fresh import", flush=True)
            run_jobs(recheck, args.jobs, timeout_of, logdir, on_result, lambda job: False)

    detected = counts["killed"] + counts["timeout"]
    total = sum(counts.values())
    print(f"\n{total} mutants run ({len(equivalents)} listed as equivalent, not run): "
          f"{counts['killed']} killed, {counts['timeout']} timed out, {counts['survived']} survived, "
          f"{counts['error']} errors, in {time.monotonic() - started:.0f} s")
    if total:
        print(f"score: {detected}/{total - counts['error']} = {100 * detected / max(total - counts['error'], 1):.1f}% "
              "of the non-equivalent mutants")
    for ident in stale:
        print(f"stale entry in the equivalents file (no such mutant now): {ident}")
    return 0 if counts["survived"] == 0 and counts["error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
