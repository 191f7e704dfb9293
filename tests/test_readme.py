"""The README tells the truth: no placeholders, paths that exist, a first screen that warns of the
slow first run, and a curl example that can be sent twice."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import subprocess
import threading
import uuid

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
SOURCE_ROOTS = ("python_backend", "client", "export", "server")
# Written by a command the README names, never committed: `make bench-gpu` on a GPU machine.
GENERATED = {"perf/results/gpu_h100.json"}


def test_no_placeholder_is_left():
    assert not re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_PLACEHOLDER\b|\bTODO\b|\bTBD\b|\bFIXME\b", README)


def _backticked_paths() -> set[str]:
    return {m for m in re.findall(r"`([^`\s<>*]+)`", README)
            if "/" in m and not m.startswith(("/", "~", "..", "http")) and "=" not in m}


def test_paths_to_the_projects_files_exist():
    top = {p.name for p in ROOT.iterdir()}
    packages = {p.name for root in SOURCE_ROOTS for p in (ROOT / root).iterdir()}
    checked, missing = 0, []
    for path in sorted(_backticked_paths()):
        first = path.split("/")[0]
        if first in packages:  # a package path must carry its source root (server/rmbg_server/...)
            missing.append(f"{path} (write it from the repository root)")
        elif first in top and path not in GENERATED:
            checked += 1
            if not (ROOT / path).exists():
                missing.append(path)
    assert checked > 30  # the check looks at the README's many file references, not at nothing
    assert not missing, missing


def test_the_checker_catches_a_package_path_without_its_root():
    packages = {p.name for root in SOURCE_ROOTS for p in (ROOT / root).iterdir()}
    assert "rmbg_server" in packages and "server/rmbg_server/hidden_args.py" in _backticked_paths()


def test_the_first_screen_says_the_first_run_is_slow_and_cached():
    first_screen = README.split("\n---\n", 1)[0]
    assert len(first_screen.splitlines()) < 40
    assert re.search(r"quantis\w+ .*\*\*\d+ minutes\*\*", first_screen, re.S), first_screen
    assert "~/.cache/rmbg/quantized/" in first_screen and "later" in first_screen


def test_the_curl_example_sends_a_fresh_uuid_each_time():
    block = next(b for b in re.findall(r"```bash\n(.*?)```", README, re.S) if '"taskUUID"' in b)
    command = re.search(r"^curl .*?-d @- <<EOF\n.*?^EOF$", block, re.S | re.M).group(0)
    # The body the shell hands to curl, as curl would read it from stdin.
    printed = command.replace(command.split("\n", 1)[0], "cat <<EOF", 1)
    bodies = [json.loads(subprocess.run(["bash", "-c", printed], capture_output=True, text=True, check=True,
                                        timeout=30).stdout) for _ in range(2)]
    uuids = [uuid.UUID(body["taskUUID"]) for body in bodies]
    assert all(u.version == 4 for u in uuids) and uuids[0] != uuids[1]
    assert bodies[0]["taskType"] == "removeBackground" and bodies[0]["model"] == "bria:2@1"


def test_the_test_certificate_commands_make_a_certificate_clients_trust(tmp_path):
    """The README's openssl lines for a private CA, run as written: a TLS client that trusts only
    ca.pem completes a handshake with server.pem for each name the certificate is for (the names the
    SDKs of "Point your SDK here" connect to: the host, its queue. name, an address)."""
    block = next(b for b in re.findall(r"```bash\n(.*?)```", README, re.S) if "openssl req -x509" in b)
    commands = re.split(r"\n\s*rmbg ", block)[0]  # everything before starting the gateway
    subprocess.run(["bash", "-euc", commands], cwd=tmp_path, capture_output=True, check=True, timeout=60)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            for _ in range(3):
                conn, _ = listener.accept()
                with contextlib.suppress(ssl.SSLError, OSError), server_context.wrap_socket(conn, server_side=True):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        for name in ("gw.example", "queue.gw.example", "127.0.0.1"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    client_context.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        thread.join(10)
