"""Durable jobs for the gateway: async tasks, the fal queue and the GMI queue share one store.

``model`` (the Job), ``store`` (the state machine's interface), ``sqlite`` and ``redis`` (its two
backends), ``runner`` (the workers). ``open_job_store`` picks the backend from the settings.
"""

from __future__ import annotations

from pathlib import Path

from rmbg_server.gateway.jobs.model import STATUSES, TERMINAL, Job
from rmbg_server.gateway.jobs.redis import RedisJobStore
from rmbg_server.gateway.jobs.runner import JobRunner
from rmbg_server.gateway.jobs.sqlite import SQLiteJobStore
from rmbg_server.gateway.jobs.store import JobStore


def open_job_store(data_dir: Path, redis_url: str | None = None) -> JobStore:
    """SQLite in ``data_dir`` (the embedded default), or Redis when replicas share ``redis_url``."""
    if redis_url:
        return RedisJobStore(redis_url)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteJobStore(data_dir / "jobs.sqlite3")


__all__ = ["STATUSES", "TERMINAL", "Job", "JobRunner", "JobStore", "RedisJobStore", "SQLiteJobStore",
           "open_job_store"]
