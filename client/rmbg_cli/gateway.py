"""``rmbg gateway``: the hosted APIs' HTTP routes (task arrays, fal, GMI queue) in front of Triton.

Its flags are the fields of ``rmbg_server.gateway.settings.GatewaySettings`` (each with its default
and environment variable), so the command line and the settings never disagree.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rmbg_cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from rmbg_cli.extras import require

log = logging.getLogger("rmbg.gateway")

GATEWAY_NEEDS = ("fastapi", "uvicorn", "prometheus_client", "redis")


def add_flags(s: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """The settings' flags; without the server extra, a note instead (the command then says what to install)."""
    try:
        from rmbg_server.gateway.settings import add_flags as add_settings_flags
    except ImportError:
        s.epilog = "needs the server extra: pip install 'rmbg-triton[server]'"
        s.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    add_settings_flags(s, skip=skip)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = sub.add_parser("gateway", help="serve the hosted APIs' HTTP routes (Runware tasks, fal, GMI) over Triton")
    add_flags(s)
    return s


def settings_from(a: argparse.Namespace, **overrides):
    """GatewaySettings from the flags, the environment and the defaults; ValueError names the flag at fault."""
    settings = require("rmbg_server.gateway.settings", "server", "gateway", GATEWAY_NEEDS)
    return settings.from_flags(a, **overrides)


def serve(settings, *, install_signal_handlers: bool = True):
    """Run the app with uvicorn until stopped; returns the uvicorn Server (its ``should_exit`` stops it)."""
    import uvicorn

    from rmbg_server.gateway.app import create_app

    tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)} if settings.tls_cert else {}
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, loop="auto", http="auto", lifespan="on", timeout_graceful_shutdown=15,
                            ws="websockets", ws_max_size=settings.max_body_bytes, ws_ping_interval=20.0, **tls)
    server = uvicorn.Server(config)
    if not install_signal_handlers:
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


def run(a: argparse.Namespace) -> int:
    from rmbg_server.hidden_args import hide_secret_flags, redacted_url  # secrets vanish from ps (README)
    hide_secret_flags(a)
    try:
        settings = settings_from(a)
    except ValueError as exc:
        print(f"rmbg gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"gateway: {settings.base_url}  (docs {settings.base_url}/docs, metrics {settings.base_url}/metrics)")
    data = redacted_url(settings.redis) if settings.redis else settings.data_dir
    print(f"Triton: {', '.join(settings.triton)}; data: {data}; "
          f"API keys: {len(settings.api_keys) or 'none (loopback only)'}", flush=True)
    server = serve(settings)
    server.run()
    return EXIT_OK if server.started else EXIT_FAILED
