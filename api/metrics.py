"""Prometheus metrics of the API: requests by endpoint and status, and their latency, served at /metrics.

gunicorn runs several worker processes; with PROMETHEUS_MULTIPROC_DIR set (`teckochecker api` sets it)
each process writes its samples there and /metrics adds them up. /metrics holds only counts and
timings, so like /api/health it needs no token (scrapers are kept out at the network level).
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "teckochecker_http_requests_total",
    "API requests answered, by endpoint and status.",
    ["method", "endpoint", "status"],
)
LATENCY = Histogram(
    "teckochecker_http_request_duration_seconds",
    "Time to answer an API request, by endpoint.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# prometheus_client picks its storage when first imported; /metrics must read the same one.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Labels come from a fixed set, whatever a client sends: one time series per invented method or URL would let
# anyone grow /metrics (and every gunicorn worker's metrics file) without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ENDPOINT = "unmatched"

blp = Blueprint("metrics", __name__)


@blp.get("/metrics")
def metrics() -> Response:
    registry = REGISTRY
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    method = request.method if request.method in KNOWN_METHODS else OTHER_METHOD
    # The URL rule, not the path (/api/jobs/<int:job_id>, not one per job); the statuses are the app's own.
    endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ENDPOINT
    REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
    started = g.pop("metrics_started", None)
    if started is not None:
        LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)
    return response


def init_metrics(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(blp)
