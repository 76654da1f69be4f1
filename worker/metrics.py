"""Prometheus metrics of the engine, served by each worker and by beat on METRICS_PORT (when set).

The worker runs its checks in threads of one process, so plain in-process metrics are complete.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from teckochecker.config import Settings

logger = logging.getLogger(__name__)

CHECKS = Counter("teckochecker_checks_total", "Job checks, by outcome.", ["outcome"])
CHECK_DURATION = Histogram(
    "teckochecker_check_duration_seconds",
    "Time a check took, OpenAI calls included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
OPENAI_REQUESTS = Counter(
    "teckochecker_openai_requests_total",
    "Requests to OpenAI by the checks, by kind: get (one batch), list (a page).",
    ["kind"],
)
BATCHES_REFRESHED = Counter(
    "teckochecker_batches_refreshed_total",
    "Batches the checks refreshed, by method: single (one GET each) or sweep (found on a list page).",
    ["method"],
)
SWEEP_KEYS = Gauge("teckochecker_sweep_keys", "OpenAI keys whose batches are refreshed by list sweeps (beat).")
TRIGGERS = Counter("teckochecker_keboola_triggers_total", "Keboola trigger runs, by outcome.", ["outcome"])
RETRIES = Counter("teckochecker_task_retries_total", "Retries scheduled after a transient failure.", ["task"])
DISPATCHED = Counter("teckochecker_dispatched_total", "Jobs beat handed out, by kind.", ["action"])
SCHEDULING_LAG = Histogram(
    "teckochecker_scheduling_lag_seconds",
    "Dispatch time minus the job's planned check time.",
    buckets=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
JOBS = Gauge("teckochecker_jobs", "Polling jobs, by status (refreshed by beat).", ["status"])


def serve_metrics(settings: Settings, role: str) -> None:
    """Serve /metrics on METRICS_HOST:METRICS_PORT (loopback unless METRICS_HOST opens it), if a port is set."""
    port = settings.metrics_port
    if port is None:
        return
    try:
        start_http_server(port, addr=settings.metrics_host)
    except OSError as error:
        # Several roles on one machine (`teckochecker start`) cannot share the port; metrics are optional.
        logger.warning("%s: metrics not served on port %s: %s", role, port, error)
        return
    logger.info("%s: Prometheus metrics on %s port %s", role, settings.metrics_host, port)
