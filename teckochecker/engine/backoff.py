"""Retrying a service after a transient failure: how long to wait, and what each action does meanwhile."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from teckochecker.engine import leases
from teckochecker.models import JobStatus

# Every wait handed to the broker stays far below the Redis visibility timeout (see celeryconfig); a
# longer wait is written into the job's next_check_at instead.
MAX_BROKER_WAIT_SECONDS = 300.0


def retry_wait(attempt: int, base_seconds: float, retry_after: float | None) -> float:
    """The server's Retry-After when it gave one; else exponential backoff with full jitter in its upper half."""
    if retry_after is not None:
        return max(0.0, retry_after)
    ceiling = base_seconds * (2**attempt)
    return random.uniform(ceiling / 2, ceiling)


GiveUp = Callable[[sessionmaker[Session], int, str, str], None]
# Plan the job's next attempt `wait` seconds from now (the database's now), recording `message`.
Defer = Callable[[sessionmaker[Session], int, str, float, str], None]


@dataclass(frozen=True)
class TransientFailureRules:
    """What one action (a check, a trigger run) does with a job whose call failed transiently.

    The caller picks one per job: keep the lease while a retry waits in the broker (`extend_lease`), plan
    the next attempt in the database when the wait is too long for the broker (`defer`), or record the
    failure once retries have run out (`give_up`).
    """

    leased_status: JobStatus
    give_up: GiveUp
    defer: Defer

    def extend_lease(self, sessions: sessionmaker[Session], job_id: int, token: str, wait: timedelta) -> bool:
        """Keep the job ours while a retry waits in the broker; False when the job moved on meanwhile."""
        return leases.extend_lease_for_retry(sessions, job_id, token, wait, status=self.leased_status)
