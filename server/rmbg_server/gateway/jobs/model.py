"""A job: one accepted piece of async work (an async task, a fal or GMI queue request) and its state."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any, Literal

JobStatus = Literal["queued", "processing", "completed", "failed", "cancelled"]
STATUSES: tuple[JobStatus, ...] = ("queued", "processing", "completed", "failed", "cancelled")
TERMINAL: tuple[JobStatus, ...] = ("completed", "failed", "cancelled")


@dataclass
class Job:
    id: str                          # the taskUUID, or the fal / GMI request_id
    protocol: str                    # "task" | "fal" | "gmi"
    request: dict[str, Any]          # everything needed to run it, JSON-serialisable
    status: JobStatus = "queued"
    result: dict[str, Any] | None = None   # protocol-specific success body
    error: dict[str, Any] | None = None    # protocol-specific error body
    webhook_url: str | None = None
    ttl_s: int = 86400
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    attempts: int = 0
    tenant: str | None = None        # the API key's id (a hash, never the key); None without keys
    blobs: list[str] = field(default_factory=list)  # stored inputs (file uuids), deleted when it finishes


JSON_FIELDS = ("request", "result", "error", "blobs")
JOB_FIELDS = tuple(f.name for f in fields(Job))


def encode_job(job: Job) -> dict[str, Any]:
    """The job as column/field values: JSON text for the dicts, None for absent values."""
    out: dict[str, Any] = {}
    for name in JOB_FIELDS:
        value = getattr(job, name)
        out[name] = json.dumps(value, separators=(",", ":")) if name in JSON_FIELDS and value is not None else value
    return out


def decode_job(row: dict[str, Any]) -> Job:
    """A job from a SQLite row or a Redis hash (where every value is text)."""
    def text(name: str) -> Any:
        value = row.get(name)
        return None if value in (None, "") else value

    return Job(
        id=row["id"], protocol=row["protocol"], request=json.loads(row["request"]), status=row["status"],
        result=json.loads(text("result")) if text("result") else None,
        error=json.loads(text("error")) if text("error") else None,
        webhook_url=text("webhook_url"), ttl_s=int(row["ttl_s"]), created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]), attempts=int(row["attempts"]), tenant=text("tenant"),
        blobs=json.loads(text("blobs")) if text("blobs") else [],
    )


def check_submittable(job: Job) -> None:
    if job.status == "processing":
        raise ValueError(f"job {job.id}: a job is submitted queued (or already finished), never 'processing'")
    if job.status not in STATUSES:
        raise ValueError(f"job {job.id}: unknown status {job.status!r}; use one of {', '.join(STATUSES)}")




def finish_column(status: str) -> str:
    if status not in ("completed", "failed"):
        raise ValueError(f"a job finishes 'completed' or 'failed', not {status!r}")
    return "result" if status == "completed" else "error"
