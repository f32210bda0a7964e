"""The explorer's HTTP protocol: every request is parsed and validated here, before any model runs.

:func:`handle` maps ``(method, target, headers, body)`` to a :class:`Response`; it never reads files named
by a request (the page is one string in memory; no route takes a path), so path traversal has nothing to
reach. A request that fails validation gets ``400`` with a one-line JSON body ``{"error": "..."}``; an
unknown path ``404``, a known path with the wrong method ``405``, both in the same form.

Routes (JSON answers unless said otherwise):

- ``GET /`` -- the page (HTML, everything inline).
- ``GET /api/info`` -- the run, its slider sets, the number of test images.
- ``GET /api/test?index=N`` -- test image ``N``: input, code, reconstruction.
- ``GET /api/prior?seed=S`` -- a prior sample (the only base of a model without encoder).
- ``POST /api/upload`` -- body: a PNG or JPEG file (``Content-Type: image/png`` or ``image/jpeg``).
- ``POST /api/decode`` -- ``{"set": NAME, "base": [d numbers], "values": {"INDEX": t, ...}}``.
- ``POST /api/walk`` -- ``{"source": [d numbers], "target": [d numbers], "position": p in [0, 1]}``.

Code answers carry ``code`` (``d`` floats), ``image`` (a PNG data URI of the decoded code) and
``positions`` (each latent-axes slider's value for that code).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from factorlens.errors import FactorlensError

MAX_JSON_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
CODE_LIMIT = 1000.0  # |z_j| accepted in a code sent back by the page
MAX_SEED = 2**31 - 1
UPLOAD_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
_INTEGER = re.compile(r"[0-9]{1,10}")

GET_ROUTES = ("/", "/api/info", "/api/test", "/api/prior")
POST_ROUTES = ("/api/upload", "/api/decode", "/api/walk")

# The page may talk to this server only: no other host for scripts, styles, images, fonts or requests.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class RequestError(FactorlensError):
    """A request the explorer refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: object, status: int = 200) -> Response:
        return cls(status, "application/json", json.dumps(payload, allow_nan=False).encode("utf-8"))

    @classmethod
    def error(cls, message: str, status: int = 400) -> Response:
        return cls.json({"error": " ".join(str(message).split())}, status)


# ---------------------------------------------------------------------------------- value checks
def _integer(text: str, name: str, upper: int) -> int:
    if not _INTEGER.fullmatch(text):
        raise RequestError(f"{name} must be an integer in [0, {upper}], got {text[:40]!r}")
    value = int(text)
    if value > upper:
        raise RequestError(f"{name} must be an integer in [0, {upper}], got {value}")
    return value


