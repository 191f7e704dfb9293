"""``rmbg gateway``: the hosted APIs' HTTP routes (task arrays, fal, GMI queue) in front of Triton."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rmbg_cli.extras import require

log = logging.getLogger("rmbg.gateway")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
GATEWAY_NEEDS = ("fastapi", "uvicorn", "prometheus_client", "redis")


def add_gateway_flags(s: argparse.ArgumentParser, *, triton: bool = True) -> None:
    """The flags of DESIGN.md section 3 (``rmbg up`` shares them, less --triton)."""
    s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; others need API keys)")
    s.add_argument("--port", type=int, default=8080)
    if triton:
        s.add_argument("--triton", default="127.0.0.1:8001",
                       help="Triton gRPC endpoint(s): HOST:PORT[,HOST:PORT...] or one DNS name with several addresses")
    s.add_argument("--data-dir", type=Path, help="job database and hosted files (default ~/.local/share/rmbg/gateway)")
    s.add_argument("--redis", metavar="URL", help="share jobs and files with other replicas through Redis")
    s.add_argument("--public-url", metavar="URL", help="base of hosted-output URLs (default http://HOST:PORT)")
    s.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="accepted API key (repeatable; also --api-key-file and env RMBG_API_KEYS)")
    s.add_argument("--api-key-file", action="append", default=[], type=Path, metavar="FILE",
                   help="file with one API key per line")
    s.add_argument("--alias", action="append", default=[], metavar="NAME=MODEL",
                   help="serve a model name with isnet or birefnet (e.g. bria:2@1=isnet)")
    s.add_argument("--allow-fetch-from", action="append", default=[], metavar="CIDR",
                   help="let server-side fetches reach this non-public range (e.g. 10.0.0.0/8)")
    s.add_argument("--cost-per-image", type=float, default=0.0, metavar="USD", help="the 'cost' of includeCost")
    s.add_argument("--webhook-secret", default=os.environ.get("RMBG_WEBHOOK_SECRET"),
                   help="sign webhooks (HMAC-SHA256; default env RMBG_WEBHOOK_SECRET)")
    s.add_argument("--max-inflight", type=int, default=64, help="synchronous requests at once before 429")
    s.add_argument("--max-queued", type=int, default=10_000, help="queued async jobs before 429")
    s.add_argument("--workers", type=int, default=4, help="async jobs run at once by this replica")
    s.add_argument("--job-lease", type=float, default=30.0, metavar="S",
                   help="seconds a replica's hold on a running async job lasts between renewals; the jobs of a "
                        "replica that died are taken over by another after this (default 30)")
    s.add_argument("--rate-limit", type=float, default=20.0, metavar="PER_S", help="requests/s per API key")
    s.add_argument("--burst", type=int, default=40, help="burst per API key")
    s.add_argument("--max-body-mb", type=float, default=96.0, help="largest request body")
    s.add_argument("--max-image-mb", type=float, default=50.0, help="largest input image (fetched or inline)")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = sub.add_parser("gateway", help="serve the hosted APIs' HTTP routes (Runware tasks, fal, GMI) over Triton")
    add_gateway_flags(s)
    return s


def settings_from(a: argparse.Namespace, triton: tuple[str, ...] | None = None, aliases: dict[str, str] | None = None):
    """GatewaySettings from parsed flags; raises ValueError with the flag at fault."""
    settings_mod = require("rmbg_server.gateway.settings", "server", "gateway", GATEWAY_NEEDS)
    auth = require("rmbg_server.gateway.auth", "server", "gateway")
    from rmbg_server.gateway.triton import split_targets

    keys = auth.load_keys(a.api_key, a.api_key_file)
    auth.check_bind(a.host, keys)
    kwargs = {"data_dir": a.data_dir} if a.data_dir else {}
    return settings_mod.GatewaySettings(
        host=a.host, port=a.port, triton=tuple(triton or split_targets(a.triton)), redis_url=a.redis,
        public_url=a.public_url, api_keys=keys, aliases={**(aliases or {}), **settings_mod.parse_aliases(a.alias)},
        allow_fetch_from=tuple(a.allow_fetch_from), cost_per_image=a.cost_per_image,
        webhook_secret=a.webhook_secret, max_inflight=a.max_inflight, max_queued=a.max_queued, workers=a.workers,
        job_lease_s=a.job_lease,
        rate_per_key=a.rate_limit, burst_per_key=a.burst, max_body_bytes=int(a.max_body_mb * 1024 * 1024),
        max_image_bytes=int(a.max_image_mb * 1024 * 1024), **kwargs)


def serve(settings, *, install_signal_handlers: bool = True):
    """Run the app with uvicorn until stopped; returns the uvicorn Server (its ``should_exit`` stops it)."""
    import uvicorn

    from rmbg_server.gateway.app import create_app

    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, loop="auto", http="auto", lifespan="on", timeout_graceful_shutdown=15)
    server = uvicorn.Server(config)
    if not install_signal_handlers:
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


def run(a: argparse.Namespace) -> int:
    try:
        settings = settings_from(a)
    except ValueError as exc:
        print(f"rmbg gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"gateway: {settings.base_url}  (docs {settings.base_url}/docs, metrics {settings.base_url}/metrics)")
    print(f"Triton: {', '.join(settings.triton)}; data: {settings.redis_url or settings.data_dir}; "
          f"API keys: {len(settings.api_keys) or 'none (loopback only)'}", flush=True)
    server = serve(settings)
    server.run()
    return EXIT_OK if server.started else EXIT_FAILED
