"""The report in a real browser: Playwright for Python driving Debian's Chromium.

`playwright install` cannot download browsers on these machines, so Chromium comes from the
system (`apt-get install -y chromium`; .ci/run installs it). Without it these tests skip, except
under CI=true, where they fail.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from camlens.viz.overlay import colormap_lut
from camlens.viz.report import write_report
from camlens.viz.report.serve import make_server, report_url
from runfolders import make_run

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-default-apps", "--mute-audio"]
XSS_NAME = "<img src=x onerror=alert(1)>.png"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason}; CI=true needs the browser tests to run (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        unavailable("no Chromium found (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A page with what the tests watch: console errors, page errors, dialogs, requests."""

    def __init__(self, browser, width: int = 1280, height: int = 800) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str) -> "Page":
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready]", timeout=30_000)
        return self

    def count(self) -> int:
        return int(self.page.text_content("#count"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser):
    opened = Page(browser)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    names = [f"img_{i:05d}.jpg" for i in range(40)]
    names[7] = XSS_NAME
    run = make_run(tmp_path_factory.mktemp("browser") / "run", 40, k=2, errors=[5], names=names, photo_size=(96, 72),
                   overlays=True)
    write_report(run)
    return run


@pytest.fixture(scope="module")
def manifest(run):
    return pq.read_table(run / "manifest.parquet").to_pydict()


def url_of(run: Path) -> str:
    return (run / "report" / "index.html").resolve().as_uri()


def expected(manifest, method="gradcam", rank=0, predicted=None, true=None, correct=None, q=None, pmin=None):
    """Manifest rows matching the filters (the rows the page shows as cards)."""
    n = 0
    for i in range(len(manifest["image_id"])):
        if manifest["error"][i] is not None:
            continue
        if method is not None and manifest["method"][i] != method:
            continue
        if rank is not None and manifest["rank"][i] != rank:
            continue
        if predicted is not None and manifest["predicted_index"][i] != predicted:
            continue
        if true is not None and manifest["true_index"][i] != true:
            continue
        if correct is not None and manifest["correct"][i] != correct:
            continue
        if q is not None and q.lower() not in manifest["path"][i].lower():
            continue
        if pmin is not None and manifest["probability"][i] < pmin:
            continue
        n += 1
    return n


def test_filter_counts_equal_the_manifest(page, run, manifest):
    p = page.open(url_of(run)).page
    assert page.count() == expected(manifest) == 39
    cards = p.locator("[data-image-id]")
    assert 0 < cards.count() <= page.count()

    p.select_option('[name="method"]', "all")
    p.select_option('[name="rank"]', "all")
    assert page.count() == expected(manifest, method=None, rank=None) == 39 * 4
    p.select_option('[name="method"]', "1")  # the second method: cam
    p.select_option('[name="rank"]', "1")
    assert page.count() == expected(manifest, method="cam", rank=1)

    p.click("#clear")
    predicted = manifest["predicted_index"][0]
    p.select_option('[name="predicted"]', str(predicted))
    assert page.count() == expected(manifest, predicted=predicted) > 0
    assert all(p.get_attribute(sel, "data-image-id") is not None for sel in ["[data-image-id] >> nth=0"])

    p.click("#clear")
    true = manifest["true_index"][0]
    p.select_option('[name="true"]', str(true))
    p.select_option('[name="correct"]', "wrong")
    assert page.count() == expected(manifest, true=true, correct=False)
    p.select_option('[name="correct"]', "correct")
    assert page.count() == expected(manifest, true=true, correct=True)

    p.click("#clear")
    word = manifest["relpath"][0].split("/")[0]
    p.fill('[name="q"]', word)
    assert page.count() == expected(manifest, q=word) > 0
    p.fill('[name="q"]', "no such path anywhere")
    assert page.count() == 0 and p.is_visible("#empty")

    p.click("#clear")
    p.fill('[name="pmin"]', "0.5")
    assert page.count() == expected(manifest, pmin=0.5)
    assert page.errors == [] and page.dialogs == []


def test_sorting_puts_the_most_probable_first_and_path_sorts_by_path(page, run, manifest):
    p = page.open(url_of(run)).page
    rows = [i for i in range(len(manifest["image_id"])) if manifest["error"][i] is None
            and manifest["method"][i] == "gradcam" and manifest["rank"][i] == 0]
    best = max(rows, key=lambda i: manifest["probability"][i])
    assert int(p.get_attribute("[data-image-id] >> nth=0", "data-image-id")) == manifest["image_id"][best]
    p.select_option('[name="sort"]', "prob-asc")
    worst = min(rows, key=lambda i: manifest["probability"][i])
    assert int(p.get_attribute("[data-image-id] >> nth=0", "data-image-id")) == manifest["image_id"][worst]
    p.select_option('[name="sort"]', "path")
    first = min(rows, key=lambda i: manifest["relpath"][i])
    assert int(p.get_attribute("[data-image-id] >> nth=0", "data-image-id")) == manifest["image_id"][first]


def test_opacity_slider_changes_the_rendered_heatmap(page, run):
    p = page.open(url_of(run)).page
    p.wait_for_selector(".card canvas.heat.ready")
    frame = p.locator(".card >> nth=0").locator(".pic")
    opacity = "getComputedStyle(document.querySelector('.card canvas.heat.ready')).opacity"
    assert float(p.evaluate(opacity)) == pytest.approx(0.5)
    slider = p.locator('[name="opacity"]')
    slider.focus()
    p.keyboard.press("End")
    assert float(p.evaluate(opacity)) == pytest.approx(1.0)
    p.wait_for_timeout(100)
    opaque = frame.screenshot()
    p.keyboard.press("Home")
    assert float(p.evaluate(opacity)) == pytest.approx(0.0)
    assert p.text_content("#opacity-value") == "0.00"
    p.wait_for_timeout(100)
    clear = frame.screenshot()
    for _ in range(4):
        p.keyboard.press("ArrowRight")
    assert float(p.evaluate(opacity)) == pytest.approx(0.2)
    assert opaque != clear  # the pixels on screen change, not only the style
    assert page.errors == []


def test_colormap_is_applied_in_the_browser_from_the_stored_map(page, run):
    p = page.open(url_of(run)).page
    p.wait_for_selector(".card canvas.heat.ready")
    read = """() => { const c = document.querySelector('.card canvas.heat.ready');
        return {w: c.width, h: c.height, id: +c.closest('.card').getAttribute('data-image-id'),
                rank: 0, px: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)}; }"""
    before = p.evaluate(read)
    p.select_option('[name="cmap"]', "viridis")
    after = p.evaluate(read)
    assert after["id"] == before["id"] and after["px"] != before["px"]
    # the stored map (chunk file) through matplotlib's viridis table gives exactly these pixels
    chunk = (run / "report" / "maps" / "gradcam" / "0.js").read_text()
    data = re.search(r'"data":"([^"]+)"', chunk).group(1)
    k, h, w = (int(re.search(rf'"{key}":(\d+)', chunk).group(1)) for key in ("k", "h", "w"))
    maps = np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(-1, k, h, w)
    lut = (colormap_lut("viridis").numpy() * 255).round().astype(int)
    rgba = np.array(after["px"]).reshape(h, w, 4)
    assert (rgba[..., :3] == lut[maps[after["id"], 0]]).all() and (rgba[..., 3] == 255).all()


def test_a_file_named_like_html_shows_as_text_and_runs_nothing(page, run, manifest):
    p = page.open(url_of(run)).page
    xss_id = manifest["image_id"][manifest["relpath"].index(next(r for r in manifest["relpath"] if XSS_NAME in r))]
    p.fill('[name="q"]', "onerror")
    assert page.count() == 1
    card = p.locator(f'[data-image-id="{xss_id}"]')
    assert XSS_NAME in card.locator(".path").text_content()
    card.click()
    assert XSS_NAME in p.text_content("#detail-path")
    p.wait_for_timeout(300)
    assert p.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror]').length") == 0
    assert page.dialogs == [] and page.errors == []


