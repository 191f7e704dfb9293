"""Everything ``rmbg gateway`` can be told, in one typed object: each default is written once, here.

pydantic-settings reads the environment (``RMBG_<FIELD>``, e.g. ``RMBG_MAX_INFLIGHT=32``; lists
comma-separated, e.g. ``RMBG_API_KEYS=k1,k2``), and ``rmbg gateway`` / ``rmbg up`` add one
``--flag`` per field (``add_flags``), whose value wins over the environment. This module imports
no web framework, so the command line can describe the gateway in a client-only install.
"""

from __future__ import annotations

import argparse
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rmbg_backend.families import FAMILIES
from rmbg_hosted.aliases import MODEL_ALIASES
from rmbg_hosted.fetch import FetchPolicy, parse_cidrs
from rmbg_hosted.tasks import DEFAULT_TTL_S, MIN_TTL_S
from rmbg_server.gateway.auth import check_bind, load_keys

GATEWAY_HINT = "allow a range with --allow-fetch-from CIDR"
CALLBACK_HINT = "allow a range with --allow-callbacks-to CIDR"
Listed = Annotated[list[str], NoDecode]  # from the environment as comma-separated text, not JSON


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "rmbg" / "gateway"


def parse_aliases(items: list[str]) -> dict[str, str]:
    """``["bria:2@1=isnet"]`` -> ``{"bria:2@1": "isnet"}``; MODEL must be a model family."""
    aliases: dict[str, str] = {}
    for item in items:
        name, sep, model = item.rpartition("=")
        if not sep or not name.strip() or model.strip() not in FAMILIES:
            raise ValueError(f"{item!r}: expected NAME=MODEL with MODEL one of {', '.join(FAMILIES)}")
        aliases[name.strip()] = model.strip()
    return aliases


