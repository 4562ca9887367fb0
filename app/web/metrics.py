"""Prometheus metrics of this process: HTTP requests (labelled by route template, not raw path, so
cardinality stays bounded), rankings submitted, logins, and the process collectors; `exposition()` writes
them, with the scrape-time database metrics (app.health.collectors), as the text /metrics answers.

With PROMETHEUS_MULTIPROC_DIR set (several uvicorn workers), prometheus_client keeps every process's
counters in files there and `exposition()` adds them up; the process collectors are left out in that mode,
as prometheus_client cannot sum them.
"""

from __future__ import annotations

import time

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)
RANKINGS_SUBMITTED = Counter("prefloop_rankings_submitted", "Rankings submitted to this web process",
                             registry=REGISTRY)
LOGINS = Counter("prefloop_logins", "Sign-in attempts by outcome", ["outcome"], registry=REGISTRY)
# The routes that store a new ranking (page and API): a 2xx/3xx answer from one is a committed submission,
# since the unit of work commits before the response. Counted here so the labeling code needs no metrics.
RANKING_SUBMIT_ROUTES = frozenset({
    ("POST", "/projects/{project_id}/label/{assignment_id}"),
    ("POST", "/api/assignments/{assignment_id}/ranking"),
})
REQUESTS = Counter("prefloop_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "prefloop_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)
            if status < 400 and (scope["method"], route) in RANKING_SUBMIT_ROUTES:
                RANKINGS_SUBMITTED.inc()


def exposition(database: Collector | None = None, multiproc_dir: str = "") -> bytes:
    """The Prometheus text of this process (or, with `multiproc_dir`, of every process writing there),
    followed by `database`'s scrape-time metrics."""
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    text = generate_latest(registry)
    if database is not None:
        scraped = CollectorRegistry()
        scraped.register(database)
        text += generate_latest(scraped)
    return text
