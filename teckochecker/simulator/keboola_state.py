"""What the simulator remembers of the Keboola Job Queue: tokens and jobs, and what it does with them."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from teckochecker.simulator.timeline import Step, check_status, flip_steps, iso_time, spread, steps_reached

if TYPE_CHECKING:
    from teckochecker.simulator.state import SimSettings

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
        return steps_reached(self.steps, now - self.created)[-1].status

    def flip(self, status: str, now: float) -> None:
        self.steps = flip_steps(self.steps, status, now - self.created)

    def render(self, now: float, queue_url: str) -> dict[str, Any]:
        """The job as the Keboola Job Queue's `GET /jobs/{id}` shows it."""
        reached = steps_reached(self.steps, now - self.created)
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
            "created_unix": self.created,
        }


class KeboolaState:
    """The Keboola side of SimulatorState (a mixin): its lock guards these, and reset() empties them."""

    _lock: threading.Lock
    settings: SimSettings
    tokens: dict[str, SimToken]
    jobs: dict[str, SimJob]
    _job_ids: Iterator[int]
    _token_ids: Iterator[int]

    def _reset_keboola(self) -> None:
        self.tokens = {}
        self.jobs = {}
        self._job_ids = itertools.count(1_000_001)
        self._token_ids = itertools.count(101)

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
        check_status(status, JOB_STATUSES, "job status")
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
