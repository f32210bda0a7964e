"""The explorer's HTTP server: Python's ``ThreadingHTTPServer`` around :func:`protocol.handle`.

Reads at most the declared ``Content-Length`` (refusing bodies over the upload limit before reading
them), serialises model calls with one lock (the page keeps one decode in flight; on two cores parallel
decodes only compete), and answers an unexpected error of the model with ``500`` and one JSON line
instead of dropping the connection. It listens on ``127.0.0.1`` unless told otherwise; then the ``Host``
and ``Origin`` headers must name that address (DNS rebinding and other sites' pages are refused).
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from factorlens.errors import ConfigError
from factorlens.explore.protocol import (
    MAX_UPLOAD_BYTES,
    SECURITY_HEADERS,
    Response,
    handle,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def page_bytes() -> bytes:
    """The explorer page (``factorlens/explore/page.html``, package data)."""
    return importlib.resources.files("factorlens.explore").joinpath("page.html").read_bytes()


def allowed_hosts_for(host: str, port: int) -> frozenset[str] | None:
    """``Host`` header values accepted when serving on a loopback address; ``None`` (any) otherwise."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return None
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", host))


class ExplorerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, explorer, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, quiet: bool = True):
        self.explorer = explorer
        self.page = page_bytes()
        self.quiet = quiet
        self.model_lock = threading.Lock()
        try:
            super().__init__((host, port), ExplorerHandler)
        except OSError as exc:
            raise ConfigError(
                f"--port {port} on --host {host}: cannot listen ({exc.strerror or exc})"
            ) from None
        self.allowed_hosts = allowed_hosts_for(host, self.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


class ExplorerHandler(BaseHTTPRequestHandler):
    server: ExplorerServer
    protocol_version = "HTTP/1.1"
    server_version = "factorlens-explore"
    # Small answers on a keep-alive connection: without TCP_NODELAY, Nagle's algorithm and the client's
    # delayed ACK add about 40 ms to every decode (measured: docs/performance.md).
    disable_nagle_algorithm = True
    sys_version = ""

    def _serve(self, method: str) -> None:
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            length_text = headers.get("content-length", "0").strip()
            length = int(length_text) if length_text.isdigit() else -1
        except ValueError:
            length = -1
        if length < 0 or "transfer-encoding" in headers:
            self.close_connection = True
            return self._send(Response.error("a body needs a plain Content-Length (no chunked encoding)"))
        if length > MAX_UPLOAD_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            return self._send(Response.error(f"request body over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB"))
        body = self.rfile.read(length) if length else b""
        try:
            with self.server.model_lock:
                response = handle(
                    self.server.explorer,
                    method,
                    self.path,
                    headers,
                    body,
                    page=self.server.page,
                    allowed_hosts=self.server.allowed_hosts,
                )
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            traceback.print_exc(file=sys.stderr)
            response = Response.error(f"internal error: {type(exc).__name__}", 500)
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in {**SECURITY_HEADERS, **response.headers}.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # headers and body in one write (end_headers would send the headers alone first)
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + response.body)
        self._headers_buffer = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def do_HEAD(self) -> None:  # noqa: N802
        self.close_connection = True  # the 405 answer carries a body, which HEAD must not: end there
        self._serve("HEAD")

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if not self.server.quiet:
            super().log_message(format, *args)


def make_server(
    explorer, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, quiet: bool = True
) -> ExplorerServer:
    """A bound (not yet serving) server; ``port=0`` picks a free port (see ``server.url``)."""
    return ExplorerServer(explorer, host, port, quiet=quiet)
