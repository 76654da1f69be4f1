"""What the simulator remembers: keys, tokens, batches, Keboola jobs, faults, settings and counters.

Statuses are computed from a timeline when asked for, so nothing runs in the background: a batch
created with a 5 s duration simply reads as `completed` once 5 s have passed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

BATCH_STATUSES = (
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
)
BATCH_TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# The road a real batch takes to each status; a generated timeline spreads it evenly over the duration.
_BATCH_ROADS = {
    "validating": ("validating",),
    "in_progress": ("validating", "in_progress"),
    "finalizing": ("validating", "in_progress", "finalizing"),
    "completed": ("validating", "in_progress", "finalizing", "completed"),
    "failed": ("validating", "failed"),
    "expired": ("validating", "in_progress", "expired"),
    "cancelling": ("validating", "in_progress", "cancelling"),
    "cancelled": ("validating", "in_progress", "cancelling", "cancelled"),
}
_BATCH_TIMESTAMPS = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}
BATCH_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
BATCH_LIFETIME_SECONDS = 24 * 3600
SIMULATED_MODEL = "gpt-4o-mini-2024-07-18"

JOB_STATUSES = (
    "created",
    "waiting",
    "processing",
    "success",
    "warning",
    "error",
    "terminating",
    "terminated",
    "cancelled",
)
JOB_FINISHED_STATUSES = frozenset({"success", "warning", "error", "terminated", "cancelled"})
_JOB_ROADS = {
    "created": ("created",),
    "waiting": ("created", "waiting"),
    "processing": ("created", "processing"),
    "success": ("created", "processing", "success"),
    "warning": ("created", "processing", "warning"),
    "error": ("created", "processing", "error"),
    "terminating": ("created", "processing", "terminating"),
    "terminated": ("created", "processing", "terminating", "terminated"),
    "cancelled": ("created", "cancelled"),
}


class SimulatorInputError(ValueError):
    """A control-API request the simulator cannot honour; the message says why."""


@dataclass(frozen=True)
class Step:
    status: str
    at: float
    """Seconds after creation."""


def spread(road: Sequence[str], duration: float) -> list[Step]:
    if len(road) == 1:
        return [Step(road[0], 0.0)]
    return [Step(status, duration * index / (len(road) - 1)) for index, status in enumerate(road)]


def _reached(steps: Sequence[Step], elapsed: float) -> list[Step]:
    return [step for step in steps if step.at <= elapsed] or [steps[0]]


def _cut(steps: Sequence[Step], status: str, elapsed: float) -> list[Step]:
    kept = _reached(steps, elapsed)
    if kept[-1].status == status:
        return kept
    return [*kept, Step(status, max(elapsed, kept[-1].at))]


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@dataclass
class SimBatch:
    id: str
    created: float
    steps: list[Step]
    endpoint: str
    input_file_id: str
    completion_window: str
    request_total: int
    failed_requests: int
    owner_key: str | None
    metadata: dict[str, str] | None

    def status(self, now: float) -> str:
        return _reached(self.steps, now - self.created)[-1].status

    def flip(self, status: str, now: float) -> None:
        self.steps = _cut(self.steps, status, now - self.created)

    def _done(self, reached: list[Step], elapsed: float) -> int:
        """Requests processed so far: they advance while in progress, fully if the batch goes on to finalize."""
        status = reached[-1].status
        if status in ("finalizing", "completed"):
            return self.request_total
        positions = [index for index, step in enumerate(self.steps) if step.status == "in_progress"]
        if not positions or self.steps[positions[0]] not in reached:
            return 0
        started = self.steps[positions[0]]
        following = self.steps[positions[0] + 1] if positions[0] + 1 < len(self.steps) else None
        if following is None:
            return 0
        share = 1.0 if following.status == "finalizing" else 0.5
        span = following.at - started.at
        progress = 1.0 if span <= 0 else min(1.0, (elapsed - started.at) / span)
        return int(self.request_total * share * progress)

    def render(self, now: float) -> dict[str, Any]:
        """The batch exactly as OpenAI's `GET /v1/batches/{id}` shows it."""
        elapsed = now - self.created
        reached = _reached(self.steps, elapsed)
        status = reached[-1].status
        stamps: dict[str, int | None] = dict.fromkeys(_BATCH_TIMESTAMPS.values())
        for step in reached:
            if step.status in _BATCH_TIMESTAMPS:
                stamps[_BATCH_TIMESTAMPS[step.status]] = int(self.created + step.at)
        started = any(step.status == "in_progress" for step in reached)
        done = self._done(reached, elapsed)
        failed = done * self.failed_requests // self.request_total if self.request_total else 0
        completed = done - failed
        terminal = status in BATCH_TERMINAL_STATUSES
        digest = hashlib.sha256(self.id.encode()).hexdigest()[:24]
        created_at = int(self.created)
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": SIMULATED_MODEL,
            "errors": _validation_errors() if status == "failed" else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": status,
            "output_file_id": f"file-out{digest}" if terminal and completed else None,
            "error_file_id": f"file-err{digest}" if terminal and failed else None,
            "created_at": created_at,
            "in_progress_at": stamps["in_progress_at"],
            "expires_at": created_at + BATCH_LIFETIME_SECONDS,
            "finalizing_at": stamps["finalizing_at"],
            "completed_at": stamps["completed_at"],
            "failed_at": stamps["failed_at"],
            "expired_at": stamps["expired_at"],
            "cancelling_at": stamps["cancelling_at"],
            "cancelled_at": stamps["cancelled_at"],
            "request_counts": {
                "total": self.request_total if started else 0,
                "completed": completed,
                "failed": failed,
            },
            "usage": _usage(completed),
            "metadata": self.metadata,
        }


