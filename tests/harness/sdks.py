"""The hosted APIs' official SDKs, installed from their registries at pinned versions, run as real clients.

Each SDK gets its own virtual environment (PyPI) or node folder (npm) under
``~/.cache/rmbg/sdks/<name>-<version>/`` (``$RMBG_CACHE_DIR`` moves it): installed once, reused
while its marker file (written last, after a successful install) is there. ``runware-sdk`` and
``runware`` both install a package named ``runware``, so they could never share one environment.

A test runs a small client script in the SDK's interpreter (``python`` of its venv, ``node`` in its
folder) as a subprocess with a timeout; the script prints one JSON document on its last stdout line,
which is what the test asserts on. The subprocess sees only loopback: every client is pointed at
127.0.0.1 (or a name ``HostMap`` resolves to it), and ``runware-sdk`` always gets a ``taskType``, so
it never fetches its schemas from the internet.

The SDK processes trust the gateway's test CA (``tests/harness/tls.py``) through ``SSL_CERT_FILE``
(Python) or ``NODE_EXTRA_CA_CERTS`` (Node), the line the README's "Point your SDK here" adds for TLS.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

MARKER = ".rmbg-installed"
INSTALL_TIMEOUT_S = 600.0


def cache_root() -> Path:
    """``$RMBG_CACHE_DIR/sdks``, else ``$XDG_CACHE_HOME/rmbg/sdks``, else ``~/.cache/rmbg/sdks``: the
    same root as the weights cache (``rmbg_export.cache``), so one variable moves both."""
    root = os.environ.get("RMBG_CACHE_DIR")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rmbg"
    return base / "sdks"


class SdkUnavailable(RuntimeError):
    """The SDK could not be installed (no registry, no ``npm``): the test fails with this message."""


class SdkScriptError(AssertionError):
    """The client script exited without printing its JSON line: its stderr says why."""


@dataclass(frozen=True)
class Sdk:
    """One SDK at one pinned version. ``package`` is the registry name; ``requirement`` what is installed."""

    name: str
    language: Literal["python", "node"]
    package: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}" if self.language == "python" else f"{self.package}@{self.version}"

    @property
    def home(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    @property
    def installed(self) -> bool:
        marker = self.home / MARKER
        return marker.is_file() and marker.read_text().strip() == self.requirement

    @property
    def interpreter(self) -> list[str]:
        if self.language == "python":
            return [str(self.home / "venv" / "bin" / "python")]
        node = shutil.which("node")
        if node is None:
            raise SdkUnavailable("node is not on PATH (Debian/Ubuntu: apt-get install npm; `make system-deps`)")
        return [node]

    def install(self) -> Sdk:
        """Install into ``home`` unless a complete install is there; a half-finished one is removed
        first, so an interrupted run never leaves an environment that looks ready. A lock file beside
        it lets test runs of several checkouts share the cache."""
        if self.installed:
            return self
        self.home.parent.mkdir(parents=True, exist_ok=True)
        with open(self.home.parent / f".{self.home.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not self.installed:
                self._install()
        return self

    def _install(self) -> None:
        if self.home.exists():
            shutil.rmtree(self.home)
        self.home.mkdir(parents=True)
        try:
            if self.language == "python":
                _run([sys.executable, "-m", "venv", str(self.home / "venv")], self.home)
                _run([str(self.home / "venv" / "bin" / "python"), "-m", "pip", "install", "-q",
                      "--disable-pip-version-check", self.requirement], self.home)
            else:
                npm = shutil.which("npm")
                if npm is None:
                    raise SdkUnavailable("npm is not on PATH (Debian/Ubuntu: apt-get install npm; "
                                         "`make system-deps` installs it)")
                (self.home / "package.json").write_text(json.dumps({"name": f"rmbg-sdk-{self.name}",
                                                                    "private": True, "version": "0.0.0"}))
                _run([npm, "install", "--no-audit", "--no-fund", "--save-exact", self.requirement], self.home)
        except BaseException:
            shutil.rmtree(self.home, ignore_errors=True)
            raise
        (self.home / MARKER).write_text(self.requirement + "\n")

    def _guard(self) -> Path:
        """The loopback-only resolver for this SDK's language, written beside its scripts."""
        folder = self.home / "guard"
        folder.mkdir(exist_ok=True)
        name, text = (("sitecustomize.py", LOOPBACK_ONLY_PY) if self.language == "python"
                      else ("loopback-only.cjs", LOOPBACK_ONLY_JS))
        if not (folder / name).is_file() or (folder / name).read_text() != text:
            (folder / name).write_text(text)
        return folder / name

    def run(self, script: str, *, args: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 120.0, hosts: Sequence[str] = ()) -> Any:
        """Run ``script`` (Python source, or an ES module for Node) in this SDK's interpreter and return
        the JSON document its last stdout line holds. ``args`` reach the script as JSON in ``RMBG_ARGS``.

        The environment is minimal and explicit (no proxy variables, no key of the host's shell):
        ``HOME`` inside the SDK's folder, so no user configuration of the SDK is read either. The
        process resolves only loopback names, and ``hosts`` to 127.0.0.1 (``LOOPBACK_ONLY``): an SDK
        that tried to reach its vendor would fail the test instead of leaving the machine."""
        self.install()
        scripts = self.home / "scripts"
        scripts.mkdir(exist_ok=True)
        suffix = ".py" if self.language == "python" else ".mjs"
        file = scripts / f"{os.getpid()}-{time.monotonic_ns()}{suffix}"
        file.write_text(textwrap.dedent(script))
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                     "LANG": "C.UTF-8", "RMBG_ARGS": json.dumps(dict(args or {})),
                     "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        guard = self._guard()
        child_env["RMBG_TEST_HOSTS"] = ",".join(hosts)
        if self.language == "python":
            child_env["PYTHONPATH"] = str(guard.parent)
        else:
            child_env["NODE_OPTIONS"] = f"--require={guard}"
        try:
            done = subprocess.run([*self.interpreter, str(file)], cwd=self.home, env=child_env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise SdkScriptError(f"{self.requirement}: the client script ran past {timeout:.0f} s\n"
                                 f"stdout:\n{_text(e.stdout)[-3000:]}\nstderr:\n{_text(e.stderr)[-3000:]}") from e
        finally:
            file.unlink(missing_ok=True)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        try:
            return json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise SdkScriptError(f"{self.requirement}: the client script exited {done.returncode} without a JSON "
                                 f"line\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}") from None


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise SdkUnavailable(f"{' '.join(cmd)} ran past {INSTALL_TIMEOUT_S:.0f} s") from e
    if done.returncode != 0:
        raise SdkUnavailable(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}")


# The pinned versions. runware-sdk 1.8.0, runware 0.5.24 and fal-client 1.0.3 are the versions the
# issue names (the ones integrations run today). The npm clients are the newest releases when these
# tests were written (@fal-ai/client 1.10.1, @runware/sdk-js 1.3.2): their README examples are what
# a team copies now, and a newer release is a deliberate bump here, re-run against the gateway.
RUNWARE_SDK = Sdk("runware-sdk", "python", "runware-sdk", "1.8.0")
RUNWARE_LEGACY = Sdk("runware", "python", "runware", "0.5.24")
FAL_CLIENT = Sdk("fal-client", "python", "fal-client", "1.0.3")
FAL_JS = Sdk("fal-ai-client", "node", "@fal-ai/client", "1.10.1")
RUNWARE_JS = Sdk("runware-sdk-js", "node", "@runware/sdk-js", "1.3.2")
ALL = (RUNWARE_SDK, RUNWARE_LEGACY, FAL_CLIENT, FAL_JS, RUNWARE_JS)


def check_cutout(data: bytes, size: tuple[int, int]) -> None:
    """What every SDK test asserts on a result: a PNG of the input's size whose alpha channel cut
    something out and kept something (not a blank or an opaque copy of the input)."""
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG", image.format
    assert image.size == size, (image.size, size)
    assert image.mode == "RGBA", image.mode
    alpha = np.asarray(image.getchannel("A"))
    assert (alpha < 16).mean() > 0.05 and (alpha > 240).mean() > 0.05, "the mask removed nothing or everything"


# Name resolution in the SDK processes: loopback only. fal-client always speaks https to
# ``FAL_RUN_HOST`` and derives its queue host as ``queue.<FAL_RUN_HOST>``, so its tests need names
# with a subdomain (``RMBG_TEST_HOSTS``, answered with 127.0.0.1), and nothing on this machine (no
# /etc/hosts edit, no DNS server) should change for a test. Every other name but ``localhost``
# is refused, so a vendor host an SDK reaches for (schemas.runware.ai, rest.fal.ai) fails loudly.
# Python loads this as ``sitecustomize`` (first on PYTHONPATH); Node with ``--require``.
LOOPBACK_ONLY_PY = '''\
"""Test-only: RMBG_TEST_HOSTS resolve to 127.0.0.1, loopback names and addresses as usual, the rest fails."""
import ipaddress
import os
import socket

_names = {n.strip().lower() for n in os.environ.get("RMBG_TEST_HOSTS", "").split(",") if n.strip()}
_real = socket.getaddrinfo


def _loopback(host):
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode()
    if isinstance(host, str):
        name = host.lower().rstrip(".")
        if name in _names:
            host = "127.0.0.1"
        elif not _loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not a loopback name (SDK tests stay on this machine)")
    return _real(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
'''

LOOPBACK_ONLY_JS = '''\
// Test-only: RMBG_TEST_HOSTS resolve to 127.0.0.1, loopback names as usual, every other name fails.
"use strict";
const dns = require("dns");
const names = new Set((process.env.RMBG_TEST_HOSTS || "").split(",").filter(Boolean));
const loopback = (h) => h === "localhost" || /^127\\./.test(h) || h === "::1";
const real = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  const cb = typeof options === "function" ? options : callback;
  const name = String(hostname).toLowerCase().replace(/\\.$/, "");
  if (names.has(name)) return real.call(this, "127.0.0.1", options, callback);
  if (!loopback(name)) {
    const error = new Error(`${hostname}: not a loopback name (SDK tests stay on this machine)`);
    error.code = "ENOTFOUND";
    process.nextTick(cb, error);
    return {};
  }
  return real.call(this, hostname, options, callback);
};
const realPromise = dns.promises.lookup;
dns.promises.lookup = async function lookup(hostname, options) {
  const name = String(hostname).toLowerCase().replace(/\\.$/, "");
  if (names.has(name)) return realPromise.call(this, "127.0.0.1", options);
  if (!loopback(name)) {
    const error = new Error(`${hostname}: not a loopback name (SDK tests stay on this machine)`);
    error.code = "ENOTFOUND";
    throw error;
  }
  return realPromise.call(this, hostname, options);
};
'''


if __name__ == "__main__":  # `python -m tests.harness.sdks`: install every SDK (CI warms the cache with it)
    for sdk in ALL:
        started = time.monotonic()
        sdk.install()
        print(f"{sdk.requirement}: {sdk.home} ({time.monotonic() - started:.1f} s)")