def test_detail_view_classes_and_run_pages_log_no_error(page, run, manifest):
    p = page.open(url_of(run)).page
    p.click(".card >> nth=0")
    assert p.is_visible("#detail")
    assert p.locator("#detail-methods .method-tile").count() == 2  # gradcam and cam side by side
    assert p.locator("#detail-classes tbody tr").count() == 4  # 2 methods x 2 classes
    first = p.text_content("#detail-path")
    p.keyboard.press("ArrowRight")
    assert p.text_content("#detail-path") != first
    links = p.eval_on_selector_all("#detail-files a", "as => as.map(a => a.getAttribute('href'))")
    assert any(link.startswith("thumbs/") for link in links) and any("overlays/" in link for link in links)
    report = run / "report"
    assert all((report / link).resolve().exists() for link in links)
    p.keyboard.press("Escape")
    assert not p.is_visible("#detail")
    p.click('#tabs button[data-view="classes"]')
    rows = p.locator("#classes-table tbody tr")
    assert rows.count() == len({manifest["true_index"][i] for i in range(len(manifest["image_id"]))
                                if manifest["error"][i] is None})
    assert p.locator("#classes-table canvas.mean").count() == rows.count()
    rows.nth(0).click()  # a class -> its images in the grid
    assert p.is_visible("#grid-view") and p.input_value('[name="true"]') != ""
    p.click('#tabs button[data-view="run"]')
    assert "Skipped images (1)" in p.text_content("#skipped-title")
    p.select_option('[name="cmap"]', "magma")
    p.wait_for_timeout(300)
    assert page.errors == [] and page.dialogs == []