def _validation_errors() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "code": "invalid_json_line",
                "message": "This line is not parseable as valid JSON.",
                "param": None,
                "line": 1,
            }
        ],
    }


def _usage(completed_requests: int) -> dict[str, Any]:
    input_tokens = completed_requests * 50
    output_tokens = completed_requests * 20
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


@dataclass(frozen=True)
class SimToken:
    token: str
    id: str
    description: str
    project_id: str
    created: float

    @property
    def project_name(self) -> str:
        return f"Simulated project {self.project_id}"


@dataclass
class SimJob:
    id: str
    token: SimToken
    body: dict[str, Any]
    created: float
    steps: list[Step]

    def status(self, now: float) -> str:
        return _reached(self.steps, now - self.created)[-1].status

    def flip(self, status: str, now: float) -> None:
        self.steps = _cut(self.steps, status, now - self.created)

    def render(self, now: float, queue_url: str) -> dict[str, Any]:
        """The job as the Keboola Job Queue's `GET /jobs/{id}` shows it."""
        reached = _reached(self.steps, now - self.created)
        status = reached[-1].status
        started = next((step for step in reached if step.status == "processing"), None)
        ended = reached[-1] if status in JOB_FINISHED_STATUSES else None
        duration = int(ended.at - started.at) if started and ended else None
        result: dict[str, Any] = {}
        if status == "error":
            result = {"message": "Simulated component failure.", "error": {"type": "user"}}
        elif ended is not None:
            result = {"message": "Component processing finished."}
        return {
            "id": self.id,
            "runId": self.id,
            "parentRunId": "",
            "project": {"id": self.token.project_id, "name": self.token.project_name},
            "token": {"id": self.token.id, "description": self.token.description},
            "status": status,
            "desiredStatus": "terminating" if status in ("terminating", "terminated") else "processing",
            "mode": self.body.get("mode", "run"),
            "component": self.body.get("component"),
            "config": self.body.get("config"),
            "configRowIds": self.body.get("configRowIds", []),
            "configData": self.body.get("configData"),
            "tag": self.body.get("tag"),
            "createdTime": iso_time(self.created),
            "startTime": iso_time(self.created + started.at) if started else None,
            "endTime": iso_time(self.created + ended.at) if ended else None,
            "delayedStartTime": None,
            "durationSeconds": duration,
            "result": result,
            "isFinished": ended is not None,
            "url": f"{queue_url}/jobs/{self.id}",
            "branchId": self.body.get("branchId"),
            "variableValuesId": self.body.get("variableValuesId"),
            "variableValuesData": self.body.get("variableValuesData") or {"values": []},
            "backend": self.body.get("backend") or {},
            "executor": "dind",
            "metrics": {},
            "type": "standard",
            "orchestrationTaskId": None,
            "previousJobId": None,
            "behavior": {"onError": None},
        }

    def record(self, now: float) -> dict[str, Any]:
        """What the control API reports about a received job: the request as sent, and who sent it."""
        return {
            "id": self.id,
            "status": self.status(now),
            "token": self.token.token,
            "project_id": self.token.project_id,
            "body": self.body,
            "created_time": iso_time(self.created),
        }


