"""Slider latency of ``factorlens explore``: N decode requests over HTTP, as a dragged slider sends them.

    python -m benchmarks.explore_latency RUN [--moves 100] [--repeat 3] [--browser [--screenshot PNG]]

Starts the explorer of RUN (the same server as the command, on a free port, in a thread), loads test
image 0 as the base and sends ``--moves`` ``POST /api/decode`` requests one after another on one
keep-alive connection, moving the slider of the dimension with the most KL from -3 to 3 (what dragging
does: the page keeps one request in flight). Each time is the round trip the page waits for: request
parsing and validation, the decode, PNG encoding, JSON, the socket. Also prints the decode alone
(``Explorer.decode``, no HTTP) for comparison. ``--repeat`` runs the sweep several times (after one
warm-up sweep) and prints each. ``--browser`` (needs the ``browser`` extra and Debian's chromium) also
times ``--moves`` moves of the top slider in headless chromium, from setting its value to the new image
in the page (Playwright's own round trips to the browser included), and ``--screenshot`` then saves the
page after moving two sliders: the README's figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time

import numpy as np

from factorlens.environment import machine_line


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def sweep(connection: http.client.HTTPConnection, base: list[float], dim: int, moves: int) -> list[float]:
    """Milliseconds of each decode round trip while the slider of ``dim`` goes from -3 to 3."""
    times = []
    for value in np.linspace(-3.0, 3.0, moves):
        body = json.dumps({"set": "axes", "base": base, "values": {str(dim): round(float(value), 2)}})
        started = time.perf_counter()
        connection.request("POST", "/api/decode", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        times.append((time.perf_counter() - started) * 1000.0)
        if response.status != 200:
            raise SystemExit(f"decode answered {response.status}: {payload[:200]!r}")
    return times


def in_browser(url: str, moves: int, path: str | None) -> list[float]:
    """Milliseconds from setting the top slider in headless chromium to the new image being shown, for
    ``moves`` moves (one at a time, each waiting for its image); then the screenshot, if ``path``."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-quic"]  # fmt: skip
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 720})
        page.goto(url)
        page.wait_for_function("() => document.querySelector('#status').textContent.startsWith('base:')")
        sliders = page.locator("#sliders input[type=range]")
        changed = "(b) => document.querySelector('#current').src !== b"
        for value in np.linspace(-3.0, 3.0, moves):
            before = page.eval_on_selector("#current", "img => img.src")
            started = time.perf_counter()
            sliders.first.fill(f"{value:.2f}")
            page.wait_for_function(changed, arg=before, polling="raf")
            times.append((time.perf_counter() - started) * 1000.0)
        if path:
            for k, value in enumerate(("2.2", "-1.8")):
                before = page.eval_on_selector("#current", "img => img.src")
                sliders.nth(k).fill(value)
                page.wait_for_function(changed, arg=before)
            page.screenshot(path=path)
        browser.close()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory")
    parser.add_argument("--moves", type=int, default=100, help="decode requests per sweep (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="timed sweeps (default 3)")
    parser.add_argument(
        "--browser", action="store_true", help="also time --moves slider moves in headless chromium"
    )
    parser.add_argument("--screenshot", help="save a screenshot of the page to this PNG (with --browser)")
    args = parser.parse_args(argv)

    import torch

    from factorlens.explore import Explorer, make_server
    from factorlens.training import load_run

    started = time.perf_counter()
    run = load_run(args.run)
    explorer = Explorer.from_run(run)
    print(f"{machine_line()}; torch threads {torch.get_num_threads()}")
    print(f"explorer of {explorer.title} ready in {time.perf_counter() - started:.1f} s")
    server = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request("GET", "/api/test?index=0")
    base = json.loads(connection.getresponse().read())["code"]
    dim = explorer.sets["axes"].sliders[0].index
    sweep(connection, base, dim, 10)  # warm-up
    for k in range(args.repeat):
        times = sweep(connection, base, dim, args.moves)
        print(
            f"sweep {k + 1}: {args.moves} slider moves over HTTP: median {statistics.median(times):.1f} ms, "
            f"p95 {percentile(times, 95):.1f} ms, max {max(times):.1f} ms"
        )
    decode_times = []
    code = np.asarray(base, np.float32)
    for _ in range(args.moves):
        started = time.perf_counter()
        explorer.decode(code)
        decode_times.append((time.perf_counter() - started) * 1000.0)
    print(
        f"decode alone ({args.moves} calls): median {statistics.median(decode_times):.1f} ms, "
        f"p95 {percentile(decode_times, 95):.1f} ms"
    )
    if args.browser:
        times = in_browser(server.url, args.moves, args.screenshot)
        print(
            f"in chromium ({args.moves} slider moves, set value -> new image shown): median "
            f"{statistics.median(times):.1f} ms, p95 {percentile(times, 95):.1f} ms, max {max(times):.1f} ms"
        )
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
