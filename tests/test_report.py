"""The HTML report of a run folder (no browser here: tests/test_report_browser.py drives Chromium)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from camlens import InputError
from camlens.cli import main
from camlens.viz.report import read_run_folder, write_report
from camlens.viz.report.serve import make_server, report_url
from runfolders import make_run

ASSETS = Path(__file__).resolve().parents[1] / "src" / "camlens" / "viz" / "report" / "assets"


def read_data(report: Path) -> dict:
    text = (report / "data.js").read_text(encoding="ascii")
    prefix = "window.CAMLENS_REPORT = "
    assert text.startswith(prefix) and text.endswith(";\n")
    return json.loads(text[len(prefix):-2])


def read_chunk(path: Path) -> tuple[dict, np.ndarray]:
    text = path.read_text(encoding="ascii")
    match = re.fullmatch(r"camlensMaps\((.*)\);\n", text, flags=re.S)
    assert match, text[:80]
    payload = json.loads(match.group(1))
    pictures = np.frombuffer(base64.b64decode(payload["data"]), dtype=np.uint8)
    return payload, pictures.reshape(payload["count"], payload["k"], payload["h"], payload["w"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report") / "run", 24, k=2, errors=[3], overlays=True)


@pytest.fixture(scope="module")
def report(run):
    stats = write_report(run)
    return run / "report", stats


def test_report_holds_every_manifest_row_and_the_page_assets(run, report):
    folder, stats = report
    table = pq.read_table(run / "manifest.parquet").to_pydict()
    data = read_data(folder)
    good = [i for i, e in enumerate(table["error"]) if e is None]
    assert stats.rows == len(data["rows"]["image"]) == len(good) == 23 * 2 * 2
    assert stats.images == len(data["images"]["id"]) == 24 and stats.skipped == 1
    assert data["skipped"] == [{"path": table["path"][table["error"].index(next(e for e in table["error"] if e))],
                                "error": next(e for e in table["error"] if e)}]
    # every card row points at its image, method, rank, class and scores as in the manifest
    images = data["images"]["id"]
    got = sorted(
        (images[data["rows"]["image"][r]], data["methods"][data["rows"]["method"][r]]["name"], data["rows"]["rank"][r],
         data["rows"]["cls"][r], data["rows"]["score"][r])
        for r in range(stats.rows)
    )
    want = sorted((table["image_id"][i], table["method"][i], table["rank"][i], table["class_index"][i],
                   table["score"][i]) for i in good)
    assert [g[:4] for g in got] == [w[:4] for w in want]
    assert [g[4] for g in got] == pytest.approx([w[4] for w in want], abs=1e-4)
    assert sum(t is not None for t in data["images"]["thumb"]) == 23 and stats.thumbnails == 23 and stats.missing == 0
    assert sorted(p.name for p in (folder / "assets").iterdir()) == ["report.css", "report.js"]
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert 'http-equiv="Content-Security-Policy"' in html and "script-src 'self'" in html
    assert "unsafe-inline" not in html and "unsafe-eval" not in html
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_page_needs_no_network_and_builds_no_html_from_strings():
    for name in ("index.html", "report.js", "report.css"):
        text = (ASSETS / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://|//cdn|@import|fetch\(|XMLHttpRequest", text), name
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", script)
    assert not re.search(r"\son[a-z]+\s*=", script)  # no inline handlers (onerror=, onclick=...)
    html = (ASSETS / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"\son[a-z]+=", html) and "style=" not in html and "<script>" not in html
    total = sum((ASSETS / name).stat().st_size for name in ("index.html", "report.js", "report.css"))
    assert total < 80_000  # small, hand-written


def test_map_chunks_are_the_normalised_zarr_maps(run, report):
    folder, _ = report
    data = read_data(folder)
    group = zarr.open_group(str(run / "maps.zarr"), mode="r")
    for j, method in enumerate(data["methods"]):
        raw = group[method["name"]][:].astype(np.float32)  # (n, K, h, w), NaN for the skipped image
        payload, pictures = read_chunk(folder / "maps" / method["dir"] / "0.js")
        assert payload["method"] == j and payload["first"] == 0 and pictures.shape == raw.shape
        for i in range(raw.shape[0]):
            if np.isnan(raw[i]).all():
                continue
            for k in range(raw.shape[1]):
                relu = np.clip(raw[i, k], 0, None)
                expected = (relu - relu.min()) / (relu.max() - relu.min()) * 255
                assert np.abs(pictures[i, k] - expected).max() <= 0.5 + 1e-3
    rows = data["rows"]
    skipped = data["images"]["id"].index(3)
    assert all(rows["image"][r] != skipped for r in range(len(rows["image"])))
    assert all(rows["map"])


def test_class_summary_counts_accuracy_and_mean_maps(run, report):
    folder, _ = report
    data = read_data(folder)
    table = pq.read_table(run / "manifest.parquet").to_pydict()
    first = {}
    for i, image_id in enumerate(table["image_id"]):
        if table["error"][i] is None:
            first.setdefault(image_id, i)
    assert data["groupBy"] == "true"
    by_class = {g["index"]: g for g in data["classes"]}
    for cls in {table["true_index"][i] for i in first.values()}:
        members = [i for i in first.values() if table["true_index"][i] == cls]
        group = by_class[cls]
        assert group["images"] == len(members)
        assert group["correct"] == sum(bool(table["correct"][i]) for i in members)
        assert group["accuracy"] == pytest.approx(group["correct"] / len(members), abs=1e-4)
    # the mean map of a class: the average of its images' normalised top-class maps
    method = data["methods"][0]
    _, pictures = read_chunk(folder / "maps" / method["dir"] / "0.js")
    cls = data["classes"][0]["index"]
    members = [table["image_id"][i] for i in first.values() if table["true_index"][i] == cls]
    expected = pictures[members, 0].astype(np.float64).mean(axis=0)
    entry = data["classes"][0]["maps"]["0"]
    mean = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.uint8).reshape(entry["h"], entry["w"])
    assert np.abs(mean - expected).max() <= 0.5 + 1e-6


def test_manifest_in_parts_gives_the_same_report(tmp_path):
    one = make_run(tmp_path / "a" / "run", 10, seed=3)
    parts = make_run(tmp_path / "b" / "run", 10, seed=3, parts=3)
    assert (parts / "manifest.parquet").is_dir()
    write_report(one)
    write_report(parts)
    a, b = read_data(one / "report"), read_data(parts / "report")
    for data in (a, b):
        data.pop("generated"), data.pop("runUrl"), data["images"].pop("photo"), data["images"].pop("path")
    assert a == b


def test_missing_photos_and_labels_are_said_not_guessed(tmp_path):
    run = make_run(tmp_path / "run", 6, labels=False)
    for photo in sorted((tmp_path / "photos").rglob("*.jpg"))[:2]:
        photo.unlink()
    stats = write_report(run)
    data = read_data(run / "report")
    assert stats.missing == 2 and sum(t is not None for t in data["images"]["thumb"]) == 4
    assert data["labels"] is False and data["groupBy"] == "predicted"
    assert all(c is None for c in data["images"]["correct"]) and all(g["accuracy"] is None for g in data["classes"])


def test_rewriting_reuses_unchanged_thumbnails_and_replaces_the_folder(run, report, tmp_path):
    again = write_report(run)
    assert again.reused == 23 and again.thumbnails == 0
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    photo = next((run.parent / "photos").rglob("img_00000.jpg"))
    photo.write_bytes(photo.read_bytes())  # touched: a new mtime
    third = write_report(run)
    assert third.reused == 22 and third.thumbnails == 1


def test_photos_reached_by_several_paths_are_decoded_once(tmp_path):
    run = make_run(tmp_path / "run", 30, distinct_photos=5)
    stats = write_report(run)
    assert stats.thumbnails == 5 and stats.linked == 25 and stats.missing == 0
    assert len(list((run / "report" / "thumbs").rglob("*.jpg"))) == 5  # one file per photo
    data = read_data(run / "report")
    photos = sorted((run.parent / "photos").rglob("*.jpg"))
    inode = {p.relative_to(run.parent / "photos").as_posix(): p.stat().st_ino for p in photos}
    relpaths = data["images"]["relpath"]
    for position, thumb in enumerate(data["images"]["thumb"]):
        assert inode[relpaths[position]] == inode[relpaths[data["images"]["id"].index(thumb)]]


def test_a_run_still_being_written_shows_what_is_there(tmp_path):
    run = make_run(tmp_path / "run", 8)
    group = zarr.open_group(str(run / "maps.zarr"), mode="r+")
    for name in ("gradcam", "cam"):
        group[name][5:] = np.nan  # rows committed, maps of the last images not yet
    write_report(run)
    data = read_data(run / "report")
    flags = {(data["images"]["id"][data["rows"]["image"][r]], data["rows"]["method"][r]): data["rows"]["map"][r]
             for r in range(len(data["rows"]["map"]))}
    assert all(flag == (image_id < 5) for (image_id, _), flag in flags.items())


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nowhere", "does not exist"),
    (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is a file"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no manifest.parquet"),
])
def test_not_a_run_folder_is_a_clear_error(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        write_report(make(tmp_path))


def test_a_manifest_without_the_contract_columns_is_refused(tmp_path):
    import pyarrow as pa

    (tmp_path / "run").mkdir()
    pq.write_table(pa.table({"image_id": [0], "path": ["a.jpg"]}), tmp_path / "run" / "manifest.parquet")
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['relpath'"):
        read_run_folder(tmp_path / "run")


def test_an_unrelated_out_folder_is_left_alone(run, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="does not hold a camlens report"):
        write_report(run, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_report_elsewhere_links_back_to_the_run(run, tmp_path):
    write_report(run, tmp_path / "elsewhere" / "r")
    data = read_data(tmp_path / "elsewhere" / "r")
    overlay = next(o for o in data["rows"]["overlay"] if o)
    assert ((tmp_path / "elsewhere" / "r") / overlay).resolve().is_file()
    photo = next(p for p in data["images"]["photo"] if p)
    assert ((tmp_path / "elsewhere" / "r") / photo).resolve().is_file()


def test_cli_report_writes_and_bad_input_exits_2(run, capsys, tmp_path):
    assert main(["report", str(run), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "24 images" in printed and "open file://" in printed
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "camlens: error: run folder" in capsys.readouterr().err


def test_server_listens_on_localhost_only_and_serves_the_report(run, report):
    server = make_server(run, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.server_address[0] == "127.0.0.1"
        url = report_url(server, run, run / "report" / "index.html")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/report/index.html")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"Content-Security-Policy" in response.read()
        with urllib.request.urlopen(url.replace("index.html", "data.js"), timeout=10) as response:
            assert response.read().startswith(b"window.CAMLENS_REPORT")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_cli_serve_prints_the_address(run, report):
    process = subprocess.Popen(
        [sys.executable, "-m", "camlens.cli", "report", str(run), "--serve", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = ""
        while "serving" not in line:
            line = process.stdout.readline()
            assert line, process.stderr.read()
        url = line.split()[1]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
