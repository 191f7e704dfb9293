"""Shared fixtures: the ../shared fixtures and the eval set."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("RMBG_SHARED", ROOT.parent / "shared"))
EVAL = SHARED / "eval"
REFERENCE = SHARED / "reference"


@dataclass(frozen=True)
class EvalPair:
    id: str
    image: Path
    mask: Path
    width: int
    height: int


def eval_pairs() -> list[EvalPair]:
    with (EVAL / "manifest.csv").open() as f:
        return [
            EvalPair(r["id"], EVAL / r["image"], EVAL / r["mask"], int(r["width"]), int(r["height"]))
            for r in csv.DictReader(f)
        ]


@pytest.fixture(scope="session")
def pairs() -> list[EvalPair]:
    if not EVAL.is_dir():
        pytest.fail(f"the shared eval set is missing at {EVAL} (set RMBG_SHARED)")
    return eval_pairs()


@pytest.fixture(scope="session")
def small_jpeg(pairs) -> bytes:
    """A real photo, small enough that tests stay fast (ECSSD, about 400x300)."""
    return next(p for p in pairs if p.id == "ecssd_0039").image.read_bytes()


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server per session (Debian's package), on a free loopback port, no persistence."""
    from rmbg_server.cluster import RedisServer, find_redis_server
    from rmbg_server.launcher import LaunchError

    try:
        find_redis_server()
    except LaunchError as e:
        pytest.skip(f"the Redis backend cannot be tested here: {e}")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session server, emptied: each test starts from no jobs and no files."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url
