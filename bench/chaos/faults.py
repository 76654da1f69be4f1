"""The faults, each injected into a running Cluster and noted in a FaultLog with when the installation was
whole again (the Observer then measures how long the jobs took to move on)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg
import requests

from bench.chaos.cluster import Cluster
from bench.chaos.observer import Observer

KEBOOLA_CREATE_PATH = "/jobs"
OPENAI_BATCH_PATHS = "/v1/batches*"
# Past the Keboola client's read timeout (30 s), so the engine gives up on an answer that never comes.
BEYOND_READ_TIMEOUT = 35.0
# Keboola's search index shows a new job this late: less than the engine's SEARCH_SETTLE_TIME (20 s).
SEARCH_INDEX_LAG = 10.0
# How long a job spends between Keboola's answer and our database write, widened so kills land there.
TRIGGER_WINDOW = 0.5

_IN_FLIGHT = """
SELECT
  count(*) FILTER (WHERE status = 'active' AND lease_token IS NOT NULL),
  array_agg(keboola_configuration_id) FILTER (WHERE status = 'triggering' AND keboola_job_id IS NULL
                                               AND lease_token IS NOT NULL)
FROM polling_jobs
"""


@dataclass
class FaultLog:
    """What was injected, and what the API answered while the database was down."""

    injected: Counter[str] = field(default_factory=Counter)
    kill_moments: Counter[str] = field(default_factory=Counter)
    api_probes: list[tuple[int, bool]] = field(default_factory=list)
    outage_seconds: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) on the monotonic clock of every outage of Redis or PostgreSQL."""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self.lock:
            self.injected[kind] += 1


def classify_kill(cluster: Cluster) -> list[str]:
    """What was in flight in the installation at the instant of a kill (of any process, not only the victim)."""
    try:
        with psycopg.connect(cluster.database_url, connect_timeout=2) as connection:
            checking, triggering = connection.execute(_IN_FLIGHT).fetchone()
        started = {str(job["body"].get("config")) for job in cluster.control.keboola_jobs()}
    except (psycopg.Error, requests.RequestException):
        return ["unknown"]
    moments = []
    if checking:
        moments.append("mid-check")
    if triggering:
        moments.append("mid-trigger")
        if started & set(triggering):
            moments.append("between Keboola's answer and the database write")
    return moments or ["idle"]


def kill_storm(
    cluster: Cluster, observer: Observer, log: FaultLog, *, kills: int, seconds: float, rng: random.Random,
    stop: threading.Event,
) -> None:  # fmt: skip
    """`kills` SIGKILLs of random workers and beats spread over `seconds`, each restarted at once."""
    gap = seconds / max(kills, 1)
    for _ in range(kills):
        if stop.wait(rng.uniform(0.5 * gap, 1.5 * gap)):
            return
        victim = rng.choice(cluster.engine_processes())
        moments = classify_kill(cluster)
        cluster.kill(victim)
        cluster.restart(victim)
        log.count("SIGKILL")
        with log.lock:
            log.kill_moments.update(moments)
        observer.mark("SIGKILL")


def restart_redis(cluster: Cluster, observer: Observer, log: FaultLog, *, down_for: float) -> None:
    started = time.monotonic()
    cluster.redis_server.kill()
    time.sleep(down_for)
    cluster.redis_server.restart()
    log.outage_seconds.append((started, time.monotonic()))
    log.count("Redis killed (append-only)" if cluster.redis_server.append_only else "Redis killed (no persistence)")
    observer.mark("Redis")


def restart_postgres(cluster: Cluster, observer: Observer, log: FaultLog, *, down_for: float) -> None:
    """Stop PostgreSQL immediately; while it is down the API must answer 503 with its JSON error shape."""
    started = time.monotonic()
    cluster.postgres.stop_immediately()
    deadline = started + down_for
    while time.monotonic() < deadline:
        log.api_probes.append(_probe_api(cluster))
        time.sleep(1.0)
    cluster.postgres.restart()
    log.outage_seconds.append((started, time.monotonic()))
    log.count("PostgreSQL stopped immediately")
    observer.mark("PostgreSQL")


def _probe_api(cluster: Cluster) -> tuple[int, bool]:
    """The API's status for a job list, and whether the body was the JSON error shape naming the database."""
    try:
        response = cluster.api_call("GET", "/api/jobs", timeout=10)
    except requests.RequestException:
        return 0, False
    try:
        body = response.json()
    except ValueError:
        return response.status_code, False
    shaped = isinstance(body, dict) and body.get("code") == 503 and "database" in str(body.get("message", ""))
    return response.status_code, shaped


def ambiguous_keboola(cluster: Cluster, log: FaultLog, *, each: int) -> None:
    """Keboola creates the job, then answers 502, or never answers in time, or closes the connection.

    Its search index also trails by SEARCH_INDEX_LAG, so a search right after the failure finds nothing.
    """
    control = cluster.control
    control.configure(search_delay=SEARCH_INDEX_LAG)
    control.add_fault(KEBOOLA_CREATE_PATH, method="POST", status=502, after=True, count=each)
    control.add_fault(KEBOOLA_CREATE_PATH, method="POST", drop=True, after=True, count=each)
    control.add_fault(KEBOOLA_CREATE_PATH, method="POST", status=504, delay=BEYOND_READ_TIMEOUT, after=True, count=each)
    for kind in ("502 after creating", "connection closed after creating", "timeout after creating"):
        log.injected[f"Keboola: {kind}"] += each


def widen_trigger_window(cluster: Cluster) -> None:
    """Keboola answers TRIGGER_WINDOW late after creating each job, so some kills land in between."""
    cluster.control.add_fault(KEBOOLA_CREATE_PATH, method="POST", delay=TRIGGER_WINDOW, after=True)


def flaky_openai(cluster: Cluster, log: FaultLog) -> None:
    """Every answer takes 2–10 s; 20 % are 429, 10 % 5xx, 5 % a reset connection."""
    control = cluster.control
    control.add_fault(OPENAI_BATCH_PATHS, method="GET", delay=2.0, delay_max=10.0)
    control.add_fault(OPENAI_BATCH_PATHS, method="GET", status=429, retry_after=2, probability=0.2)
    control.add_fault(OPENAI_BATCH_PATHS, method="GET", status=503, probability=0.125)
    control.add_fault(OPENAI_BATCH_PATHS, method="GET", drop=True, probability=0.07)
    log.injected["OpenAI slow (2–10 s) and flaky (30 % 429/5xx, 5 % reset)"] += 1
