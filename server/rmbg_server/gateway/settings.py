"""Everything ``rmbg gateway`` can be told, in one typed value (the command line builds it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rmbg_backend.families import FAMILIES
from rmbg_client.fetch import FetchPolicy, parse_cidrs
from rmbg_client.tasks import DEFAULT_TTL_S, MODEL_ALIASES


def default_data_dir() -> Path:
    base = os.environ.get("RMBG_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "rmbg", "gateway")
    return Path(base)


def parse_aliases(items: list[str]) -> dict[str, str]:
    """``["bria:2@1=isnet"]`` -> ``{"bria:2@1": "isnet"}``; MODEL must be a model family."""
    aliases: dict[str, str] = {}
    for item in items:
        name, sep, model = item.rpartition("=")
        if not sep or not name.strip() or model.strip() not in FAMILIES:
            raise ValueError(f"--alias {item!r}: expected NAME=MODEL with MODEL one of {', '.join(FAMILIES)}")
        aliases[name.strip()] = model.strip()
    return aliases


@dataclass
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    triton: tuple[str, ...] = ("127.0.0.1:8001",)
    data_dir: Path = field(default_factory=default_data_dir)
    redis_url: str | None = None
    public_url: str | None = None           # default http://HOST:PORT
    api_keys: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)   # added to / overriding MODEL_ALIASES
    allow_fetch_from: tuple[str, ...] = ()
    cost_per_image: float = 0.0
    webhook_secret: str | None = None
    max_inflight: int = 64                  # synchronous work admitted at once; beyond it: 429
    max_queued: int = 10_000                # async jobs waiting; beyond it: 429
    workers: int = 4                        # JobRunner concurrency
    job_lease_s: float = 30.0               # a dead replica's running jobs are taken over after this
    rate_per_key: float = 20.0              # token bucket per API key: requests per second ...
    burst_per_key: int = 40                 # ... and burst
    max_body_bytes: int = 96 * 1024 * 1024  # a 50 MB image in base64 fits
    max_image_bytes: int = 50 * 1024 * 1024
    fetch_timeout_s: float = 30.0
    triton_timeout_s: float = 120.0
    ttl_s: int = DEFAULT_TTL_S
    max_tasks_per_request: int = 64
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        self.allow_networks = parse_cidrs(self.allow_fetch_from)
        if self.max_inflight < 1 or self.workers < 1:
            raise ValueError("--max-inflight and --workers must be at least 1")
        if self.job_lease_s <= 0:
            raise ValueError(f"--job-lease must be positive seconds, got {self.job_lease_s}")

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (self.public_url or f"http://{host}:{self.port}").rstrip("/")

    @property
    def model_aliases(self) -> dict[str, str]:
        return {**MODEL_ALIASES, **self.aliases}

    @property
    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(max_bytes=self.max_image_bytes, timeout_s=self.fetch_timeout_s, allow=self.allow_networks)
