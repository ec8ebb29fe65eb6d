"""Every script in examples/ runs: exit 0, the files it says it wrote exist, and what it prints is true.

Each script runs as a subprocess (``sys.executable``, ``PYTHONPATH`` = this checkout's src/) in a
temporary folder, writing into a temporary output folder. The model-family scripts print, per
model, ``model: NAME ...``, ``target layer: X`` and ``layout: Y``; the test builds the same model
with the script's own ``build`` function and checks that X and Y are what ``camlens.describe``
reports for it. A script added to examples/ without an entry in ``RUNS`` fails
``test_every_example_has_a_run``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> (arguments, with {out} for the output folder; the files it must write there)
RUNS = {
    "vit.py": (["--out", "{out}"], ["vit_small_patch16_224_gradcam.png", "vit_small_patch14_reg4_dinov2_gradcam.png"]),
    "swin.py": (["--out", "{out}"], ["swin_tiny_patch4_window7_224_gradcam.png", "swin_tiny_patch4_window7_224_scorecam.png"]),
    "segmentation.py": (["--out", "{out}"], ["deeplabv3_mobilenet_v3_large_class*.png", "deeplabv3_mobilenet_v3_large_class*_mask.png",
                                             "fcn_resnet50_class*.png", "fcn_resnet50_class*_mask.png"]),
    "detection.py": (["--out", "{out}"], ["detection0_*.png", "boxscore.png"]),
    "embedding_similarity.py": (["--out", "{out}"], ["similar_to_cat.png", "similar_to_coffee.png"]),
    "activation_stats_digits.py": (["--epochs", "1", "--out", "{out}"],
                                   [f"activation_stats_{run}_{what}.png" for run in ("sane", "bad")
                                    for what in ("conv2", "overview", "fc1_stats")]),
    "heads_fastai.py": (["{out}"], ["heads_fastai_gradcam.png"]),
    "heads_vgg_fcmap.py": (["{out}"], ["heads_vgg16_fcmap.png"]),
    "heads_replace_head.py": (["{out}"], ["heads_replace_head_efficientnet-lite0.png", "heads_replace_head_vgg16.png"]),
}


def _module(script: str):
    """The example as a module (its ``build`` functions), without running its main()."""
    spec = importlib.util.spec_from_file_location(f"example_{Path(script).stem}", EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _models(script: str, name: str):
    """(model, input size) as the family script builds model ``name`` (random weights)."""
    example = _module(script)
    if script == "vit.py":
        return example.build(name), (3, 224, 224)
    if script == "swin.py":
        return example.build(), (3, 224, 224)
    if script == "segmentation.py":
        return example.build(name), (3, 224, 224)
    if script == "detection.py":
        return example.build()[0], (3, 320, 320)
    if script == "embedding_similarity.py":
        return example.build()[0], (3, 224, 224)
    raise KeyError(script)


FAMILY_SCRIPTS = ["vit.py", "swin.py", "segmentation.py", "detection.py", "embedding_similarity.py"]


def run_example(script: str, tmp_path: Path) -> tuple[str, Path]:
    """Run one example; (its stdout, its output folder). Fails on a non-zero exit."""
    out = tmp_path / "out"
    args, _ = RUNS[script]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *[a.format(out=out) for a in args]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script} exited with {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout, out


def sections(stdout: str) -> dict[str, dict[str, str]]:
    """``model: NAME ...`` sections of a family script's output -> {NAME: {"target layer": X, "layout": Y}}."""
    found: dict[str, dict[str, str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("model: "):
            current = found.setdefault(line[len("model: "):].split()[0], {})
        match = re.match(r"\s+(target layer|layout): (.+)$", line)
        if match and current is not None:
            current[match.group(1)] = match.group(2).strip()
    return found


def test_every_example_has_a_run():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(RUNS)
    for script in FAMILY_SCRIPTS:
        text = (EXAMPLES / script).read_text(encoding="utf-8")
        doc = _module(script).__doc__
        assert doc and f"python examples/{script}" in doc, script  # says how to run it
        assert "--out" in text and "--pretrained" in text and "internet" in doc, script


def test_sections_parser():
    text = "model: vit_a (random)\n  target layer: blocks.1.norm1\n  layout: tokens (1 prefix + 4×4)\nmodel: b\n  layout: nchw 7×7\n"
    assert sections(text) == {"vit_a": {"target layer": "blocks.1.norm1", "layout": "tokens (1 prefix + 4×4)"},
                              "b": {"layout": "nchw 7×7"}}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs(script, tmp_path):
    import camlens

    stdout, out = run_example(script, tmp_path)
    written = [Path(p) for p in re.findall(r"wrote (\S+\.png)", stdout)]
    for path in written:
        path = path if path.is_absolute() else tmp_path / path
        assert path.is_file() and path.stat().st_size > 0, (script, path)
    for pattern in RUNS[script][1]:
        assert list(out.glob(pattern)), f"{script} wrote no {pattern} into {out}: {sorted(p.name for p in out.iterdir())}"
    if script not in FAMILY_SCRIPTS:
        return
    assert written, f"{script} printed no 'wrote PATH' line"
    printed = sections(stdout)
    assert printed, f"{script} printed no 'model: NAME' section:\n{stdout}"
    for name, shown in printed.items():
        model, size = _models(script, name)
        description = camlens.describe(model, size)
        assert shown == {"target layer": description.target, "layout": str(description.layout)}, (script, name)