def test_filters_survive_a_reload_through_the_address(page, run):
    p = page.open(url_of(run)).page
    p.select_option('[name="correct"]', "wrong")
    count = page.count()
    assert "correct=wrong" in p.url
    page.open(p.url)
    p.reload()
    p.wait_for_selector("body[data-ready]")
    assert p.input_value('[name="correct"]') == "wrong" and page.count() == count


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("served") / "run", 600, images_per_chunk=50,
                   photo_size=(80, 60))
    write_report(run)
    server = make_server(run, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield run, report_url(server, run, run / "report" / "index.html")
    server.shutdown()
    server.server_close()


def test_only_the_images_on_screen_are_requested(page, served_run):
    run, url = served_run
    page.open(url)
    p = page.page
    p.wait_for_timeout(500)

    def thumbs() -> set[int]:
        return {int(m.group(1)) for m in (re.search(r"/thumbs/\d+/(\d+)\.jpg", u) for u in page.requests) if m}

    on_screen = {int(x) for x in p.eval_on_selector_all("[data-image-id]", "cs => cs.map(c => c.getAttribute('data-image-id'))")}
    assert thumbs() <= on_screen and 0 < len(thumbs()) < 60  # of 600
    chunks = [u for u in page.requests if "/maps/" in u]
    assert 0 < len(chunks) <= 2 * len(on_screen)
    p.evaluate("document.getElementById('grid-scroll').scrollTop = 1e9")
    p.wait_for_timeout(500)
    last = {int(x) for x in p.eval_on_selector_all("[data-image-id]", "cs => cs.map(c => c.getAttribute('data-image-id'))")}
    assert last & thumbs() and not (last & on_screen)
    assert len(thumbs()) < 120 and p.locator("[data-image-id]").count() < 80
    assert page.errors == []


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """20,000 images x 2 methods (photos hard-linked to 200 files, so the thumbnails take seconds)."""
    run = make_run(tmp_path_factory.mktemp("big") / "run", 20_000, distinct_photos=200, images_per_chunk=1000,
                   photo_size=(64, 48))
    write_report(run)
    return run


@pytest.mark.slow
def test_twenty_thousand_images_are_interactive_within_two_seconds(browser, big_run):
    page = Page(browser, 1400, 900)
    try:
        started = time.perf_counter()
        page.open(url_of(big_run))
        p = page.page
        ready_ms = p.evaluate("window.camlensReadyAt")  # from the start of navigation
        assert page.count() == 20_000
        timing = p.evaluate("""() => {
            const t0 = performance.now();
            const predicted = document.querySelector('[name="predicted"]');
            predicted.value = predicted.options[2].value;
            predicted.dispatchEvent(new Event('change'));
            const sort = document.querySelector('[name="sort"]');
            sort.value = 'path';
            sort.dispatchEvent(new Event('change'));
            const q = document.querySelector('[name="q"]');
            q.value = '1';
            q.dispatchEvent(new Event('input'));
            return {ms: performance.now() - t0, count: +document.getElementById('count').textContent};
        }""")
        wall = time.perf_counter() - started
        print(f"\n20,000 images: ready {ready_ms:.0f} ms after navigation; three filter/sort changes {timing['ms']:.0f} ms; "
              f"wall {wall:.2f} s")
        assert 0 < timing["count"] < 20_000
        assert ready_ms < 2000 and timing["ms"] < 500
        requested = [u for u in page.requests if "/thumbs/" in u]
        assert len(requested) <= p.locator("[data-image-id]").count() + 10 < 100
        assert page.errors == []
    finally:
        page.close()


def test_a_missing_photo_shows_the_run_overlay_instead(page, tmp_path):
    run = make_run(tmp_path / "run", 6, overlays=True)
    table = pq.read_table(run / "manifest.parquet").to_pydict()
    gone = {table["image_id"][0], table["image_id"][2]}
    for i in range(len(table["path"])):
        if table["image_id"][i] in gone and os.path.exists(table["path"][i]):
            os.unlink(table["path"][i])
    write_report(run)
    p = page.open(url_of(run)).page
    p.wait_for_timeout(300)
    for image_id in gone:
        card = p.locator(f'[data-image-id="{image_id}"]')
        assert "overlays/" in card.locator("img.photo").get_attribute("src")
        assert card.locator("canvas").count() == 0  # the overlay already holds the map
    kept = next(i for i in table["image_id"] if i not in gone)
    assert "thumbs/" in p.locator(f'[data-image-id="{kept}"] img.photo').get_attribute("src")
    assert page.errors == []
