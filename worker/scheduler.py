"""Beat's scheduler: every second, claim due jobs in the database and send them to the workers.

On PostgreSQL it also claims at once when a webhook or a check announces jobs due now (see
teckochecker.engine.wakeups), at most once per WAKEUP_GAP_SECONDS, so a burst of announcements is claimed
in a few large batches rather than one claim per announcement. On SQLite, where nothing is announced, it
claims every DISPATCH_EVERY_SECONDS_UNANNOUNCED instead.

Jobs travel in groups that share one lease token, one task per group: checks of one OpenAI key (up to
CHECK_GROUP_SIZE, or a whole list sweep), and starts and follows of Keboola jobs of one Keboola token.

Stock beat keeps one schedule entry per job and compares them all on every tick; this scheduler keeps
none. The database says which jobs are due, and a claim there (see teckochecker.engine.scheduling) makes
two beats, a restarted beat, or a lost message harmless.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery.beat import Scheduler

from celeryconfig import CHECK_QUEUE, TRIGGER_QUEUE
from teckochecker.db import database_now, session_scope
from teckochecker.engine.scheduling import (
    CHECK,
    DISPATCH_BATCH_LIMIT,
    FOLLOW,
    GROUP_SIZES,
    START,
    SWEEP_GROUP_SIZE,
    Claim,
    Dispatch,
    claim_due_jobs,
    group_claims,
)
from teckochecker.engine.sweeping import refresh_sweep_modes
from teckochecker.engine.wakeups import DueListener
from teckochecker.services.stats import jobs_by_status
from worker import metrics
from worker.notification_beat import NotificationBeat
from worker.runtime import Runtime
from worker.tasks import EngineTask, send_dispatch

logger = logging.getLogger(__name__)
DISPATCH_EVERY_SECONDS = 1.0
# On SQLite (the embedded single-machine default) nothing announces due jobs, so beat looks more often; its
# claims there are a few indexed reads of a small database.
DISPATCH_EVERY_SECONDS_UNANNOUNCED = 0.25
WAKEUP_GAP_SECONDS = 0.05
SUMMARY_EVERY_SECONDS = 60.0
# How often beat counts jobs by status and turns keys' list sweeps on or off. Jobs created in bulk are checked
# one GET each until then: at 15 s, a bench's 75,000 new jobs left a backlog that took an interval to settle.
# The census is two grouped counts, about 40 ms of PostgreSQL at 75,000 jobs.
CENSUS_EVERY_SECONDS = 5.0
# Back-pressure, in messages: beat claims nothing for a queue while this many messages wait in it, and other
# due jobs wait in the database, oldest first. 125 check messages are 1,000 jobs checked one GET each, a few
# seconds of a worker's work (docs/BENCHMARKS.md), well inside the shortest allowed interval (30 s) that is
# the messages' expiry. A sweep is one message whatever the number of jobs it checks, so it is never split.
MAX_QUEUED_CHECK_MESSAGES = 125
# Starts (up to 16 jobs a message) and follows (up to 50) share the trigger queue: a few seconds of work,
# far inside their leases.
MAX_QUEUED_TRIGGER_MESSAGES = 64
QUEUE_OF = {CHECK: CHECK_QUEUE, START: TRIGGER_QUEUE, FOLLOW: TRIGGER_QUEUE}
QUEUE_CAPS = {CHECK_QUEUE: MAX_QUEUED_CHECK_MESSAGES, TRIGGER_QUEUE: MAX_QUEUED_TRIGGER_MESSAGES}


class DispatchScheduler(Scheduler):
    def setup_schedule(self) -> None:
        super().setup_schedule()
        metrics.serve_metrics(self.app.settings, "beat")
        self._next_census = 0.0
        self._next_dispatch = 0.0
        self._last_dispatch = 0.0
        self._wakeups = DueListener.for_engine(self.runtime.engine)
        self._dispatch_every = DISPATCH_EVERY_SECONDS if self._wakeups else DISPATCH_EVERY_SECONDS_UNANNOUNCED
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
            self._last_dispatch = time.monotonic()
            more_due = self.dispatch()
            # A full batch means more jobs are due: go again at once instead of waiting a second.
            self._next_dispatch = time.monotonic() + (0.0 if more_due else self._dispatch_every)
        self._log_summary()
        self._count_jobs()
        self._notifications.tick(self.app, self.runtime)
        return self._pause(wait)

    def _pause(self, wait: float) -> float:
        """How long beat sleeps before its next tick. With a listener, the sleep is spent listening: an
        announcement brings the next claim forward (keeping WAKEUP_GAP_SECONDS after the last one)."""
        started = time.monotonic()
        pause = max(0.0, min(wait, self._next_dispatch - started))
        if self._wakeups is None or pause <= 0.0:
            return pause
        if self._wakeups.wait(pause):
            soonest = max(time.monotonic(), self._last_dispatch + WAKEUP_GAP_SECONDS)
            self._next_dispatch = min(self._next_dispatch, soonest)
        listened = time.monotonic() - started
        return max(0.0, min(wait - listened, self._next_dispatch - time.monotonic()))

    def close(self) -> None:
        if self._wakeups is not None:
            self._wakeups.close()
        super().close()

    def _room_in_queues(self) -> dict[str, int]:
        """How many more messages each queue may take: back-pressure, so a backlog never outgrows the workers.

        A task that waits in its queue past its expiry is dropped unrun and its jobs handed out again;
        without a cap, an overloaded fleet spends its time on messages that expire (see docs/BENCHMARKS.md).
        A job not claimed now stays due and is claimed at a later tick, oldest first.
        """
        room = {}
        try:
            # A pooled connection: opening one per tick costs more than the question.
            with self.app.pool.acquire(block=True) as connection:
                connection.ensure_connection(max_retries=1)
                for queue, cap in QUEUE_CAPS.items():
                    try:
                        queued = connection.default_channel.queue_declare(queue, passive=True).message_count
                    except connection.channel_errors:
                        # An empty Redis queue does not exist as a key, and a passive declare of it fails.
                        queued = 0
                    room[queue] = max(0, cap - queued)
        except Exception:
            # Nothing is claimed that could not be sent; the jobs stay due in the database.
            logger.exception("cannot reach the broker; claiming nothing until it answers")
            return {}
        return room

    def _claim(self, room: dict[str, int]) -> tuple[datetime, list[Claim], bool]:
        """Claim, per action, what its queue has room for; True when an action took all it was allowed."""
        claims: list[Claim] = []
        full = False
        with session_scope(self.runtime.sessions) as session:
            now = database_now(session)
            # Sweeps first, whole: a sweep's group is one message however many jobs it checks.
            for action, sweeps in ((CHECK, True), (CHECK, False), (START, None), (FOLLOW, None)):
                queue = QUEUE_OF[action]
                if room.get(queue, 0) <= 0:
                    continue
                ordinary = min(DISPATCH_BATCH_LIMIT, room[queue] * GROUP_SIZES[action])
                limit = SWEEP_GROUP_SIZE if sweeps else ordinary
                claimed = claim_due_jobs(session, now=now, limit=limit, actions=[action], sweeps=sweeps)
                room[queue] -= len(group_claims(claimed))
                full = full or len(claimed) >= limit
                claims += claimed
        return now, claims, full

    def dispatch(self) -> bool:
        """Claim and send due jobs; True when a queue took all it was allowed (more may be due)."""
        room = {queue: messages for queue, messages in self._room_in_queues().items() if messages > 0}
        if not room:
            return False
        try:
            now, claims, full = self._claim(room)
        except Exception:
            logger.exception("could not claim due jobs; trying again at the next tick")
            return False
        for claim in claims:
            # A sweep checks some jobs ahead of their slots: that is no lag.
            lag = max(0.0, (now - claim.planned_at).total_seconds())
            metrics.SCHEDULING_LAG.observe(lag)
            self._worst_lag = max(self._worst_lag, lag)
        if claims:
            with self.app.producer_or_acquire() as producer:
                for dispatch in group_claims(claims):
                    self._send(dispatch, producer)
        return full

    def _send(self, dispatch: Dispatch, producer: Any) -> None:
        try:
            send_dispatch(dispatch, producer=producer)
            self._sent += len(dispatch.job_ids)
            metrics.DISPATCHED.labels(dispatch.action).inc(len(dispatch.job_ids))
        except Exception:
            # The claims stand; their leases expire and the jobs are handed out again.
            logger.exception("could not send %s for job(s) %s", dispatch.action, dispatch.job_ids)

    def _count_jobs(self) -> None:
        """Now and then: the jobs-by-status gauge (one grouped count on the status index), and which keys
        are refreshed by list sweeps."""
        if time.monotonic() < self._next_census:
            return
        self._next_census = time.monotonic() + CENSUS_EVERY_SECONDS
        try:
            with session_scope(self.runtime.sessions) as session:
                counts = jobs_by_status(session)
                modes = refresh_sweep_modes(session, database_now(session))
        except Exception:
            logger.exception("could not count jobs by status")
            return
        for status, count in counts.items():
            metrics.JOBS.labels(status).set(count)
        metrics.SWEEP_KEYS.set(sum(modes.values()))

    def _log_summary(self) -> None:
        if time.monotonic() < self._next_summary:
            return
        if self._sent:
            logger.info(
                "dispatched %s job(s) in the last minute; worst scheduling lag %.2fs", self._sent, self._worst_lag
            )
        self._sent, self._worst_lag = 0, 0.0
        self._next_summary = time.monotonic() + SUMMARY_EVERY_SECONDS
