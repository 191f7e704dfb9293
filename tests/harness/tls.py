"""A test certificate authority and a server certificate from it, made with openssl, for HTTPS and WSS tests.

The SDKs under test trust the CA as users would: ``SSL_CERT_FILE`` (Python, httpx) or
``NODE_EXTRA_CA_CERTS`` (Node); the README's "TLS" shows the same commands.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_NAMES = ("localhost", "gw.test", "queue.gw.test", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TestCA:
    ca: Path     # the CA certificate clients trust
    cert: Path   # the server certificate (signed by the CA)
    key: Path    # its private key


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_test_ca(folder: Path, names: tuple[str, ...] = DEFAULT_NAMES) -> TestCA:
    """A CA, and a certificate for ``names`` (DNS names and IP addresses) signed by it, valid 2 days."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not on PATH (Debian: apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    alt = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() or ":" in n else f"DNS:{n}" for n in names)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=rmbg test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", f"/CN={names[0]}", cwd=folder)
    (folder / "server.ext").write_text(f"subjectAltName={alt}\nextendedKeyUsage=serverAuth\n"
                                       "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=folder)
    return TestCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")
