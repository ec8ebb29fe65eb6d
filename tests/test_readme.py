"""The README as a test: its code runs and what it shows is what the code prints.

Conventions (also in the README's "Development" section):

- Every ```python block runs, in a fresh namespace, in an empty temporary folder.
- A comment on a line that calls ``print(...)`` is the expected output of that call:
  ``print(x.shape)  # torch.Size([1, 512, 7, 7])``. The printed text must match the start of
  the comment; the rest of the comment, if any, is a remark and must begin with a space,
  ``:``, ``,`` or ``;`` (``# flatten_fc: CAM is not defined``). Whitespace runs compare equal;
  ``...`` in the comment matches any text. Numbers agree when they differ by at most one unit
  of the shown number's last digit (``0.79`` matches 0.78 to 0.80; ``1.3e-5`` matches 1.2e-5
  to 1.4e-5); integers must be equal. A print line without a comment is not checked.
- A fence without a language whose first line starts with ``$ camlens`` runs that command
  in-process (``camlens.cli.main``) in an empty temporary folder that holds the sample photos as
  ``chelsea.png``, ``coffee.png``, ``astronaut.png`` and ``cat_and_coffee.png``; the lines
  after it, up to the next ``$`` line, are expected output. The command must exit with 0, and
  the shown lines must appear in its stdout + stderr in order, each as a whole line (modulo
  whitespace); a line ``...`` skips any number of lines, ``...`` inside a line matches any
  text; blank lines are ignored. Other fences without a language are not run.
- A block that cannot run here (it needs the network) is preceded by a visible marker,
  ``<!-- not run: REASON -->``, on the line before its fence; ``NOT_RUN_LIMIT`` caps how many.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_RUN_LIMIT = 3

FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->\s*$")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Block:
    kind: str  # "python" or "shell"
    code: str
    line: int  # README line of the opening fence
    skip: str | None  # the reason of a "not run" marker


def parse_blocks(text: str) -> list[Block]:
    """The runnable blocks of a README text: ```python blocks and ``$ camlens`` blocks."""
    lines = text.splitlines()
    blocks = []
    for match in FENCE.finditer(text):
        language, body = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if language == "python":
            kind = "python"
        elif language == "" and body.lstrip().startswith("$ camlens"):
            kind = "shell"
        else:
            continue
        before = next((lines[i] for i in range(line - 2, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.search(before)
        blocks.append(Block(kind, body, line, marker.group(1) if marker else None))
    return blocks


# -- comparing shown and printed text ------------------------------------------------------
def _tokens(text: str) -> list[str]:
    """Numbers, ``...``, single spaces (for any whitespace run) and other characters."""
    text = " ".join(text.split())
    out, i = [], 0
    while i < len(text):
        if text.startswith("...", i):
            out.append("...")
            i += 3
            continue
        number = NUMBER.match(text, i)
        if number and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            out.append(number.group())
            i = number.end()
            continue
        out.append(text[i])
        i += 1
    return out


def _unit(shown: str) -> float:
    """One unit of the last digit of a shown number (0 for an integer: exact)."""
    mantissa, _, exponent = shown.lower().partition("e")
    if "." not in mantissa and not exponent:
        return 0.0
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _same_number(printed: str, shown: str) -> bool:
    if NUMBER.fullmatch(printed) is None:
        return False
    return abs(float(printed) - float(shown)) <= _unit(shown) * (1 + 1e-9)


def _match(printed: list[str], shown: list[str], whole: bool) -> int | None:
    """Match the shown tokens against the start of the printed ones (``...`` = anything).

    Returns how many shown tokens were used (all of them when ``whole``), or None.
    """

    def go(p: int, s: int) -> int | None:
        while True:
            if p == len(printed):
                rest = shown[s:]
                if all(t == "..." for t in rest):
                    return len(shown)
                if whole:
                    return None
                return s if not rest or rest[0] in (" ", ":", ",", ";") else None
            if s == len(shown):
                return None
            token = shown[s]
            if token == "...":
                return next((found for q in range(p, len(printed) + 1) if (found := go(q, s + 1)) is not None), None)
            same = _same_number(printed[p], token) if NUMBER.fullmatch(token) else printed[p] == token
            if not same:
                return None
            p, s = p + 1, s + 1

    return go(0, 0)


def printed_matches(printed: str, comment: str) -> bool:
    """Whether ``printed`` is what ``comment`` shows (see the module docstring)."""
    return _match(_tokens(printed), _tokens(comment), whole=False) is not None


def line_matches(output_line: str, shown_line: str) -> bool:
    return _match(_tokens(output_line), _tokens(shown_line), whole=True) is not None


def shown_lines_appear(output: str, shown: list[str]) -> str | None:
    """None when the shown lines appear in order in ``output``; else the first line that does not."""
    out = [line for line in output.splitlines() if line.strip()]
    shown = [line for line in shown if line.strip()]

    def go(o: int, s: int) -> bool:
        if s == len(shown):
            return True
        if shown[s].strip() == "...":
            return any(go(q, s + 1) for q in range(o, len(out) + 1))
        return o < len(out) and line_matches(out[o], shown[s]) and go(o + 1, s + 1)

    if any(go(start, 0) for start in range(len(out) + 1)):
        return None
    for line in shown:
        if line.strip() != "..." and not any(line_matches(o, line) for o in out):
            return line
    return f"{shown[0]} ... (every line is there, but not in this order or not adjacent)"


# -- running blocks ------------------------------------------------------------------------
def _print_comments(code: str) -> dict[int, str]:
    """Line number -> comment text, for every comment in ``code``."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string[1:].strip()
    return comments


class _PrintRecorder(ast.NodeTransformer):
    """``print(...)`` -> ``__readme_print__(LINE, ...)`` for the print calls of interest."""

    def __init__(self, lines: set[int]) -> None:
        self.lines = lines

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "print" and node.end_lineno in self.lines:
            node.func = ast.Name("__readme_print__", ast.Load())
            node.args.insert(0, ast.Constant(node.end_lineno))
        return node


def run_python_block(code: str, name: str) -> list[str]:
    """Run a python block; the list of mismatches between its print comments and its prints."""
    comments = _print_comments(code)
    tree = ast.parse(code)
    checked = {
        node.end_lineno: comments[node.end_lineno]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
        and node.end_lineno in comments
    }
    tree = ast.fix_missing_locations(_PrintRecorder(set(checked)).visit(tree))
    printed: dict[int, list[str]] = {}

    def record(line, *args, **kwargs):
        buffer = io.StringIO()
        print(*args, **{**kwargs, "file": buffer})
        printed.setdefault(line, []).append(buffer.getvalue().rstrip("\n"))
        print(*args, **kwargs)

    namespace = {"__name__": "__readme__", "__readme_print__": record}
    exec(compile(tree, name, "exec"), namespace)
    problems = []
    source = code.splitlines()
    for line, comment in sorted(checked.items()):
        if line not in printed:
            problems.append(f"{name}, line {line}: `{source[line - 1].strip()}` never printed")
            continue
        text = "\n".join(printed[line])
        if not printed_matches(text, comment):
            problems.append(f"{name}, line {line}: printed {text!r}, the README shows {comment!r}")
    return problems


def shell_commands(code: str) -> list[tuple[str, list[str]]]:
    """(command, expected lines) for each ``$`` line of a shell block."""
    commands: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:].strip(), []))
        elif commands:
            commands[-1][1].append(line)
    return commands


def write_sample_photos(folder: Path) -> None:
    from camlens.io.images import sample_images

    for name, photo in sample_images().items():
        photo.save(folder / f"{name}.png")


def run_shell_block(code: str, name: str, folder: Path) -> list[str]:
    from camlens.cli import main

    problems = []
    for command, shown in shell_commands(code):
        argv = shlex.split(command)
        assert argv[0] == "camlens", f"{name}: only camlens commands run here, not {command!r}"
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code_ = main(argv[1:])
        output = out.getvalue()
        if code_ != 0:
            problems.append(f"{name}: `{command}` exited with {code_}:\n{output}")
            continue
        missing = shown_lines_appear(output, shown)
        if missing is not None:
            problems.append(f"{name}: `{command}` did not print the shown line {missing!r}; it printed:\n{output}")
    return problems


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_examples_and_few_blocks_are_not_run():
    assert sum(b.kind == "python" for b in BLOCKS) >= 3
    assert sum(b.kind == "shell" for b in BLOCKS) >= 1
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert len(skipped) <= NOT_RUN_LIMIT, [f"line {b.line}: {b.skip}" for b in skipped]
    assert all(b.skip for b in skipped)  # each marker gives its reason


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.kind}-line{b.line}" for b in BLOCKS])
def test_readme_block(block, tmp_path, monkeypatch):
    if block.skip is not None:
        pytest.skip(f"README line {block.line}: not run: {block.skip}")
    monkeypatch.chdir(tmp_path)
    name = f"README.md block at line {block.line}"
    if block.kind == "python":
        problems = run_python_block(block.code, name)
    else:
        write_sample_photos(tmp_path)
        problems = run_shell_block(block.code, name, tmp_path)
    assert not problems, "\n".join(problems)


# -- the harness fails when the README is wrong ----------------------------------------------
@pytest.mark.parametrize("printed, comment, ok", [
    ("0.7912", "0.79", True),
    ("0.7912", "0.80", True),          # one unit of the last digit
    ("0.7912", "0.81", False),
    ("0.7912", "0.8", True),
    ("0.7912", "0.6", False),
    ("(1, 2, 224, 224) (1, 2, 7, 7)", "(1, 2, 224, 224) (1, 2, 7, 7)", True),
    ("(1, 2, 224, 224) (1, 2, 7, 7)", "(1, 2, 224, 225) (1, 2, 7, 7)", False),
    ("(1, 2, 224, 224) (1, 2, 7, 7)", "(1, 2, 224, 224)", False),  # part of the output is not shown
    ("_swish:1", "_swish:1  (found for you)", True),
    ("_swish:1", "_swish:2  (found for you)", False),
    ("_swish:1", "_swish:1x", False),
    ("flatten_fc", "flatten_fc: CAM is not defined", True),
    ("['Egyptian cat', 'tiger cat']", "['Egyptian cat', 'tiger cat']", True),
    ("['Egyptian cat', 'tiger cat']", "['Egyptian cat',  'tabby cat']", False),
    ("['Egyptian cat',   'tiger cat']", "['Egyptian cat', 'tiger cat']", True),  # whitespace
    ("tensor(True)", "tensor(True)", True),
    ("tensor(False)", "tensor(True)", False),
    ("1.3e-05", "1.3e-5", True),
    ("1.6e-05", "1.3e-5", False),
    ("{'a': 0.5, 'b': 2}", "{'a': 0.5, ...}", True),
    ("", "0.5", False),
    ("-0.25", "0.25", False),
])
def test_printed_value_comparison(printed, comment, ok):
    assert printed_matches(printed, comment) is ok


def test_changing_a_shown_value_in_a_copy_of_the_readme_fails(tmp_path, monkeypatch):
    """Take a real README block, change one shown value, and the harness reports it."""
    monkeypatch.chdir(tmp_path)
    block = next(b for b in BLOCKS if "find_target_layer(model))" in b.code and b.kind == "python")
    assert run_python_block(block.code, "original") == []
    changed = block.code.replace("# layer4", "# layer3", 1)
    assert changed != block.code
    problems = run_python_block(changed, "changed")
    assert len(problems) == 1 and "layer3" in problems[0]
    # a copy of the whole README with the value changed is parsed into the changed block
    text = README.read_text(encoding="utf-8").replace(block.code, changed)
    (copy,) = [b for b in parse_blocks(text) if b.line == block.line]
    (problem,) = run_python_block(copy.code, "copy")
    assert "printed 'layer4', the README shows 'layer3'" in problem


def test_a_shell_block_with_a_wrong_line_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = "$ camlens methods\n...\ngradcam ...\n"
    assert run_shell_block(good, "good", tmp_path) == []
    bad = "$ camlens methods\nno-such-method ...\n"
    (problem,) = run_shell_block(bad, "bad", tmp_path)
    assert "no-such-method" in problem
    failing = "$ camlens layers --model no_such_model\n"
    (problem,) = run_shell_block(failing, "failing", tmp_path)
    assert "exited with 2" in problem


def test_not_run_marker_is_read_and_needs_a_reason():
    text = ("intro\n\n<!-- not run: needs the network -->\n```python\nprint(1)  # 1\n```\n\n"
            "```python\nprint(2)  # 2\n```\n\n```\n$ camlens methods\n```\n\n```\ncamlens explain x\n```\n")
    blocks = parse_blocks(text)
    assert [(b.kind, b.skip) for b in blocks] == [("python", "needs the network"), ("python", None), ("shell", None)]


def test_shown_lines_must_appear_in_order():
    output = "a 1\nb 2\n\nc 3\n"
    assert shown_lines_appear(output, ["a 1", "b 2"]) is None
    assert shown_lines_appear(output, ["a  1", "...", "c 3"]) is None
    assert shown_lines_appear(output, ["b ...", "c 3"]) is None
    assert shown_lines_appear(output, ["a 1", "c 3"]) is not None    # not adjacent without `...`
    assert shown_lines_appear(output, ["c 3", "a 1"]) is not None    # order matters
    assert shown_lines_appear(output, ["b 22"]) is not None