@dataclass
class Fault:
    """Make matching requests fail: an error status (with Retry-After), a delay, or a dropped connection."""

    id: str
    path: str
    method: str = "*"
    count: int | None = None
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 0.0
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    code: str | None = None
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class SimSettings:
    latency_ms: float = 0.0
    batch_duration: float = 5.0
    batch_final_status: str = "completed"
    batch_request_total: int = 100
    cancel_duration: float = 1.0
    job_duration: float = 3.0
    job_final_status: str = "success"
    search_delay: float = 0.0

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise SimulatorInputError(f"unknown setting {name!r}; known: {', '.join(known)}")
            if name == "batch_final_status":
                _check_status(value, BATCH_STATUSES, "batch status")
            elif name == "job_final_status":
                _check_status(value, JOB_STATUSES, "job status")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise SimulatorInputError(f"{name} must be a number of 0 or more, got {value!r}")
        for name, value in changes.items():
            setattr(self, name, int(value) if name == "batch_request_total" else value)

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_status(value: Any, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise SimulatorInputError(f"{value!r} is not a {what}; use one of {', '.join(allowed)}")
    return value


def check_script(script: Any) -> list[Step]:
    """A timeline given as [{"status", "at"}, …] with `at` in seconds after creation, in order."""
    if not isinstance(script, list) or not script:
        raise SimulatorInputError('script must be a non-empty list of {"status", "at"} steps')
    steps: list[Step] = []
    for item in script:
        if not isinstance(item, dict):
            raise SimulatorInputError('each script step is an object {"status", "at"}')
        status = _check_status(item.get("status"), BATCH_STATUSES, "batch status")
        at = item.get("at", 0)
        if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
            raise SimulatorInputError(f"step 'at' must be seconds of 0 or more, got {at!r}")
        if steps and at < steps[-1].at:
            raise SimulatorInputError("script steps must be in time order")
        steps.append(Step(status, float(at)))
    if steps[0].at > 0:
        steps.insert(0, Step("validating", 0.0))
    return steps


class SimulatorState:
    """Everything the simulator knows, behind one lock (each operation is short)."""

    def __init__(self, **defaults: Any) -> None:
        """`defaults` are settings (see SimSettings) that survive a reset, such as a server-wide latency."""
        self._lock = threading.Lock()
        SimSettings().update(defaults)
        self._defaults = defaults
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.settings = SimSettings()
            self.settings.update(self._defaults)
            self.api_keys: set[str] = set()
            self.tokens: dict[str, SimToken] = {}
            self.batches: dict[str, SimBatch] = {}
            self.jobs: dict[str, SimJob] = {}
            self.faults: list[Fault] = []
            self.requests: Counter[str] = Counter()
            self.connections = 0
            self._job_ids = itertools.count(1_000_001)
            self._token_ids = itertools.count(101)
            self._fault_ids = itertools.count(1)

    # Settings, keys and tokens.

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.settings.update(changes)
            return self.settings.describe()

    @property
    def latency(self) -> float:
        return self.settings.latency_ms / 1000

    def add_api_key(self, key: str) -> None:
        with self._lock:
            self.api_keys.add(key)

    def knows_key(self, key: str) -> bool:
        return key in self.api_keys

    def add_token(self, token: str, *, description: str, project_id: str) -> SimToken:
        with self._lock:
            known = self.tokens.get(token)
            sim_token = SimToken(
                token=token,
                id=known.id if known else str(next(self._token_ids)),
                description=description,
                project_id=project_id,
                created=known.created if known else time.time(),
            )
            self.tokens[token] = sim_token
            return sim_token

    def token(self, token: str) -> SimToken | None:
        return self.tokens.get(token)

    # Batches.

    def create_batch(
        self,
        *,
        batch_id: str | None = None,
        steps: list[Step] | None = None,
        endpoint: str = "/v1/chat/completions",
        input_file_id: str | None = None,
        completion_window: str = "24h",
        request_total: int | None = None,
        failed_requests: int = 0,
        owner_key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            batch_id = batch_id or f"batch_{secrets.token_hex(16)}"
            if batch_id in self.batches:
                raise SimulatorInputError(f"batch {batch_id} already exists")
            total = self.settings.batch_request_total if request_total is None else request_total
            if failed_requests > total:
                raise SimulatorInputError("failed_requests must not exceed request_total")
            batch = SimBatch(
                id=batch_id,
                created=now,
                steps=steps or spread(_BATCH_ROADS[self.settings.batch_final_status], self.settings.batch_duration),
                endpoint=endpoint,
                input_file_id=input_file_id or f"file-{secrets.token_hex(12)}",
                completion_window=completion_window,
                request_total=total,
                failed_requests=failed_requests,
                owner_key=owner_key,
                metadata=metadata,
            )
            self.batches[batch_id] = batch
            return batch.render(now)

    def batch_road(self, final_status: str, duration: float) -> list[Step]:
        return spread(_BATCH_ROADS[_check_status(final_status, BATCH_STATUSES, "batch status")], duration)

    def visible_batch(self, batch_id: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.owner_key not in (None, key):
                return None
            return batch.render(time.time())

    def list_batches(self, key: str, *, limit: int, after: str | None) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, from just after the batch `after`; returns the page and whether more follow."""
        now = time.time()
        with self._lock:
            # Dicts keep insertion order, which is creation order.
            visible = [b for b in reversed(self.batches.values()) if b.owner_key in (None, key)]
            if after is not None:
                ids = [batch.id for batch in visible]
                visible = visible[ids.index(after) + 1 :] if after in ids else []
            page = visible[:limit]
            return [batch.render(now) for batch in page], len(visible) > limit

    def flip_batch(self, batch_id: str, status: str) -> dict[str, Any] | None:
        _check_status(status, BATCH_STATUSES, "batch status")
        now = time.time()
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            batch.flip(status, now)
            return batch.render(now)

    def cancel_batch(self, batch_id: str, key: str) -> tuple[str, dict[str, Any] | None]:
        """("ok", batch) once cancelling; ("not_found", None); or ("refused", batch) for a batch past cancelling."""
        now = time.time()
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.owner_key not in (None, key):
                return "not_found", None
            status = batch.status(now)
            if status in ("validating", "in_progress"):
                batch.flip("cancelling", now)
                elapsed = now - batch.created
                batch.steps.append(Step("cancelled", elapsed + self.settings.cancel_duration))
            elif status != "cancelling":
                return "refused", batch.render(now)
            return "ok", batch.render(now)

    # Keboola jobs.

    def create_job(self, token: SimToken, body: dict[str, Any]) -> SimJob:
        now = time.time()
        with self._lock:
            job = SimJob(
                id=str(next(self._job_ids)),
                token=token,
                body=body,
                created=now,
                steps=spread(_JOB_ROADS[self.settings.job_final_status], self.settings.job_duration),
            )
            self.jobs[job.id] = job
            return job

    def visible_job(self, job_id: str, token: SimToken, queue_url: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.token.project_id != token.project_id:
                return None
            return job.render(time.time(), queue_url)

    def search_jobs(
        self,
        token: SimToken,
        *,
        components: list[str],
        configs: list[str],
        statuses: list[str],
        created_from: float | None,
        created_to: float | None,
        offset: int,
        limit: int,
        newest_first: bool,
        queue_url: str,
    ) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            indexed_before = now - self.settings.search_delay
            found = [
                job
                for job in self.jobs.values()
                if job.token.project_id == token.project_id
                and job.created <= indexed_before
                and (not components or job.body.get("component") in components)
                and (not configs or str(job.body.get("config")) in configs)
                and (not statuses or job.status(now) in statuses)
                and (created_from is None or job.created >= created_from)
                and (created_to is None or job.created < created_to)
            ]
            found.sort(key=lambda job: int(job.id), reverse=newest_first)
            return [job.render(now, queue_url) for job in found[offset : offset + limit]]

    def flip_job(self, job_id: str, status: str) -> dict[str, Any] | None:
        _check_status(status, JOB_STATUSES, "job status")
        now = time.time()
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            job.flip(status, now)
            return job.record(now)

    def job_records(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            return [job.record(now) for job in self.jobs.values()]

    # Faults and counters.

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        with self._lock:
            fault = Fault(id=str(next(self._fault_ids)), **spec)
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault that matches, counted as fired."""
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    return fault
            return None

    def count_request(self, route: str) -> None:
        with self._lock:
            self.requests[route] += 1

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self.requests.values()),
                "requests": dict(self.requests),
                "connections": self.connections,
                "faults": [fault.describe() for fault in self.faults],
            }
