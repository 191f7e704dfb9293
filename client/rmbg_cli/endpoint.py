"""Which Triton server a ``rmbg remove`` run talks to, and one started for the run when none answers.

- ``--url`` given: that server, or a clear error (it is not reachable, or it does not serve the
  model asked for, with how to build it).
- No ``--url``: the server at the default address if one answers; otherwise a server is started
  for this run from ``--model-repository`` on free loopback ports (it needs the ``server`` extra),
  announced on stderr and stopped at the end, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rmbg_backend.contract import ensemble_name, model_of_ensemble
from rmbg_backend.families import FAMILIES
from rmbg_cli import serve
from rmbg_cli.extras import MissingExtraError, require
from rmbg_client import RmbgClient

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}  # rmbg serve's defaults


class EndpointError(RuntimeError):
    """No server can be used for this run; the message says what to start, build or install."""


def default_url(protocol: str) -> str:
    return f"{DEFAULT_HOST}:{DEFAULT_PORTS[protocol]}"


def build_hint(model: str, repository: Path | str = "model_repository") -> str:
    """The command that builds ``model`` into ``repository``, with the weights sources its record names."""
    first, *others = [s.source for s in FAMILIES[model].sources]
    notes = ["or: make repo"] if model == "isnet" and Path(repository) == Path("model_repository") else []
    notes.append(f"other --weights: {', '.join(others)} or a local .onnx/.pth/.safetensors; "
                 "build-repo prints each one's licence" if others else "build-repo prints its licence")
    return f"rmbg build-repo --model {model} --weights {first} --out {repository} ({'; '.join(notes)})"


def _ready(url: str, protocol: str, model: str) -> bool:
    client = RmbgClient(url, protocol, model, timeout=10)
    try:
        return client.ready()
    finally:
        client.close()


def served_models(url: str, protocol: str) -> list[str]:
    """The families whose ensembles are ready at ``url`` (asked one by one: listing needs the admin key)."""
    return [name for name in FAMILIES if _ready(url, protocol, name)]


def _not_built(model: str, where: str, available: list[str], repository: Path | str, restart: bool) -> str:
    has = ", ".join(ensemble_name(m) for m in available) or "no rmbg model"
    message = (f"the {model} model is not built: {where} has {has}. Build it with: "
               f"{build_hint(model, repository)}{', then restart that server' if restart else ''}")
    return message + (f"; or use --model {available[0]}" if available else "")


def _live(url: str, protocol: str) -> bool:
    client = RmbgClient(url, protocol, timeout=10)
    try:
        return client.live()
    finally:
        client.close()


def check_server(url: str, protocol: str, model: str) -> None:
    """Raise EndpointError unless the server at ``url`` answers and serves ``model``."""
    if _ready(url, protocol, model):
        return
    if not _live(url, protocol):
        raise EndpointError(f"the server at {url} ({protocol}) is not reachable; start it with 'rmbg serve' "
                            "(or 'rmbg up'), or leave out --url to start one for this run")
    raise EndpointError(_not_built(model, f"the server at {url}", served_models(url, protocol),
                                   "model_repository", restart=True))


def repository_models(repository: Path) -> list[str]:
    """The families with an ensemble in ``repository`` (Triton has not read it yet)."""
    found = (model_of_ensemble(p.parent.name) for p in sorted(repository.glob("*/config.pbtxt")))
    return [m for m in found if m in FAMILIES]


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C while a server of ours runs, so the ``finally`` that stops it runs."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def embedded_server(repository: Path, protocol: str, model: str, unanswered: str) -> Iterator[str]:
    """A Triton for this run on free loopback ports; yields its address for ``protocol``."""
    needs = (f"nothing answers at {unanswered}, and starting a server for this run needs the 'server' extra: "
             "pip install 'rmbg-triton[server]'; or pass --url HOST:PORT of a running server")
    try:
        launcher = require("rmbg_server.launcher", "server", "remove")
        launcher.find_triton()  # the client-only install has the launcher's code, not the server it starts
    except MissingExtraError as exc:
        raise EndpointError(f"{needs} ({exc})") from None
    except launcher.LaunchError as exc:
        raise EndpointError(f"{needs} ({exc})") from None
    where = f"{repository}/"
    if not repository.is_dir() or not any(repository.glob("*/config.pbtxt")):
        raise EndpointError(f"nothing answers at {unanswered}, and there is no model repository at {where} to "
                            f"start a server from: build one with {build_hint('isnet', repository)}, pass "
                            "--model-repository DIR, or --url HOST:PORT of a running server")
    if model not in (available := repository_models(repository)):
        raise EndpointError(_not_built(model, where, available, repository, restart=False))
    try:
        launcher.check_repository(repository)
    except launcher.LaunchError as exc:
        raise EndpointError(f"nothing answers at {unanswered}, and {exc}") from None
    fd, log_name = tempfile.mkstemp(prefix="rmbg-remove-triton-", suffix=".log")
    os.close(fd)
    log_file = Path(log_name)
    keep_log = False  # only a log a message points to is kept
    print(f"rmbg remove: nothing answers at {unanswered}; starting a server for this run from {where} "
          "(stopped at the end) ...", file=sys.stderr, flush=True)
    cfg = launcher.ServerConfig.on_free_ports(repository)
    started = time.monotonic()
    try:
        with _sigterm_interrupts():
            try:
                server, watchdog = serve.start_server(cfg, log_file, command="remove")
            except launcher.LaunchError as exc:
                keep_log = True
                raise EndpointError(f"could not start a server for this run: {exc} (its log: {log_file})") from None
            try:
                print(f"rmbg remove: server ready in {time.monotonic() - started:.1f} s", file=sys.stderr,
                      flush=True)
                yield server.grpc_url if protocol == "grpc" else f"{cfg.host}:{cfg.http_port}"
            finally:
                keep_log = server.process.poll() is not None
                watchdog.stop()
                server.stop()
                if keep_log:
                    print(f"rmbg remove: the server stopped during the run; its log: {log_file}", file=sys.stderr)
    finally:
        if not keep_log:
            log_file.unlink(missing_ok=True)


@contextmanager
def server_for(url: str | None, protocol: str, model: str, repository: Path) -> Iterator[str]:
    """The address this run sends its requests to (see the module's docstring)."""
    if url is not None:
        check_server(url, protocol, model)
        yield url
        return
    default = default_url(protocol)
    if _live(default, protocol):
        check_server(default, protocol, model)
        yield default
        return
    with embedded_server(repository, protocol, model, default) as address:
        yield address
