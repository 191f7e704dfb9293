"""Prometheus metrics of one gateway app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets: a 256 px engine answers in milliseconds, a 1 MP IS-Net on CPU in seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """Requests by route and status, latencies, job-queue depth, webhook and fetch failures."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rmbg_gateway_requests", "HTTP requests by route template and status code",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("rmbg_gateway_request_seconds", "HTTP request latency by route template",
                                 ["route", "method"], buckets=_BUCKETS, registry=r)
        self.inference = Histogram("rmbg_gateway_triton_seconds", "Triton call latency by model",
                                   ["model"], buckets=_BUCKETS, registry=r)
        self.tasks = Counter("rmbg_gateway_tasks", "Finished tasks and jobs by protocol and outcome",
                             ["protocol", "outcome"], registry=r)
        self.jobs = Gauge("rmbg_gateway_jobs", "Jobs in the store by status (queued = queue depth)",
                          ["status"], registry=r)
        self.inflight = Gauge("rmbg_gateway_inflight", "Synchronous requests being processed", registry=r)
        self.rejected = Counter("rmbg_gateway_rejected", "Requests refused by a limit", ["reason"], registry=r)
        self.fetch_failures = Counter("rmbg_gateway_fetch_failures", "Failed input fetches by reason",
                                      ["reason"], registry=r)
        self.webhook_failures = Counter("rmbg_gateway_webhook_failures",
                                        "Webhooks not delivered after every retry", registry=r)
        self.webhooks = Counter("rmbg_gateway_webhooks", "Webhooks delivered", registry=r)
        self.endpoints = Gauge("rmbg_gateway_triton_endpoints", "Triton endpoints by health", ["state"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