def split_targets(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"a:8001,b:8001"`` (or a list of such strings) -> ``("a:8001", "b:8001")``."""
    items = [value] if isinstance(value, str) else list(value)
    targets = tuple(t.strip() for item in items for t in item.split(",") if t.strip())
    for t in targets:
        host, _, port = t.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{t!r}: expected HOST:PORT")
    return targets


def _flag(metavar: str | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"json_schema_extra": {"metavar": metavar} if metavar else None, **kwargs}


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RMBG_", populate_by_name=True, extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="bind address (loopback by default; any other needs API keys)")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port")
    triton: Annotated[tuple[str, ...], NoDecode] = Field(
        ("127.0.0.1:8001",), description="Triton gRPC endpoint(s): HOST:PORT[,HOST:PORT...] or one DNS name "
                                         "with several addresses", **_flag("HOST:PORT"))
    data_dir: Path = Field(default_factory=default_data_dir, description="job database and hosted files",
                           **_flag("DIR"))
    redis: str | None = Field(None, description="share jobs and files with other replicas through this Redis",
                              **_flag("URL"))
    public_url: str | None = Field(None, description="base of hosted-output URLs (default http(s)://HOST:PORT)",
                                   **_flag("URL"))
    tls_cert: Path | None = Field(None, description="serve HTTPS and WSS with this certificate (PEM; with "
                                  "--tls-key)", **_flag("FILE"))
    tls_key: Path | None = Field(None, description="the certificate's private key (PEM)", **_flag("FILE"))
    api_key: Listed = Field(default_factory=list, validation_alias="RMBG_API_KEYS",
                            description="an accepted API key (repeatable; prefer --api-key-file or env "
                                        "RMBG_API_KEYS: a flag's value shows in ps). Keys from the flag, the "
                                        "files and the environment are all accepted", **_flag("KEY"))
    api_key_file: Listed = Field(default_factory=list, description="file with one API key per line (repeatable)",
                                 **_flag("FILE"))
    alias: Listed = Field(default_factory=list, description="serve a model name with isnet or birefnet, "
                                                            "e.g. bria:2@1=isnet (repeatable)", **_flag("NAME=MODEL"))
    allow_fetch_from: Listed = Field(default_factory=list, description="let image fetches reach this non-public "
                                     "range, e.g. 10.0.0.0/8 (repeatable; images only)", **_flag("CIDR"))
    allow_callbacks_to: Listed = Field(default_factory=list, description="let webhooks and uploadEndpoint PUTs "
                                       "reach this non-public range (repeatable)", **_flag("CIDR"))
    cost_per_image: float = Field(0.0, ge=0, description="the 'cost' of includeCost, and the credits remove.bg's "
                                  "and Clipdrop's headers say a request was charged", **_flag("USD"))
    credit_balance: float | None = Field(None, ge=0, description="the balance remove.bg's /v1.0/account and "
                                         "Clipdrop's x-remaining-credits report (none: this gateway meters nothing, "
                                         "so they report none)", **_flag("CREDITS"))
    webhook_secret: str | None = Field(None, description="sign webhooks with HMAC-SHA256 (prefer the env form)")
    max_inflight: int = Field(64, ge=1, description="synchronous requests at once before 429")
    max_queued: int = Field(10_000, ge=1, description="queued async jobs before 429")
    workers: int = Field(4, ge=1, description="async jobs run at once by this replica")
    job_lease: float = Field(30.0, gt=0, description="seconds a replica's hold on a running async job lasts "
                             "between renewals; a dead replica's jobs are taken over after this", **_flag("S"))
    rate_limit: float = Field(20.0, gt=0, description="requests per second per API key", **_flag("PER_S"))
    burst: int = Field(40, ge=1, description="burst per API key")
    max_body_mb: float = Field(96.0, gt=0, description="largest request body (a 50 MB image in base64 fits)")
    max_image_mb: float = Field(50.0, gt=0, description="largest input image, fetched or inline")
    fetch_timeout: float = Field(30.0, gt=0, description="seconds for one image fetch, redirects included",
                                 **_flag("S"))
    triton_timeout: float = Field(120.0, gt=0, description="seconds for one Triton call", **_flag("S"))
    ttl: int = Field(DEFAULT_TTL_S, ge=MIN_TTL_S, description="seconds results and hosted outputs live by default",
                     **_flag("S"))
    max_ttl: int = Field(7 * 86400, ge=MIN_TTL_S, description="the longest ttl a request may ask for", **_flag("S"))
    quota_mb: float = Field(2048.0, gt=0, description="stored bytes per API key (results and queued inputs) "
                            "before 429")
    outage_wait: float = Field(3600.0, ge=0, description="seconds an accepted job waits out an outage of the "
                               "inference service before it fails", **_flag("S"))
    files_secret: str | None = Field(None, description="the key that signs output URLs, the same on every replica "
                                     "(default: one kept in --data-dir, or in Redis with --redis)",
                                     json_schema_extra={"env_only": True})
    max_tasks_per_request: int = Field(64, ge=1, description="tasks in one task array")
    retry_after: int = Field(1, ge=1, description="the Retry-After of a 429, in seconds", **_flag("S"))
    ws_per_key: int = Field(16, ge=1, description="open WebSocket connections per API key")
    ws_session_ttl: float = Field(300.0, gt=0, description="seconds a dropped WebSocket session keeps its "
                                  "results for a reconnect that resumes it", **_flag("S"))

    @field_validator("triton", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> tuple[str, ...]:
        return split_targets(value)

    @field_validator("api_key", "api_key_file", "alias", "allow_fetch_from", "allow_callbacks_to", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("alias")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        parse_aliases(value)
        return value

    @field_validator("allow_fetch_from", "allow_callbacks_to")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        parse_cidrs(value)
        return value

    @model_validator(mode="after")
    def _bind(self) -> GatewaySettings:
        check_bind(self.host, self.api_keys)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path}: no such file (a PEM certificate or key)")
        return self

    # -- derived values -----------------------------------------------------------------------
    @cached_property
    def api_keys(self) -> tuple[str, ...]:
        """Every accepted key: the flag's, the files' and RMBG_API_KEYS's together."""
        return load_keys(self.api_key, [Path(p) for p in self.api_key_file])

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (self.public_url or f"{self.scheme}://{host}:{self.port}").rstrip("/")

    @cached_property
    def model_aliases(self) -> dict[str, str]:
        return {**MODEL_ALIASES, **parse_aliases(self.alias)}

    @property
    def fetch_policy(self) -> FetchPolicy:
        """Image fetches."""
        return FetchPolicy(max_bytes=self.max_image_bytes, timeout_s=self.fetch_timeout,
                           allow=parse_cidrs(self.allow_fetch_from), hint=GATEWAY_HINT)

    @property
    def callback_policy(self) -> FetchPolicy:
        """Webhooks and uploads: the caller's own systems, opened by their own flag."""
        return FetchPolicy(max_bytes=self.max_image_bytes, timeout_s=self.fetch_timeout,
                           allow=parse_cidrs(self.allow_callbacks_to), hint=CALLBACK_HINT)

    @property
    def quota_bytes(self) -> int:
        return int(self.quota_mb * 1024 * 1024)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)


LIST_FIELDS = ("api_key", "api_key_file", "alias", "allow_fetch_from", "allow_callbacks_to")


def add_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per settings field, its help text, default and environment variable from the field."""
    for name, info in GatewaySettings.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if name in skip or extra.get("env_only"):  # a secret on the command line would show in ps
            continue
        default = info.get_default(call_default_factory=True)
        shown = "none" if default in (None, []) else ",".join(default) if isinstance(default, tuple) else default
        env = "RMBG_API_KEYS" if name == "api_key" else f"RMBG_{name.upper()}"
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
                            action="append" if name in LIST_FIELDS else "store", metavar=extra.get("metavar"),
                            help=f"{info.description} (default: {shown}; env {env})".replace("%", "%%"))


def from_flags(args: argparse.Namespace, **overrides: Any) -> GatewaySettings:
    """The settings: flags given on the command line, then the environment, then the defaults.

    Raises ValueError naming the flag at fault.
    """
    given = {name: value for name, value in vars(args).items() if name in GatewaySettings.model_fields}
    try:
        return GatewaySettings(**{**given, **overrides})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]).replace("_", "-")
        message = err["msg"].removeprefix("Value error, ")
        raise ValueError(f"--{where}: {message}" if where else message) from None
