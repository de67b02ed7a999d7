"""Prometheus metrics at ``/metrics`` (prometheus-client): API calls and latencies by route
template (never the raw path, which would name users), routed data-plane calls, jobs by
kind and state, users by connection status (blocked = ``error``) read from the registry at
scrape time. Each app has its own ``CollectorRegistry``, so several apps in one process
(tests) never clash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.serve.service import Service

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _RegistryCollector(Collector):
    """Gauges read from the registry when scraped: users per status, blocked users,
    open jobs."""

    def __init__(self, service: "Service"):
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self.service.store
        users = GaugeMetricFamily("byod_users", "Users by connection status",
                                  labels=["status"])
        counts = {"pending": 0, "connected": 0, "error": 0, "disconnected": 0}
        for user in store.list_users():
            counts[user.connection_status] = counts.get(user.connection_status, 0) + 1
        for status, n in sorted(counts.items()):
            users.add_metric([status], n)
        yield users
        yield GaugeMetricFamily("byod_blocked_users", "Users blocked (deployment in error)",
                                value=counts["error"])
        jobs = GaugeMetricFamily("byod_jobs_open", "Queued or running jobs", labels=["kind"])
        open_jobs: dict[str, int] = {}
        for job in store.list_jobs(limit=1000):
            if not job.finished:
                open_jobs[job.kind] = open_jobs.get(job.kind, 0) + 1
        for kind, n in sorted(open_jobs.items()):
            jobs.add_metric([kind], n)
        yield jobs
        yield GaugeMetricFamily("byod_service_enabled", "The kill switch (1: new connections "
                                "accepted)", value=1 if self.service.enabled else 0)


class Metrics:
    """The app's metrics and their registry."""

    def __init__(self, service: "Service"):
        self.registry = CollectorRegistry()
        self.requests = Counter("byod_http_requests", "API and page requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("byod_http_request_seconds", "Request latency",
                                 ["method", "route"], registry=self.registry)
        self.routed = Counter("byod_dataplane_calls", "Data-plane calls by outcome",
                              ["outcome"], registry=self.registry)
        self.jobs = Counter("byod_jobs_finished", "Finished jobs by kind and state",
                            ["kind", "state"], registry=self.registry)
        self.registry.register(_RegistryCollector(service))

    def render(self) -> bytes:
        return generate_latest(self.registry)
