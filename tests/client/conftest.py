"""A local HTTP server on 127.0.0.1 for URL inputs and presigned-PUT uploads."""

from __future__ import annotations

import http.server
import threading
import time

import pytest


class Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    uploads: dict[str, tuple[str, bytes]] = {}

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        if path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            return
        if path == "/huge-undeclared":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"y" * 65536)
            return
        body = self.files.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        if self.path.startswith("/forbidden"):
            self.rfile.read(length)
            self.send_error(403)
            return
        self.uploads[self.path] = (self.headers.get("Content-Type"), self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    server.handler = Handler
    yield server
    server.shutdown()
