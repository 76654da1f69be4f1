"""Beat's scheduler: every second, claim due jobs in the database and send them to the workers.

Checks of jobs that share an OpenAI key travel in groups of up to CHECK_GROUP_SIZE per task, under one
lease token; each Keboola trigger travels in a task of its own.

Stock beat keeps one schedule entry per job and compares them all on every tick; this scheduler keeps
none. The database says which jobs are due, and a claim there (see teckochecker.engine.scheduling) makes
two beats, a restarted beat, or a lost message harmless.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import Scheduler

from celeryconfig import CHECK_QUEUE, TRIGGER_QUEUE
from teckochecker.db import session_scope, utcnow
from teckochecker.engine.scheduling import (
    CHECK,
    CHECK_GROUP_SIZE,
    DISPATCH_BATCH_LIMIT,
    TRIGGER,
    Claim,
    Dispatch,
    claim_due_jobs,
    group_claims,
)
from teckochecker.services.stats import jobs_by_status
from worker import metrics
from worker.notification_beat import NotificationBeat
from worker.runtime import Runtime
from worker.tasks import EngineTask, send_check, send_trigger

logger = logging.getLogger(__name__)
DISPATCH_EVERY_SECONDS = 1.0
SUMMARY_EVERY_SECONDS = 60.0
CENSUS_EVERY_SECONDS = 15.0
# At most this many checks wait in the broker (a message holds up to CHECK_GROUP_SIZE of them): a few
# seconds of one worker's work (docs/BENCHMARKS.md), well inside the shortest allowed interval (30 s)
# that is the messages' expiry, and enough that workers never wait for the next tick.
MAX_QUEUED_CHECKS = 1000
# Trigger runs (start or follow a Keboola job) are one job each and cost a few times a check; 200 is
# a few seconds of work, far inside their 120 s lease.
MAX_QUEUED_TRIGGERS = 200
# Per action: its queue, how many jobs may wait there, and at most how many jobs one message carries.
QUEUES = {
    CHECK: (CHECK_QUEUE, MAX_QUEUED_CHECKS, CHECK_GROUP_SIZE),
    TRIGGER: (TRIGGER_QUEUE, MAX_QUEUED_TRIGGERS, 1),
}


class DispatchScheduler(Scheduler):
    def setup_schedule(self) -> None:
        super().setup_schedule()
        metrics.serve_metrics(self.app.settings, "beat")
        self._next_census = 0.0
        self._next_dispatch = 0.0
        self._next_summary = time.monotonic() + SUMMARY_EVERY_SECONDS
        self._sent = 0
        self._worst_lag = 0.0
        self._notifications = NotificationBeat()

    @property
    def runtime(self) -> Runtime:
        return EngineTask.runtime_for(self.app.settings)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait = super().tick(*args, **kwargs)
        if time.monotonic() >= self._next_dispatch:
            more_due = self.dispatch()
            # A full batch means more jobs are due: go again at once instead of waiting a second.
            self._next_dispatch = time.monotonic() + (0.0 if more_due else DISPATCH_EVERY_SECONDS)
        self._log_summary()
        self._count_jobs()
        self._notifications.tick(self.app, self.runtime)
        return max(0.0, min(wait, self._next_dispatch - time.monotonic()))

    def _room_in_queues(self) -> dict[str, int]:
        """How many more jobs each queue may take: back-pressure, so a backlog never outgrows the workers.

        A task that waits in its queue past its expiry is dropped unrun and its job handed out again;
        without a cap, an overloaded fleet spends its time on messages that expire (see docs/BENCHMARKS.md).
        A job not claimed now stays due and is claimed at a later tick, oldest first.
        """
        room = {}
        try:
            # A pooled connection: opening one per tick costs more than the question.
            with self.app.pool.acquire(block=True) as connection:
                connection.ensure_connection(max_retries=1)
                for action, (queue, cap, jobs_per_message) in QUEUES.items():
                    try:
                        queued = connection.default_channel.queue_declare(queue, passive=True).message_count
                    except connection.channel_errors:
                        # An empty Redis queue does not exist as a key, and a passive declare of it fails.
                        queued = 0
                    # Counted as full groups: a conservative bound whatever the groups' sizes.
                    room[action] = max(0, min(DISPATCH_BATCH_LIMIT, cap - queued * jobs_per_message))
        except Exception:
            # Nothing is claimed that could not be sent; the jobs stay due in the database.
            logger.exception("cannot reach the broker; claiming nothing until it answers")
            return {}
        return room

    def dispatch(self) -> bool:
        """Claim and send due jobs; True when a queue took all it was allowed (more may be due)."""
        room = {action: limit for action, limit in self._room_in_queues().items() if limit > 0}
        if not room:
            return False
        now = utcnow()
        claimed: dict[str, list[Claim]] = {}
        try:
            with session_scope(self.runtime.sessions) as session:
                for action, limit in room.items():
                    claimed[action] = claim_due_jobs(session, now=now, limit=limit, actions=[action])
        except Exception:
            logger.exception("could not claim due jobs; trying again at the next tick")
            return False
        claims = [claim for action_claims in claimed.values() for claim in action_claims]
        for claim in claims:
            lag = (now - claim.planned_at).total_seconds()
            metrics.SCHEDULING_LAG.observe(lag)
            self._worst_lag = max(self._worst_lag, lag)
        if claims:
            with self.app.producer_or_acquire() as producer:
                for dispatch in group_claims(claims):
                    self._send(dispatch, producer)
        return any(len(claimed[action]) >= limit for action, limit in room.items())

    def _send(self, dispatch: Dispatch, producer: Any) -> None:
        try:
            if dispatch.action == CHECK:
                send_check(dispatch.job_ids, dispatch.lease_token, dispatch.expires_in, producer=producer)
            else:
                (job_id,) = dispatch.job_ids
                send_trigger(job_id, dispatch.lease_token, producer=producer)
            self._sent += len(dispatch.job_ids)
            metrics.DISPATCHED.labels(dispatch.action).inc(len(dispatch.job_ids))
        except Exception:
            # The claims stand; their leases expire and the jobs are handed out again.
            logger.exception("could not send %s for job(s) %s", dispatch.action, dispatch.job_ids)

    def _count_jobs(self) -> None:
        """Refresh the jobs-by-status gauge now and then: one grouped count, cheap on the status index."""
        if time.monotonic() < self._next_census:
            return
        self._next_census = time.monotonic() + CENSUS_EVERY_SECONDS
        try:
            with session_scope(self.runtime.sessions) as session:
                counts = jobs_by_status(session)
        except Exception:
            logger.exception("could not count jobs by status")
            return
        for status, count in counts.items():
            metrics.JOBS.labels(status).set(count)

    def _log_summary(self) -> None:
        if time.monotonic() < self._next_summary:
            return
        if self._sent:
            logger.info(
                "dispatched %s job(s) in the last minute; worst scheduling lag %.2fs", self._sent, self._worst_lag
            )
        self._sent, self._worst_lag = 0, 0.0
        self._next_summary = time.monotonic() + SUMMARY_EVERY_SECONDS