def _number(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        raise RequestError(f"{name} must be in [{low:g}, {high:g}]") from None
    if not math.isfinite(number):
        raise RequestError(f"{name} must be finite, got {number}")
    if not low <= number <= high:
        raise RequestError(f"{name} must be in [{low:g}, {high:g}], got {number:g}")
    return number


def _code(value: object, name: str, latent_dim: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != latent_dim:
        size = len(value) if isinstance(value, list) else type(value).__name__
        raise RequestError(f"{name} must be a list of {latent_dim} numbers, got {size}")
    return np.array(
        [_number(v, f"{name}[{j}]", -CODE_LIMIT, CODE_LIMIT) for j, v in enumerate(value)], dtype=np.float32
    )


def _query(query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=4)
    except ValueError as exc:
        raise RequestError(f"bad query string ({exc})") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise RequestError(f"unknown query parameter {key[:40]!r}; allowed: {', '.join(allowed)}")
        if key in params:
            raise RequestError(f"query parameter {key!r} given twice")
        params[key] = value
    missing = [key for key in allowed if key not in params]
    if missing:
        raise RequestError(f"missing query parameter {missing[0]!r}")
    return params


def _json_body(headers: Mapping[str, str], body: bytes, keys: tuple[str, ...]) -> dict:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestError(f"Content-Type must be application/json, got {content_type[:60]!r}")
    if len(body) > MAX_JSON_BYTES:
        raise RequestError(f"request body over {MAX_JSON_BYTES} bytes")

    def no_constants(name: str) -> float:
        raise RequestError(f"{name} is not a finite number")

    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, over 4300 digits, too deep
        raise RequestError(f"request body is not valid JSON ({' '.join(str(exc).split())[:80]})") from None
    if not isinstance(payload, dict):
        raise RequestError(f"request body must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(str(key)[:40] for key in payload if key not in keys)
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}; allowed: {', '.join(keys)}")
    missing = [key for key in keys if key not in payload]
    if missing:
        raise RequestError(f"missing field {missing[0]!r}")
    return payload


# ---------------------------------------------------------------------------------- routes
def _decode(explorer, payload: dict) -> dict:
    name = payload["set"]
    if not isinstance(name, str) or name not in explorer.sets:
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise RequestError(f"set must be one of {', '.join(map(repr, explorer.sets))}, got {shown!r}")
    sliders = explorer.sets[name]
    base = _code(payload["base"], "base", explorer.latent_dim)
    raw = payload["values"]
    if not isinstance(raw, dict):
        raise RequestError(f"values must be an object {{slider index: value}}, got {type(raw).__name__}")
    values: dict[int, float] = {}
    for key, value in raw.items():
        index = _integer(key, "slider index", sliders.size - 1)
        values[index] = _number(value, f"values[{index}]", -explorer.span, explorer.span)
    return explorer.decode_request(name, base, values)


def _walk(explorer, payload: dict) -> dict:
    source = _code(payload["source"], "source", explorer.latent_dim)
    target = _code(payload["target"], "target", explorer.latent_dim)
    position = _number(payload["position"], "position", 0.0, 1.0)
    return explorer.walk(source, target, position)


def _upload(explorer, headers: Mapping[str, str], body: bytes) -> dict:
    if not explorer.has_encoder:
        raise RequestError("this model has no encoder (a GAN): uploads cannot be encoded; use prior samples")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in UPLOAD_TYPES:
        raise RequestError(f"upload Content-Type must be image/png or image/jpeg, got {content_type[:60]!r}")
    if len(body) > MAX_UPLOAD_BYTES:
        raise RequestError(f"upload over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    if not body.startswith(UPLOAD_TYPES[content_type]):
        raise RequestError(f"upload is not a {content_type.split('/')[1].upper()} file")
    try:
        return explorer.upload(body)
    except FactorlensError as exc:
        raise RequestError(str(exc)) from None


def check_host(headers: Mapping[str, str], allowed_hosts: frozenset[str] | None) -> None:
    """Refuse a ``Host`` (DNS rebinding) or ``Origin`` (another site's page) the server is not known by."""
    if allowed_hosts is None:
        return
    host = headers.get("host", "")
    if host not in allowed_hosts:
        raise RequestError(f"Host header {host[:60]!r} is not this server")
    origin = headers.get("origin")
    if origin is not None and origin not in {f"http://{h}" for h in allowed_hosts}:
        raise RequestError(f"requests from origin {origin[:60]!r} are not accepted")


def handle(
    explorer,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    page: bytes = b"",
    allowed_hosts: frozenset[str] | None = None,
) -> Response:
    """Answer one request. ``headers`` keys are lower-case. Refused requests give 400/404/405 responses
    (never an exception); errors of the model itself propagate (the server logs them and answers 500)."""
    try:
        return _route(explorer, method, target, headers, body, page, allowed_hosts)
    except RequestError as exc:
        return Response.error(str(exc), exc.status)


def _route(explorer, method, target, headers, body, page, allowed_hosts) -> Response:
    check_host(headers, allowed_hosts)
    if len(target) > 2048:
        raise RequestError("request target over 2048 characters")
    parts = urlsplit(target)
    path = parts.path
    if path not in GET_ROUTES + POST_ROUTES:
        raise RequestError(f"no such page {path[:60]!r}", 404)
    expected = "GET" if path in GET_ROUTES else "POST"
    if method != expected:
        raise RequestError(f"{path} answers {expected} only, got {method[:10]!r}", 405)
    if expected == "GET" and body:
        raise RequestError(f"GET {path} takes no body")
    if path == "/":
        _query(parts.query, ())
        return Response(200, "text/html; charset=utf-8", page)
    if path == "/api/info":
        _query(parts.query, ())
        return Response.json(explorer.info())
    if path == "/api/test":
        if explorer.test_count == 0:
            raise RequestError("this run has no test images (a model without encoder: use /api/prior)")
        index = _integer(_query(parts.query, ("index",))["index"], "index", explorer.test_count - 1)
        return Response.json(explorer.test_image(index))
    if path == "/api/prior":
        seed = _integer(_query(parts.query, ("seed",))["seed"], "seed", MAX_SEED)
        return Response.json(explorer.prior_sample(seed))
    _query(parts.query, ())
    if path == "/api/upload":
        return Response.json(_upload(explorer, headers, body))
    if path == "/api/decode":
        return Response.json(_decode(explorer, _json_body(headers, body, ("set", "base", "values"))))
    return Response.json(_walk(explorer, _json_body(headers, body, ("source", "target", "position"))))
