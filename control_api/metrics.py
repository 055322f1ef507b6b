"""Prometheus metrics for the control API, served at /metrics.

Each application gets its own registry, so several apps in one process (tests) never collide;
it carries the process's own metrics (`process_cpu_seconds_total`, memory, `python_gc_*`), once:
the embedded media plane adds its collectors to this same registry (one /metrics per process).
Labels use the route template (``/v1/visits/{visit_id}``), never the raw path, to keep
cardinality bounded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for process_collector in (ProcessCollector, PlatformCollector, GCCollector):
            process_collector(registry=self.registry)
        self.requests = Counter("openvisit_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("openvisit_http_request_seconds", "HTTP request latency by route",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.media_nodes_lost = Counter("openvisit_media_nodes_lost", "media nodes whose lease lapsed (S5, S6)",
                                        registry=self.registry)
        self.visits_interrupted = Counter("openvisit_visits_interrupted", "live visits whose media session was "
                                          "lost with its node (rejoinable until their end, S5)", registry=self.registry)

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def measure(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            started = time.perf_counter()
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.requests.labels(request.method, route, str(status)).inc()
                self.latency.labels(request.method, route).observe(time.perf_counter() - started)

        return measure

    async def handler(self, _request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(self.registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp


METRICS = web.AppKey("openvisit_metrics", ApiMetrics)
