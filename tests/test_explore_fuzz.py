"""Fuzzing the explorer's request handling (hypothesis): whatever arrives on a known route -- query
strings, JSON of any shape and value, NaN/Infinity, huge numbers, raw bytes, uploads that are or merely
look like PNGs, foreign Host headers -- the answer is 200 or 400 with a one-line JSON error, never an
exception (which the server would turn into a 500). A small untrained model keeps each example fast."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from factorlens.data.base import ImageDataset
from factorlens.explore import Explorer, handle
from factorlens.explore.server import allowed_hosts_for
from factorlens.models import build_model
from factorlens.viz.run_figures import FigureData

D = 4
N_IMAGES = 8
HOSTS = allowed_hosts_for("127.0.0.1", 8765)


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("btcvae", {"latent_dim": D}, channels=3).eval()
    rng = np.random.default_rng(0)
    dataset = ImageDataset(
        name="noise",
        spec="noise:n=8",
        images=rng.integers(0, 256, (N_IMAGES, 3, 64, 64), dtype=np.uint8),
        ids=[f"n{i}" for i in range(N_IMAGES)],
        factors=rng.integers(0, 3, (N_IMAGES, 1)),
        factor_names=["level"],
        factor_sizes=[3],
    )
    data = FigureData(dataset=dataset, pool=np.arange(N_IMAGES), description="noise, all images")
    yield Explorer(model, data, span=3.0)
    torch.set_num_threads(previous)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 4) -> st.SearchStrategy:
    """``good`` ``odds - 1`` times in ``odds``, else ``bad``: many requests reach the model."""
    return st.integers(0, odds - 1).flatmap(lambda k: good if k else bad)


class Missing:
    """A field left out of the request body."""


finite = st.floats(min_value=-4, max_value=4, allow_nan=False)
codes = mostly(
    st.lists(finite, min_size=D, max_size=D), st.lists(finite, max_size=D + 2) | json_values, odds=8
)
slider_values = mostly(
    st.dictionaries(st.sampled_from(["0", "1", "2", "3"]), st.floats(-3, 3), max_size=4),
    st.dictionaries(
        st.sampled_from(["4", "-1", "01", " 2", "x", "1e0"]) | st.text(max_size=4),
        finite | json_scalars,
        max_size=3,
    )
    | json_values,
    odds=8,
)


def payload(fields: dict) -> st.SearchStrategy:
    """A JSON body with these fields, each usually well formed, sometimes missing or any JSON value,
    and now and then an extra field."""

    def build(drawn: dict, extra: dict) -> bytes:
        body = {key: value for key, value in drawn.items() if value is not Missing}
        body.update(extra)
        return json.dumps(body, allow_nan=True).encode("utf-8")

    field_values = {key: mostly(good, json_values | st.just(Missing), odds=6) for key, good in fields.items()}
    extras = mostly(st.just({}), st.dictionaries(st.text(max_size=5), json_scalars, max_size=1), odds=6)
    return st.builds(build, st.fixed_dictionaries(field_values), extras)


def other_bodies() -> st.SearchStrategy:
    return json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()) | st.binary(max_size=64)


ROUTE_BODIES = {
    "/api/decode": payload(
        {
            "set": mostly(st.just("axes"), st.sampled_from(["other", "", "../axes"]), odds=8),
            "base": codes,
            "values": slider_values,
        }
    ),
    "/api/walk": payload(
        {"source": codes, "target": codes, "position": mostly(st.floats(0, 1), st.floats(-1, 2), odds=8)}
    ),
    "/api/upload": st.binary(max_size=64).map(lambda b: b"\x89PNG\r\n\x1a\n" + b) | st.binary(max_size=64),
}
ROUTE_TYPES = {
    "/api/decode": ["application/json", "application/json; charset=utf-8"],
    "/api/walk": ["application/json"],
    "/api/upload": ["image/png", "image/jpeg"],
}
other_types = st.sampled_from(["text/plain", "", "image/gif", "application/json", "image/png"]) | st.text(
    max_size=12
)
queries = st.one_of(
    st.sampled_from(["", "index=0", "index=7", "index=8", "seed=0", "seed=2147483647", "seed=2147483648"]),
    st.lists(st.tuples(st.sampled_from(["index", "seed", "x", ""]), st.text(max_size=6)), max_size=3).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    ),
    st.text(max_size=20),
)
hosts = mostly(st.sampled_from(sorted(HOSTS)), st.text(max_size=20), odds=8)
STATUSES: dict[tuple[str, int], int] = {}


def check(response) -> None:
    assert response.status in (200, 400), response
    if response.status == 400:
        payload = json.loads(response.body)
        assert set(payload) == {"error"} and "\n" not in payload["error"] and payload["error"]
    elif response.content_type == "application/json":
        json.loads(response.body)


FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(
    route=st.sampled_from(sorted(ROUTE_BODIES)),
    data=st.data(),
    query=mostly(st.just(""), queries, odds=8),
    host=hosts,
    origin=mostly(st.none(), st.sampled_from(["http://127.0.0.1:8765", "http://evil.example"]), odds=8),
)
def test_posts_answer_200_or_400(explorer, route, data, query, host, origin):
    body = data.draw(mostly(ROUTE_BODIES[route], other_bodies(), odds=8))
    content_type = data.draw(mostly(st.sampled_from(ROUTE_TYPES[route]), other_types, odds=8))
    headers = {"content-type": content_type, "host": host}
    if origin is not None:
        headers["origin"] = origin
    target = route + (f"?{query}" if query else "")
    response = handle(explorer, "POST", target, headers, body, allowed_hosts=HOSTS)
    check(response)
    STATUSES[route, response.status] = STATUSES.get((route, response.status), 0) + 1


def test_the_fuzzing_reached_the_model():
    """The requests above were not all refused at the door: decodes and walks were answered."""
    assert STATUSES.get(("/api/decode", 200), 0) >= 10, STATUSES
    assert STATUSES.get(("/api/walk", 200), 0) >= 5, sorted(STATUSES.items())


@FUZZ
@given(route=st.sampled_from(["/", "/api/info", "/api/test", "/api/prior"]), query=queries, host=hosts)
def test_gets_answer_200_or_400(explorer, route, query, host):
    target = route + (f"?{query}" if query else "")
    check(handle(explorer, "GET", target, {"host": host}, b"", page=b"<html>", allowed_hosts=HOSTS))


@FUZZ
@given(
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "I;16", "1"]),
    width=st.integers(1, 90),
    height=st.integers(1, 90),
    fmt=st.sampled_from(["PNG", "JPEG"]),
    seed=st.integers(0, 2**16),
    cut=st.none() | st.integers(0, 200),
)
def test_uploads_answer_200_or_400_and_real_images_are_encoded(explorer, mode, width, height, fmt, seed, cut):
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        mode = "RGB"
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    data = buffer.getvalue() if cut is None else buffer.getvalue()[:cut]
    headers = {"content-type": f"image/{fmt.lower()}", "host": "127.0.0.1:8765"}
    response = handle(explorer, "POST", "/api/upload", headers, data, allowed_hosts=HOSTS)
    check(response)
    if cut is None:
        assert response.status == 200
        answer = json.loads(response.body)
        assert len(answer["code"]) == D and answer["image"].startswith("data:image/png;base64,")


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]) | st.text(max_size=6),
    target=st.text(max_size=40) | st.sampled_from(["/../etc/passwd", "/api/../api/info", "//", "/%00"]),
    body=st.binary(max_size=16),
)
def test_any_method_and_path_gets_a_json_answer(explorer, method, target, body):
    response = handle(explorer, method, target, {"host": "127.0.0.1:8765"}, body, allowed_hosts=HOSTS)
    assert response.status in (200, 400, 404, 405)
    if response.status != 200:
        assert "\n" not in json.loads(response.body)["error"]
