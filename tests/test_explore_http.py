"""``factorlens explore`` over HTTP, without a browser: the tiny real run of ``_explore_support`` served
on a free port in a thread. Every answer is checked against an independent computation (the model's own
encode/decode called here, numpy for the standardisation, the walk and the direction shifts); bad
requests get 400 with a one-line JSON error and the server keeps answering."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from _explore_support import LATENT_DIM, one_thread, serving, train_tiny_run
from PIL import Image

from factorlens.cli.main import main
from factorlens.errors import ConfigError
from factorlens.explore import Explorer
from factorlens.explore.state import direction_folders
from factorlens.models import build_model
from factorlens.training import load_run


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("explore") / "tiny")


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def served(run):
    explorer = Explorer.from_run(run, direction_folders(run.path))
    with serving(explorer) as server:
        yield explorer, server


def request(server, method, path, body=None, headers=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    payload = json.loads(data) if response.getheader("Content-Type") == "application/json" else data
    return response.status, payload


def png_array(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))).convert("RGB"))


def library_image(model, code) -> np.ndarray:
    """The model's decode of ``code`` as the uint8 RGB the page shows (computed here, not by factorlens)."""
    with torch.no_grad():
        x = model.decode(torch.as_tensor(np.asarray(code, np.float32))[None])[0].clamp(0, 1)
    return np.round(x.double().numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


def encoder_mean(model, images_uint8) -> np.ndarray:
    with torch.no_grad():
        return model.encode(torch.as_tensor(images_uint8).float() / 255.0)[0].numpy()


def test_info_orders_axes_by_kl_and_lists_the_direction_set(served, run):
    explorer, server = served
    status, info = request(server, "GET", "/api/info")
    assert status == 200
    assert info["latent_dim"] == LATENT_DIM and info["has_encoder"] is True and info["span"] == 3.0
    test_idx = np.asarray(run.split["test"])
    assert info["test_images"] == len(test_idx) == 13
    axes, handmade = info["sets"]
    assert (axes["name"], handmade["name"]) == ("axes", "handmade")
    # KL of each dimension to N(0, 1), averaged over the test images, computed here
    images = run.load_dataset().images[test_idx]
    with torch.no_grad():
        mu, logvar = (t.double().numpy() for t in run.model.encode(torch.as_tensor(images).float() / 255))
    kl = (0.5 * (mu**2 + np.exp(logvar) - logvar - 1)).mean(axis=0)
    assert [s["index"] for s in axes["sliders"]] == list(np.argsort(-kl, kind="stable"))
    for slider in axes["sliders"]:
        assert f"KL {kl[slider['index']]:.2f} nats" in slider["detail"]
        factor = slider["label"].split(" ", 1)[1]  # labelled with a factor of the synthetic lesions
        assert factor in run.load_dataset().factor_names and f"MI with {factor}" in slider["detail"]
    # the direction set: its labels ("" -> "direction k") and the strongest effect from scores.json
    assert [s["label"] for s in handmade["sliders"]] == ["first", "direction 1"]
    assert "strongest effect: tone -0.70" in handmade["sliders"][0]["detail"]
    assert "strongest effect: size +0.30" in handmade["sliders"][1]["detail"]
    assert handmade["summary"] == [["direction_mig", "0.25"]]


def test_test_image_code_and_reconstruction_equal_the_library(served, run):
    explorer, server = served
    dataset = run.load_dataset()
    index = 4
    status, answer = request(server, "GET", f"/api/test?index={index}")
    assert status == 200
    image = dataset.images[run.split["test"][index]]
    assert answer["id"] == dataset.ids[run.split["test"][index]]
    np.testing.assert_array_equal(png_array(answer["input"]), image.transpose(1, 2, 0))
    code = encoder_mean(run.model, image[None])[0]
    np.testing.assert_array_equal(np.float32(answer["code"]), code)
    np.testing.assert_array_equal(png_array(answer["image"]), library_image(run.model, code))


def test_axis_slider_sets_the_standardised_coordinate(served, run):
    explorer, server = served
    test_idx = np.asarray(run.split["test"])
    codes = encoder_mean(run.model, run.load_dataset().images[test_idx]).astype(np.float64)
    mean, sd = codes.mean(axis=0), codes.std(axis=0)
    _, base = request(server, "GET", "/api/test?index=0")
    np.testing.assert_allclose(base["positions"]["axes"], (np.float64(base["code"]) - mean) / sd, rtol=1e-9)
    status, answer = request(
        server, "POST", "/api/decode", {"set": "axes", "base": base["code"], "values": {"2": 1.5, "4": -3}}
    )
    assert status == 200
    expected = np.float64(base["code"])
    expected[2] = mean[2] + 1.5 * sd[2]
    expected[4] = mean[4] - 3.0 * sd[4]
    np.testing.assert_allclose(answer["code"], expected.astype(np.float32), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(png_array(answer["image"]), library_image(run.model, answer["code"]))
    assert not np.array_equal(png_array(answer["image"]), png_array(base["image"]))
    # no values: the base code itself
    _, same = request(server, "POST", "/api/decode", {"set": "axes", "base": base["code"], "values": {}})
    assert same["code"] == base["code"] and same["image"] == base["image"]


def test_direction_slider_shifts_by_posterior_sigmas(served, run):
    explorer, server = served
    _, base = request(server, "GET", "/api/test?index=1")
    status, answer = request(
        server, "POST", "/api/decode", {"set": "handmade", "base": base["code"], "values": {"1": 2.0}}
    )
    assert status == 200
    expected = np.float64(base["code"])
    expected[1] += 2.0 * 2.0 * 2**-0.5  # t * scale * unit direction
    expected[2] += 2.0 * 2.0 * 2**-0.5
    np.testing.assert_allclose(answer["code"], expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(png_array(answer["image"]), library_image(run.model, answer["code"]))


def test_walk_moves_the_dimensions_one_at_a_time_largest_difference_first(served, run):
    explorer, server = served
    _, source = request(server, "GET", "/api/test?index=0")
    _, target = request(server, "GET", "/api/test?index=7")
    s, t = np.float64(source["code"]), np.float64(target["code"])
    order = list(np.argsort(-np.abs(t - s), kind="stable"))
    for position in (0.0, 0.25, 0.5, 1.0):
        status, answer = request(
            server,
            "POST",
            "/api/walk",
            {"source": source["code"], "target": target["code"], "position": position},
        )
        assert status == 200
        moves = position * LATENT_DIM
        expected = s.copy()
        for j, dim in enumerate(order):
            expected[dim] = s[dim] + min(max(moves - j, 0), 1) * (t[dim] - s[dim])
        np.testing.assert_allclose(answer["code"], expected, rtol=0, atol=1e-6)
        assert answer["order"] == order
        assert answer["moved"] == order[: int(moves)]
        np.testing.assert_array_equal(png_array(answer["image"]), library_image(run.model, answer["code"]))
    assert answer["code"] == target["code"]


def test_prior_sample_is_the_seeded_normal_draw(served, run):
    explorer, server = served
    status, answer = request(server, "GET", "/api/prior?seed=123")
    assert status == 200 and answer["input"] is None
    code = torch.randn(1, LATENT_DIM, generator=torch.Generator().manual_seed(123))[0].numpy()
    np.testing.assert_array_equal(np.float32(answer["code"]), code)
    np.testing.assert_array_equal(png_array(answer["image"]), library_image(run.model, code))


def encoded(image_hwc: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_hwc).save(buffer, format=fmt)
    return buffer.getvalue()


def test_uploaded_png_is_encoded_like_the_dataset_image(served, run):
    explorer, server = served
    image = run.load_dataset().images[run.split["test"][2]]
    png = encoded(image.transpose(1, 2, 0), "PNG")
    status, answer = request(server, "POST", "/api/upload", png, {"Content-Type": "image/png"})
    assert status == 200
    np.testing.assert_array_equal(png_array(answer["input"]), image.transpose(1, 2, 0))
    np.testing.assert_array_equal(np.float32(answer["code"]), encoder_mean(run.model, image[None])[0])
    # a 128x96 JPEG: centre-cropped to 96x96, area-averaged to 64x64
    big = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    status, answer = request(
        server, "POST", "/api/upload", encoded(big, "JPEG"), {"Content-Type": "image/jpeg"}
    )
    assert status == 200 and png_array(answer["input"]).shape == (64, 64, 3)
    decoded = np.asarray(Image.open(io.BytesIO(encoded(big, "JPEG"))).convert("RGB"))
    crop = Image.fromarray(decoded).resize((64, 64), Image.Resampling.BOX, box=(16, 0, 112, 96))
    np.testing.assert_array_equal(png_array(answer["input"]), np.asarray(crop))


def one_line_error(payload) -> str:
    assert isinstance(payload, dict) and set(payload) == {"error"}
    assert "\n" not in payload["error"] and payload["error"]
    return payload["error"]


def huge_png() -> bytes:
    """A 42-megapixel PNG of a few KiB (1-bit): refused from its header, before it is decoded."""
    buffer = io.BytesIO()
    Image.new("1", (7000, 6000)).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_requests(code):
    json_type = {"Content-Type": "application/json"}
    good = {"set": "axes", "base": code, "values": {}}
    return [
        ("GET", "/api/test?index=13", None, {}, "index must be an integer in [0, 12]"),
        ("GET", "/api/test?index=-1", None, {}, "index must be an integer"),
        ("GET", "/api/test?index=1e3", None, {}, "index must be an integer"),
        ("GET", "/api/test", None, {}, "missing query parameter 'index'"),
        ("GET", "/api/test?index=1&index=2", None, {}, "given twice"),
        ("GET", "/api/test?index=1&path=../../etc/passwd", None, {}, "unknown query parameter 'path'"),
        ("GET", "/api/prior?seed=99999999999", None, {}, "seed must be an integer"),
        ("GET", "/api/info?x", None, {}, "bad query string"),
        ("POST", "/api/decode", {**good, "base": code[:-1]}, {}, "base must be a list of 6 numbers"),
        ("POST", "/api/decode", {**good, "base": [True] * 6}, {}, "base[0] must be a number"),
        ("POST", "/api/decode", {**good, "base": [1e9] * 6}, {}, "base[0] must be in [-1000, 1000]"),
        ("POST", "/api/decode", {**good, "values": {"0": 3.01}}, {}, "values[0] must be in [-3, 3]"),
        (
            "POST",
            "/api/decode",
            {**good, "values": {"6": 0}},
            {},
            "slider index must be an integer in [0, 5]",
        ),
        ("POST", "/api/decode", {**good, "values": {"x": 0}}, {}, "slider index must be an integer"),
        ("POST", "/api/decode", {**good, "values": {"1": "2"}}, {}, "values[1] must be a number"),
        ("POST", "/api/decode", {**good, "values": {"1": 10**400}}, {}, "values[1] must be in"),
        ("POST", "/api/decode", {**good, "set": "../axes"}, {}, "set must be one of 'axes', 'handmade'"),
        ("POST", "/api/decode", {**good, "extra": 1}, {}, "unknown field 'extra'"),
        ("POST", "/api/decode", {"set": "axes", "base": code}, {}, "missing field 'values'"),
        ("POST", "/api/decode", [1, 2], {}, "must be a JSON object"),
        ("POST", "/api/decode", '{"set": "axes", "base": [1,', json_type, "not valid JSON"),
        (
            "POST",
            "/api/decode",
            json.dumps(good).replace(str(code[0]), "Infinity"),
            json_type,
            "Infinity is not a finite number",
        ),
        ("POST", "/api/decode", "[" * 50000, json_type, "not valid JSON"),
        ("POST", "/api/decode", json.dumps(good), {"Content-Type": "text/plain"}, "Content-Type must be"),
        (
            "POST",
            "/api/walk",
            {"source": code, "target": code, "position": 1.5},
            {},
            "position must be in [0, 1]",
        ),
        (
            "POST",
            "/api/upload",
            b"GIF89a" + bytes(50),
            {"Content-Type": "image/gif"},
            "image/png or image/jpeg",
        ),
        ("POST", "/api/upload", b"hello", {"Content-Type": "image/png"}, "upload is not a PNG file"),
        (
            "POST",
            "/api/upload",
            b"\x89PNG\r\n\x1a\n" + bytes(100),
            {"Content-Type": "image/png"},
            "not a readable PNG or JPEG image",
        ),
        (
            "GET",
            "/api/info",
            None,
            {"Host": "evil.example:80"},
            "Host header 'evil.example:80' is not this server",
        ),
        ("POST", "/api/decode", good, {"Origin": "http://evil.example"}, "requests from origin"),
        (
            "POST",
            "/api/upload",
            huge_png(),
            {"Content-Type": "image/png"},
            "upload: 7000x6000 pixels; at most 40,000,000",
        ),
    ]


def test_bad_requests_get_400_with_a_one_line_json_error_and_the_server_survives(served):
    explorer, server = served
    _, base = request(server, "GET", "/api/test?index=0")
    for method, path, body, headers, message in bad_requests(base["code"]):
        status, payload = request(server, method, path, body, headers)
        assert status == 400, (path, body, payload)
        assert message in one_line_error(payload), (message, payload)
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/page.html", "/api"):
        status, payload = request(server, "GET", path)
        assert status == 404 and "no such page" in one_line_error(payload)
    status, payload = request(server, "POST", "/api/info", {"x": 1})
    assert status == 405 and "answers GET only" in one_line_error(payload)
    status, payload = request(server, "GET", "/api/decode")
    assert status == 405
    assert request(server, "GET", "/api/info")[0] == 200


def test_oversized_body_is_refused_before_it_is_read(served):
    explorer, server = served
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(
            b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: image/png\r\n"
            b"Content-Length: 100000000\r\n\r\n" % server.server_address[1]
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 400") and '{"error": "request body over 8 MiB"}' in answer


def test_page_is_self_contained_and_sent_with_a_same_origin_policy(served):
    explorer, server = served
    status, page = request(server, "GET", "/")
    assert status == 200
    html = page.decode("utf-8")
    assert "<script>" in html and "/api/decode" in html
    # no URL of another host anywhere in the page: no CDN, fonts, analytics
    assert not re.search(r"(https?:)?//[a-z0-9]", html, flags=re.I)
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    policy = response.getheader("Content-Security-Policy")
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_diffusion_models_are_refused_with_one_line():
    diffusion = types.SimpleNamespace(is_diffusion=True, has_encoder=True, latent_dim=8, channels=3)
    with pytest.raises(ConfigError, match=r"^factorlens explore does not serve diffusion models yet"):
        Explorer(diffusion)


def test_model_without_encoder_offers_prior_samples_only():
    torch.manual_seed(0)
    gan = build_model("gan", {"latent_dim": 5}, channels=3).eval()
    with serving(Explorer(gan)) as server:
        _, info = request(server, "GET", "/api/info")
        assert info["has_encoder"] is False and info["test_images"] == 0
        assert [s["index"] for s in info["sets"][0]["sliders"]] == [0, 1, 2, 3, 4]
        status, payload = request(server, "GET", "/api/test?index=0")
        assert status == 400 and "no test images" in one_line_error(payload)
        status, payload = request(
            server, "POST", "/api/upload", b"\x89PNG\r\n\x1a\n", {"Content-Type": "image/png"}
        )
        assert status == 400 and "no encoder" in one_line_error(payload)
        _, prior = request(server, "GET", "/api/prior?seed=7")
        np.testing.assert_array_equal(png_array(prior["image"]), library_image(gan, prior["code"]))
        # prior units: slider t sets z_j = t
        _, moved = request(
            server, "POST", "/api/decode", {"set": "axes", "base": prior["code"], "values": {"3": -2.5}}
        )
        assert moved["code"][3] == -2.5 and moved["code"][:3] == prior["code"][:3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be in [0, 65535], got 70000"),
        (["--span", "-1"], "--span must be a positive number, got -1.0"),
        (["--directions", "nowhere"], "--directions nowhere: not a directory"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(run_dir, args, message, capsys):
    assert main(["explore", str(run_dir), *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


def test_cli_port_in_use_is_a_one_line_error(run_dir, served, capsys):
    _, server = served
    assert main(["explore", str(run_dir), "--port", str(server.server_address[1])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: --port {server.server_address[1]} on --host 127.0.0.1:"
    )


def test_cli_prints_the_url_and_serves(run_dir):
    env = {**os.environ, "FACTORLENS_NO_PROGRESS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "factorlens", "explore", str(run_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            match = re.search(r"open (http://127\.0\.0\.1:(\d+)/)", line)
            url = match and match.group(1)
        assert url, "no URL printed"
        port = int(url.rsplit(":", 1)[1].strip("/"))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/info")
        info = json.loads(connection.getresponse().read())
        assert [s["name"] for s in info["sets"]] == ["axes", "handmade"]  # RUN/directions/* by default
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_host_check_only_on_loopback():
    from factorlens.explore.server import allowed_hosts_for

    assert allowed_hosts_for("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert "localhost:9000" in allowed_hosts_for("localhost", 9000)
    assert allowed_hosts_for("0.0.0.0", 8765) is None  # the CLI warns that anyone may connect
    assert allowed_hosts_for("192.168.1.5", 8765) is None


def test_upload_for_a_greyscale_32px_run_is_luma_at_the_run_size():
    from factorlens.explore.state import upload_to_images

    colour = (200, 120, 90)
    png = encoded(np.full((80, 100, 3), colour, np.uint8), "PNG")
    images = upload_to_images(png, channels=1, size=32)
    assert images.shape == (1, 1, 32, 32) and images.dtype == np.uint8
    luma = round((colour[0] * 299 + colour[1] * 587 + colour[2] * 114) / 1000)  # ITU-R 601
    assert np.all(np.abs(images.astype(int) - luma) <= 1)
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent: composited on white, as the loaders do
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    assert np.all(upload_to_images(buffer.getvalue(), channels=3, size=16) == 255)


def test_greyscale_32px_model_round_trip():
    """A 1-channel 32 px run (e.g. NIfTI slices): 32x32 greyscale answers, uploads encoded at 32 px."""
    from factorlens.explore import handle

    torch.manual_seed(0)
    model = build_model("btcvae", {"latent_dim": 3}, channels=1, image_size=32).eval()
    explorer = Explorer(model)
    assert explorer.image_size == 32 and explorer.channels == 1
    prior = json.loads(handle(explorer, "GET", "/api/prior?seed=1", {}).body)
    prefix = "data:image/png;base64,"
    image = Image.open(io.BytesIO(base64.b64decode(prior["image"][len(prefix) :])))
    assert image.mode == "L" and image.size == (32, 32)
    with torch.no_grad():
        expected = model.decode(torch.tensor([prior["code"]]))[0, 0].clamp(0, 1).numpy()
    np.testing.assert_array_equal(
        np.asarray(image), np.round(expected.astype(np.float64) * 255).astype(np.uint8)
    )
    upload = encoded(np.full((50, 70, 3), 128, np.uint8), "PNG")
    response = handle(explorer, "POST", "/api/upload", {"content-type": "image/png"}, upload)
    assert response.status == 200
    assert png_array(json.loads(response.body)["input"]).shape == (32, 32, 3)
