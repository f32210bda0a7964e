"""A real browser (Debian's chromium, headless, driven by Playwright's Python package through
``executable_path``; no browser download) on the explorer page and on the HTML report.

Explorer: the page loads with no console error, a slider move re-decodes (the image changes), the walk
and an upload work, and no request leaves the local server. Report: opens from disk with no console error
and every image renders (``naturalWidth > 0``). Skipped, saying why, only where no chromium is installed
(``.ci/run`` installs it with apt)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from _explore_support import one_thread, serving, train_tiny_run
from PIL import Image

from factorlens.explore import Explorer
from factorlens.explore.state import direction_folders
from factorlens.training import load_run

CHROMIUM = os.environ.get("FACTORLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no chromium browser at {CHROMIUM} (install Debian's with `apt-get install -y chromium`, as .ci/run "
        "does, or set FACTORLENS_CHROMIUM)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is missing (pip install -e '.[dev]')"
)

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 20_000
pytestmark = pytest.mark.slow  # a browser start and a report: about 30 s on 2 shared cores


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    with one_thread():
        return train_tiny_run(tmp_path_factory.mktemp("explore-browser") / "tiny")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


def watched_page(browser):
    """A page that records every request URL and every console error / uncaught exception."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    seen = {"requests": [], "errors": []}
    page.on("request", lambda request: seen["requests"].append(request.url))
    page.on("console", lambda message: message.type == "error" and seen["errors"].append(message.text))
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    return page, seen


BURST = """(values) => {
    const input = document.querySelector('#sliders input[type=range]');
    for (const value of values) { input.value = value; input.dispatchEvent(new Event('input')); }
}"""


def get_json(server, path: str) -> dict:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("GET", path)
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return answer


def post_json(server, path: str, body: dict) -> dict:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return answer


def current_src(page) -> str:
    return page.eval_on_selector("#current", "img => img.src")


def wait_for_change(page, before: str) -> str:
    page.wait_for_function("(before) => document.querySelector('#current').src !== before", arg=before)
    return current_src(page)


def test_explorer_in_a_real_browser(browser, run_dir, tmp_path):
    run = load_run(run_dir)
    with one_thread(), serving(Explorer.from_run(run, direction_folders(run.path))) as server:
        page, seen = watched_page(browser)
        page.goto(server.url)
        page.wait_for_function("() => document.querySelector('#current').src.startsWith('data:image/png')")
        page.wait_for_function(
            "() => document.querySelector('#status').textContent.startsWith('base: test image 0')"
        )
        first = current_src(page)
        assert page.eval_on_selector("#recon", "img => img.src") == first  # nothing moved yet
        sliders = page.locator("#sliders input[type=range]")
        assert sliders.count() >= 1
        # move the first slider (the dimension with the most KL) to the end of its range
        sliders.first.fill("3")
        moved = wait_for_change(page, first)
        assert page.locator("#v" + sliders.first.get_attribute("data-index")).text_content() == "3.00"
        # reset goes back to the base code's image
        page.click("#reset")
        page.wait_for_function("(first) => document.querySelector('#current').src === first", arg=first)
        # a burst of 20 moves while a decode is in flight: only the first and the newest are sent, and
        # the page ends on the newest (stale states are dropped, never queued)
        sent_before = sum(url.endswith("/api/decode") for url in seen["requests"])
        values = [f"{v:.2f}" for v in np.linspace(-2.0, 2.0, 20)]
        page.evaluate(BURST, values)
        index = sliders.first.get_attribute("data-index")
        body = {"set": "axes", "base": page.evaluate("() => st.base"), "values": {index: 2.0}}
        expected = post_json(server, "/api/decode", body)["image"]
        page.wait_for_function("(src) => document.querySelector('#current').src === src", arg=expected)
        page.wait_for_function("() => !st.inflight && st.pending === null")
        assert sum(url.endswith("/api/decode") for url in seen["requests"]) - sent_before == 2
        # the direction set: its labels are shown
        page.select_option("#set", "handmade")
        assert "first" in page.locator("#sliders").text_content()
        # a walk to another test image: the end of the walk differs from its start
        page.fill("#walk-index", "5")
        page.click("#walk-target-index")
        page.wait_for_function(
            "() => document.querySelector('#walk-status').textContent.startsWith('to test image 5 (')"
        )
        page.locator("#walk").fill("1")
        page.wait_for_function(
            "() => document.querySelector('#walk-status').textContent.includes('dimensions moved')"
        )
        target = get_json(server, "/api/test?index=5")
        np.testing.assert_allclose(page.evaluate("() => st.code"), target["code"], rtol=0, atol=1e-6)
        assert current_src(page) == target["image"]  # the end of the walk is image 5's reconstruction
        page.locator("#walk").fill("0")
        page.click("#walk-target-test")
        page.wait_for_function("() => !document.querySelector('#walk').disabled")
        page.locator("#walk").fill("1")
        page.wait_for_function(
            "() => document.querySelector('#walk-status').textContent.includes('dimensions moved')"
        )
        # an uploaded PNG becomes the base
        upload = tmp_path / "upload.png"
        Image.fromarray(np.full((80, 100, 3), (200, 120, 90), np.uint8)).save(upload)
        before = current_src(page)
        page.set_input_files("#upload", str(upload))
        page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'base: uploaded image'"
        )
        assert current_src(page) != before
        # save image / save code: the current PNG and a JSON record with the current code
        with page.expect_download() as download:
            page.click("#save-image")
        saved_png = Path(download.value.path()).read_bytes()
        assert base64.b64encode(saved_png).decode() == current_src(page).split(",", 1)[1]
        with page.expect_download() as download:
            page.click("#save-code")
        record = json.loads(Path(download.value.path()).read_text())
        assert download.value.suggested_filename == "factorlens-upload.json"
        assert record["code"] == page.evaluate("() => st.code") and record["base"] == "uploaded image"
        page.screenshot(path=str(tmp_path / "explorer.png"))
        page.close()
    assert moved != first
    assert Image.open(tmp_path / "explorer.png").size == (1280, 900)
    assert seen["errors"] == []
    origin = server.url.rstrip("/")
    foreign = [
        url for url in seen["requests"] if not (url.startswith(origin + "/") or url.startswith("data:"))
    ]
    assert foreign == [], foreign
    paths = {urlsplit(url).path for url in seen["requests"] if url.startswith(origin)}
    assert {"/", "/api/info", "/api/test", "/api/decode", "/api/walk", "/api/upload"} <= paths


def test_report_in_a_real_browser(browser, run_dir, tmp_path):
    from factorlens.viz.report import write_report

    with one_thread():
        report = write_report([run_dir], tmp_path / "report.html", n_images=1, steps=4)
    page, seen = watched_page(browser)
    page.goto(report.resolve().as_uri())
    page.wait_for_load_state("load")
    widths = page.eval_on_selector_all("img", "images => images.map(img => [img.alt, img.naturalWidth])")
    assert len(widths) >= 6  # curves, prior samples, reconstructions, KL, MI, traversal(s), walk(s)
    assert all(width > 0 for _, width in widths), widths
    assert f"factorlens explore {run_dir}" in page.locator("body").text_content()
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    page.close()
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    assert Image.open(io.BytesIO((tmp_path / "report.png").read_bytes())).size[0] > 0
